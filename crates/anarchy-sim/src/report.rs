//! The run report: one JSON object (`--json`) or a short human summary.
//! Built from an [`Outcome`]; it computes rates and percentiles, nothing else.

use std::collections::BTreeMap;

use anarchy_proto::DropReason;
use serde::Serialize;

use crate::check::Violation;
use crate::sim::{Outcome, SimConfig};

/// Czar write → apply latency at each peer, simulated milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// One class of stream values a capped peer wrote.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct StreamValues {
    /// Values written, times the peers that should take them.
    pub written: u64,
    /// Share of those other peers took (a superseded value may never be:
    /// under a short budget streams go less often).
    pub delivered_share: f64,
    /// Write → take latency of the values taken.
    pub propagation_ms: Percentiles,
}

/// The stream values a capped peer wrote, by the priority the game gave them.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct CappedStreams {
    /// Entities near the player (`workload::NEAR_PRIORITY`).
    pub near: StreamValues,
    /// The other entities (the default priority).
    pub far: StreamValues,
}

/// Czar crash → every live peer past the dead czar's epoch, simulated milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Failover {
    /// Failovers that finished.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Czar crashes whose failover had not finished by the end of the run.
    pub unfinished: u64,
    /// Every finished failover, in crash order (for sweeps to pool).
    pub samples: Vec<f64>,
}

/// One sample of `shards_over_time`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ShardsSample {
    /// Simulated seconds.
    pub at_s: f64,
    /// Shards holding keys then.
    pub shards: usize,
}

impl Failover {
    /// Percentiles over failover times in ms (nearest rank).
    pub fn from_samples(samples: Vec<f64>, unfinished: u64) -> Self {
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            if sorted.is_empty() {
                0.0
            } else {
                sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
            }
        };
        Failover { count: sorted.len(), p50: pick(0.5), p99: pick(0.99), max: pick(1.0), unfinished, samples }
    }
}

/// Critical updates in a run.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Critical {
    /// `write_critical` calls that returned an id.
    pub proposed: u64,
    /// Distinct updates some peer saw committed.
    pub committed: u64,
    /// Rejected by the validators (the workload's cheats).
    pub rejected: u64,
    /// Timed out (`WriteFailed`).
    pub failed: u64,
    /// Violations of `critical-never-lost`.
    pub lost_after_commit: u64,
}

/// What the honest peers rejected, by kind, summed over those running at the
/// end (see [`DropReason`] for each kind; legitimate traffic adds to some,
/// e.g. `stale_epoch` after a failover).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Rejected {
    /// Datagrams whose authentication tag did not verify.
    pub bad_tag: u64,
    /// Deltas and snapshots whose signature did not verify.
    pub bad_signature: u64,
    /// Datagrams seen before.
    pub replay: u64,
    /// Updates from a peer that is not the shard's czar.
    pub not_czar: u64,
    /// Updates and claims from an older epoch.
    pub stale_epoch: u64,
    /// Runs whose checksums did not match our history (`off_history`, `bad_checksum`).
    pub bad_checksum: u64,
    /// Datagrams that did not decode.
    pub malformed: u64,
    /// Datagrams over a source's rate limit.
    pub rate_limited: u64,
}

impl Rejected {
    fn from_drops(drops: &BTreeMap<DropReason, u64>) -> Self {
        let mut r = Rejected::default();
        for (reason, n) in drops {
            let bucket = match reason {
                DropReason::BadTag => &mut r.bad_tag,
                DropReason::Replay => &mut r.replay,
                DropReason::RateLimited | DropReason::Blocked => &mut r.rate_limited,
                DropReason::BadSignature => &mut r.bad_signature,
                DropReason::NotCzar => &mut r.not_czar,
                DropReason::StaleEpoch => &mut r.stale_epoch,
                DropReason::BadChecksum | DropReason::OffHistory => &mut r.bad_checksum,
                DropReason::Oversized
                | DropReason::Truncated
                | DropReason::BadMagic
                | DropReason::UnsupportedVersion
                | DropReason::UnknownFlags
                | DropReason::UnknownFrame
                | DropReason::Empty
                | DropReason::BadVarint
                | DropReason::TooLong
                | DropReason::Invalid => &mut r.malformed,
                _ => continue,
            };
            *bucket += n;
        }
        r
    }
}

/// Everything a run reports.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// The run seed.
    pub seed: u64,
    /// Peer slots.
    pub peers: usize,
    /// Shards.
    pub shards: usize,
    /// The scenario file, if any.
    pub scenario: Option<String>,
    /// Simulated seconds (workload plus settle).
    pub sim_seconds: f64,
    /// Wall-clock seconds the run took.
    pub wall_seconds: f64,
    /// Simulated seconds per wall second.
    pub speed: f64,
    /// Updates czars authored.
    pub updates_written: u64,
    /// Updates applied from other czars, summed over peers.
    pub updates_applied: u64,
    /// Czar write → apply at each peer, simulated time.
    pub propagation_ms: Percentiles,
    /// Bytes every peer slot sent per simulated second, on average.
    pub bytes_sent_per_peer_per_sec: f64,
    /// Steady-state window (from `warmup_seconds` after the last peer started
    /// until writes stop): every byte on the wire, per peer slot per second.
    pub wire_bytes_per_peer_per_sec: f64,
    /// Same window: the key and value bytes of every write that changed a
    /// value, times the live peers other than the writer, per peer slot per second.
    pub payload_bytes_per_peer_per_sec: f64,
    /// `wire_bytes_per_peer_per_sec / payload_bytes_per_peer_per_sec` (0 when
    /// nothing was written): the wire cost of one byte of game state delivered.
    pub wire_overhead_ratio: f64,
    /// Length of the steady-state window, simulated seconds.
    pub window_seconds: f64,
    /// The peer slot whose uplink alone was capped, and the cap in kbit/s.
    pub capped_peer: Option<(usize, u64)>,
    /// Propagation of the updates the capped peer authored (when one is capped).
    pub capped_author_propagation_ms: Option<Percentiles>,
    /// Propagation of the updates the capped peer applied (when one is capped).
    pub capped_receiver_propagation_ms: Option<Percentiles>,
    /// [`Report::capped_author_propagation_ms`] over the steady window only
    /// (from `--warmup` seconds after the last peer started): what the
    /// protocol settled to once it adapted to the cap.
    pub capped_author_steady_propagation_ms: Option<Percentiles>,
    /// [`Report::capped_receiver_propagation_ms`] over the steady window only.
    pub capped_receiver_steady_propagation_ms: Option<Percentiles>,
    /// With `--streams` and a capped peer: the stream values it wrote for
    /// entities near its player (streamed at a higher priority) and for the
    /// others.
    pub capped_streams: Option<CappedStreams>,
    /// Datagrams dropped at a full uplink queue.
    pub datagrams_dropped_at_full_uplinks: u64,
    /// Datagrams sent.
    pub datagrams_sent: u64,
    /// Datagrams lost (random and bursty loss).
    pub datagrams_lost: u64,
    /// Datagrams dropped by partitions.
    pub datagrams_partitioned: u64,
    /// Live peers at the end.
    pub live_peers: usize,
    /// Whether all live peers agreed on every shard at the end.
    pub converged: bool,
    /// Simulated ms after writes stopped until they agreed.
    pub converged_after_ms: Option<f64>,
    /// Czar crash → every live peer applied or authored an update of the
    /// shard in a higher epoch.
    pub failover_ms: Failover,
    /// Evictions of a peer that was up and connected both ways to the evicting
    /// peer for the whole peer timeout.
    pub false_evictions: u64,
    /// The busiest czar's load (bytes per second of the shards it is czar of)
    /// over the mean czar's: the median of samples taken every check step of
    /// the measurement window once the system settled, i.e. while every live
    /// shard's czar had held it for 2 s, so its load is a full window of its
    /// own (`null` without such samples).
    pub czar_load_max_over_mean: Option<f64>,
    /// The same over every sample of the window, settled or not.
    pub czar_load_max_over_mean_all: Option<f64>,
    /// Shard splits: the most any one peer process applied.
    pub splits: u64,
    /// Shard merges: the most any one peer process applied.
    pub merges: u64,
    /// Shards holding keys (neither split nor merged away), in the view of
    /// the first live peer, sampled once per simulated second.
    pub shards_over_time: Vec<ShardsSample>,
    /// The first false evictions: when, who evicted whom, and how.
    pub false_eviction_notes: Vec<String>,
    /// Peers that gave up czar eligibility (`Event::SteppedDown`).
    pub step_downs: u64,
    /// The first of them: when, who, why.
    pub step_down_notes: Vec<String>,
    /// Critical updates.
    pub critical: Critical,
    /// Hostile members (`--byzantine`).
    pub byzantine: usize,
    /// Datagrams the hostile members crafted.
    pub attack_datagrams: u64,
    /// What the honest peers rejected.
    pub rejected: Rejected,
    /// Updates an honest peer applied that the shard's czar did not sign
    /// (`signed-by-czar` violations); must be 0.
    pub forged_accepted: u64,
    /// Violations (at most [`crate::check::MAX_KEPT_PER_INVARIANT`] per invariant).
    pub violations: Vec<Violation>,
    /// Violation counts per invariant, including those not kept.
    pub violation_counts: std::collections::BTreeMap<String, u64>,
    /// Digest of every delivery: two runs with equal digests were equal.
    pub trace_digest: String,
    /// The command that reproduces this run.
    pub command: String,
}

impl Report {
    /// Builds the report of a finished run.
    pub fn new(
        cfg: &SimConfig,
        scenario: Option<String>,
        outcome: &Outcome,
        wall_seconds: f64,
        command: String,
    ) -> Self {
        let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
        let percentiles = |h: &hdrhistogram::Histogram<u64>| {
            if h.is_empty() {
                Percentiles { p50: 0.0, p99: 0.0, max: 0.0 }
            } else {
                Percentiles { p50: ms(h.value_at_quantile(0.5)), p99: ms(h.value_at_quantile(0.99)), max: ms(h.max()) }
            }
        };
        let propagation_ms = percentiles(&outcome.propagation_us);
        let capped = cfg
            .capped_peer
            .map(|_| (percentiles(&outcome.capped_propagation_us.0), percentiles(&outcome.capped_propagation_us.1)));
        let steady = cfg.capped_peer.map(|_| {
            let h = &outcome.capped_steady_propagation_us;
            (percentiles(&h.0), percentiles(&h.1))
        });
        let sim = outcome.sim_seconds.max(1e-9);
        let failover_ms = Failover::from_samples(
            outcome.failover_us.iter().map(|us| ms(*us)).collect(),
            outcome.failovers_unfinished,
        );
        let per_peer_window = cfg.peers.max(1) as f64 * outcome.window_seconds.max(1e-9);
        let wire = outcome.totals.window_bytes_sent as f64 / per_peer_window;
        let payload = outcome.totals.payload_bytes as f64 / per_peer_window;
        let c = &outcome.critical;
        let critical = Critical {
            proposed: c.proposed,
            committed: c.committed,
            rejected: c.rejected,
            failed: c.failed,
            lost_after_commit: outcome.findings.counts.get("critical-never-lost").copied().unwrap_or(0),
        };
        Report {
            seed: cfg.seed,
            peers: cfg.peers,
            shards: cfg.shards,
            scenario,
            sim_seconds: outcome.sim_seconds,
            wall_seconds,
            speed: if wall_seconds > 0.0 { outcome.sim_seconds / wall_seconds } else { 0.0 },
            updates_written: outcome.updates_written,
            updates_applied: outcome.updates_applied,
            propagation_ms,
            bytes_sent_per_peer_per_sec: outcome.totals.bytes_sent as f64 / cfg.peers.max(1) as f64 / sim,
            wire_bytes_per_peer_per_sec: wire,
            payload_bytes_per_peer_per_sec: payload,
            wire_overhead_ratio: if payload > 0.0 { wire / payload } else { 0.0 },
            window_seconds: outcome.window_seconds,
            capped_peer: cfg.capped_peer,
            capped_author_propagation_ms: capped.map(|c| c.0),
            capped_receiver_propagation_ms: capped.map(|c| c.1),
            capped_author_steady_propagation_ms: steady.map(|c| c.0),
            capped_receiver_steady_propagation_ms: steady.map(|c| c.1),
            capped_streams: (cfg.capped_peer.is_some() && cfg.streams).then(|| {
                let class = |c: &crate::sim::StreamClass| StreamValues {
                    written: c.written,
                    delivered_share: if c.written > 0 { c.delivered as f64 / c.written as f64 } else { 0.0 },
                    propagation_ms: percentiles(&c.propagation_us),
                };
                CappedStreams { near: class(&outcome.capped_streams[0]), far: class(&outcome.capped_streams[1]) }
            }),
            datagrams_dropped_at_full_uplinks: outcome.totals.dropped_queue_full,
            datagrams_sent: outcome.totals.datagrams_sent,
            datagrams_lost: outcome.totals.dropped_loss,
            datagrams_partitioned: outcome.totals.dropped_partition,
            live_peers: outcome.live_peers,
            failover_ms,
            false_evictions: outcome.false_evictions,
            czar_load_max_over_mean: median(&outcome.czar_load_samples),
            czar_load_max_over_mean_all: median(&outcome.czar_load_samples_all),
            splits: outcome.splits,
            merges: outcome.merges,
            shards_over_time: outcome
                .shards_over_time
                .iter()
                .map(|&(at_s, shards)| ShardsSample { at_s: (at_s * 1000.0).round() / 1000.0, shards })
                .collect(),
            false_eviction_notes: outcome.false_eviction_notes.clone(),
            step_downs: outcome.step_downs,
            step_down_notes: outcome.step_down_notes.clone(),
            critical,
            byzantine: cfg.byzantine,
            attack_datagrams: outcome.totals.attack_datagrams,
            rejected: Rejected::from_drops(&outcome.honest_drops),
            forged_accepted: outcome.findings.counts.get("signed-by-czar").copied().unwrap_or(0),
            converged: outcome.converged,
            converged_after_ms: outcome.converged_after_ms,
            violations: outcome.findings.kept.clone(),
            violation_counts: outcome.findings.counts.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            trace_digest: format!("{:016x}", outcome.totals.trace_digest),
            command,
        }
    }

    /// Whether the run passed: converged with no violation.
    pub fn passed(&self) -> bool {
        self.converged && self.violations.is_empty()
    }

    /// The report as one JSON object on one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }

    /// A few lines for people.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        s += &format!(
            "{verdict}  seed {}: {} peers, {} shards{}, {:.1} s simulated in {:.2} s wall ({:.1} sim-s/s)\n",
            self.seed,
            self.peers,
            self.shards,
            self.scenario.as_deref().map(|p| format!(", scenario {p}")).unwrap_or_default(),
            self.sim_seconds,
            self.wall_seconds,
            self.speed
        );
        s += &format!(
            "  updates: {} written, {} applied; propagation p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n",
            self.updates_written,
            self.updates_applied,
            self.propagation_ms.p50,
            self.propagation_ms.p99,
            self.propagation_ms.max
        );
        s += &format!(
            "  network: {} datagrams, {:.0} B/peer/s sent, {} lost, {} cut by partitions\n",
            self.datagrams_sent, self.bytes_sent_per_peer_per_sec, self.datagrams_lost, self.datagrams_partitioned
        );
        s += &format!(
            "  bandwidth (steady {:.1} s): {:.0} B/peer/s on the wire for {:.0} B/peer/s of payload, overhead ratio {:.3}\n",
            self.window_seconds,
            self.wire_bytes_per_peer_per_sec,
            self.payload_bytes_per_peer_per_sec,
            self.wire_overhead_ratio
        );
        if let (Some((peer, kbps)), Some(a), Some(r)) =
            (self.capped_peer, self.capped_author_propagation_ms, self.capped_receiver_propagation_ms)
        {
            s += &format!(
                "  capped p{peer} at {kbps} kbit/s: its updates p50 {:.1} ms, p99 {:.1} ms; updates to it p50 {:.1} ms, p99 {:.1} ms; {} datagrams dropped at full uplinks\n",
                a.p50, a.p99, r.p50, r.p99, self.datagrams_dropped_at_full_uplinks
            );
        }
        if let (Some(a), Some(r)) =
            (self.capped_author_steady_propagation_ms, self.capped_receiver_steady_propagation_ms)
        {
            s += &format!(
                "  capped peer, steady {:.1} s: its updates p50 {:.1} ms, p99 {:.1} ms; updates to it p50 {:.1} ms, p99 {:.1} ms\n",
                self.window_seconds, a.p50, a.p99, r.p50, r.p99
            );
        }
        if let Some(c) = &self.capped_streams {
            for (name, v) in [("near", &c.near), ("far", &c.far)] {
                s += &format!(
                    "  capped peer's {name} stream values: {:.1} % taken, p50 {:.1} ms, p99 {:.1} ms\n",
                    v.delivered_share * 100.0,
                    v.propagation_ms.p50,
                    v.propagation_ms.p99
                );
            }
        }
        let f = &self.failover_ms;
        s += &format!(
            "  failover: {} czar crashes timed, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms{}; false evictions: {}\n",
            f.count,
            f.p50,
            f.p99,
            f.max,
            if f.unfinished > 0 { format!(", {} unfinished", f.unfinished) } else { String::new() },
            self.false_evictions
        );
        for note in &self.false_eviction_notes {
            s += &format!("    false eviction: {note}\n");
        }
        if self.step_downs > 0 {
            s += &format!("  stepped down: {}\n", self.step_downs);
            for note in &self.step_down_notes {
                s += &format!("    stepped down: {note}\n");
            }
        }
        if let Some(ratio) = self.czar_load_max_over_mean {
            let all = self.czar_load_max_over_mean_all.map_or(String::new(), |a| format!(", {a:.2} over all samples"));
            s += &format!("  czar load: busiest over mean {ratio:.2} (median of settled samples{all})\n");
        }
        if self.splits > 0 || self.merges > 0 {
            let counts: Vec<usize> = self.shards_over_time.iter().map(|x| x.shards).collect();
            s += &format!(
                "  shards: {} splits, {} merges; holding keys: {} at the start, {} at most, {} at the end\n",
                self.splits,
                self.merges,
                counts.first().copied().unwrap_or(0),
                counts.iter().copied().max().unwrap_or(0),
                counts.last().copied().unwrap_or(0)
            );
        }
        let c = &self.critical;
        s += &format!(
            "  critical: {} proposed, {} committed, {} rejected, {} timed out, {} lost after commit\n",
            c.proposed, c.committed, c.rejected, c.failed, c.lost_after_commit
        );
        if self.byzantine > 0 {
            let r = &self.rejected;
            s += &format!(
                "  hostile: {} members sent {} crafted datagrams; {} forged updates accepted
",
                self.byzantine, self.attack_datagrams, self.forged_accepted
            );
            s += &format!(
                "  rejected by honest peers: bad_tag {}, bad_signature {}, replay {}, not_czar {}, stale_epoch {}, \
                 bad_checksum {}, malformed {}, rate_limited {}\n",
                r.bad_tag,
                r.bad_signature,
                r.replay,
                r.not_czar,
                r.stale_epoch,
                r.bad_checksum,
                r.malformed,
                r.rate_limited
            );
        }
        match (self.converged, self.converged_after_ms) {
            (true, Some(ms)) => {
                s += &format!(
                    "  converged: yes, {} live peers agreed {ms:.0} ms after writes stopped\n",
                    self.live_peers
                )
            }
            (true, None) => s += &format!("  converged: yes ({} live peers)\n", self.live_peers),
            (false, _) => s += &format!("  converged: NO ({} live peers)\n", self.live_peers),
        }
        if self.violation_counts.is_empty() {
            s += "  violations: none\n";
        } else {
            s += "  violations:\n";
            for v in &self.violations {
                s += &format!("    [{}] at {:.3} ms: {}\n", v.invariant, v.at_ms, v.detail);
            }
            for (name, n) in &self.violation_counts {
                s += &format!("    {name}: {n} in all\n");
            }
        }
        if !self.passed() {
            s += &format!("  reproduce: {}\n", self.command);
        }
        s
    }
}

/// The middle of `samples` (the upper middle for an even count), `None` if empty.
fn median(samples: &[f64]) -> Option<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied()
}
