//! `anarchy monitor ADDR`: a terminal dashboard over a node's `/status`.
//! This module owns fetching (a plain HTTP/1.1 GET), the terminal (raw mode,
//! alternate screen, always restored) and the key loop; drawing is in
//! [`view`], pure and tested off-screen. `anarchy demo` reuses [`run_live`].

pub mod view;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anarchy::StatusReport;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::crossterm::ExecutableCommand;

use crate::logging;
use view::{Dashboard, Key, UiState};

/// How long one fetch may take (connect, then the whole response).
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest `/status` body accepted.
const MAX_STATUS_BYTES: u64 = 16 * 1024 * 1024;
/// How often the key loop wakes without input.
const KEY_POLL: Duration = Duration::from_millis(50);

/// Arguments of `anarchy monitor`.
#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// A node's admin address (`anarchy node --admin ADDR`), e.g. 127.0.0.1:9000.
    #[arg(value_name = "ADDR")]
    addr: String,
    /// Milliseconds between two polls.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    interval_ms: u64,
    /// Fetch once, print the dashboard as text to stdout and exit (no terminal needed).
    #[arg(long)]
    once: bool,
    /// Width of the `--once` rendering.
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u16).range(60..=1000))]
    width: u16,
    /// Height of the `--once` rendering.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u16).range(20..=1000))]
    height: u16,
    /// Log filter (e.g. info, debug). Default: RUST_LOG, else warn. Logs go to
    /// stderr, held back while the dashboard is on screen.
    #[arg(long, value_name = "LEVEL")]
    log: Option<String>,
}

/// Runs `anarchy monitor`.
pub fn run(args: MonitorArgs) -> ExitCode {
    logging::init(args.log.as_deref(), "warn");
    let addr = match resolve(&args.addr) {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut source = HttpSource { addr };
    if args.once {
        let status = match source.fetch() {
            Ok(status) => status,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut dashboard = Dashboard { source: source.label(), ..Dashboard::default() };
        dashboard.update(status);
        print!("{}", view::render_text(&dashboard, &UiState::default(), args.width, args.height));
        return ExitCode::SUCCESS;
    }
    match run_live(&mut source, Duration::from_millis(args.interval_ms), &AtomicBool::new(false)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `host:port` or `http://host:port[/...]` to one socket address.
fn resolve(addr: &str) -> Result<SocketAddr, String> {
    let bare = addr.strip_prefix("http://").unwrap_or(addr);
    let bare = bare.split('/').next().unwrap_or(bare);
    bare.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr:?} resolves to no address"))
}

/// Where the dashboard's snapshots come from.
pub trait StatusSource {
    /// What is shown in the header.
    fn label(&self) -> String;
    /// One snapshot.
    fn fetch(&mut self) -> Result<StatusReport, String>;
    /// Switches to the next (`forward`) or previous watched peer, for sources
    /// with several; returns whether anything changed.
    fn switch(&mut self, _forward: bool) -> bool {
        false
    }
    /// Extra key help for the footer.
    fn extra_keys(&self) -> Option<String> {
        None
    }
}

/// A node's admin endpoint over HTTP.
#[derive(Debug)]
pub struct HttpSource {
    /// The admin address.
    pub addr: SocketAddr,
}

impl StatusSource for HttpSource {
    fn label(&self) -> String {
        self.addr.to_string()
    }

    fn fetch(&mut self) -> Result<StatusReport, String> {
        let body = http_get(self.addr, "/status")?;
        serde_json::from_slice(&body).map_err(|e| format!("bad /status from {}: {e}", self.addr))
    }
}

/// A blocking HTTP/1.1 GET with `Connection: close`; the body of a 200.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<Vec<u8>, String> {
    let fail = |e: std::io::Error| format!("GET http://{addr}{path}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, FETCH_TIMEOUT).map_err(fail)?;
    stream.set_read_timeout(Some(FETCH_TIMEOUT)).map_err(fail)?;
    stream.set_write_timeout(Some(FETCH_TIMEOUT)).map_err(fail)?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(fail)?;
    let mut raw = Vec::new();
    stream.take(MAX_STATUS_BYTES).read_to_end(&mut raw).map_err(fail)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| format!("GET {path}: no HTTP header"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status_line = head.lines().next().unwrap_or_default();
    if status_line.split(' ').nth(1) != Some("200") {
        return Err(format!("GET http://{addr}{path}: {status_line}"));
    }
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Err(format!("GET http://{addr}{path}: chunked responses are not supported"));
    }
    Ok(raw[split + 4..].to_vec())
}

/// Restores the terminal when dropped, also on error or panic.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> std::io::Result<TerminalGuard> {
        terminal::enable_raw_mode()?;
        logging::hold_stderr(true);
        TUI_ON.store(true, Ordering::Release);
        let guard = TerminalGuard;
        std::io::stdout().execute(EnterAlternateScreen)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        TUI_ON.store(false, Ordering::Release);
        let _ = std::io::stdout().execute(LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
        logging::hold_stderr(false);
    }
}

/// Whether a dashboard owns the terminal right now (read by the panic hook).
static TUI_ON: AtomicBool = AtomicBool::new(false);

/// Installs, once, a panic hook that restores the terminal before the
/// panic message is printed, then runs the hook that was there before.
fn restore_terminal_on_panic() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if TUI_ON.swap(false, Ordering::AcqRel) {
                let _ = std::io::stdout().execute(LeaveAlternateScreen);
                let _ = terminal::disable_raw_mode();
                logging::hold_stderr(false);
            }
            previous(info);
        }));
    });
}

/// Shows the dashboard on the terminal, polling `source` every `interval`,
/// until `q`/Esc/Ctrl-C or until `stop` is set. The terminal is restored
/// on every exit path; logs written meanwhile are printed to stderr after.
pub fn run_live(source: &mut dyn StatusSource, interval: Duration, stop: &AtomicBool) -> Result<(), String> {
    restore_terminal_on_panic();
    let guard = TerminalGuard::enter().map_err(|e| format!("cannot set up the terminal: {e}"))?;
    let result = key_loop(source, interval, stop);
    drop(guard);
    result
}

fn key_loop(source: &mut dyn StatusSource, interval: Duration, stop: &AtomicBool) -> Result<(), String> {
    let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
    let mut terminal = ratatui::Terminal::new(backend).map_err(|e| e.to_string())?;
    terminal.clear().map_err(|e| e.to_string())?;
    let mut dashboard = Dashboard { source: source.label(), extra_keys: source.extra_keys(), ..Dashboard::default() };
    let mut ui = UiState::default();
    let mut next_fetch = Instant::now();
    let mut dirty = true;
    while !stop.load(Ordering::Acquire) {
        if Instant::now() >= next_fetch {
            match source.fetch() {
                Ok(status) => dashboard.update(status),
                Err(e) => dashboard.error = Some(e),
            }
            next_fetch = Instant::now() + interval;
            dirty = true;
        }
        if dirty {
            terminal.draw(|frame| view::draw(frame, &dashboard, &ui)).map_err(|e| e.to_string())?;
            dirty = false;
        }
        if !event::poll(KEY_POLL).map_err(|e| e.to_string())? {
            continue;
        }
        let key = match event::read().map_err(|e| e.to_string())? {
            Event::Key(key) if key.kind != KeyEventKind::Release => key,
            Event::Resize(..) => {
                dirty = true;
                continue;
            }
            _ => continue,
        };
        let page = terminal.size().map_or(10, |s| (s.height / 3).max(1) as isize);
        let action = match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return Ok(()),
            KeyCode::Tab => Some(Key::NextPane),
            KeyCode::BackTab => Some(Key::PreviousPane),
            KeyCode::Down | KeyCode::Char('j') => Some(Key::Scroll(1)),
            KeyCode::Up | KeyCode::Char('k') => Some(Key::Scroll(-1)),
            KeyCode::PageDown => Some(Key::Scroll(page)),
            KeyCode::PageUp => Some(Key::Scroll(-page)),
            KeyCode::Home | KeyCode::Char('g') => Some(Key::Top),
            KeyCode::End | KeyCode::Char('G') => Some(Key::Bottom),
            KeyCode::Char('s') => Some(Key::NextSort),
            KeyCode::Char('r') => Some(Key::Reverse),
            KeyCode::Char('n') | KeyCode::Char('p') => {
                if source.switch(key.code == KeyCode::Char('n')) {
                    dashboard =
                        Dashboard { source: source.label(), extra_keys: source.extra_keys(), ..Dashboard::default() };
                    next_fetch = Instant::now();
                }
                None
            }
            _ => None,
        };
        if let Some(action) = action {
            ui.apply(action);
        }
        dirty = true;
    }
    Ok(())
}

/// Local sessions watched in-process (the demo's players).
#[derive(Debug)]
pub struct LocalSource {
    /// One handle per local peer.
    pub peers: Vec<anarchy::StatusHandle>,
    /// The one shown.
    pub selected: usize,
    /// What they are, for the header (e.g. `demo`).
    pub name: String,
}

impl StatusSource for LocalSource {
    fn label(&self) -> String {
        let stopped = self.peers.get(self.selected).is_some_and(|p| p.is_stopped());
        let note = if stopped { " (stopped)" } else { "" };
        format!("{} peer {}/{}{note}", self.name, self.selected + 1, self.peers.len())
    }

    fn fetch(&mut self) -> Result<StatusReport, String> {
        self.peers.get(self.selected).map(|p| p.report()).ok_or_else(|| "no local peers".to_owned())
    }

    fn switch(&mut self, forward: bool) -> bool {
        let n = self.peers.len();
        if n < 2 {
            return false;
        }
        self.selected = if forward { (self.selected + 1) % n } else { (self.selected + n - 1) % n };
        true
    }

    fn extra_keys(&self) -> Option<String> {
        (self.peers.len() > 1).then(|| "n/p next/previous peer".to_owned())
    }
}

/// The dashboard over in-process peers, on its own thread, for as long as
/// this value lives (`anarchy demo` on a terminal). Dropping it closes the
/// dashboard and restores the terminal; `q` closes it early.
#[derive(Debug)]
pub struct LiveView {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How often the in-process dashboard refreshes.
const LIVE_VIEW_INTERVAL: Duration = Duration::from_millis(250);

impl LiveView {
    /// Shows `peers` (named `name` in the header) until dropped.
    pub fn start(name: &str, peers: Vec<anarchy::StatusHandle>) -> LiveView {
        let stop = Arc::new(AtomicBool::new(false));
        let mut source = LocalSource { peers, selected: 0, name: name.to_owned() };
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            if let Err(e) = run_live(&mut source, LIVE_VIEW_INTERVAL, &flag) {
                tracing::warn!("dashboard stopped: {e}");
            }
        });
        LiveView { stop, thread: Some(thread) }
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_resolve_with_or_without_a_scheme() {
        let want: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        assert_eq!(resolve("127.0.0.1:9000").unwrap(), want);
        assert_eq!(resolve("http://127.0.0.1:9000/status").unwrap(), want);
        assert!(resolve("nonsense").is_err());
    }

    #[test]
    fn a_closed_port_is_a_clear_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = HttpSource { addr }.fetch().unwrap_err();
        assert!(err.contains(&addr.to_string()), "{err}");
    }
}
