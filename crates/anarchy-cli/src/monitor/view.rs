//! The dashboard as pure functions: a [`Dashboard`] (the latest status and
//! a short history) and a [`UiState`] (focus, sort, scroll) go in, a
//! `ratatui::Frame` is drawn. No IO and no clock here, so every screen can be
//! tested with `TestBackend`.

use std::collections::{BTreeMap, VecDeque};

use anarchy::{LatencyReport, MemberReport, ShardReport, StatusReport};
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table};
use ratatui::Frame;

/// Samples kept for the sparklines (one per poll).
pub const HISTORY_SAMPLES: usize = 240;
/// Characters of a peer id shown in tables.
const SHORT_ID: usize = 8;

/// Which pane the scroll and sort keys act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pane {
    /// The members table.
    #[default]
    Peers,
    /// The shard map.
    Shards,
    /// The event log.
    Events,
}

impl Pane {
    fn next(self) -> Pane {
        match self {
            Pane::Peers => Pane::Shards,
            Pane::Shards => Pane::Events,
            Pane::Events => Pane::Peers,
        }
    }

    fn previous(self) -> Pane {
        self.next().next()
    }
}

/// Columns the members table can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerSort {
    /// Peer id.
    #[default]
    Id,
    /// Liveness state.
    State,
    /// Round-trip time.
    Rtt,
    /// Probe loss.
    Loss,
    /// Time since last heard.
    LastHeard,
    /// Bytes in per second.
    BytesIn,
    /// Bytes out per second.
    BytesOut,
    /// Shards it is czar of.
    Czar,
}

impl PeerSort {
    const ALL: [PeerSort; 8] = [
        PeerSort::Id,
        PeerSort::State,
        PeerSort::Rtt,
        PeerSort::Loss,
        PeerSort::LastHeard,
        PeerSort::BytesIn,
        PeerSort::BytesOut,
        PeerSort::Czar,
    ];

    fn name(self) -> &'static str {
        match self {
            PeerSort::Id => "id",
            PeerSort::State => "state",
            PeerSort::Rtt => "rtt",
            PeerSort::Loss => "loss",
            PeerSort::LastHeard => "heard",
            PeerSort::BytesIn => "in",
            PeerSort::BytesOut => "out",
            PeerSort::Czar => "czar",
        }
    }
}

/// Columns the shard map can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShardSort {
    /// Shard name.
    #[default]
    Name,
    /// Czar id.
    Czar,
    /// Epoch.
    Epoch,
    /// Sequence number.
    Seq,
    /// Updates per second.
    Rate,
    /// Size in bytes.
    Size,
}

impl ShardSort {
    const ALL: [ShardSort; 6] =
        [ShardSort::Name, ShardSort::Czar, ShardSort::Epoch, ShardSort::Seq, ShardSort::Rate, ShardSort::Size];

    fn name(self) -> &'static str {
        match self {
            ShardSort::Name => "name",
            ShardSort::Czar => "czar",
            ShardSort::Epoch => "epoch",
            ShardSort::Seq => "seq",
            ShardSort::Rate => "upd/s",
            ShardSort::Size => "size",
        }
    }
}

/// What the user chose: focus, sort orders and scroll positions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UiState {
    /// The pane keys act on.
    pub focus: Pane,
    /// Members table order.
    pub peer_sort: PeerSort,
    /// Shard map order.
    pub shard_sort: ShardSort,
    /// Descending instead of ascending.
    pub reverse: bool,
    /// First members row shown.
    pub peer_scroll: usize,
    /// First shard row shown.
    pub shard_scroll: usize,
    /// Event lines scrolled back from the newest.
    pub event_scroll: usize,
}

/// A key the dashboard understands (mapped from terminal keys by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// Focus the next pane.
    NextPane,
    /// Focus the previous pane.
    PreviousPane,
    /// Scroll the focused pane by this many rows (negative: up).
    Scroll(isize),
    /// Scroll to the top (events: the oldest).
    Top,
    /// Scroll to the bottom (events: the newest).
    Bottom,
    /// Sort the focused table by its next column.
    NextSort,
    /// Flip ascending/descending.
    Reverse,
}

impl UiState {
    /// Applies one key. Scroll positions are clamped when drawn.
    pub fn apply(&mut self, key: Key) {
        match key {
            Key::NextPane => self.focus = self.focus.next(),
            Key::PreviousPane => self.focus = self.focus.previous(),
            Key::Scroll(by) => {
                let by = if self.focus == Pane::Events { -by } else { by };
                let slot = self.scroll_slot();
                *slot = slot.saturating_add_signed(by);
            }
            Key::Top => match self.focus {
                Pane::Events => self.event_scroll = usize::MAX / 2,
                _ => *self.scroll_slot() = 0,
            },
            Key::Bottom => match self.focus {
                Pane::Events => self.event_scroll = 0,
                _ => *self.scroll_slot() = usize::MAX / 2,
            },
            Key::NextSort => match self.focus {
                Pane::Shards => self.shard_sort = cycle(&ShardSort::ALL, self.shard_sort),
                _ => self.peer_sort = cycle(&PeerSort::ALL, self.peer_sort),
            },
            Key::Reverse => self.reverse = !self.reverse,
        }
    }

    fn scroll_slot(&mut self) -> &mut usize {
        match self.focus {
            Pane::Peers => &mut self.peer_scroll,
            Pane::Shards => &mut self.shard_scroll,
            Pane::Events => &mut self.event_scroll,
        }
    }
}

fn cycle<T: Copy + PartialEq>(all: &[T], current: T) -> T {
    let i = all.iter().position(|x| *x == current).unwrap_or(0);
    all[(i + 1) % all.len()]
}

/// Rates derived from successive snapshots, for the sparklines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// Bytes received per second, per poll.
    pub bytes_in: VecDeque<u64>,
    /// Bytes sent per second, per poll.
    pub bytes_out: VecDeque<u64>,
    /// Updates (written + applied) per second, per poll.
    pub updates: VecDeque<u64>,
    /// Mean RTT to live members in microseconds, per poll.
    pub rtt_micros: VecDeque<u64>,
    last: Option<(u64, u64, u64, u64)>,
}

impl History {
    /// Adds one snapshot's worth of samples.
    pub fn record(&mut self, status: &StatusReport) {
        let c = &status.counters;
        let now = (status.at_ms, c.bytes_in, c.bytes_out, c.updates_written + c.updates_applied);
        if let Some(last) = self.last {
            let secs = now.0.saturating_sub(last.0) as f64 / 1000.0;
            if secs > 0.0 {
                let rate = |a: u64, b: u64| (a.saturating_sub(b) as f64 / secs).round() as u64;
                push(&mut self.bytes_in, rate(now.1, last.1));
                push(&mut self.bytes_out, rate(now.2, last.2));
                push(&mut self.updates, rate(now.3, last.3));
            }
        } else {
            // No earlier snapshot: use the core's own one-second rates.
            let live = status.members.iter().filter(|m| !m.is_self);
            push(&mut self.bytes_in, live.clone().map(|m| m.bytes_in_per_sec).sum::<f64>().round() as u64);
            push(&mut self.bytes_out, live.map(|m| m.bytes_out_per_sec).sum::<f64>().round() as u64);
            push(&mut self.updates, status.shards.iter().map(|s| s.updates_per_sec).sum::<f64>().round() as u64);
        }
        let rtts: Vec<f64> = status.members.iter().filter(|m| m.state == "alive").filter_map(|m| m.rtt_ms).collect();
        if !rtts.is_empty() {
            push(&mut self.rtt_micros, (rtts.iter().sum::<f64>() / rtts.len() as f64 * 1000.0).round() as u64);
        }
        self.last = Some(now);
    }
}

fn push(series: &mut VecDeque<u64>, value: u64) {
    if series.len() >= HISTORY_SAMPLES {
        series.pop_front();
    }
    series.push_back(value);
}

/// Everything drawn: where the status came from, the latest one (or why
/// there is none), and the history of rates.
#[derive(Debug, Clone, Default)]
pub struct Dashboard {
    /// What is being watched (an address, or `demo peer 2/8`).
    pub source: String,
    /// The latest snapshot.
    pub status: Option<StatusReport>,
    /// The last fetch error, if the last fetch failed.
    pub error: Option<String>,
    /// Rates over time.
    pub history: History,
    /// Extra key help for the footer (e.g. switching demo peers).
    pub extra_keys: Option<String>,
}

impl Dashboard {
    /// Takes in a fetched snapshot.
    pub fn update(&mut self, status: StatusReport) {
        self.history.record(&status);
        self.status = Some(status);
        self.error = None;
    }
}

/// Draws the whole dashboard into `frame`.
pub fn draw(frame: &mut Frame, dashboard: &Dashboard, ui: &UiState) {
    let area = frame.area();
    let [header, tables, graphs, bottom, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(6),
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(frame.buffer_mut(), header, dashboard);
    let Some(status) = &dashboard.status else {
        let text = dashboard.error.as_deref().unwrap_or("waiting for the first status...");
        frame.render_widget(Paragraph::new(text).block(Block::bordered().title(" no status ")), tables);
        draw_footer(frame.buffer_mut(), footer, dashboard, ui);
        return;
    };
    let [peers, shards] = Layout::horizontal([Constraint::Percentage(51), Constraint::Percentage(49)]).areas(tables);
    draw_peers(frame, peers, status, ui);
    draw_shards(frame, shards, status, ui);
    let [bandwidth, latency] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(graphs);
    draw_bandwidth(frame, bandwidth, &dashboard.history);
    draw_latency(frame, latency, status, &dashboard.history);
    let [events, counters] = Layout::horizontal([Constraint::Percentage(65), Constraint::Percentage(35)]).areas(bottom);
    draw_events(frame, events, status, ui);
    draw_counters(frame, counters, status);
    draw_footer(frame.buffer_mut(), footer, dashboard, ui);
}

fn short(id: &str) -> &str {
    id.get(..SHORT_ID).unwrap_or(id)
}

/// `1234` → `1.2K`, for bytes and rates.
pub fn human(n: f64) -> String {
    if n >= 1e9 {
        format!("{:.1}G", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}K", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

fn pane_block(title: String, focused: bool) -> Block<'static> {
    let style = if focused { Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD) } else { Style::new() };
    Block::bordered().title(title).border_style(style)
}

fn draw_header(buf: &mut Buffer, area: Rect, dashboard: &Dashboard) {
    let mut spans = vec![Span::from(format!(" {} ", dashboard.source)).bold()];
    match &dashboard.status {
        Some(s) => {
            let alive = s.members.iter().filter(|m| m.state == "alive").count();
            let suspected = s.members.iter().filter(|m| m.state == "suspected").count();
            let owned = s.shards.iter().filter(|sh| sh.czar.as_deref() == Some(s.id.as_str())).count();
            let rate_in = dashboard.history.bytes_in.back().copied().unwrap_or(0);
            let rate_out = dashboard.history.bytes_out.back().copied().unwrap_or(0);
            let joined = if s.joined { Span::from("joined").green() } else { Span::from("NOT JOINED").red().bold() };
            spans.extend([
                Span::from(format!("peer {} ", short(&s.id))),
                joined,
                Span::from(format!(
                    "  inc {}  health {}  members {alive} alive/{suspected} suspected/{} known  shards {} (czar of {owned})  in {}B/s out {}B/s  drops {}",
                    s.incarnation,
                    s.local_health,
                    s.members.len(),
                    s.shards.len(),
                    human(rate_in as f64),
                    human(rate_out as f64),
                    s.counters.drops_total
                )),
            ]);
        }
        None => spans.push(Span::from("no status yet")),
    }
    if let Some(e) = &dashboard.error {
        spans.push(Span::from(format!("  fetch failed: {e}")).red());
    }
    let block = Block::new().borders(Borders::ALL).title(" anarchy monitor ");
    Paragraph::new(Line::from(spans)).block(block).render_into(buf, area);
}

/// Renders a widget straight into a buffer (keeps the draw functions short).
trait RenderInto {
    fn render_into(self, buf: &mut Buffer, area: Rect);
}

impl<W: ratatui::widgets::Widget> RenderInto for W {
    fn render_into(self, buf: &mut Buffer, area: Rect) {
        self.render(area, buf);
    }
}

/// Shards each peer is czar of, and backup of.
fn roles(status: &StatusReport) -> BTreeMap<&str, (usize, usize)> {
    let mut roles: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for shard in &status.shards {
        if let Some(czar) = &shard.czar {
            roles.entry(czar.as_str()).or_default().0 += 1;
        }
        for backup in &shard.backups {
            roles.entry(backup.as_str()).or_default().1 += 1;
        }
    }
    roles
}

fn state_rank(state: &str) -> u8 {
    match state {
        "alive" => 0,
        "suspected" => 1,
        "unreachable" => 2,
        _ => 3,
    }
}

/// The members in display order.
pub fn sorted_members<'a>(status: &'a StatusReport, ui: &UiState) -> Vec<&'a MemberReport> {
    let roles = roles(status);
    let mut members: Vec<&MemberReport> = status.members.iter().collect();
    let key = |m: &MemberReport| -> f64 {
        match ui.peer_sort {
            PeerSort::Id => 0.0,
            PeerSort::State => f64::from(state_rank(&m.state)),
            PeerSort::Rtt => m.rtt_ms.unwrap_or(-1.0),
            PeerSort::Loss => m.loss.unwrap_or(-1.0),
            PeerSort::LastHeard => m.last_heard_ms as f64,
            PeerSort::BytesIn => m.bytes_in_per_sec,
            PeerSort::BytesOut => m.bytes_out_per_sec,
            PeerSort::Czar => roles.get(m.id.as_str()).map_or(0.0, |r| r.0 as f64),
        }
    };
    members.sort_by(|a, b| key(a).total_cmp(&key(b)).then_with(|| a.id.cmp(&b.id)));
    if ui.reverse {
        members.reverse();
    }
    members
}

/// The shards in display order.
pub fn sorted_shards<'a>(status: &'a StatusReport, ui: &UiState) -> Vec<&'a ShardReport> {
    let mut shards: Vec<&ShardReport> = status.shards.iter().collect();
    match ui.shard_sort {
        ShardSort::Name => shards.sort_by(|a, b| a.name.cmp(&b.name)),
        ShardSort::Czar => shards.sort_by(|a, b| a.czar.cmp(&b.czar).then_with(|| a.name.cmp(&b.name))),
        ShardSort::Epoch => shards.sort_by(|a, b| a.epoch.cmp(&b.epoch).then_with(|| a.name.cmp(&b.name))),
        ShardSort::Seq => shards.sort_by(|a, b| a.seq.cmp(&b.seq).then_with(|| a.name.cmp(&b.name))),
        ShardSort::Rate => {
            shards.sort_by(|a, b| a.updates_per_sec.total_cmp(&b.updates_per_sec).then_with(|| a.name.cmp(&b.name)))
        }
        ShardSort::Size => shards.sort_by(|a, b| a.size_bytes.cmp(&b.size_bytes).then_with(|| a.name.cmp(&b.name))),
    }
    if ui.reverse {
        shards.reverse();
    }
    shards
}

/// Rows that fit in a bordered table of `area` with a header line.
fn visible_rows(area: Rect) -> usize {
    usize::from(area.height.saturating_sub(3))
}

/// The first row to show: `wanted`, clamped so the last page stays full.
fn clamp_scroll(wanted: usize, total: usize, visible: usize) -> usize {
    wanted.min(total.saturating_sub(visible))
}

fn range_label(first: usize, shown: usize, total: usize) -> String {
    if total == 0 {
        return "0".into();
    }
    if shown >= total {
        return total.to_string();
    }
    format!("{}-{} of {total}", first + 1, first + shown)
}

fn arrow(ui: &UiState) -> &'static str {
    if ui.reverse {
        "desc"
    } else {
        "asc"
    }
}

fn draw_peers(frame: &mut Frame, area: Rect, status: &StatusReport, ui: &UiState) {
    let roles = roles(status);
    let members = sorted_members(status, ui);
    let visible = visible_rows(area);
    let first = clamp_scroll(ui.peer_scroll, members.len(), visible);
    let shown = members.len().saturating_sub(first).min(visible);
    let rows = members.iter().skip(first).take(visible).map(|m| {
        let (czar, backup) = roles.get(m.id.as_str()).copied().unwrap_or_default();
        let style = match m.state.as_str() {
            "alive" => Style::new(),
            "suspected" => Style::new().fg(Color::Yellow),
            _ => Style::new().fg(Color::DarkGray),
        };
        let id = if m.is_self { format!("{}*", short(&m.id)) } else { short(&m.id).to_owned() };
        Row::new([
            Cell::from(id),
            Cell::from(m.addr.clone()),
            Cell::from(m.state.clone()),
            Cell::from(ms(m.rtt_ms)),
            Cell::from(m.loss.map_or_else(|| "-".into(), |l| format!("{:.1}", l * 100.0))),
            Cell::from(if m.is_self { "-".to_owned() } else { m.last_heard_ms.to_string() }),
            Cell::from(human(m.bytes_in_per_sec)),
            Cell::from(human(m.bytes_out_per_sec)),
            Cell::from(m.budget_bytes_per_sec.map_or_else(|| "-".into(), |b| human(b as f64))),
            Cell::from(format!("{czar}/{backup}")),
        ])
        .style(style)
    });
    let header =
        Row::new(["peer", "address", "state", "rtt ms", "loss%", "heard", "in B/s", "out B/s", "budget", "czar/bkp"])
            .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let widths = [
        Constraint::Length(9),
        Constraint::Min(15),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(8),
    ];
    let title =
        format!(" Peers [{}] sort: {} {} ", range_label(first, shown, members.len()), ui.peer_sort.name(), arrow(ui));
    let table = Table::new(rows, widths).header(header).block(pane_block(title, ui.focus == Pane::Peers));
    frame.render_widget(table, area);
}

fn draw_shards(frame: &mut Frame, area: Rect, status: &StatusReport, ui: &UiState) {
    let shards = sorted_shards(status, ui);
    let visible = visible_rows(area);
    let first = clamp_scroll(ui.shard_scroll, shards.len(), visible);
    let shown = shards.len().saturating_sub(first).min(visible);
    let rows = shards.iter().skip(first).take(visible).map(|s| {
        let czar = s.czar.as_deref().map_or("-", short);
        let mine = s.czar.as_deref() == Some(status.id.as_str());
        let backups: Vec<&str> = s.backups.iter().take(2).map(|b| short(b)).collect();
        let more = if s.backups.len() > 2 { format!(" +{}", s.backups.len() - 2) } else { String::new() };
        let row = Row::new([
            Cell::from(s.name.clone()),
            Cell::from(if mine { format!("{czar}*") } else { czar.to_owned() }),
            Cell::from(format!("{}{more}", backups.join(" "))),
            Cell::from(anarchy::proto::epoch_label(s.epoch)),
            Cell::from(s.seq.to_string()),
            Cell::from(s.checksum.get(..8).unwrap_or(&s.checksum).to_owned()),
            Cell::from(human(s.updates_per_sec)),
            Cell::from(human(s.size_bytes as f64)),
        ]);
        if s.czar.is_none() {
            row.style(Style::new().fg(Color::Red))
        } else {
            row
        }
    });
    let header = Row::new(["shard", "czar", "backups", "epoch", "seq", "checksum", "upd/s", "size"])
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let widths = [
        Constraint::Min(10),
        Constraint::Length(9),
        Constraint::Length(20),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(6),
    ];
    let title = format!(
        " Shard map [{}] sort: {} {} ",
        range_label(first, shown, shards.len()),
        ui.shard_sort.name(),
        arrow(ui)
    );
    let table = Table::new(rows, widths).header(header).block(pane_block(title, ui.focus == Pane::Shards));
    frame.render_widget(table, area);
}

/// The last `width` samples of a series, for a sparkline of that width.
fn tail(series: &VecDeque<u64>, width: u16) -> Vec<u64> {
    let skip = series.len().saturating_sub(usize::from(width));
    series.iter().skip(skip).copied().collect()
}

fn draw_bandwidth(frame: &mut Frame, area: Rect, history: &History) {
    let block = Block::bordered().title(" Bandwidth ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [in_label, in_line, out_label, out_line, upd_label] = Layout::vertical([Constraint::Length(1); 5]).areas(inner);
    let last = |s: &VecDeque<u64>| s.back().copied().unwrap_or(0) as f64;
    let peak = |s: &VecDeque<u64>| s.iter().copied().max().unwrap_or(0) as f64;
    frame.render_widget(
        Paragraph::new(format!(
            "in  {}B/s (peak {}B/s)",
            human(last(&history.bytes_in)),
            human(peak(&history.bytes_in))
        )),
        in_label,
    );
    let width = in_line.width;
    frame.render_widget(Sparkline::default().data(tail(&history.bytes_in, width)).style(Color::Green), in_line);
    frame.render_widget(
        Paragraph::new(format!(
            "out {}B/s (peak {}B/s)",
            human(last(&history.bytes_out)),
            human(peak(&history.bytes_out))
        )),
        out_label,
    );
    frame.render_widget(Sparkline::default().data(tail(&history.bytes_out, width)).style(Color::Blue), out_line);
    frame.render_widget(Paragraph::new(format!("updates {}/s", human(last(&history.updates)))), upd_label);
}

fn latency_line(name: &str, l: &LatencyReport) -> String {
    let q = |v: Option<u64>| v.map_or_else(|| "-".into(), |v| format!("<={v}"));
    format!(
        "{name:<14} n={:<6} p50 {:>6} p99 {:>6} max {:>7} ms",
        l.count,
        q(l.p50_ms),
        q(l.p99_ms),
        l.max_ms.map_or_else(|| "-".into(), |m| format!("{m:.1}"))
    )
}

fn draw_latency(frame: &mut Frame, area: Rect, status: &StatusReport, history: &History) {
    let block = Block::bordered().title(" Latency ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [label, line, text] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    let mean = history.rtt_micros.back().map(|us| *us as f64 / 1000.0);
    frame.render_widget(Paragraph::new(format!("mean rtt {} ms", ms(mean))), label);
    frame.render_widget(Sparkline::default().data(tail(&history.rtt_micros, line.width)).style(Color::Magenta), line);
    let lines = vec![
        Line::from(latency_line("write->apply", &status.latency.write_to_apply)),
        Line::from(latency_line("commit", &status.latency.commit)),
        Line::from(latency_line("rtt", &status.latency.rtt)),
    ];
    frame.render_widget(Paragraph::new(lines), text);
}

fn draw_events(frame: &mut Frame, area: Rect, status: &StatusReport, ui: &UiState) {
    let visible = visible_rows(area) + 1; // no header row
    let total = status.events.len();
    let back = ui.event_scroll.min(total.saturating_sub(visible));
    let end = total - back;
    let start = end.saturating_sub(visible);
    let lines: Vec<Line> = status.events[start..end]
        .iter()
        .map(|e| {
            let ago = status.at_ms.saturating_sub(e.at_ms) as f64 / 1000.0;
            Line::from(vec![Span::from(format!("{ago:>7.1}s ago  ")).dark_gray(), Span::from(e.text.clone())])
        })
        .collect();
    let title =
        if total == 0 { " Events [none] ".to_owned() } else { format!(" Events [{}-{} of {total}] ", start + 1, end) };
    frame.render_widget(Paragraph::new(lines).block(pane_block(title, ui.focus == Pane::Events)), area);
}

fn draw_counters(frame: &mut Frame, area: Rect, status: &StatusReport) {
    let c = &status.counters;
    let mut lines = vec![
        Line::from(format!("datagrams in/out {}/{}", human(c.datagrams_in as f64), human(c.datagrams_out as f64))),
        Line::from(format!("updates written/applied {}/{}", c.updates_written, c.updates_applied)),
        Line::from(format!(
            "repairs {}  snapshots {}  fwd {}  committed {}",
            c.repairs_requested, c.snapshots_installed, c.writes_forwarded, c.critical_committed
        )),
    ];
    let mut drops: Vec<(&String, &u64)> = status.drops.iter().filter(|(_, n)| **n > 0).collect();
    drops.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    if drops.is_empty() {
        lines.push(Line::from("drops: none"));
    } else {
        lines.push(Line::from(format!("drops: {}", c.drops_total)).yellow());
        lines.extend(drops.iter().map(|(reason, n)| Line::from(format!("  {reason} {n}"))));
    }
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(" Counters ")), area);
}

fn draw_footer(buf: &mut Buffer, area: Rect, dashboard: &Dashboard, ui: &UiState) {
    let focus = match ui.focus {
        Pane::Peers => "peers",
        Pane::Shards => "shards",
        Pane::Events => "events",
    };
    let mut text = format!(" q quit  tab focus ({focus})  up/down/pgup/pgdn scroll  home/end  s sort  r reverse");
    if let Some(extra) = &dashboard.extra_keys {
        text.push_str("  ");
        text.push_str(extra);
    }
    Paragraph::new(text).dark_gray().render_into(buf, area);
}

/// The text of a buffer, one line per row, trailing spaces trimmed.
pub fn buffer_text(buffer: &Buffer) -> String {
    let width = usize::from(buffer.area.width);
    let mut out = String::new();
    for row in buffer.content.chunks(width.max(1)) {
        let line: String = row.iter().map(|cell| cell.symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Draws the dashboard once off-screen at `width` x `height` and returns its text.
pub fn render_text(dashboard: &Dashboard, ui: &UiState, width: u16, height: u16) -> String {
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height))
        .expect("an in-memory terminal cannot fail");
    terminal.draw(|frame| draw(frame, dashboard, ui)).expect("an in-memory terminal cannot fail");
    buffer_text(terminal.backend().buffer())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anarchy::{Counters, EventReport, LatencyReports};

    fn latency(count: u64) -> LatencyReport {
        LatencyReport {
            count,
            p50_ms: (count > 0).then_some(5),
            p99_ms: (count > 0).then_some(20),
            max_ms: (count > 0).then_some(18.5),
            mean_ms: None,
            sum_ms: 0.0,
            buckets: Vec::new(),
        }
    }

    fn id(n: usize) -> String {
        format!("{n:08x}{}", "0".repeat(56))
    }

    /// A session of `peers` members and `shards` shards seen from peer 0.
    fn status(peers: usize, shards: usize) -> StatusReport {
        let members = (0..peers)
            .map(|i| MemberReport {
                id: id(i),
                addr: format!("127.0.0.1:{}", 7000 + i),
                state: if i == 3 { "suspected".into() } else { "alive".into() },
                incarnation: 0,
                last_heard_ms: 10 * i as u64,
                rtt_ms: (i > 0).then_some(1.0 + i as f64),
                loss: (i > 0).then_some(0.0),
                bytes_in_per_sec: 100.0 * i as f64,
                bytes_out_per_sec: 1500.0,
                budget_bytes_per_sec: (i > 0).then_some(64_000),
                is_self: i == 0,
            })
            .collect();
        let shards = (0..shards)
            .map(|i| ShardReport {
                id: format!("{i:016x}"),
                name: format!("shard-{i:03}"),
                czar: Some(id(i % peers)),
                backups: vec![id((i + 1) % peers), id((i + 2) % peers), id((i + 3) % peers)],
                epoch: 1 + (i % 3) as u32,
                seq: 100 + i as u64,
                checksum: "0123456789abcdef".into(),
                keys: i,
                size_bytes: 64 * i,
                updates_per_sec: i as f64,
                bytes_per_sec: 0.0,
            })
            .collect();
        StatusReport {
            id: id(0),
            joined: true,
            incarnation: 0,
            local_health: 0,
            at_ms: 60_000,
            members,
            shards,
            events: (0..30).map(|i| EventReport { at_ms: 1000 * i, text: format!("peer {:08x} joined", i) }).collect(),
            latency: LatencyReports { write_to_apply: latency(42), commit: latency(0), rtt: latency(9) },
            counters: Counters {
                datagrams_in: 1200,
                bytes_in: 50_000,
                datagrams_out: 1300,
                bytes_out: 60_000,
                updates_written: 77,
                updates_applied: 88,
                snapshots_installed: 1,
                repairs_requested: 2,
                writes_forwarded: 3,
                critical_committed: 0,
                drops_total: 5,
            },
            drops: [("duplicate".to_owned(), 4), ("stale_epoch".to_owned(), 1), ("bad_magic".to_owned(), 0)]
                .into_iter()
                .collect(),
        }
    }

    fn dashboard(peers: usize, shards: usize) -> Dashboard {
        let mut d = Dashboard { source: "127.0.0.1:9000".into(), ..Dashboard::default() };
        d.update(status(peers, shards));
        d
    }

    #[test]
    fn dashboard_shows_peers_shards_latency_events_and_drops() {
        let text = render_text(&dashboard(5, 4), &UiState::default(), 160, 40);
        assert!(text.contains("anarchy monitor"), "{text}");
        assert!(text.contains("127.0.0.1:9000"), "{text}");
        assert!(text.contains("peer 00000000 joined"), "{text}");
        assert!(text.contains("members 4 alive/1 suspected/5 known"), "{text}");
        assert!(text.contains("00000000*"), "ourselves are marked: {text}");
        assert!(text.contains("suspected"), "{text}");
        assert!(text.contains("127.0.0.1:7004"), "{text}");
        assert!(text.contains("shard-003"), "{text}");
        assert!(text.contains("Shard map [4]"), "{text}");
        assert!(text.contains("write->apply   n=42"), "{text}");
        assert!(text.contains("duplicate 4"), "{text}");
        assert!(text.contains("updates written/applied 77/88"), "{text}");
        assert!(text.contains("peer 0000001d joined"), "the newest event is shown: {text}");
        assert!(text.contains("q quit"), "{text}");
    }

    #[test]
    fn a_hundred_and_fifty_peers_scroll_and_sort() {
        let d = dashboard(150, 120);
        let mut ui = UiState::default();
        let text = render_text(&d, &ui, 160, 40);
        assert!(text.contains("Peers [1-"), "{text}");
        assert!(text.contains("of 150]"), "{text}");
        assert!(!text.contains("00000095"), "the last peer is below the fold: {text}");
        ui.apply(Key::Bottom);
        let text = render_text(&d, &ui, 160, 40);
        assert!(text.contains("00000095"), "end scrolls to the last peer: {text}");
        assert!(text.contains("- 150 of 150]") || text.contains("-150 of 150]"), "{text}");

        // Sort by rtt descending: the slowest peer (149) comes first.
        let mut ui = UiState::default();
        while ui.peer_sort != PeerSort::Rtt {
            ui.apply(Key::NextSort);
        }
        ui.apply(Key::Reverse);
        assert_eq!(sorted_members(&status(150, 1), &ui)[0].id, id(149));
        let text = render_text(&d, &ui, 160, 40);
        assert!(text.contains("sort: rtt desc"), "{text}");
        let first_row = text.lines().find(|l| l.starts_with("│0")).unwrap();
        assert!(first_row.contains("00000095"), "{first_row}");

        // Shards pane: scroll down one page.
        ui.apply(Key::NextPane);
        ui.apply(Key::Scroll(30));
        let text = render_text(&d, &ui, 160, 40);
        assert!(text.contains("Shard map [31-"), "{text}");
    }

    #[test]
    fn events_scroll_back_from_the_newest() {
        let d = dashboard(3, 2);
        let mut ui = UiState { focus: Pane::Events, ..UiState::default() };
        ui.apply(Key::Scroll(-10)); // up: older
        let text = render_text(&d, &ui, 160, 40);
        assert!(!text.contains("peer 0000001d joined"), "{text}");
        ui.apply(Key::Bottom);
        let text = render_text(&d, &ui, 160, 40);
        assert!(text.contains("peer 0000001d joined"), "{text}");
    }

    #[test]
    fn a_failed_fetch_is_shown_instead_of_a_blank_screen() {
        let d = Dashboard {
            source: "127.0.0.1:1".into(),
            error: Some("connection refused".into()),
            ..Dashboard::default()
        };
        let text = render_text(&d, &UiState::default(), 100, 30);
        assert!(text.contains("connection refused"), "{text}");
        assert!(text.contains("no status"), "{text}");
    }

    #[test]
    fn history_turns_counters_into_rates() {
        let mut h = History::default();
        let mut s = status(2, 1);
        h.record(&s);
        s.at_ms += 2000;
        s.counters.bytes_out += 4000;
        s.counters.updates_applied += 10;
        h.record(&s);
        assert_eq!(h.bytes_out.back(), Some(&2000));
        assert_eq!(h.updates.back(), Some(&5));
        assert_eq!(h.rtt_micros.back(), Some(&2000));
    }
}
