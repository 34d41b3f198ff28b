//! Status: what the tools show. Per-link round-trip time and loss (from
//! ping/pong probes), per-link and per-shard rates, recent notable events,
//! latency histograms and every counter, gathered into one snapshot that is
//! cheap to take. The probes' round trips also feed the uplink watch
//! (`crate::uplink`), which a czar steps down on; nothing else here changes
//! protocol behaviour.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use crate::event::Event;
use crate::identity::PeerId;
use crate::replica::Version;
use crate::shards::ShardId;
use crate::stats::{Histogram, Stats};
use crate::time::Instant;
use crate::wire::Frame;

use super::Peer;

/// How often every member is probed for its round-trip time.
pub(super) const PING_INTERVAL: Duration = Duration::from_secs(1);
/// Most members probed at once when round trips look queued.
const HURRIED_PROBES: usize = 32;
/// Members are probed at once for that at most this often.
const HURRY_INTERVAL: Duration = Duration::from_millis(250);
/// Window over which rates are measured.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// Notable events kept for the status snapshot.
const RECENT_EVENTS: usize = 100;
/// Weight of a new sample in the smoothed RTT and loss (as in TCP's SRTT).
const EWMA_WEIGHT: f64 = 0.125;

/// What we measure about the link to one member.
#[derive(Debug, Clone, Default)]
pub(super) struct Link {
    srtt: Option<Duration>,
    loss: Option<f64>,
    awaiting: Option<u64>,
    /// A probe is due: it rides the next heartbeat we send the member.
    ping_due: bool,
    /// When the last probe was sent.
    probed_at: Option<Instant>,
    pub(super) bytes_in: u64,
    bytes_in_at_window: u64,
    bytes_in_rate: f64,
}

/// Rate bookkeeping for one shard.
#[derive(Debug, Clone, Default)]
pub(super) struct ShardLoad {
    pub(super) updates: u64,
    pub(super) bytes: u64,
    at_window: (u64, u64),
    rate: (f64, f64),
}

impl ShardLoad {
    /// Updates and bytes per second over the last window.
    pub(super) fn rates(&self) -> (f64, f64) {
        self.rate
    }
}

/// Status bookkeeping owned by the peer.
#[derive(Debug, Default)]
pub(super) struct Telemetry {
    pub(super) links: std::collections::BTreeMap<PeerId, Link>,
    pub(super) bytes_out_by_addr: std::collections::BTreeMap<SocketAddr, (u64, u64, f64)>,
    recent: VecDeque<(Instant, String)>,
    /// Local write → czar's acknowledgement, for forwarded writes.
    pub(super) forward_latency: Histogram,
    /// Critical write → commit, for our own critical writes.
    pub(super) commit_latency: Histogram,
    /// Round-trip times from probes.
    rtt: Histogram,
    window_start: Option<Instant>,
    next_ping: Option<Instant>,
    /// This interval's probes not yet due: (when, to whom), earliest first.
    /// Spread over the interval, so the uplink watch gets samples all the
    /// time, and a burst of probes never queues behind itself.
    probes: VecDeque<(Instant, PeerId)>,
    /// When every member was last probed at once for the uplink watch.
    hurried: Option<Instant>,
}

/// A member as the status snapshot shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    /// Its id.
    pub id: PeerId,
    /// Where it is reached.
    pub addr: SocketAddr,
    /// `alive`, `suspected`, `left` or `unreachable` (left by our own timeout only).
    pub state: &'static str,
    /// Its incarnation.
    pub incarnation: u32,
    /// Milliseconds since we last heard from it.
    pub last_heard_ms: u64,
    /// Smoothed round-trip time, once measured.
    pub rtt_ms: Option<f64>,
    /// Smoothed share of probes that got no answer, once measured.
    pub loss: Option<f64>,
    /// Bytes per second received from it over the last window.
    pub bytes_in_per_sec: f64,
    /// Bytes per second sent to it over the last window.
    pub bytes_out_per_sec: f64,
    /// Our send budget for its link (bytes per second), once we streamed to
    /// it: what stream sends to it wait for (see `Peer::write_stream`).
    pub budget_bytes_per_sec: Option<u64>,
}

/// A shard as the status snapshot shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardView {
    /// Its id.
    pub id: ShardId,
    /// Its name.
    pub name: String,
    /// The czar we follow.
    pub czar: Option<PeerId>,
    /// The ranked backups in our view.
    pub backups: Vec<PeerId>,
    /// Our version of it.
    pub version: Version,
    /// First 8 bytes of its content checksum.
    pub checksum: u64,
    /// Number of keys.
    pub keys: usize,
    /// Bytes of keys and values.
    pub size_bytes: usize,
    /// Updates per second applied here over the last window.
    pub updates_per_sec: f64,
    /// Update bytes per second applied here over the last window.
    pub bytes_per_sec: f64,
}

/// A latency histogram summarised for display.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyView {
    /// Number of samples.
    pub count: u64,
    /// Median, in ms (bucket upper bound).
    pub p50_ms: Option<u64>,
    /// 99th percentile, in ms (bucket upper bound).
    pub p99_ms: Option<u64>,
    /// Largest sample, in ms.
    pub max_ms: Option<f64>,
    /// The raw histogram.
    pub histogram: Histogram,
}

impl From<&Histogram> for LatencyView {
    fn from(h: &Histogram) -> Self {
        LatencyView {
            count: h.count,
            p50_ms: h.quantile_ms(0.5),
            p99_ms: h.quantile_ms(0.99),
            max_ms: (h.count > 0).then(|| h.max_micros as f64 / 1000.0),
            histogram: h.clone(),
        }
    }
}

/// Everything the tools show about one peer, at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    /// Our id.
    pub id: PeerId,
    /// When the snapshot was taken (the peer's clock).
    pub at: Instant,
    /// Whether we are in the session.
    pub joined: bool,
    /// Our incarnation.
    pub incarnation: u32,
    /// Lifeguard local-health penalty (0 is healthy).
    pub local_health: u32,
    /// Every member we hold a record of.
    pub members: Vec<MemberView>,
    /// Every declared shard.
    pub shards: Vec<ShardView>,
    /// Recent notable events (joins, leaves, suspicions, czar changes,
    /// commits, rejections), oldest first, with the time they happened.
    pub recent_events: Vec<(Instant, String)>,
    /// Forwarded write → czar acknowledgement.
    pub forward_latency: LatencyView,
    /// Critical write → commit.
    pub commit_latency: LatencyView,
    /// Round-trip times to members.
    pub rtt: LatencyView,
    /// Every counter, drops by cause included.
    pub stats: Stats,
}

impl Peer {
    /// A snapshot for the tools. Costs a pass over members and shards.
    pub fn status(&self) -> PeerStatus {
        let now = self.clock;
        let t = &self.telemetry;
        let members = self
            .members
            .iter()
            .map(|m| {
                let link = t.links.get(&m.id);
                let state = if m.is_alive() {
                    if m.suspected {
                        "suspected"
                    } else {
                        "alive"
                    }
                } else if m.soft_left {
                    "unreachable"
                } else {
                    "left"
                };
                MemberView {
                    id: m.id,
                    addr: m.addr,
                    state,
                    incarnation: m.incarnation,
                    last_heard_ms: now.saturating_duration_since(m.last_heard).as_millis() as u64,
                    rtt_ms: link.and_then(|l| l.srtt).map(|d| d.as_secs_f64() * 1000.0),
                    loss: link.and_then(|l| l.loss),
                    bytes_in_per_sec: link.map_or(0.0, |l| l.bytes_in_rate),
                    bytes_out_per_sec: t.bytes_out_by_addr.get(&m.addr).map_or(0.0, |b| b.2),
                    budget_bytes_per_sec: self.stream_links.get(&m.addr).map(|l| l.rate.rate()),
                }
            })
            .collect();
        let shards = self
            .shards
            .iter()
            .map(|info| {
                let st = &self.states[&info.id];
                ShardView {
                    id: info.id,
                    name: info.name.clone(),
                    czar: st.replica.czar,
                    backups: self.backups_of(info.id),
                    version: st.replica.version(),
                    checksum: st.replica.checksum().short(),
                    keys: st.replica.len(),
                    size_bytes: st.replica.size_bytes(),
                    updates_per_sec: st.load.rate.0,
                    bytes_per_sec: st.load.rate.1,
                }
            })
            .collect();
        PeerStatus {
            id: self.id,
            at: now,
            joined: self.is_joined(),
            incarnation: self.members.myself().incarnation,
            local_health: self.local_health,
            members,
            shards,
            recent_events: t.recent.iter().cloned().collect(),
            forward_latency: (&t.forward_latency).into(),
            commit_latency: (&t.commit_latency).into(),
            rtt: (&t.rtt).into(),
            stats: self.stats.clone(),
        }
    }

    /// Remembers notable events for the snapshot.
    pub(super) fn note_event(&mut self, event: &Event) {
        if matches!(event, Event::Updated { .. } | Event::Authored { .. }) {
            return;
        }
        let text = match event {
            Event::PeerJoined { peer, .. } => format!("peer {} joined", peer.short()),
            Event::PeerLeft { peer, reason } => format!("peer {} left ({reason:?})", peer.short()),
            Event::PeerSuspected { peer } => format!("peer {} suspected", peer.short()),
            Event::CzarChanged { shard, new, epoch, .. } => {
                let name = self.shards.get(*shard).map_or_else(|| shard.to_string(), |s| s.name.clone());
                format!("{name}: czar {} at epoch {}", new.short(), super::epoch_label(*epoch))
            }
            Event::Committed { shard, version, .. } => format!("{shard}: critical update committed at {version}"),
            Event::Rejected { reason, .. } => format!("critical update rejected: {reason}"),
            Event::Diverged { shard, ours, adopted } => format!("{shard}: diverged at {ours}, adopted {adopted}"),
            other => format!("{other:?}"),
        };
        let recent = &mut self.telemetry.recent;
        if recent.len() >= RECENT_EVENTS {
            recent.pop_front();
        }
        recent.push_back((self.clock, text));
    }

    /// Counts bytes received from a member.
    pub(super) fn note_bytes_in(&mut self, from: PeerId, bytes: usize) {
        self.telemetry.links.entry(from).or_default().bytes_in += bytes as u64;
    }

    /// Counts bytes sent to an address.
    pub(super) fn note_bytes_out(&mut self, to: SocketAddr, bytes: usize) {
        self.telemetry.bytes_out_by_addr.entry(to).or_default().0 += bytes as u64;
    }

    /// Counts an update applied or authored in `shard`.
    pub(super) fn note_shard_update(&mut self, shard: ShardId, bytes: usize) {
        if let Some(st) = self.states.get_mut(&shard) {
            st.load.updates += 1;
            st.load.bytes += bytes as u64;
        }
    }

    /// Periodic work: probes and rate windows.
    pub(super) fn drive_telemetry(&mut self, now: Instant) {
        let t = &mut self.telemetry;
        let start = *t.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= RATE_WINDOW {
            let secs = elapsed.as_secs_f64();
            for link in t.links.values_mut() {
                link.bytes_in_rate = (link.bytes_in - link.bytes_in_at_window) as f64 / secs;
                link.bytes_in_at_window = link.bytes_in;
            }
            for (total, at_window, rate) in t.bytes_out_by_addr.values_mut() {
                *rate = (*total - *at_window) as f64 / secs;
                *at_window = *total;
            }
            for st in self.states.values_mut() {
                let l = &mut st.load;
                l.rate = ((l.updates - l.at_window.0) as f64 / secs, (l.bytes - l.at_window.1) as f64 / secs);
                l.at_window = (l.updates, l.bytes);
            }
            t.window_start = Some(now);
        }
        let due = t.next_ping.is_none_or(|at| now >= at);
        // Every member is probed once per interval: at least a second, and two
        // idle heartbeat periods in large sessions, so probes grow with the
        // session like idle heartbeats do, not with its square.
        if due {
            let interval = PING_INTERVAL.max(self.config.idle_heartbeat_period(self.members.alive_count()) * 2);
            let others: Vec<PeerId> = self.members.others().map(|m| m.id).collect();
            let t = &mut self.telemetry;
            t.next_ping = Some(now + interval);
            // Member k of n is probed k/n of the way into the interval.
            let n = others.len().max(1) as u32;
            t.probes = others.into_iter().enumerate().map(|(k, id)| (now + interval * k as u32 / n, id)).collect();
            let known: std::collections::BTreeSet<PeerId> = self.members.iter().map(|m| m.id).collect();
            t.links.retain(|id, _| known.contains(id));
            let addrs: std::collections::BTreeSet<SocketAddr> = self.members.iter().map(|m| m.addr).collect();
            t.bytes_out_by_addr.retain(|a, _| addrs.contains(a));
        }
        while let Some(&(at, id)) = self.telemetry.probes.front() {
            if at > now {
                break;
            }
            self.telemetry.probes.pop_front();
            if !self.members.is_alive(&id) {
                continue;
            }
            let link = self.telemetry.links.entry(id).or_default();
            // A probe still unanswered after a whole interval counts as lost.
            let lost = link.awaiting.take().is_some();
            let sample = if lost { 1.0 } else { 0.0 };
            if link.srtt.is_some() || lost {
                link.loss = Some(link.loss.map_or(sample, |l| l + EWMA_WEIGHT * (sample - l)));
            }
            // The probe rides our next heartbeat to the member (every member
            // gets one at least every idle period, at most half an interval),
            // so probes cost no datagrams of their own.
            link.ping_due = true;
        }
    }

    /// Our typical round trip, as a `Pong` states it: the median of our
    /// links' smoothed probe round trips, in milliseconds (0: none yet).
    pub(super) fn typical_rtt_ms(&self) -> u32 {
        let srtts = self.telemetry.links.values().filter_map(|l| l.srtt);
        crate::uplink::typical_rtt(srtts).map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1))
    }

    /// The probe due to `member`, if one is: to send with its heartbeat.
    pub(super) fn take_ping(&mut self, now: Instant, member: &PeerId) -> Option<Frame> {
        // A member never probed is probed with the first heartbeat it gets:
        // a session that forms at once is measured at once.
        let link = self.telemetry.links.entry(*member).or_default();
        if !(link.ping_due || link.probed_at.is_none()) {
            return None;
        }
        let stamp = now.as_micros();
        link.ping_due = false;
        link.probed_at = Some(now);
        link.awaiting = Some(stamp);
        Some(Frame::Ping { stamp })
    }

    /// A pong: one round-trip sample, for the link and the uplink watch.
    pub(super) fn handle_pong(&mut self, now: Instant, sender: PeerId, stamp: u64, typical_ms: u32) {
        let Some(link) = self.telemetry.links.get_mut(&sender) else { return };
        if link.awaiting != Some(stamp) || stamp > now.as_micros() {
            return; // not our probe, or a late one we already counted as lost
        }
        link.awaiting = None;
        let rtt = now.saturating_duration_since(Instant::from_micros(stamp));
        link.srtt = Some(match link.srtt {
            None => rtt,
            Some(s) => s.mul_f64(1.0 - EWMA_WEIGHT) + rtt.mul_f64(EWMA_WEIGHT),
        });
        link.loss = Some(link.loss.map_or(0.0, |l| l * (1.0 - EWMA_WEIGHT)));
        self.telemetry.rtt.record(rtt);
        let typical = (typical_ms > 0).then(|| Duration::from_millis(u64::from(typical_ms)));
        let unsure = self.uplink.on_probe(now, sender, rtt, typical);
        let hurried_lately = self.telemetry.hurried.is_some_and(|t| now.saturating_duration_since(t) < HURRY_INTERVAL);
        if unsure && !hurried_lately && self.members.myself().czar_eligible && self.config.step_down_when_congested {
            // Round trips look queued while a step-down is possible: every
            // member not being probed is probed again now (a full uplink
            // loses many of them), so the watch judges within a round trip
            // rather than a probe interval.
            self.telemetry.hurried = Some(now);
            let mut idle: Vec<(Option<Instant>, PeerId)> = self
                .telemetry
                .links
                .iter()
                .filter(|(id, l)| l.awaiting.is_none() && !l.ping_due && self.members.is_alive(id))
                .map(|(id, l)| (l.probed_at, *id))
                .collect();
            idle.sort_unstable();
            for (_, id) in idle.into_iter().take(HURRIED_PROBES) {
                self.telemetry.links.get_mut(&id).expect("listed").ping_due = true;
            }
        }
    }
}
