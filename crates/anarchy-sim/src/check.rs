//! Invariant checkers: each a named [`Checker`] fed every event a peer emits,
//! a periodic look at the whole world, and a last look at the end. Adding a
//! checker is one `impl Checker` plus one line in [`registry`].
//!
//! Exact semantics of the shipped checkers:
//!
//! - `convergence`: at the end of the run (writes stopped, every partition
//!   healed, paused peers resumed, then up to `settle_seconds` of simulated
//!   time), every *live* peer (running, not crashed, joined) must hold every
//!   shard that some live peer holds live (neither split nor merged back)
//!   live too, at the same `version_of` and `checksum_of`. A retired shard
//!   is history: the live peers that know it must hold the same final state,
//!   but a peer need not know it (a peer that rejoins after a merge learns
//!   the parent's merged state, which names no split, and never hears of the
//!   children). The simulator heals the network before settling, so all
//!   live peers are connected then; the bound is the settle period.
//! - `monotonic-versions`: per peer process and shard, the versions it applies
//!   (`Updated`, `Authored`) strictly increase in (epoch, seq) order, and a
//!   snapshot (`ShardResynced`) never installs a version lower than the last
//!   one applied. A snapshot may lower seq, but only together with a higher
//!   epoch. The first update applied after a snapshot must continue it (a
//!   higher seq); its epoch is the one it was written in, which may be older
//!   than the snapshot's label (a newer epoch's history includes updates
//!   written before it began). In addition, `version_of` sampled every check
//!   step never goes backwards. A blank restart starts a new process, with a
//!   fresh history.
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
//! - `signed-by-czar`: every update a peer applies names the czar that signed
//!   the run it came in (`Updated::author`, whose signature the peer checked
//!   before applying); that peer was named czar of the update's epoch by some
//!   claim, and authored exactly that content at that shard and version.
//!   The sim report's `forged_accepted` counts this checker's violations.
//!
//! - `epochs-never-go-backwards`: per peer process and shard, the epoch of
//!   `version_of`, sampled every check step, never decreases (a snapshot may
//!   lower seq only together with a higher epoch; nothing may lower the
//!   epoch). A blank restart starts a new process, with a fresh history.
//! - `critical-never-lost`: a committed critical update is never lost or
//!   reordered. The workload's critical writes are `score-K` keys of the
//!   world shard whose values are unique per write. The ledger keeps, for
//!   every czar-authored update of a `score-` key, its (shard, version, key,
//!   value fingerprint); a commit is the first `Committed { shard, version }`
//!   any peer reports, and its key and value are those authored at exactly
//!   that shard and version by the writer `origin` (an update recovered by a
//!   new czar and committed at another version is a second commit of the same
//!   content, which is harmless). Per shard and key, the commits form a
//!   history ordered by version. For a peer whose `version_of(shard)` is `W`,
//!   the commit to check is the last commit `C` of that key at a version
//!   `V <= W`: the peer must hold `C`'s value for the key, or a value some
//!   czar authored for that key at a version above `V` (a later committed or
//!   applied update superseded it). Holding an older commit's value, a value
//!   authored at or below `V`, or no value at all is a violation. Checked
//!   every check step at live peers that hear (both ways) a majority of the
//!   running peers; a minority side of a partition, or a peer that has just
//!   rejoined the majority, may briefly sit on a branch with a higher epoch
//!   that lacks the commit (that branch loses when the sides merge), so a
//!   failing peer is reported only when it keeps failing the same commit for
//!   `critical_grace_ms` of majority-connected time, once per (peer, commit).
//!   At the end of the run (after the settle), every live peer is checked
//!   with no grace, and if the peers converged, a commit at a version above
//!   the converged version is lost (reported once per commit), as is a commit
//!   whose version no czar authored a critical update at.
//!
//! - `split-merge-union`: when a peer applies a split, each child starts from
//!   exactly the parent's keys whose hash bit is the child's (checked against
//!   the child's agreed starting checksum), so no key is lost or doubled by
//!   the split; when it applies a merge, the parent starts from exactly the
//!   union of its two children's keys.
//! - `one-shard-per-key`: each check step, at one live peer in turn, every key
//!   of every shard holding keys is where `Peer::shard_of` of its declared
//!   shard says: no key belongs to two live shards, none to a retired one.
//!
//! Lost optimistic writes of a partition's losing side are expected in v0.1
//! and are not checked.

use std::collections::{BTreeMap, BTreeSet, HashMap};

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
        Box::new(SignedByCzar::default()),
        Box::new(EpochsNeverGoBackwards::default()),
        Box::new(CriticalNeverLost::default()),
        Box::new(SplitMergeUnion),
        Box::new(OneShardPerKey::default()),
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
    /// (peer, process life, shard) → last applied version, and whether it
    /// was a snapshot's.
    applied: HashMap<(usize, u32, ShardId), (Version, bool)>,
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
        if let Some(&(last, after_snapshot)) = self.applied.get(&key) {
            let backwards = match (strict, after_snapshot) {
                (true, true) => version.seq <= last.seq,
                (true, false) => version <= last,
                (false, _) => version < last,
            };
            if backwards {
                out.violation(
                    self.name(),
                    ev.at_us,
                    format!("p{} {what} {} of {} after {}", ev.peer, version, world.shard_name(shard), last),
                );
            }
        }
        self.applied.insert(key, (version, !strict));
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

/// Who any peer named czar of each (shard, epoch), by a claim or hand-over
/// it announced or accepted (`CzarChanged`).
#[derive(Debug, Default)]
pub struct ClaimBook {
    claims: HashMap<(ShardId, u32), Vec<usize>>,
}

impl ClaimBook {
    /// Records the claim an event announces, if it is a `CzarChanged`.
    pub fn note(&mut self, world: &World, event: &Event) {
        if let Event::CzarChanged { shard, new, epoch, .. } = event {
            if let Some(idx) = world.index_of(new) {
                let c = self.claims.entry((*shard, *epoch)).or_default();
                if !c.contains(&idx) {
                    c.push(idx);
                }
            }
        }
    }

    /// Whether some claim made peer `idx` czar of `shard` in `epoch`.
    pub fn claimed(&self, shard: ShardId, epoch: u32, idx: usize) -> bool {
        self.claims.get(&(shard, epoch)).is_some_and(|c| c.contains(&idx))
    }
}

/// See the module docs: every applied update was authored by that epoch's czar.
#[derive(Debug, Default)]
pub struct CzarAuthored {
    claims: ClaimBook,
}

impl Checker for CzarAuthored {
    fn name(&self) -> &'static str {
        "czar-authored"
    }

    fn on_event(&mut self, world: &World, ev: &PeerEvent<'_>, out: &mut Findings) {
        self.claims.note(world, ev.event);
        let Event::Updated { shard, version, .. } = ev.event else { return };
        let records = world.authored(*shard, *version);
        let matching = records.iter().find(|r| r.content.is_none_or(|c| c == ev.content) && r.at_us <= ev.at_us);
        let Some(rec) = matching else {
            let detail = if records.is_empty() {
                format!("p{} applied {} of {} that no peer authored", ev.peer, version, world.shard_name(*shard))
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
        if !self.claims.claimed(*shard, version.epoch, rec.author) {
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
}

/// See the module docs: every applied update was signed by a czar of its
/// epoch, and that czar authored exactly that content.
#[derive(Debug, Default)]
pub struct SignedByCzar {
    claims: ClaimBook,
}

impl Checker for SignedByCzar {
    fn name(&self) -> &'static str {
        "signed-by-czar"
    }

    fn on_event(&mut self, world: &World, ev: &PeerEvent<'_>, out: &mut Findings) {
        self.claims.note(world, ev.event);
        let Event::Updated { shard, version, author, .. } = ev.event else { return };
        let name = world.shard_name(*shard);
        let Some(signer) = world.index_of(author) else {
            let detail =
                format!("p{} applied {version} of {name} signed by {author:?}, not a peer of the run", ev.peer);
            out.violation(self.name(), ev.at_us, detail);
            return;
        };
        if !self.claims.claimed(*shard, version.epoch, signer) {
            let detail = format!(
                "p{} applied {version} of {name} signed by p{signer}, which no claim made czar of epoch {}",
                ev.peer, version.epoch
            );
            out.violation(self.name(), ev.at_us, detail);
            return;
        }
        let wrote_it = world
            .authored(*shard, *version)
            .iter()
            .any(|r| r.author == signer && r.content.is_none_or(|c| c == ev.content) && r.at_us <= ev.at_us);
        if !wrote_it {
            let detail = format!(
                "p{} applied {version} of {name} signed by p{signer}, which did not author that content",
                ev.peer
            );
            out.violation(self.name(), ev.at_us, detail);
        }
    }
}

/// See the module docs: the epoch of `version_of` never decreases.
#[derive(Debug, Default)]
pub struct EpochsNeverGoBackwards {
    /// (peer, process life, shard) → last sampled epoch.
    sampled: BTreeMap<(usize, u32, ShardId), u32>,
}

impl Checker for EpochsNeverGoBackwards {
    fn name(&self) -> &'static str {
        "epochs-never-go-backwards"
    }

    fn on_step(&mut self, world: &World, out: &mut Findings) {
        for (i, peer) in world.running_peers() {
            let life = world.life(i);
            for info in peer.shards() {
                let Some(v) = peer.version_of(info.id) else { continue };
                if let Some(last) = self.sampled.insert((i, life, info.id), v.epoch) {
                    if v.epoch < last {
                        out.violation(
                            self.name(),
                            world.now_us(),
                            format!("p{i} epoch of {} went from {last} to {} (now at {v})", info.name, v.epoch),
                        );
                    }
                }
            }
        }
    }
}

/// (peer slot, process life, shard, key).
type PeerKey = (usize, u32, ShardId, Vec<u8>);

/// Simulated ms a majority-connected peer may fail a commit before it counts.
pub const CRITICAL_GRACE_MS: u64 = 3000;

/// See the module docs: a committed critical update is never lost or reordered.
#[derive(Debug, Default)]
pub struct CriticalNeverLost {
    /// Commits whose key is not resolved yet.
    pending: BTreeSet<(ShardId, Version)>,
    /// (shard, key) → version → content fingerprint of each commit.
    history: BTreeMap<(ShardId, Vec<u8>), BTreeMap<Version, u64>>,
    /// (peer, life, shard, key) → (commit version failed, since µs).
    failing: BTreeMap<PeerKey, (Version, u64)>,
    /// (peer, life, shard, commit version) already reported.
    reported: BTreeSet<(usize, u32, ShardId, Version)>,
}

impl CriticalNeverLost {
    /// Moves commits whose authored update is now in the ledger into the history.
    fn resolve(&mut self, world: &World) {
        let mut done = Vec::new();
        for &(shard, version) in &self.pending {
            let Some(commit) = world.commits().get(&(shard, version)) else { continue };
            let recs = world.critical_authored(shard, version);
            let rec = recs.iter().find(|r| r.origin == commit.origin).or(recs.first());
            if let Some(rec) = rec {
                // Per key of the declared shard: a key's versions only grow
                // along the splits and merges it moves through.
                let root = world.root_of(shard);
                self.history.entry((root, rec.key.clone())).or_default().insert(version, rec.content);
                done.push((shard, version));
            }
        }
        for k in done {
            self.pending.remove(&k);
        }
    }

    /// `None` if peer `i` holds what the history says for (shard, key);
    /// otherwise the failing commit's version and a description.
    fn judge(
        world: &World,
        i: usize,
        shard: ShardId,
        key: &[u8],
        commits: &BTreeMap<Version, u64>,
    ) -> Option<(Version, String)> {
        let peer = world.peer(i)?;
        // `shard` is the declared shard; the key lives in one of its
        // children if it split (`get` reads from there).
        let at = peer.version_of(peer.shard_of(shard, key)?)?;
        let (&v, &want) = commits.range(..=at).next_back()?;
        let held = peer.get(shard, key);
        let got = crate::sim::fingerprint(key, held);
        if got == want || world.content_versions(shard, got).iter().any(|w| *w > v) {
            return None;
        }
        let what = match world.content_versions(shard, got).iter().max() {
            _ if held.is_none() => "no value".to_string(),
            Some(w) => format!("the value authored at {w}"),
            None => "a value no czar authored".to_string(),
        };
        Some((
            v,
            format!(
                "p{i} at {at} of {} holds {what} for {} instead of the update committed at {v}",
                world.shard_name(shard),
                String::from_utf8_lossy(key)
            ),
        ))
    }
}

impl Checker for CriticalNeverLost {
    fn name(&self) -> &'static str {
        "critical-never-lost"
    }

    fn on_event(&mut self, world: &World, ev: &PeerEvent<'_>, _out: &mut Findings) {
        if let Event::Committed { shard, version, .. } = ev.event {
            let root = world.root_of(*shard);
            let known = self
                .history
                .range((root, Vec::new())..)
                .take_while(|((s, _), _)| *s == root)
                .any(|(_, h)| h.contains_key(version));
            if !known {
                self.pending.insert((*shard, *version));
            }
        }
    }

    fn on_step(&mut self, world: &World, out: &mut Findings) {
        self.resolve(world);
        if self.history.is_empty() {
            return;
        }
        let now = world.now_us();
        let grace = CRITICAL_GRACE_MS * 1000;
        let live: Vec<usize> = world.live_peers().map(|(i, _)| i).collect();
        for i in live {
            let life = world.life(i);
            let settled = world.in_majority(i);
            for ((shard, key), commits) in &self.history {
                let slot = (i, life, *shard, key.clone());
                let verdict = if settled { Self::judge(world, i, *shard, key, commits) } else { None };
                let Some((v, detail)) = verdict else {
                    self.failing.remove(&slot);
                    continue;
                };
                let since = match self.failing.get(&slot) {
                    Some(&(fv, since)) if fv == v => since,
                    _ => {
                        self.failing.insert(slot, (v, now));
                        now
                    }
                };
                // Majority-connected time only: a peer whose connectivity just changed starts over.
                let since = since.max(now.saturating_sub(world.stable_for_us(i)));
                if now.saturating_sub(since) >= grace && self.reported.insert((i, life, *shard, v)) {
                    out.violation(self.name(), now, format!("{detail} (for {} ms)", (now - since) / 1000));
                }
            }
        }
    }

    fn at_end(&mut self, world: &World, out: &mut Findings) {
        self.resolve(world);
        let now = world.now_us();
        for &(shard, version) in &self.pending {
            out.violation(
                self.name(),
                now,
                format!(
                    "a critical update committed at {version} of {} that no czar authored",
                    world.shard_name(shard)
                ),
            );
        }
        let live: Vec<usize> = world.live_peers().map(|(i, _)| i).collect();
        for &i in &live {
            let life = world.life(i);
            for ((shard, key), commits) in &self.history {
                if let Some((v, detail)) = Self::judge(world, i, *shard, key, commits) {
                    if self.reported.insert((i, life, *shard, v)) {
                        out.violation(self.name(), now, format!("{detail} (at the end)"));
                    }
                }
            }
        }
        if world.divergence().is_some() {
            return;
        }
        let Some(&first) = live.first() else { return };
        let Some(peer) = world.peer(first) else { return };
        for ((shard, key), commits) in &self.history {
            let Some(at) = peer.shard_of(*shard, key).and_then(|leaf| peer.version_of(leaf)) else { continue };
            for (v, _) in commits.range(at..).filter(|(v, _)| **v > at) {
                out.violation(
                    self.name(),
                    now,
                    format!(
                        "the update of {} committed at {v} of {} is lost: the live peers converged at {at}",
                        String::from_utf8_lossy(key),
                        world.shard_name(*shard)
                    ),
                );
            }
        }
    }
}

/// The non-reserved keys and values of `shard` at `peer`.
fn game_entries(peer: &anarchy_proto::Peer, shard: ShardId) -> Vec<(Vec<u8>, Vec<u8>)> {
    peer.replica(shard)
        .map(|r| {
            r.entries()
                .filter(|(k, _)| !k.starts_with(anarchy_proto::RESERVED_KEY_PREFIX))
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

fn short_checksum_of(entries: &[(Vec<u8>, Vec<u8>)]) -> u64 {
    anarchy_proto::Replica::checksum_of(entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice()))).short()
}

/// See the module docs: splits and merges carry every key over exactly once.
#[derive(Debug, Default)]
pub struct SplitMergeUnion;

impl Checker for SplitMergeUnion {
    fn name(&self) -> &'static str {
        "split-merge-union"
    }

    fn on_event(&mut self, world: &World, ev: &PeerEvent<'_>, out: &mut Findings) {
        let Some(peer) = world.peer(ev.peer) else { return };
        match ev.event {
            Event::ShardSplit { parent, children } => {
                let depth = peer.shard(*parent).map_or(0, |i| i.depth());
                let all = game_entries(peer, *parent);
                for (bit, child) in children.iter().enumerate() {
                    let half: Vec<_> = all
                        .iter()
                        .filter(|(k, _)| anarchy_proto::shards::key_bit(k, depth) == (bit == 1))
                        .cloned()
                        .collect();
                    let start = peer.replica(*child).map(|r| r.epoch_start_checksum);
                    if start != Some(short_checksum_of(&half)) {
                        out.violation(
                            self.name(),
                            ev.at_us,
                            format!(
                                "p{} split {} but {} does not start from its {} keys",
                                ev.peer,
                                world.shard_name(*parent),
                                world.shard_name(*child),
                                half.len()
                            ),
                        );
                    }
                }
            }
            Event::ShardMerged { children, parent } => {
                let mut union: Vec<_> = children.iter().flat_map(|c| game_entries(peer, *c)).collect();
                union.sort();
                let start = peer.replica(*parent).map(|r| r.epoch_start_checksum);
                if start != Some(short_checksum_of(&union)) {
                    out.violation(
                        self.name(),
                        ev.at_us,
                        format!(
                            "p{} merged {} and {} but {} does not start from the union of their {} keys",
                            ev.peer,
                            world.shard_name(children[0]),
                            world.shard_name(children[1]),
                            world.shard_name(*parent),
                            union.len()
                        ),
                    );
                }
            }
            _ => {}
        }
    }
}

/// See the module docs: every key is in the one live shard that holds it.
#[derive(Debug, Default)]
pub struct OneShardPerKey {
    /// Which live peer is checked next (round robin).
    next: usize,
}

impl Checker for OneShardPerKey {
    fn name(&self) -> &'static str {
        "one-shard-per-key"
    }

    fn on_step(&mut self, world: &World, out: &mut Findings) {
        let live: Vec<usize> = world.live_peers().map(|(i, _)| i).collect();
        if live.is_empty() {
            return;
        }
        self.next = (self.next + 1) % live.len();
        let i = live[self.next];
        let Some(peer) = world.peer(i) else { return };
        for shard in peer.live_shards() {
            let root = world.root_of(shard);
            for (key, _) in game_entries(peer, shard) {
                let holder = peer.shard_of(root, &key);
                if holder != Some(shard) {
                    out.violation(
                        self.name(),
                        world.now_us(),
                        format!(
                            "p{i} holds {} in {}, but its keys now belong to {}",
                            String::from_utf8_lossy(&key),
                            world.shard_name(shard),
                            holder.map_or("no shard".to_string(), |h| world.shard_name(h).to_string())
                        ),
                    );
                    return;
                }
            }
        }
    }
}
