//! Shards: the game's named slices of state, and who should hold each one.
//!
//! A shard's czar and ranked backups come from rendezvous hashing of
//! (shard id, peer id) with a pinned hash over explicitly encoded bytes, so
//! every peer with the same live view computes the same ranking with no
//! messages. The ranking only says who *should* claim a shard; who *is* czar is
//! settled by epoch-numbered claims in `replica` and `peer`.

use std::collections::BTreeMap;
use std::fmt;

use crate::identity::PeerId;
use crate::wire::{ShardDecl, MAX_SHARD_NAME_BYTES};

const SHARD_ID_CONTEXT: &str = "anarchy 2026 shard id v1";
const CHILD_ID_CONTEXT: &str = "anarchy 2026 shard child id v1";
const KEY_HASH_CONTEXT: &str = "anarchy 2026 key hash v1";
const RANK_CONTEXT: &str = "anarchy 2026 rendezvous rank v1";

/// How deep a shard family may split: a family has at most 2^16 leaves.
pub const MAX_SPLIT_DEPTH: u8 = 16;

/// A shard's id: derived from its name, the same on every peer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(pub u64);

impl ShardId {
    /// The id of the shard called `name`.
    pub fn from_name(name: &str) -> Self {
        let h = blake3::derive_key(SHARD_ID_CONTEXT, name.as_bytes());
        ShardId(u64::from_le_bytes(h[..8].try_into().expect("8 bytes")))
    }
}

impl ShardId {
    /// The id of the child holding `parent`'s keys whose hash bit at the
    /// parent's depth is `bit` (see [`key_bit`]). Pinned: BLAKE3 in
    /// key-derivation mode over the parent id (8 bytes LE) then the bit (one
    /// byte), first 8 bytes read LE. A different context from
    /// [`ShardId::from_name`], so no declared name can produce a child's id.
    pub fn child(parent: ShardId, bit: bool) -> Self {
        let mut h = blake3::Hasher::new_derive_key(CHILD_ID_CONTEXT);
        h.update(&parent.0.to_le_bytes()).update(&[u8::from(bit)]);
        ShardId(u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes")))
    }
}

/// The pinned 64-bit hash of a key that places it in a shard family: BLAKE3
/// in key-derivation mode over the key bytes, first 8 bytes read LE.
pub fn key_hash(key: &[u8]) -> u64 {
    let h = blake3::derive_key(KEY_HASH_CONTEXT, key);
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
}

/// Which child of a shard at `depth` holds `key`: bit `depth` of
/// [`key_hash`], counted from the most significant.
pub fn key_bit(key: &[u8], depth: u8) -> bool {
    debug_assert!(depth < 64);
    (key_hash(key) >> (63 - u32::from(depth))) & 1 == 1
}

impl From<&str> for ShardId {
    fn from(name: &str) -> Self {
        ShardId::from_name(name)
    }
}

impl fmt::Debug for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShardId({:016x})", self.0)
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A declared shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// Its id (from the name).
    pub id: ShardId,
    /// The game's name for it.
    pub name: String,
    /// A peer that gets the shard whenever it is live. A pinned shard never
    /// splits.
    pub preferred: Option<PeerId>,
    /// For a shard made by a split: its parent, and which half of the
    /// parent's keys it holds. `None` for a shard the game declared.
    pub split_from: Option<SplitFrom>,
}

/// Where a shard made by a split comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitFrom {
    /// The shard that split.
    pub parent: ShardId,
    /// The parent's depth: the child holds the keys whose [`key_bit`] at this
    /// depth is `bit`.
    pub depth: u8,
    /// Which half.
    pub bit: bool,
}

impl ShardInfo {
    /// A shard the game declared (not made by a split).
    pub fn declared(id: ShardId, name: &str, preferred: Option<PeerId>) -> Self {
        ShardInfo { id, name: name.to_owned(), preferred, split_from: None }
    }

    /// How many splits separate this shard from the shard the game declared.
    pub fn depth(&self) -> u8 {
        self.split_from.map_or(0, |s| s.depth + 1)
    }

    /// The shard's declaration as it travels on the wire.
    pub fn decl(&self) -> ShardDecl {
        ShardDecl { name: self.name.clone(), preferred: self.preferred }
    }
}

/// Why a shard could not be declared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Names must be 1 to 64 bytes of UTF-8.
    #[error("shard name must be 1 to {MAX_SHARD_NAME_BYTES} bytes, got {0}")]
    BadName(usize),
}

/// The rendezvous score of `peer` for `shard`. Pinned: BLAKE3 in key-derivation
/// mode over the shard id (8 bytes LE) then the peer id (16 bytes), first 8
/// bytes read LE. Changing it changes every czar assignment: it is protocol.
pub fn rank_score(shard: ShardId, peer: &PeerId) -> u64 {
    // Pure, and asked for on every heartbeat and ranking: memoised per thread
    // (bounded; the answer never depends on the cache).
    thread_local! {
        static SCORES: std::cell::RefCell<std::collections::HashMap<(u64, [u8; 16]), u64>> =
            std::cell::RefCell::new(std::collections::HashMap::new());
    }
    const MAX_CACHED_SCORES: usize = 1 << 20;
    SCORES.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(score) = cache.get(&(shard.0, peer.0)) {
            return *score;
        }
        let mut hasher = blake3::Hasher::new_derive_key(RANK_CONTEXT);
        hasher.update(&shard.0.to_le_bytes());
        hasher.update(&peer.0);
        let out = hasher.finalize();
        let score = u64::from_le_bytes(out.as_bytes()[..8].try_into().expect("8 bytes"));
        if cache.len() >= MAX_CACHED_SCORES {
            cache.clear();
        }
        cache.insert((shard.0, peer.0), score);
        score
    })
}

/// How strongly `peer` may hold `shard`: the preferred czar beats everyone,
/// then the higher rendezvous score. Total and view-independent, so it breaks
/// ties between two claims of the same epoch the same way on every peer.
pub fn claim_strength(info: &ShardInfo, peer: &PeerId) -> (bool, u64, PeerId) {
    (info.preferred == Some(*peer), rank_score(info.id, peer), *peer)
}

/// The ranking of `live` peers for `shard`, strongest first: element 0 is who
/// should be czar, the next ones the backups in order. At most `take` peers.
pub fn ranking<'a>(info: &ShardInfo, live: impl IntoIterator<Item = &'a PeerId>, take: usize) -> Vec<PeerId> {
    let mut scored: Vec<((bool, u64, PeerId), PeerId)> =
        live.into_iter().map(|p| (claim_strength(info, p), *p)).collect();
    if take == 0 {
        return Vec::new();
    }
    // Only the top `take` are wanted: select them, then sort just those.
    if take < scored.len() {
        scored.select_nth_unstable_by_key(take - 1, |s| std::cmp::Reverse(s.0));
        scored.truncate(take);
    }
    scored.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
    scored.into_iter().map(|(_, p)| p).collect()
}

/// [`ranking`] with czar eligibility (`docs/PROTOCOL.md` §6.5): the peers of
/// `live` in `ineligible` (sorted) come after all the others, ranked among
/// themselves as usual. With nobody ineligible the order is [`ranking`]'s.
pub fn ranking_eligible<'a>(
    info: &ShardInfo,
    live: impl IntoIterator<Item = &'a PeerId>,
    ineligible: &[PeerId],
    take: usize,
) -> Vec<PeerId> {
    if ineligible.is_empty() {
        return ranking(info, live, take);
    }
    let (late, early): (Vec<&PeerId>, Vec<&PeerId>) =
        live.into_iter().partition(|p| ineligible.binary_search(p).is_ok());
    let mut top = ranking(info, early, take);
    if top.len() < take {
        top.extend(ranking(info, late, take - top.len()));
    }
    top
}

/// Whether `me` is first in [`ranking_eligible`] of `candidates` (`me`
/// included) for `shard`, without ranking them all: it stops at the first
/// candidate that beats `me`, so it costs a few hashes unless `me` is first.
pub fn ranks_first<'a>(
    info: &ShardInfo,
    candidates: impl IntoIterator<Item = &'a PeerId>,
    ineligible: &[PeerId],
    me: &PeerId,
) -> bool {
    let key = |p: &PeerId| (ineligible.binary_search(p).is_err(), claim_strength(info, p));
    let mine = key(me);
    let mut listed = false;
    for p in candidates {
        if p == me {
            listed = true;
        } else if key(p) > mine {
            return false;
        }
    }
    listed
}

/// The top-ranked live peers of every shard, by shard id.
pub type RankedTops = BTreeMap<ShardId, Vec<PeerId>>;

/// [`ranking`] of every shard for a live view that changes a member at a
/// time, kept up to date incrementally.
///
/// Recomputing every shard's ranking over every live peer on each membership
/// change costs shards × peers hashes, and a session of n peers sees about n
/// changes while it forms: cubic work across the session. A view change here
/// costs a merge of the two sorted id lists, plus a full ranking only for the
/// shards whose top peers left. The answer is always that of [`ranking`]: a
/// peer outside the old top is beaten by all of it, so if none of the top
/// left, the new top is the best of the old top and the newcomers.
#[derive(Debug, Clone, Default)]
pub struct RankCache {
    /// Shard map generation and `take` the tops were computed for.
    key: Option<(u64, usize)>,
    /// The live view the tops were computed for, sorted.
    live: Vec<PeerId>,
    tops: RankedTops,
}

impl RankCache {
    /// The `take` strongest of `live` for every shard of `shards`. `live` must
    /// be sorted and free of duplicates (as member ids in id order are).
    pub fn tops(&mut self, shards: &ShardMap, live: &[PeerId], take: usize) -> &RankedTops {
        debug_assert!(live.windows(2).all(|w| w[0] < w[1]), "live ids sorted and unique");
        let key = (shards.generation(), take);
        if self.key != Some(key) {
            self.tops = shards.iter().map(|info| (info.id, ranking(info, live.iter(), take))).collect();
            self.key = Some(key);
            self.live = live.to_vec();
            return &self.tops;
        }
        if self.live.as_slice() == live {
            return &self.tops;
        }
        let (added, removed) = sorted_diff(&self.live, live);
        for info in shards.iter() {
            let top = self.tops.entry(info.id).or_default();
            if top.iter().any(|p| removed.binary_search(p).is_ok()) {
                *top = ranking(info, live.iter(), take);
            } else if !added.is_empty() {
                *top = ranking(info, top.iter().chain(added.iter()), take);
            }
        }
        self.live.clear();
        self.live.extend_from_slice(live);
        &self.tops
    }

    /// The tops last computed by [`RankCache::tops`].
    pub fn current(&self) -> &RankedTops {
        &self.tops
    }
}

/// The ids in `new` but not `old`, and those in `old` but not `new`, both
/// sorted; the inputs are sorted.
fn sorted_diff(old: &[PeerId], new: &[PeerId]) -> (Vec<PeerId>, Vec<PeerId>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                removed.push(*a);
                i += 1;
            }
            (Some(a), None) => {
                removed.push(*a);
                i += 1;
            }
            (_, Some(b)) => {
                added.push(*b);
                j += 1;
            }
            (None, None) => unreachable!("loop condition"),
        }
    }
    (added, removed)
}

/// Every shard this peer knows of, in id order.
#[derive(Debug, Clone, Default)]
pub struct ShardMap {
    shards: BTreeMap<ShardId, ShardInfo>,
    /// The digest, computed on demand and cleared by every declaration.
    digest: std::cell::Cell<Option<u64>>,
    /// Bumped by every change, splits included (the digest leaves those out).
    generation: u64,
}

impl ShardMap {
    /// Adds or merges a declaration. Returns the shard's id and whether the
    /// map changed. Conflicting preferred czars resolve to the larger one, so
    /// every peer ends with the same map whatever order declarations arrive in.
    pub fn declare(&mut self, name: &str, preferred: Option<PeerId>) -> Result<(ShardId, bool), ShardError> {
        if name.is_empty() || name.len() > MAX_SHARD_NAME_BYTES {
            return Err(ShardError::BadName(name.len()));
        }
        let id = ShardId::from_name(name);
        let changed = match self.shards.get_mut(&id) {
            Some(info) => {
                let merged = info.preferred.max(preferred);
                let changed = merged != info.preferred;
                info.preferred = merged;
                changed
            }
            None => {
                self.shards.insert(id, ShardInfo::declared(id, name, preferred));
                true
            }
        };
        if changed {
            // A declaration repeated as it was keeps the cached digest and rankings.
            self.digest.set(None);
            self.generation += 1;
        }
        Ok((id, changed))
    }

    /// Adds the two children of a split of `parent` (idempotent), named
    /// `parent/0` and `parent/1`. Children are not declarations: every peer
    /// derives them from the split in the parent's log, so they stay out of
    /// [`ShardMap::digest`] and of the lists peers exchange.
    pub fn add_children(&mut self, parent: ShardId) -> Option<[ShardId; 2]> {
        let info = self.shards.get(&parent)?;
        let depth = info.depth();
        let name = info.name.clone();
        let ids = [ShardId::child(parent, false), ShardId::child(parent, true)];
        for (bit, id) in [(false, ids[0]), (true, ids[1])] {
            if !self.shards.contains_key(&id) {
                self.generation += 1;
                let name = format!("{name}/{}", u8::from(bit));
                let split_from = Some(SplitFrom { parent, depth, bit });
                self.shards.insert(id, ShardInfo { id, name, preferred: None, split_from });
            }
        }
        Some(ids)
    }

    /// Removes a shard made by a split (a split undone); declared shards stay.
    pub fn remove_child(&mut self, id: ShardId) {
        if self.shards.get(&id).is_some_and(|i| i.split_from.is_some()) {
            self.shards.remove(&id);
            self.generation += 1;
        }
    }

    /// The shards the game declared (what peers exchange), in id order.
    pub fn declared_shards(&self) -> impl Iterator<Item = &ShardInfo> {
        self.shards.values().filter(|i| i.split_from.is_none())
    }

    /// Changes with every declaration and split: whether cached rankings are stale.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The shard with this id.
    pub fn get(&self, id: ShardId) -> Option<&ShardInfo> {
        self.shards.get(&id)
    }

    /// Whether the shard is declared.
    pub fn contains(&self, id: ShardId) -> bool {
        self.shards.contains_key(&id)
    }

    /// All shards, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &ShardInfo> {
        self.shards.values()
    }

    /// How many shards.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    /// Whether no shard is declared.
    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// A digest of the whole map, compared in heartbeats to spot differences.
    pub fn digest(&self) -> u64 {
        if let Some(d) = self.digest.get() {
            return d;
        }
        let mut h = blake3::Hasher::new_derive_key("anarchy 2026 shard map digest v1");
        for info in self.declared_shards() {
            h.update(&info.id.0.to_le_bytes());
            match info.preferred {
                Some(p) => h.update(&[1]).update(&p.0),
                None => h.update(&[0]),
            };
        }
        let d = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
        self.digest.set(Some(d));
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    fn peers(n: u64) -> Vec<PeerId> {
        (0..n).map(|i| Keypair::from_seed(i).peer_id()).collect()
    }

    #[test]
    fn rank_score_is_pinned() {
        // If this changes, peers built from different versions disagree on every czar.
        let id = PeerId([1; 16]);
        assert_eq!(rank_score(ShardId(42), &id), rank_score(ShardId(42), &id));
        assert_eq!(ShardId::from_name("world"), ShardId::from_name("world"));
        let expected = {
            let mut h = blake3::Hasher::new_derive_key(RANK_CONTEXT);
            h.update(&42u64.to_le_bytes()).update(&[1; 16]);
            u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap())
        };
        assert_eq!(rank_score(ShardId(42), &id), expected);
    }

    #[test]
    fn ranks_first_agrees_with_the_full_ranking() {
        let ps = peers(24);
        for shard in 0..40u64 {
            let preferred = (shard % 5 == 0).then(|| ps[(shard % 24) as usize]);
            let info = ShardInfo::declared(ShardId(shard * 7919), "s", preferred);
            // Candidates: a varying subset; ineligible: another.
            let candidates: Vec<PeerId> =
                ps.iter().enumerate().filter(|(i, _)| (i + shard as usize) % 3 != 0).map(|(_, p)| *p).collect();
            let mut ineligible: Vec<PeerId> =
                ps.iter().enumerate().filter(|(i, _)| (i * 5 + shard as usize) % 4 == 0).map(|(_, p)| *p).collect();
            if shard % 2 == 0 {
                ineligible.clear();
            }
            ineligible.sort();
            let first = ranking_eligible(&info, candidates.iter(), &ineligible, 1);
            for me in &ps {
                assert_eq!(
                    ranks_first(&info, candidates.iter(), &ineligible, me),
                    first.first() == Some(me),
                    "shard {shard}"
                );
            }
        }
        let info = ShardInfo::declared(ShardId(1), "s", None);
        assert!(!ranks_first(&info, [].iter(), &[], &ps[0]), "not a candidate");
        assert!(ranks_first(&info, ps[..1].iter(), &[], &ps[0]), "alone");
    }

    #[test]
    fn ranking_does_not_depend_on_input_order() {
        let ps = peers(10);
        let info = ShardInfo::declared(ShardId::from_name("w"), "w", None);
        let a = ranking(&info, ps.iter(), 3);
        let b = ranking(&info, ps.iter().rev(), 3);
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn preferred_czar_ranks_first_while_live() {
        let ps = peers(10);
        let info = ShardInfo::declared(ShardId::from_name("avatar"), "avatar", Some(ps[7]));
        assert_eq!(ranking(&info, ps.iter(), 1), vec![ps[7]]);
        let without: Vec<_> = ps.iter().filter(|p| **p != ps[7]).collect();
        assert_ne!(ranking(&info, without, 1), vec![ps[7]]);
    }

    #[test]
    fn removing_a_non_czar_does_not_move_the_czar() {
        let ps = peers(20);
        let info = ShardInfo::declared(ShardId::from_name("s"), "s", None);
        let czar = ranking(&info, ps.iter(), 1)[0];
        for gone in ps.iter().filter(|p| **p != czar) {
            let rest: Vec<_> = ps.iter().filter(|p| *p != gone).collect();
            assert_eq!(ranking(&info, rest, 1)[0], czar);
        }
    }

    #[test]
    fn ineligible_peers_rank_after_every_eligible_one_even_when_preferred() {
        let ps = peers(6);
        let info = ShardInfo::declared(ShardId::from_name("s"), "s", Some(ps[2]));
        let plain = ranking(&info, ps.iter(), 6);
        assert_eq!(plain[0], ps[2], "the preferred czar comes first");
        let mut ineligible = vec![ps[2], ps[plain.iter().position(|p| *p != ps[2]).unwrap()]];
        ineligible.sort();
        let ranked = ranking_eligible(&info, ps.iter(), &ineligible, 6);
        let eligible: Vec<PeerId> = plain.iter().filter(|p| !ineligible.contains(p)).copied().collect();
        assert_eq!(ranked[..4], eligible[..], "eligible peers in their usual order");
        assert!(ranked[4..].iter().all(|p| ineligible.contains(p)), "then the others");
        // They fill the ranking only when too few eligible peers are live.
        assert_eq!(ranking_eligible(&info, ps.iter(), &ineligible, 3), eligible[..3].to_vec());
        assert_eq!(ranking_eligible(&info, ps.iter(), &[], 3), plain[..3].to_vec());
    }

    #[test]
    fn declarations_merge_the_same_in_any_order() {
        let ps = peers(2);
        let mut a = ShardMap::default();
        let mut b = ShardMap::default();
        a.declare("x", Some(ps[0])).unwrap();
        a.declare("x", Some(ps[1])).unwrap();
        b.declare("x", Some(ps[1])).unwrap();
        b.declare("x", Some(ps[0])).unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.declare("", None), Err(ShardError::BadName(0)));
    }

    #[test]
    fn rank_cache_matches_a_full_ranking_through_view_changes() {
        let ps = peers(60);
        let mut map = ShardMap::default();
        for i in 0..12 {
            let preferred = (i % 5 == 0).then(|| ps[i * 3]);
            map.declare(&format!("s{i}"), preferred).unwrap();
        }
        let mut cache = RankCache::default();
        let mut state: u64 = 7;
        let mut live: Vec<PeerId> = ps[..10].to_vec();
        live.sort();
        for step in 0..400 {
            // A seeded walk: mostly single joins and leaves, sometimes several.
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let r = (state >> 33) as usize;
            let p = ps[r % ps.len()];
            match live.binary_search(&p) {
                Ok(i) if live.len() > 1 => {
                    live.remove(i);
                }
                Ok(_) => {}
                Err(i) => live.insert(i, p),
            }
            if step % 37 == 0 {
                live.retain(|q| q.0[0] % 3 != (r % 3) as u8);
            }
            let take = if step % 101 == 0 { 2 } else { 3 };
            let tops = cache.tops(&map, &live, take).clone();
            for info in map.iter() {
                assert_eq!(tops[&info.id], ranking(info, live.iter(), take), "step {step}");
            }
        }
    }
}
