//! Status: the core's snapshot ([`PeerStatus`]) as a session hands it out,
//! and its JSON shape ([`StatusReport`]) that `/status` serves and the
//! monitor reads. Owns only the conversion; never changes protocol state.

use std::collections::BTreeMap;
use std::sync::Arc;

use anarchy_proto::stats::LATENCY_BUCKETS_MS;
use anarchy_proto::{DropReason, LatencyView, PeerId, PeerStatus};
use serde::{Deserialize, Serialize};

use crate::driver::Shared;
use crate::session::Session;

impl Session {
    /// A snapshot of everything the tools show: members with RTT, loss and
    /// rates, shards with czars, backups and versions, recent events, latency
    /// histograms and every counter. Cheap: one pass under the core's lock.
    pub fn status(&self) -> PeerStatus {
        self.shared().peer().status()
    }

    /// [`Session::status`] in the serialisable shape served at `/status`.
    pub fn status_report(&self) -> StatusReport {
        StatusReport::from(&self.status())
    }

    /// A cloneable, `'static` handle that takes snapshots of this session,
    /// for tasks and threads that outlive a borrow (admin server, dashboard).
    /// It does not keep the session running: once the session stops, the
    /// snapshots show its last state.
    pub fn status_handle(&self) -> StatusHandle {
        StatusHandle { shared: self.shared().clone() }
    }
}

/// Takes status snapshots of one session. Made by [`Session::status_handle`].
#[derive(Clone)]
pub struct StatusHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StatusHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusHandle").finish_non_exhaustive()
    }
}

impl StatusHandle {
    /// See [`Session::status`].
    pub fn status(&self) -> PeerStatus {
        self.shared.peer().status()
    }

    /// See [`Session::status_report`].
    pub fn report(&self) -> StatusReport {
        StatusReport::from(&self.status())
    }

    /// Whether the session's driver has stopped.
    pub fn is_stopped(&self) -> bool {
        self.shared.is_stopped()
    }
}

/// The status snapshot as JSON: ids in hex, times in milliseconds of the
/// peer's clock. Served at `/status`, read back by `anarchy monitor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Our peer id (hex).
    pub id: String,
    /// Whether we are in the session.
    pub joined: bool,
    /// Our incarnation.
    pub incarnation: u32,
    /// Local-health penalty (0 is healthy).
    pub local_health: u32,
    /// When the snapshot was taken, ms since the session started.
    pub at_ms: u64,
    /// Every member we hold a record of, ourselves included.
    pub members: Vec<MemberReport>,
    /// Every declared shard.
    pub shards: Vec<ShardReport>,
    /// Recent notable events, oldest first.
    pub events: Vec<EventReport>,
    /// Latency histograms.
    pub latency: LatencyReports,
    /// Monotonic counters.
    pub counters: Counters,
    /// Drops by cause, every cause listed (zeros included), by stable name.
    pub drops: BTreeMap<String, u64>,
}

/// One member in a [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberReport {
    /// Its id (hex).
    pub id: String,
    /// Where it is reached.
    pub addr: String,
    /// `alive`, `suspected`, `left` or `unreachable`.
    pub state: String,
    /// Its incarnation.
    pub incarnation: u32,
    /// Milliseconds since we last heard from it.
    pub last_heard_ms: u64,
    /// Smoothed round-trip time, once measured.
    pub rtt_ms: Option<f64>,
    /// Smoothed share of unanswered probes (0..=1), once measured.
    pub loss: Option<f64>,
    /// Bytes per second received from it.
    pub bytes_in_per_sec: f64,
    /// Bytes per second sent to it.
    pub bytes_out_per_sec: f64,
    /// Our send budget for its link, bytes per second, once we streamed to it.
    #[serde(default)]
    pub budget_bytes_per_sec: Option<u64>,
    /// Whether this member is the peer that took the snapshot.
    pub is_self: bool,
}

/// One shard in a [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardReport {
    /// Its id (hex).
    pub id: String,
    /// Its name.
    pub name: String,
    /// The czar we follow (hex id).
    pub czar: Option<String>,
    /// Ranked backups, strongest first (hex ids).
    pub backups: Vec<String>,
    /// Authority epoch of our version.
    pub epoch: u32,
    /// Sequence number of our version.
    pub seq: u64,
    /// First 8 bytes of the content checksum, hex.
    pub checksum: String,
    /// Number of keys.
    pub keys: usize,
    /// Bytes of keys and values.
    pub size_bytes: usize,
    /// Updates per second applied here.
    pub updates_per_sec: f64,
    /// Update bytes per second applied here.
    pub bytes_per_sec: f64,
}

/// One recent event in a [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventReport {
    /// When it happened, ms since the session started.
    pub at_ms: u64,
    /// What happened.
    pub text: String,
}

/// The latency histograms of a [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyReports {
    /// Forwarded write → applied by its czar (acknowledged back).
    pub write_to_apply: LatencyReport,
    /// Critical write → committed by a majority.
    pub commit: LatencyReport,
    /// Round-trip times of probes to members.
    pub rtt: LatencyReport,
}

/// One latency histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    /// Samples.
    pub count: u64,
    /// Median (bucket upper bound), ms.
    pub p50_ms: Option<u64>,
    /// 99th percentile (bucket upper bound), ms.
    pub p99_ms: Option<u64>,
    /// Largest sample, ms.
    pub max_ms: Option<f64>,
    /// Mean, ms.
    pub mean_ms: Option<f64>,
    /// Sum of all samples, ms.
    pub sum_ms: f64,
    /// Samples per bucket; `le_ms: None` is the overflow bucket.
    pub buckets: Vec<Bucket>,
}

/// One histogram bucket (not cumulative).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Upper bound in ms; `None` above the last bound.
    pub le_ms: Option<u64>,
    /// Samples in this bucket.
    pub count: u64,
}

/// The core's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Updates applied as czar.
    pub updates_written: u64,
    /// Updates applied from other czars.
    pub updates_applied: u64,
    /// Snapshots installed.
    pub snapshots_installed: u64,
    /// Repair requests sent.
    pub repairs_requested: u64,
    /// Writes forwarded to a czar.
    pub writes_forwarded: u64,
    /// Critical updates seen committed.
    pub critical_committed: u64,
    /// All drops.
    pub drops_total: u64,
}

fn hex_id(id: PeerId) -> String {
    id.to_string()
}

impl From<&LatencyView> for LatencyReport {
    fn from(v: &LatencyView) -> Self {
        let h = &v.histogram;
        let buckets = h
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| Bucket { le_ms: LATENCY_BUCKETS_MS.get(i).copied(), count: *n })
            .collect();
        LatencyReport {
            count: v.count,
            p50_ms: v.p50_ms,
            p99_ms: v.p99_ms,
            max_ms: v.max_ms,
            mean_ms: h.mean_ms(),
            sum_ms: h.sum_micros as f64 / 1000.0,
            buckets,
        }
    }
}

impl From<&PeerStatus> for StatusReport {
    fn from(s: &PeerStatus) -> Self {
        let members = s
            .members
            .iter()
            .map(|m| MemberReport {
                id: hex_id(m.id),
                addr: m.addr.to_string(),
                state: m.state.to_owned(),
                incarnation: m.incarnation,
                last_heard_ms: m.last_heard_ms,
                rtt_ms: m.rtt_ms,
                loss: m.loss,
                bytes_in_per_sec: m.bytes_in_per_sec,
                bytes_out_per_sec: m.bytes_out_per_sec,
                budget_bytes_per_sec: m.budget_bytes_per_sec,
                is_self: m.id == s.id,
            })
            .collect();
        let shards = s
            .shards
            .iter()
            .map(|sh| ShardReport {
                id: sh.id.to_string(),
                name: sh.name.clone(),
                czar: sh.czar.map(hex_id),
                backups: sh.backups.iter().copied().map(hex_id).collect(),
                epoch: sh.version.epoch,
                seq: sh.version.seq,
                checksum: format!("{:016x}", sh.checksum),
                keys: sh.keys,
                size_bytes: sh.size_bytes,
                updates_per_sec: sh.updates_per_sec,
                bytes_per_sec: sh.bytes_per_sec,
            })
            .collect();
        let events = s
            .recent_events
            .iter()
            .map(|(at, text)| EventReport { at_ms: at.as_micros() / 1000, text: text.clone() })
            .collect();
        let st = &s.stats;
        StatusReport {
            id: hex_id(s.id),
            joined: s.joined,
            incarnation: s.incarnation,
            local_health: s.local_health,
            at_ms: s.at.as_micros() / 1000,
            members,
            shards,
            events,
            latency: LatencyReports {
                write_to_apply: (&s.forward_latency).into(),
                commit: (&s.commit_latency).into(),
                rtt: (&s.rtt).into(),
            },
            counters: Counters {
                datagrams_in: st.datagrams_in,
                bytes_in: st.bytes_in,
                datagrams_out: st.datagrams_out,
                bytes_out: st.bytes_out,
                updates_written: st.updates_written,
                updates_applied: st.updates_applied,
                snapshots_installed: st.snapshots_installed,
                repairs_requested: st.repairs_requested,
                writes_forwarded: st.writes_forwarded,
                critical_committed: st.critical_committed,
                drops_total: st.total_drops(),
            },
            drops: DropReason::ALL.iter().map(|r| (r.name().to_owned(), st.drops(*r))).collect(),
        }
    }
}
