//! Shard splits and merges: a shard that stays hot splits into two children
//! by key hash, two sibling children that stay cold merge back, and authority
//! moves along (§6.18 of `docs/PROTOCOL.md`).
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
//!
//! A merge takes two records. The czar of the bit-1 child *seals* it (a
//! record under [`SEAL_KEY`]): from then on it takes no writes. The czar of
//! the bit-0 sibling, once it holds the sealed state, records the *merge* in
//! its own log (under [`MERGE_KEY`], naming the sibling's sealed seq and
//! checksum). Every peer that holds both derives the parent again — the union
//! of the two children, at a higher epoch, with the czar the record names —
//! and writes go to it. If the bit-0 sibling splits instead, the sealed child
//! is unsealed and goes on. All three records are critical updates judged by
//! their base, like the split.

use std::collections::BTreeMap;

use crate::event::Event;
use crate::identity::PeerId;
use crate::replica::Version;
use crate::shards::{key_bit, ranking_eligible, ShardId, MAX_SPLIT_DEPTH};
use crate::stats::DropReason;
use crate::time::Instant;
use crate::wire::{Op, Update};

use super::{Peer, Phase, ShardState};

/// The reserved key under which a split is recorded in the parent's log.
pub(crate) const SPLIT_KEY: &[u8] = b"\xff\xffanarchy/split";
/// The reserved key of a child's seal (value byte 1: 1 sealed, 0 unsealed).
pub(crate) const SEAL_KEY: &[u8] = b"\xff\xffanarchy/seal";
/// The reserved key of a merge, in the bit-0 child's log.
pub(crate) const MERGE_KEY: &[u8] = b"\xff\xffanarchy/merge";

/// Whether `key` is one of the layout records (split, seal, merge).
pub(super) fn is_layout_key(key: &[u8]) -> bool {
    key == SPLIT_KEY || key == SEAL_KEY || key == MERGE_KEY
}
/// Keys that start with these bytes belong to the protocol; the game's
/// writes to them are refused ([`super::WriteError::ReservedKey`]).
pub const RESERVED_KEY_PREFIX: &[u8] = b"\xff\xff";
/// The write ids of the protocol's own critical proposals (splits) carry
/// this bit; the game's count up from 1 and never do.
pub(super) const INTERNAL_WRITE_BIT: u64 = 1 << 63;

const PLAN_FORMAT: u8 = 1;
const PLAN_BYTES: usize = 1 + 4 + 16 + 16 + 8 + 8;
const SEAL_FORMAT: u8 = 2;
const SEAL_BYTES: usize = 1 + 1 + 8 + 8;
const MERGE_FORMAT: u8 = 3;
const MERGE_BYTES: usize = 1 + 4 + 16 + 8 + 8 + 8 + 8;
/// A merge waits until the two siblings together carry less than this share
/// of a split budget (hysteresis: a shard near the split budget never flaps).
const MERGE_SHARE: f64 = 0.25;

/// A czar that carries more than this many times the mean czar's bytes per
/// second splits its busiest shard (if over `BALANCE_FLOOR` of a budget)
/// like an over-budget one, so no czar carries far more than the average;
/// two cold siblings whose merge would put the parent's czar over it do not
/// merge (§6.18, balance).
const BALANCE_SHARE: f64 = 2.0;
/// A shard under this share of every split budget never splits for
/// balance: too little load to be worth a shard's heartbeats.
const BALANCE_FLOOR: f64 = 1.0 / 16.0;

/// A split parent refuses newer claims while its children lag for at most
/// this many `peer_timeout`s in a row (§6.18).
const LAG_HOLD_TIMEOUTS: u32 = 10;

/// The state a layout record is made from: the last 16 bytes of every
/// record (seq, then short checksum). `None` if the value is too short.
fn record_base(value: &[u8]) -> Option<(u64, u64)> {
    let n = value.len();
    if n < 17 {
        return None;
    }
    let seq = u64::from_le_bytes(value[n - 16..n - 8].try_into().expect("8 bytes"));
    let sum = u64::from_le_bytes(value[n - 8..].try_into().expect("8 bytes"));
    Some((seq, sum))
}

/// A merge record: the parent comes back at `epoch` with `czar`, from our
/// state at the base and the sibling's sealed state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MergePlan {
    pub(super) epoch: u32,
    pub(super) czar: PeerId,
    /// The sealed sibling's seq and short checksum.
    pub(super) sibling: (u64, u64),
    pub(super) base_seq: u64,
    pub(super) base_checksum: u64,
}

impl MergePlan {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(MERGE_BYTES);
        b.push(MERGE_FORMAT);
        b.extend_from_slice(&self.epoch.to_le_bytes());
        b.extend_from_slice(&self.czar.0);
        b.extend_from_slice(&self.sibling.0.to_le_bytes());
        b.extend_from_slice(&self.sibling.1.to_le_bytes());
        b.extend_from_slice(&self.base_seq.to_le_bytes());
        b.extend_from_slice(&self.base_checksum.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != MERGE_BYTES || b[0] != MERGE_FORMAT {
            return None;
        }
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        Some(MergePlan {
            epoch: u32::from_le_bytes(b[1..5].try_into().expect("4 bytes")),
            czar: PeerId(b[5..21].try_into().expect("16 bytes")),
            sibling: (u64_at(21), u64_at(29)),
            base_seq: u64_at(37),
            base_checksum: u64_at(45),
        })
    }
}

/// A seal (or unseal) record from the state at `base`.
fn seal_record(sealed: bool, base: (u64, u64)) -> Vec<u8> {
    let mut b = Vec::with_capacity(SEAL_BYTES);
    b.push(SEAL_FORMAT);
    b.push(u8::from(sealed));
    b.extend_from_slice(&base.0.to_le_bytes());
    b.extend_from_slice(&base.1.to_le_bytes());
    b
}

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
    /// Since when the shard and its sibling, as ours, have been under the
    /// merge share of a split budget.
    cold_since: Option<Instant>,
    /// Our open layout proposal's write id: the shard's other writes wait.
    pub(super) proposing: Option<u64>,
    /// A layout change that failed is not tried again before this.
    retry_after: Option<Instant>,
    /// The children, once the split is applied here: the shard is retired.
    pub(super) children: Option<[ShardId; 2]>,
    /// The parent it merged back into: the shard is retired.
    pub(super) merged_into: Option<ShardId>,
    /// The version we last looked for a layout record at.
    checked: Option<Version>,
    /// Since when, as a split parent, we have refused newer claims because
    /// our children lag (`waits_for_split_children`).
    lag_hold_since: Option<Instant>,
}

impl ShardState {
    /// Whether the shard split or merged back (here): it takes no more writes.
    pub(super) fn is_retired(&self) -> bool {
        self.split.children.is_some() || self.split.merged_into.is_some()
    }

    /// Whether the shard is sealed for a merge: it takes no writes until
    /// the merge (or an unseal).
    pub(super) fn is_sealed(&self) -> bool {
        self.replica.get(SEAL_KEY).is_some_and(|v| v.get(1) == Some(&1))
    }

    /// Whether, as its czar, we hold the shard's writes back: our split
    /// proposal is being voted on, or a takeover handed us a split record
    /// to finish (its base must stay our state until it commits).
    pub(super) fn writes_held(&self) -> bool {
        self.split.proposing.is_some()
            || self.is_retired()
            || self.is_sealed()
            || self.critical.recovered.values().any(|p| is_layout_key(&p.update.key))
            || self.critical.open_layout()
    }
}

impl Peer {
    /// The shard that holds `key` of `shard` now: `shard` itself, or, if it
    /// split, the child (and so on down) whose key bit matches. `None` for
    /// an unknown shard.
    pub fn shard_of(&self, shard: ShardId, key: &[u8]) -> Option<ShardId> {
        self.states.contains_key(&shard).then(|| self.leaf_of(shard, key))
    }

    /// Whether `shard` split or merged back into its parent here: it takes
    /// no writes, and its keys live in the shards [`Peer::shard_of`] names.
    pub fn is_retired(&self, shard: ShardId) -> bool {
        self.states.get(&shard).is_some_and(ShardState::is_retired)
    }

    /// The shards that hold keys now (neither split nor merged back), in id order.
    pub fn live_shards(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.states.iter().filter(|(_, st)| !st.is_retired()).map(|(id, _)| *id)
    }

    /// See [`Peer::shard_of`]; `shard` itself when unknown.
    pub(super) fn leaf_of(&self, mut shard: ShardId, key: &[u8]) -> ShardId {
        for _ in 0..=2 * usize::from(MAX_SPLIT_DEPTH) + 1 {
            let Some(st) = self.states.get(&shard) else { break };
            if let Some(parent) = st.split.merged_into {
                shard = parent;
            } else if let Some(children) = st.split.children {
                let depth = self.shards.get(shard).map_or(0, |i| i.depth());
                shard = children[usize::from(key_bit(key, depth))];
            } else {
                break;
            }
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

    /// Whether `shard` split here and the claim (`epoch`, `czar`) is the one
    /// the merge record in its bit-0 child names: the merge of its children,
    /// which we apply ourselves once we hold the sealed sibling. Taken from
    /// the claim's czar instead, its state would replace the parent's without
    /// the split record, and the children every other peer keeps (retired,
    /// merged) would be dropped here.
    pub(super) fn awaits_own_merge(&self, shard: ShardId, epoch: u32, czar: PeerId) -> bool {
        let Some(children) = self.states.get(&shard).and_then(|st| st.split.children) else { return false };
        let plan = self.states.get(&children[0]).and_then(|c| c.replica.get(MERGE_KEY)).and_then(MergePlan::decode);
        plan.is_some_and(|p| p.epoch == epoch && p.czar == czar)
    }

    /// Whether `shard` split here, neither child merged back here, and a
    /// child's czar advertised more of it than we hold. A newer claim on the
    /// parent may then be the children's merge, whose record we lack: taken
    /// now, its state would replace the parent's without the split record
    /// and drop the children that every other peer keeps, retired. It waits
    /// until we hold what the children's czars advertised (the split parent
    /// takes no writes, so the wait costs nothing); a merge record found
    /// meanwhile makes us merge ourselves (`awaits_own_merge`).
    fn lags_split_children(&self, shard: ShardId) -> bool {
        let Some(children) = self.states.get(&shard).and_then(|st| st.split.children) else { return false };
        children.iter().filter_map(|c| self.states.get(c)).any(|c| {
            c.split.merged_into.is_none()
                && c.czar_advert.is_some_and(|(e, seq, _, _)| (e, seq) > (c.replica.epoch, c.replica.seq()))
        })
    }

    /// Whether a newer claim on `shard` waits for its lagging children
    /// (`lags_split_children`): at most `LAG_HOLD_TIMEOUTS` peer timeouts
    /// in a row, so children that never catch up (their czar gone with the
    /// state we lack) cannot hold the parent back for good.
    pub(super) fn waits_for_split_children(&mut self, now: Instant, shard: ShardId) -> bool {
        let lags = self.lags_split_children(shard);
        let limit = self.config.peer_timeout * LAG_HOLD_TIMEOUTS;
        let Some(st) = self.states.get_mut(&shard) else { return false };
        if !lags {
            st.split.lag_hold_since = None;
            return false;
        }
        let since = *st.split.lag_hold_since.get_or_insert(now);
        now.saturating_duration_since(since) < limit
    }

    /// Where our state of `shard` stands against the base of the split
    /// or seal or merge record `update` proposes (`Off` if it has no base we can read).
    pub(super) fn split_base_check(&self, shard: ShardId, update: &Update) -> BaseCheck {
        let (Some(st), Op::Put(value)) = (self.states.get(&shard), &update.op) else { return BaseCheck::Off };
        let Some((base_seq, base_checksum)) = record_base(value) else { return BaseCheck::Off };
        let r = &st.replica;
        if r.seq() < base_seq {
            BaseCheck::Behind
        } else if r.seq() == base_seq && r.checksum().short() == base_checksum && !st.is_retired() {
            BaseCheck::At
        } else {
            BaseCheck::Off
        }
    }

    /// Periodic work, as czar: splits a shard that stayed over its budget for
    /// `split_after`; seals a bit-1 child that stayed cold with its sibling
    /// for `merge_after`; merges a bit-0 child whose sibling is sealed;
    /// unseals a sealed child whose sibling split instead.
    pub(super) fn drive_splits(&mut self, now: Instant) {
        if self.phase != Phase::Joined || self.config.max_split_depth == 0 {
            return;
        }
        let max_depth = self.config.max_split_depth.min(MAX_SPLIT_DEPTH);
        let (writes_cap, bytes_cap, keys_cap) = (
            f64::from(self.config.split_writes_per_sec),
            f64::from(self.config.split_bytes_per_sec),
            f64::from(self.config.split_keys),
        );
        // Load as (updates/s, bytes/s, keys held), against each budget's share.
        let over = |(w, b, k): (f64, f64, f64), share: f64| {
            (writes_cap > 0.0 && w > writes_cap * share)
                || (bytes_cap > 0.0 && b > bytes_cap * share)
                || (keys_cap > 0.0 && k > keys_cap * share)
        };
        let live = self.members.alive_count();
        // Worked out once, the first time a shard of ours is over the balance
        // floor or could merge.
        let mut czar_loads: Option<Option<CzarLoads>> = None;
        let mut due = Vec::new();
        let ids: Vec<ShardId> = self.states.keys().copied().collect();
        for id in ids {
            // A proposal of ours that ended without a decision here (we lost
            // the shard, and a new czar finishes it) no longer holds writes.
            let st = self.states.get_mut(&id).expect("listed");
            if st.split.proposing.is_some() && !st.critical.open_layout() {
                st.split.proposing = None;
            }
            let Some(info) = self.shards.get(id) else { continue };
            let (depth, split_from, pinned) = (info.depth(), info.split_from, info.preferred.is_some());
            let st = &self.states[&id];
            let ours = st.is_ready_czar(self.id)
                && st.replica.backed
                && st.replica.on_current_lineage()
                && !st.is_retired()
                && st.split.proposing.is_none();
            // A critical vote in progress only delays the change (the record
            // must follow the shard's state directly); it does not restart the clock.
            let free = st.critical.open_is_empty() && st.split.retry_after.is_none_or(|t| now >= t);
            if !ours {
                let st = self.states.get_mut(&id).expect("listed");
                st.split.hot_since = None;
                st.split.cold_since = None;
                continue;
            }
            let load = st.load.rates();
            let load = (load.0, load.1, st.replica.len() as f64);
            let sealed = st.is_sealed();
            let sibling = split_from.map(|f| ShardId::child(f.parent, !f.bit));
            let sib = sibling.and_then(|s| self.states.get(&s));
            let sib_live = sib.is_some_and(|s| !s.is_retired());
            let sib_split = sib.is_some_and(|s| s.split.children.is_some());
            let sib_sealed = sib
                .filter(|s| s.is_sealed() && !s.is_retired())
                .map(|s| (s.replica.seq(), s.replica.checksum().short()));
            let sib_load = sibling.and_then(|s| self.shard_load(s)).map(|l| {
                let keys = sib.map_or(0, |s| s.replica.len());
                (f64::from(l.writes_per_sec), f64::from(l.bytes_per_sec), keys as f64)
            });
            // Over budget, or (balance) over `BALANCE_FLOOR` and our busiest
            // shard while we carry more than `BALANCE_SHARE` times the mean
            // czar's bytes.
            let unbalanced = over(load, BALANCE_FLOOR)
                && czar_loads
                    .get_or_insert_with(|| self.czar_loads())
                    .as_ref()
                    .is_some_and(|l| l.busiest.get(&self.id).is_some_and(|b| b.1 == id) && l.over_share(&self.id, 0.0));
            let hot = !sealed && !pinned && depth < max_depth && live >= 2 && (over(load, 1.0) || unbalanced);
            let bit = split_from.map(|f| f.bit);
            // Cold: both siblings together under the merge share, both live
            // leaves, and the merge would not leave the parent's czar over
            // the balance share with the union over the floor (it could split
            // again for balance: the children of a balance split never merge
            // straight back).
            let union = sib_load.map(|(w, b, k)| (load.0 + w, load.1 + b, load.2 + k));
            let cold = bit == Some(true)
                && !sealed
                && sib_live
                && sib_sealed.is_none()
                && union.is_some_and(|u| {
                    !over(u, MERGE_SHARE)
                        && (!over(u, BALANCE_FLOOR) || {
                            let loads = czar_loads.get_or_insert_with(|| self.czar_loads());
                            let parent = split_from.map(|f| f.parent);
                            !loads
                                .as_ref()
                                .zip(parent)
                                .zip(sibling)
                                .is_some_and(|((l, p), sib)| self.merge_unbalances(l, p, [id, sib], u.1))
                        })
                });
            let st = self.states.get_mut(&id).expect("listed");
            if !hot {
                st.split.hot_since = None;
            }
            if !cold {
                st.split.cold_since = None;
            }
            let action = if hot {
                let since = *st.split.hot_since.get_or_insert(now);
                (now.saturating_duration_since(since) >= self.config.split_after).then_some(Layout::Split)
            } else if cold {
                let since = *st.split.cold_since.get_or_insert(now);
                (now.saturating_duration_since(since) >= self.config.merge_after).then_some(Layout::Seal(true))
            } else if bit == Some(true) && sealed && sib_split {
                Some(Layout::Seal(false))
            } else if bit == Some(false) && !sealed {
                sib_sealed.map(Layout::Merge)
            } else {
                None
            };
            if let Some(action) = action.filter(|_| free) {
                due.push((id, action));
            }
        }
        for (shard, action) in due {
            self.propose_layout(now, shard, action);
        }
    }

    /// The bytes per second of the live shards each czar holds, as this peer
    /// sees them (the czars' advertised summaries, our own measure for
    /// ours); `None` before any load is known.
    fn czar_loads(&self) -> Option<CzarLoads> {
        let mut per_czar: BTreeMap<PeerId, f64> = BTreeMap::new();
        let mut busiest: BTreeMap<PeerId, (u32, ShardId)> = BTreeMap::new();
        for (&id, st) in &self.states {
            let Some(czar) = st.replica.czar.filter(|_| !st.is_retired()) else { continue };
            let bytes = self.shard_load(id).map_or(0, |l| l.bytes_per_sec);
            *per_czar.entry(czar).or_default() += f64::from(bytes);
            let top = busiest.entry(czar).or_insert((bytes, id));
            if bytes > top.0 {
                *top = (bytes, id);
            }
        }
        let total: f64 = per_czar.values().sum();
        (total > 0.0).then(|| CzarLoads { mean: total / per_czar.len() as f64, per_czar, busiest })
    }

    /// Whether merging `children`, which carry `union` bytes per second
    /// together, into `parent` would put the parent's czar (the one the merge
    /// record would name) over the balance share.
    fn merge_unbalances(&self, loads: &CzarLoads, parent: ShardId, children: [ShardId; 2], union: f64) -> bool {
        let Some(czar) = self.layout_czar(parent) else { return false };
        // What the czar carries of the children already moves, not adds.
        let held: f64 = children
            .iter()
            .filter(|s| self.states.get(s).and_then(|st| st.replica.czar) == Some(czar))
            .map(|s| self.shard_load(*s).map_or(0.0, |l| f64::from(l.bytes_per_sec)))
            .sum();
        loads.over_share(&czar, union - held)
    }

    /// The top-ranked live (eligible) member for `shard`: the czar a split or
    /// merge record names for it.
    fn layout_czar(&self, shard: ShardId) -> Option<PeerId> {
        let live: Vec<PeerId> = self.members.alive_ids().copied().collect();
        let info = crate::shards::ShardInfo::declared(shard, "", None);
        ranking_eligible(&info, live.iter(), &self.ineligible(), 1).first().copied()
    }

    /// Proposes a layout record for `shard` (ours, ready) from our current state.
    fn propose_layout(&mut self, now: Instant, shard: ShardId, action: Layout) {
        // Our unsent updates leave first, so members reach the base before the proposal.
        self.flush_outgoing();
        let top = |id: ShardId| self.layout_czar(id);
        let st = &self.states[&shard];
        let base = (st.replica.seq(), st.replica.checksum().short());
        let (key, value) = match action {
            Layout::Split => {
                let (Some(c0), Some(c1)) = (top(ShardId::child(shard, false)), top(ShardId::child(shard, true))) else {
                    return;
                };
                let plan =
                    SplitPlan { epoch: st.replica.epoch, czars: [c0, c1], base_seq: base.0, base_checksum: base.1 };
                (SPLIT_KEY, plan.encode())
            }
            Layout::Seal(sealed) => (SEAL_KEY, seal_record(sealed, base)),
            Layout::Merge(sibling) => {
                let Some(parent) = self.shards.get(shard).and_then(|i| i.split_from).map(|f| f.parent) else {
                    return;
                };
                let Some(czar) = top(parent) else { return };
                // Above every epoch the parent and both children ever had here.
                let sib = ShardId::child(parent, true);
                let highest = [shard, sib, parent]
                    .iter()
                    .filter_map(|s| self.states.get(s))
                    .map(|s| s.replica.epoch.max(s.replica.version().epoch))
                    .max()
                    .unwrap_or(0);
                let epoch = super::unilateral_epoch(highest, &self.id);
                if epoch > crate::wire::MAX_EPOCH {
                    return;
                }
                let plan = MergePlan { epoch, czar, sibling, base_seq: base.0, base_checksum: base.1 };
                (MERGE_KEY, plan.encode())
            }
        };
        let write_id = INTERNAL_WRITE_BIT | self.next_write_id;
        self.next_write_id += 1;
        let st = self.states.get_mut(&shard).expect("listed");
        st.split.proposing = Some(write_id);
        st.split.hot_since = None;
        st.split.cold_since = None;
        let update = Update { key: key.to_vec(), op: Op::Put(value) };
        self.start_proposal(now, shard, self.id, write_id, update);
    }

    /// A proposal of ours was decided: if it was a layout record that did not
    /// commit, the shard's writes go on and the change waits `split_after`.
    pub(super) fn layout_decided(&mut self, now: Instant, shard: ShardId, write_id: u64, committed: bool) {
        let retry = now + self.config.split_after;
        let Some(st) = self.states.get_mut(&shard) else { return };
        if st.split.proposing == Some(write_id) {
            st.split.proposing = None;
            if !committed {
                st.split.retry_after = Some(retry);
            }
        }
    }

    /// Applies every split and merge record our replicas hold and have not
    /// applied yet (and undoes a split whose record a resync took away). Run
    /// after every datagram and tick.
    pub(super) fn derive_splits(&mut self, now: Instant) {
        let mut found = Vec::new();
        for (id, st) in self.states.iter_mut() {
            let v = st.replica.version();
            if st.split.checked == Some(v) {
                continue;
            }
            st.split.checked = Some(v);
            let split = st.replica.get(SPLIT_KEY).map(<[u8]>::to_vec);
            if split.is_some() != st.split.children.is_some() {
                found.push((*id, Found::Split(split)));
            }
            if st.split.merged_into.is_none() {
                if let Some(merge) = st.replica.get(MERGE_KEY) {
                    found.push((*id, Found::Merge(merge.to_vec())));
                }
            }
        }
        for (shard, what) in found {
            match what {
                Found::Split(Some(bytes)) => self.apply_split(now, shard, &bytes),
                Found::Split(None) => self.undo_split(shard),
                Found::Merge(bytes) => self.apply_merge(now, shard, &bytes),
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
        if self.misplaces_on_split() && !halves[0].is_empty() {
            let moved = halves[0].remove(0);
            halves[1].push(moved);
        }
        for (i, entries) in halves.into_iter().enumerate() {
            let child = children[i];
            // Derived before (the record came again after a resync): kept.
            // Merged back into us before: this split makes it anew.
            if self.states.get(&child).is_some_and(|c| c.split.merged_into.is_none()) {
                continue;
            }
            let mut cs = Self::fresh_shard(now, Version { epoch: plan.epoch, seq }, entries, plan.czars[i]);
            cs.replica.prev_czar = parent_czar;
            self.states.insert(child, cs);
            let name = self.shards.get(child).expect("added").name.clone();
            self.push_event(Event::ShardDeclared { shard: child, name });
            self.push_event(Event::CzarChanged { shard: child, old: None, new: plan.czars[i], epoch: plan.epoch });
        }
        let st = self.states.get_mut(&parent).expect("known");
        st.split.children = Some(children);
        st.split.proposing = None;
        st.split.hot_since = None;
        self.stats.splits += 1;
        self.push_event(Event::ShardSplit { parent, children });
        self.reroute_writes(now, &[parent]);
    }

    /// A replica that starts at `version` holding `entries`, with `czar`
    /// named by a record a majority accepted (a backed claim whose start is
    /// that state).
    fn fresh_shard(now: Instant, version: Version, entries: Vec<(Vec<u8>, Vec<u8>)>, czar: PeerId) -> ShardState {
        let mut cs = ShardState::default();
        // The parent's (or children's) versions number another shard's
        // history; values before their last change are not kept across it.
        cs.replica.install(version, entries.into_iter().map(|(k, v)| (k, v, Version::default(), Vec::new())).collect());
        cs.replica.epoch = version.epoch;
        cs.replica.czar = Some(czar);
        cs.replica.backed = true;
        cs.replica.epoch_start_seq = version.seq;
        cs.replica.epoch_start_checksum = cs.replica.checksum().short();
        cs.replica.epoch_start_trusted = true;
        cs.czar_since = now;
        cs
    }

    /// Brings back the parent of the bit-0 child `shard` from its state and
    /// its sealed sibling's, as the merge record says; waits (does nothing)
    /// until we hold the sibling's sealed state.
    fn apply_merge(&mut self, now: Instant, shard: ShardId, record: &[u8]) {
        let from = self.shards.get(shard).and_then(|i| i.split_from);
        let (Some(plan), Some(from)) = (MergePlan::decode(record), from.filter(|f| !f.bit)) else {
            self.stats.drop(DropReason::BadSplit);
            return;
        };
        let parent = from.parent;
        let sibling = ShardId::child(parent, true);
        let ready = self
            .states
            .get(&sibling)
            .is_some_and(|s| s.is_sealed() && (s.replica.seq(), s.replica.checksum().short()) == plan.sibling);
        if !ready || !self.states.contains_key(&parent) {
            // Not yet: look again when anything changes (the sibling repairs).
            self.states.get_mut(&shard).expect("known").split.checked = None;
            return;
        }
        let entries: Vec<(Vec<u8>, Vec<u8>)> = [shard, sibling]
            .iter()
            .flat_map(|s| self.states[s].replica.entries())
            .filter(|(k, _)| !k.starts_with(RESERVED_KEY_PREFIX))
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        let seq = self.states[&shard].replica.seq();
        let old_czar = self.states[&parent].replica.czar;
        let mut ps = Self::fresh_shard(now, Version { epoch: plan.epoch, seq }, entries, plan.czar);
        ps.replica.prev_czar = self.states[&shard].replica.czar;
        // What we applied as the parent's czar before it split still answers
        // its writers' retries (see `handle_forward`).
        let old = self.states.get_mut(&parent).expect("known");
        ps.applied_forwards = std::mem::take(&mut old.applied_forwards);
        ps.applied_order = std::mem::take(&mut old.applied_order);
        self.states.insert(parent, ps);
        for child in [shard, sibling] {
            let st = self.states.get_mut(&child).expect("known");
            st.split.merged_into = Some(parent);
            st.split.proposing = None;
        }
        self.stats.merges += 1;
        self.push_event(Event::CzarChanged { shard: parent, old: old_czar, new: plan.czar, epoch: plan.epoch });
        self.push_event(Event::ShardMerged { children: [shard, sibling], parent });
        self.reroute_writes(now, &[shard, sibling]);
    }

    /// Writes waiting for `from` shards go to the shards that hold their keys now.
    fn reroute_writes(&mut self, now: Instant, from: &[ShardId]) {
        let moved: Vec<(u64, bool, ShardId)> = self
            .pending
            .iter()
            .map(|(id, p)| (*id, false, p))
            .chain(self.pending_critical.iter().map(|(id, p)| (*id, true, p)))
            .filter(|(_, _, p)| from.contains(&p.shard))
            .map(|(id, critical, p)| (id, critical, self.leaf_of(p.shard, &p.update.key)))
            .collect();
        for (id, critical, leaf) in moved {
            let p = if critical { self.pending_critical.get_mut(&id) } else { self.pending.get_mut(&id) };
            if let Some(p) = p {
                // Sent already: the czar of the shard we sent it to may have
                // applied it, its acknowledgement lost or still on its way.
                // It is asked first, so the write is not applied twice.
                if !critical && p.via.is_none() && p.last_sent.is_some() {
                    let czar = self.states.get(&p.shard).and_then(|st| st.replica.czar);
                    p.via = czar.map(|c| (p.shard, c));
                }
                p.shard = leaf;
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

/// Who carries what, for the balance rule: the bytes per second of each
/// czar's live shards, their mean over czars, and each czar's busiest shard.
struct CzarLoads {
    per_czar: BTreeMap<PeerId, f64>,
    mean: f64,
    busiest: BTreeMap<PeerId, (u32, ShardId)>,
}

impl CzarLoads {
    /// Whether `czar`, carrying `extra` bytes per second more, carries over
    /// `BALANCE_SHARE` times the mean czar's.
    fn over_share(&self, czar: &PeerId, extra: f64) -> bool {
        self.per_czar.get(czar).copied().unwrap_or(0.0) + extra > BALANCE_SHARE * self.mean
    }
}

/// A layout change a czar proposes.
#[derive(Debug, Clone, Copy)]
enum Layout {
    Split,
    /// Seal (true) or unseal (false).
    Seal(bool),
    /// Merge with the sibling sealed at this (seq, short checksum).
    Merge((u64, u64)),
}

/// A layout record found in a replica.
enum Found {
    Split(Option<Vec<u8>>),
    Merge(Vec<u8>),
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
    fn records_read_back_with_their_base_last() {
        let merge = MergePlan { epoch: 5, czar: PeerId([3; 16]), sibling: (8, 9), base_seq: 10, base_checksum: 11 };
        assert_eq!(MergePlan::decode(&merge.encode()), Some(merge));
        assert_eq!(record_base(&merge.encode()), Some((10, 11)));
        assert_eq!(record_base(&seal_record(true, (4, 6))), Some((4, 6)));
        let split = SplitPlan { epoch: 1, czars: [PeerId([1; 16]); 2], base_seq: 2, base_checksum: 3 };
        assert_eq!(record_base(&split.encode()), Some((2, 3)));
        assert_eq!(record_base(&[1; 16]), None);
        assert_eq!(MergePlan::decode(&split.encode()), None);
    }

    #[test]
    fn layout_keys_are_reserved() {
        for key in [SPLIT_KEY, SEAL_KEY, MERGE_KEY] {
            assert!(key.starts_with(RESERVED_KEY_PREFIX) && is_layout_key(key));
        }
        assert!(!is_layout_key(b"split"));
    }
}
