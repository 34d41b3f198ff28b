//! Invariant checkers: each a named [`Checker`] fed every event a peer emits,
//! a periodic look at the whole world, and a last look at the end. Adding a
//! checker is one `impl Checker` plus one line in [`registry`].
//!
//! Exact semantics of the shipped checkers:
//!
//! - `convergence`: at the end of the run (writes stopped, every partition
//!   healed, paused peers resumed, then up to `settle_seconds` of simulated
//!   time), every *live* peer (running, not crashed, joined) must hold, for
//!   every shard, the same `version_of` and `checksum_of` as every other live
//!   peer. The simulator heals the network before settling, so all live peers
//!   are connected then; the bound is the settle period.
//! - `monotonic-versions`: per peer process and shard, the versions it applies
//!   (`Updated`, `Authored`) strictly increase in (epoch, seq) order, and a
//!   snapshot (`ShardResynced`) never installs a version lower than the last
//!   one applied. A snapshot may lower seq, but only together with a higher
//!   epoch. In addition, `version_of` sampled every check step never goes
//!   backwards. A blank restart starts a new process, with a fresh history.
//! - `one-czar-per-epoch`: no two distinct peers author updates of one shard
//!   in one epoch while they can hear each other. "Can hear each other" means
//!   both were running and the network carried datagrams both ways between
//!   them, continuously, for the last `czar_grace_ms` before the second
//!   author's write (a heal needs a few heartbeats to resolve a tie that
//!   formed while partitioned; two sides of a partition may each claim the
//!   same next epoch, which is the documented v0.1 behaviour).
//! - `czar-authored`: every update a peer applies (`Updated` at (epoch, seq))
//!   was authored (`Authored`) at exactly that shard, epoch and seq, with the
//!   same key and value, by a peer that announced or accepted a claim for that
//!   epoch (`CzarChanged` with that epoch and that peer as `new`), no later
//!   than it was applied.
//!
//! Lost optimistic writes of a partition's losing side are expected in v0.1
//! and are not checked.

use std::collections::{BTreeMap, HashMap};

use anarchy_proto::{Event, ShardId, Version};

use crate::sim::{PeerEvent, World};

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Violation {
    /// The checker's name.
    pub invariant: String,
    /// Simulated time, in milliseconds.
    pub at_ms: f64,
    /// What happened, with peer indices and versions.
    pub detail: String,
}

/// Most violations kept per invariant (the rest are only counted).
pub const MAX_KEPT_PER_INVARIANT: usize = 20;

/// Where checkers report.
#[derive(Debug, Default)]
pub struct Findings {
    /// Kept violations, in the order found.
    pub kept: Vec<Violation>,
    /// All violations per invariant, kept or not.
    pub counts: BTreeMap<&'static str, u64>,
}

impl Findings {
    /// Records a violation of `invariant` at simulated time `at_us`.
    pub fn violation(&mut self, invariant: &'static str, at_us: u64, detail: String) {
        let n = self.counts.entry(invariant).or_insert(0);
        *n += 1;
        if *n as usize <= MAX_KEPT_PER_INVARIANT {
            self.kept.push(Violation { invariant: invariant.to_string(), at_ms: at_us as f64 / 1000.0, detail });
        }
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// An invariant, checked continuously.
pub trait Checker: Send {
    /// The invariant's name, as reported.
    fn name(&self) -> &'static str;
    /// Every event any peer emits, right after the input that caused it.
    fn on_event(&mut self, _world: &World, _ev: &PeerEvent<'_>, _out: &mut Findings) {}
    /// Every check step (`check_interval_ms` of simulated time).
    fn on_step(&mut self, _world: &World, _out: &mut Findings) {}
    /// Once, after the settle period.
    fn at_end(&mut self, _world: &World, _out: &mut Findings) {}
}

/// Every checker, in report order.
pub fn registry() -> Vec<Box<dyn Checker>> {
    vec![
        Box::new(Convergence),
        Box::new(MonotonicVersions::default()),
        Box::new(OneCzarPerEpoch::default()),
        Box::new(CzarAuthored::default()),
    ]
}

/// See the module docs: live peers agree on every shard after the settle period.
#[derive(Debug, Default)]
pub struct Convergence;

impl Checker for Convergence {
    fn name(&self) -> &'static str {
        "convergence"
    }

    fn at_end(&mut self, world: &World, out: &mut Findings) {
        if let Some(detail) = world.divergence() {
            out.violation(self.name(), world.now_us(), detail);
        }
    }
}

/// See the module docs: applied versions and `version_of` never go backwards.
#[derive(Debug, Default)]
pub struct MonotonicVersions {
    /// (peer, process life, shard) → last applied version.
    applied: HashMap<(usize, u32, ShardId), Version>,
    /// (peer, process life, shard) → last sampled `version_of`.
    sampled: BTreeMap<(usize, u32, ShardId), Version>,
}

impl Checker for MonotonicVersions {
    fn name(&self) -> &'static str {
        "monotonic-versions"
    }

    fn on_event(&mut self, world: &World, ev: &PeerEvent<'_>, out: &mut Findings) {
        let (shard, version, strict, what) = match ev.event {
            Event::Updated { shard, version, .. } => (*shard, *version, true, "applied"),
            Event::Authored { shard, version } => (*shard, *version, true, "authored"),
            Event::ShardResynced { shard, version } => (*shard, *version, false, "installed snapshot"),
            _ => return,
        };
        let key = (ev.peer, world.life(ev.peer), shard);
        if let Some(last) = self.applied.get(&key) {
            let backwards = if strict { version <= *last } else { version < *last };
            if backwards {
                out.violation(
                    self.name(),
                    ev.at_us,
                    format!("p{} {what} {} of {} after {}", ev.peer, version, world.shard_name(shard), last),
                );
            }
        }
        self.applied.insert(key, version);
    }

    fn on_step(&mut self, world: &World, out: &mut Findings) {
        for (i, peer) in world.running_peers() {
            let life = world.life(i);
            for info in peer.shards() {
                let Some(v) = peer.version_of(info.id) else { continue };
                let key = (i, life, info.id);
                if let Some(last) = self.sampled.insert(key, v) {
                    if v < last {
                        out.violation(
                            self.name(),
                            world.now_us(),
                            format!("p{i} version_of({}) went from {last} to {v}", info.name),
                        );
                    }
                }
            }
        }
    }
}

/// See the module docs: two authors of one (shard, epoch) must not hear each other.
#[derive(Debug, Default)]
pub struct OneCzarPerEpoch {
    authors: HashMap<(ShardId, u32), Vec<usize>>,
}

impl Checker for OneCzarPerEpoch {
    fn name(&self) -> &'static str {
        "one-czar-per-epoch"
    }

    fn on_event(&mut self, world: &World, ev: &PeerEvent<'_>, out: &mut Findings) {
        let Event::Authored { shard, version } = ev.event else { return };
        let authors = self.authors.entry((*shard, version.epoch)).or_default();
        if authors.contains(&ev.peer) {
            return;
        }
        let since = ev.at_us.saturating_sub(world.czar_grace_us());
        for &other in authors.iter() {
            if world.heard_each_other_since(ev.peer, other, since) {
                out.violation(
                    "one-czar-per-epoch",
                    ev.at_us,
                    format!(
                        "p{} authored {} of {} while p{other}, which it could hear, also authored in epoch {}",
                        ev.peer,
                        version,
                        world.shard_name(*shard),
                        version.epoch
                    ),
                );
            }
        }
        authors.push(ev.peer);
    }
}

/// See the module docs: every applied update was authored by that epoch's czar.
#[derive(Debug, Default)]
pub struct CzarAuthored {
    /// (shard, epoch) → peers named czar for it by some claim or hand-over.
    claims: HashMap<(ShardId, u32), Vec<usize>>,
}

impl Checker for CzarAuthored {
    fn name(&self) -> &'static str {
        "czar-authored"
    }

    fn on_event(&mut self, world: &World, ev: &PeerEvent<'_>, out: &mut Findings) {
        match ev.event {
            Event::CzarChanged { shard, new, epoch, .. } => {
                if let Some(idx) = world.index_of(new) {
                    let c = self.claims.entry((*shard, *epoch)).or_default();
                    if !c.contains(&idx) {
                        c.push(idx);
                    }
                }
            }
            Event::Updated { shard, version, .. } => {
                let records = world.authored(*shard, *version);
                let matching =
                    records.iter().find(|r| r.content.is_none_or(|c| c == ev.content) && r.at_us <= ev.at_us);
                let Some(rec) = matching else {
                    let detail = if records.is_empty() {
                        format!(
                            "p{} applied {} of {} that no peer authored",
                            ev.peer,
                            version,
                            world.shard_name(*shard)
                        )
                    } else {
                        format!(
                            "p{} applied {} of {} with content no author of that version wrote (authors: {})",
                            ev.peer,
                            version,
                            world.shard_name(*shard),
                            records.iter().map(|r| format!("p{}", r.author)).collect::<Vec<_>>().join(", ")
                        )
                    };
                    out.violation(self.name(), ev.at_us, detail);
                    return;
                };
                let claimed = self.claims.get(&(*shard, version.epoch)).is_some_and(|c| c.contains(&rec.author));
                if !claimed {
                    out.violation(
                        self.name(),
                        ev.at_us,
                        format!(
                            "p{} applied {} of {} authored by p{}, which no claim made czar of epoch {}",
                            ev.peer,
                            version,
                            world.shard_name(*shard),
                            rec.author,
                            version.epoch
                        ),
                    );
                }
            }
            _ => {}
        }
    }
}
