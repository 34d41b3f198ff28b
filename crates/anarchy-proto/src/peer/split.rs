//! Shard splits: a shard that stays hot splits into two children by key hash,
//! with authority moving along (§6.18 of `docs/PROTOCOL.md`).
//!
//! The czar of a hot shard proposes a *split record* — a critical update of
//! the reserved key [`SPLIT_KEY`] naming the state it splits (seq and short
//! checksum), the children's epoch and their czars — and holds every other
//! write to the shard while the vote runs. Members accept only at exactly that
//! state, so once the record commits a majority holds the state the children
//! come from, and a takeover finishes the split from it. Every peer that
//! applies the record (from a delta, a repair or a snapshot) derives the same
//! two children from the parent's final state: each key goes to the child
//! whose [`key_bit`] at the parent's depth matches. From then on the parent
//! takes no writes; writes to it, waiting or new, go to the child that holds
//! their key ([`Peer::shard_of`]).

use crate::event::Event;
use crate::identity::PeerId;
use crate::replica::Version;
use crate::shards::{key_bit, ranking, ShardId, MAX_SPLIT_DEPTH};
use crate::stats::DropReason;
use crate::time::Instant;
use crate::wire::{Op, Update};

use super::{Peer, Phase, ShardState};

/// The reserved key under which a split is recorded in the parent's log.
pub(crate) const SPLIT_KEY: &[u8] = b"\xff\xffanarchy/split";
/// Keys that start with these bytes belong to the protocol; the game's
/// writes to them are refused ([`super::WriteError::ReservedKey`]).
pub const RESERVED_KEY_PREFIX: &[u8] = b"\xff\xff";
/// The write ids of the protocol's own critical proposals (splits) carry
/// this bit; the game's count up from 1 and never do.
pub(super) const INTERNAL_WRITE_BIT: u64 = 1 << 63;

const PLAN_FORMAT: u8 = 1;
const PLAN_BYTES: usize = 1 + 4 + 16 + 16 + 8 + 8;

/// What a split record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SplitPlan {
    /// The children's first epoch.
    pub(super) epoch: u32,
    /// Their czars: of the child holding bit 0, then of the one holding bit 1.
    pub(super) czars: [PeerId; 2],
    /// The parent's state the split is made from: its seq ...
    pub(super) base_seq: u64,
    /// ... and its short checksum.
    pub(super) base_checksum: u64,
}

impl SplitPlan {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(PLAN_BYTES);
        b.push(PLAN_FORMAT);
        b.extend_from_slice(&self.epoch.to_le_bytes());
        b.extend_from_slice(&self.czars[0].0);
        b.extend_from_slice(&self.czars[1].0);
        b.extend_from_slice(&self.base_seq.to_le_bytes());
        b.extend_from_slice(&self.base_checksum.to_le_bytes());
        b
    }

    /// Reads a split record; `None` if it is not one this version understands.
    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != PLAN_BYTES || b[0] != PLAN_FORMAT {
            return None;
        }
        let id = |at: usize| PeerId(b[at..at + 16].try_into().expect("16 bytes"));
        Some(SplitPlan {
            epoch: u32::from_le_bytes(b[1..5].try_into().expect("4 bytes")),
            czars: [id(5), id(21)],
            base_seq: u64::from_le_bytes(b[37..45].try_into().expect("8 bytes")),
            base_checksum: u64::from_le_bytes(b[45..53].try_into().expect("8 bytes")),
        })
    }
}

/// Where a member's state stands against a proposed split's base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BaseCheck {
    /// Exactly at it: the member may accept.
    At,
    /// Behind it: the member waits (and repairs) before it votes.
    Behind,
    /// Past it or on another history: the member rejects.
    Off,
}

/// Per-shard split bookkeeping.
#[derive(Debug, Default)]
pub(super) struct SplitState {
    /// Since when the shard, as ours, has been over a split budget.
    hot_since: Option<Instant>,
    /// Our open split proposal's write id: the shard's other writes wait.
    pub(super) proposing: Option<u64>,
    /// A split that failed is not tried again before this.
    retry_after: Option<Instant>,
    /// The children, once the split is applied here: the shard is retired.
    pub(super) children: Option<[ShardId; 2]>,
    /// The version we last looked for a split record at.
    checked: Option<Version>,
}

impl ShardState {
    /// Whether the shard split (here): it takes no more writes.
    pub(super) fn is_retired(&self) -> bool {
        self.split.children.is_some()
    }

    /// Whether, as its czar, we hold the shard's writes back: our split
    /// proposal is being voted on, or a takeover handed us a split record
    /// to finish (its base must stay our state until it commits).
    pub(super) fn writes_held(&self) -> bool {
        self.split.proposing.is_some()
            || self.is_retired()
            || self.critical.recovered.values().any(|p| p.update.key == SPLIT_KEY)
            || self.critical.open_split()
    }
}

impl Peer {
    /// The shard that holds `key` of `shard` now: `shard` itself, or, if it
    /// split, the child (and so on down) whose key bit matches. `None` for
    /// an unknown shard.
    pub fn shard_of(&self, shard: ShardId, key: &[u8]) -> Option<ShardId> {
        self.states.contains_key(&shard).then(|| self.leaf_of(shard, key))
    }

    /// See [`Peer::shard_of`]; `shard` itself when unknown.
    pub(super) fn leaf_of(&self, mut shard: ShardId, key: &[u8]) -> ShardId {
        for _ in 0..=MAX_SPLIT_DEPTH {
            let Some(children) = self.states.get(&shard).and_then(|st| st.split.children) else { break };
            let depth = self.shards.get(shard).map_or(0, |i| i.depth());
            shard = children[usize::from(key_bit(key, depth))];
        }
        shard
    }

    /// Whether `later` is `shard`, or a shard that `shard`'s splits would
    /// give `key` to (whether or not we applied those splits yet).
    pub(super) fn holds_key_later(&self, mut shard: ShardId, key: &[u8], later: ShardId) -> bool {
        let mut depth = self.shards.get(shard).map_or(0, |i| i.depth());
        while depth <= MAX_SPLIT_DEPTH {
            if shard == later {
                return true;
            }
            shard = ShardId::child(shard, key_bit(key, depth));
            depth += 1;
        }
        false
    }

    /// Where our state of `shard` stands against the base of the split
    /// record `update` proposes (`Off` if it is not a split record we can read).
    pub(super) fn split_base_check(&self, shard: ShardId, update: &Update) -> BaseCheck {
        let (Some(st), Op::Put(value)) = (self.states.get(&shard), &update.op) else { return BaseCheck::Off };
        let Some(plan) = SplitPlan::decode(value) else { return BaseCheck::Off };
        let r = &st.replica;
        if r.seq() < plan.base_seq {
            BaseCheck::Behind
        } else if r.seq() == plan.base_seq && r.checksum().short() == plan.base_checksum && !st.is_retired() {
            BaseCheck::At
        } else {
            BaseCheck::Off
        }
    }

    /// Periodic work, as czar: starts the split of a shard that stayed over
    /// its budget for `split_after`.
    pub(super) fn drive_splits(&mut self, now: Instant) {
        if self.phase != Phase::Joined || self.config.max_split_depth == 0 {
            return;
        }
        let max_depth = self.config.max_split_depth.min(MAX_SPLIT_DEPTH);
        let (writes_cap, bytes_cap) = (self.config.split_writes_per_sec, self.config.split_bytes_per_sec);
        let live = self.members.alive_count();
        let mut due = Vec::new();
        for (id, st) in self.states.iter_mut() {
            let Some(info) = self.shards.get(*id) else { continue };
            let eligible = st.is_ready_czar(self.id)
                && st.replica.backed
                && st.replica.on_current_lineage()
                && !st.is_retired()
                && st.split.proposing.is_none()
                && info.preferred.is_none()
                && info.depth() < max_depth
                && live >= 2;
            let (writes, bytes) = st.load.rates();
            let hot =
                (writes_cap > 0 && writes > f64::from(writes_cap)) || (bytes_cap > 0 && bytes > f64::from(bytes_cap));
            if !eligible || !hot {
                st.split.hot_since = None;
                continue;
            }
            let since = *st.split.hot_since.get_or_insert(now);
            let waited = now.saturating_duration_since(since) >= self.config.split_after;
            let may_retry = st.split.retry_after.is_none_or(|t| now >= t);
            if waited && may_retry && !st.writes_held() && st.critical.open_is_empty() {
                due.push(*id);
            }
        }
        for shard in due {
            self.start_split(now, shard);
        }
    }

    /// Proposes the split of `shard` (ours, ready) from our current state.
    fn start_split(&mut self, now: Instant, shard: ShardId) {
        // Our unsent updates leave first, so members reach the base before the proposal.
        self.flush_outgoing();
        let live: Vec<PeerId> = self.members.alive_ids().copied().collect();
        let czar_of = |bit: bool| {
            let child = crate::shards::ShardInfo::declared(ShardId::child(shard, bit), "", None);
            ranking(&child, live.iter(), 1).first().copied()
        };
        let (Some(c0), Some(c1)) = (czar_of(false), czar_of(true)) else { return };
        let st = self.states.get_mut(&shard).expect("listed");
        let plan = SplitPlan {
            epoch: st.replica.epoch,
            czars: [c0, c1],
            base_seq: st.replica.seq(),
            base_checksum: st.replica.checksum().short(),
        };
        let write_id = INTERNAL_WRITE_BIT | self.next_write_id;
        self.next_write_id += 1;
        st.split.proposing = Some(write_id);
        st.split.hot_since = None;
        let update = Update { key: SPLIT_KEY.to_vec(), op: Op::Put(plan.encode()) };
        self.start_proposal(now, shard, self.id, write_id, update);
    }

    /// A proposal of ours was decided: if it was a split that did not
    /// commit, the shard's writes go on and the split waits `split_after`.
    pub(super) fn split_decided(&mut self, now: Instant, shard: ShardId, write_id: u64, committed: bool) {
        let retry = now + self.config.split_after;
        let Some(st) = self.states.get_mut(&shard) else { return };
        if st.split.proposing == Some(write_id) {
            st.split.proposing = None;
            if !committed {
                st.split.retry_after = Some(retry);
            }
        }
    }

    /// Applies every split record our replicas hold and have not applied yet
    /// (and undoes a split whose record a resync took away). Run after every
    /// datagram and tick.
    pub(super) fn derive_splits(&mut self, now: Instant) {
        let mut found = Vec::new();
        for (id, st) in self.states.iter_mut() {
            let v = st.replica.version();
            if st.split.checked == Some(v) {
                continue;
            }
            st.split.checked = Some(v);
            let record = st.replica.get(SPLIT_KEY).map(<[u8]>::to_vec);
            if record.is_some() != st.is_retired() {
                found.push((*id, record));
            }
        }
        for (parent, record) in found {
            match record {
                Some(bytes) => self.apply_split(now, parent, &bytes),
                None => self.undo_split(parent),
            }
        }
    }

    /// Makes `parent`'s two children from its final state, as the record says.
    fn apply_split(&mut self, now: Instant, parent: ShardId, record: &[u8]) {
        let depth = self.shards.get(parent).map_or(0, |i| i.depth());
        let plan = SplitPlan::decode(record);
        let Some(plan) = plan.filter(|_| depth < MAX_SPLIT_DEPTH) else {
            self.stats.drop(DropReason::BadSplit);
            return;
        };
        let children = self.shards.add_children(parent).expect("known parent");
        let st = &self.states[&parent];
        let seq = st.replica.seq();
        let parent_czar = st.replica.czar;
        let mut halves: [Vec<(Vec<u8>, Vec<u8>)>; 2] = [Vec::new(), Vec::new()];
        for (k, v) in st.replica.entries().filter(|(k, _)| !k.starts_with(RESERVED_KEY_PREFIX)) {
            halves[usize::from(key_bit(k, depth))].push((k.to_vec(), v.to_vec()));
        }
        for (i, entries) in halves.into_iter().enumerate() {
            let child = children[i];
            if self.states.contains_key(&child) {
                continue; // derived before (the record came again after a resync)
            }
            let czar = plan.czars[i];
            let mut cs = ShardState::default();
            cs.replica.install(Version { epoch: plan.epoch, seq }, entries);
            cs.replica.epoch = plan.epoch;
            cs.replica.czar = Some(czar);
            cs.replica.prev_czar = parent_czar;
            cs.replica.backed = true;
            cs.replica.epoch_start_seq = seq;
            cs.replica.epoch_start_checksum = cs.replica.checksum().short();
            cs.replica.epoch_start_trusted = true;
            cs.czar_since = now;
            self.states.insert(child, cs);
            let name = self.shards.get(child).expect("added").name.clone();
            self.push_event(Event::ShardDeclared { shard: child, name });
            self.push_event(Event::CzarChanged { shard: child, old: None, new: czar, epoch: plan.epoch });
        }
        let st = self.states.get_mut(&parent).expect("known");
        st.split.children = Some(children);
        st.split.proposing = None;
        st.split.hot_since = None;
        self.stats.splits += 1;
        self.push_event(Event::ShardSplit { parent, children });
        // Writes waiting for the parent go to the children that hold their keys.
        for p in self.pending.values_mut().chain(self.pending_critical.values_mut()) {
            if p.shard == parent {
                p.shard = children[usize::from(key_bit(&p.update.key, depth))];
                p.last_sent = None;
            }
        }
        self.retry_pending(now, None);
        self.retry_critical(now, None);
    }

    /// A resync took the split record away (the history that held it lost):
    /// the parent is whole again and its children are dropped.
    fn undo_split(&mut self, parent: ShardId) {
        let Some(children) = self.states.get_mut(&parent).and_then(|st| st.split.children.take()) else { return };
        let mut gone = children.to_vec();
        while let Some(child) = gone.pop() {
            if let Some(st) = self.states.remove(&child) {
                gone.extend(st.split.children.into_iter().flatten());
            }
            self.shards.remove_child(child);
        }
        self.stats.drop(DropReason::BadSplit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_back_and_junk_is_refused() {
        let plan = SplitPlan { epoch: 9, czars: [PeerId([1; 16]), PeerId([2; 16])], base_seq: 77, base_checksum: 5 };
        assert_eq!(SplitPlan::decode(&plan.encode()), Some(plan));
        assert_eq!(SplitPlan::decode(&[]), None);
        let mut other = plan.encode();
        other[0] = 2;
        assert_eq!(SplitPlan::decode(&other), None);
        assert_eq!(SplitPlan::decode(&plan.encode()[..PLAN_BYTES - 1]), None);
    }

    #[test]
    fn the_split_key_is_reserved() {
        assert!(SPLIT_KEY.starts_with(RESERVED_KEY_PREFIX));
    }
}
