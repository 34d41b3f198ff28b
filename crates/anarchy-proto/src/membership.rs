//! Membership: who is in the session, where they are, and when we last heard
//! from them.
//!
//! Records merge by incarnation (higher wins; at equal incarnation `Left` wins
//! over `Alive`), so gossip converges whatever order it arrives in. A peer that
//! left stays as a tombstone for a while so stale gossip cannot resurrect it.
//! This module decides nothing about shards; `peer` reacts to its changes.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::identity::{PeerId, PublicKey};
use crate::time::Instant;
use crate::wire::{MemberRecord, MemberStatus};

/// Why a peer is no longer a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaveReason {
    /// It announced its leave.
    Graceful,
    /// We heard nothing from it for longer than the peer timeout.
    Timeout,
    /// Another member told us it left.
    Gossip,
    /// It went silent and a majority of members confirmed the silence.
    Confirmed,
}

/// One member as this peer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub id: PeerId,
    /// Its public key.
    pub public_key: PublicKey,
    /// Where we send to it.
    pub addr: SocketAddr,
    /// Its incarnation.
    pub incarnation: u32,
    /// Alive or left.
    pub status: MemberStatus,
    /// When we last received anything from it (or learned of it).
    pub last_heard: Instant,
    /// When it was marked left (for purging the tombstone).
    pub left_at: Option<Instant>,
    /// Whether we currently suspect it (silent past the suspicion threshold).
    pub suspected: bool,
    /// When it (last) became a live member in our view.
    pub known_since: Instant,
    /// Whether it left only in our own view, by local timeout: such a "soft"
    /// tombstone is revived by direct contact at the same incarnation (a healed
    /// partition, a resumed process: see `Membership::revive`) and is never
    /// gossiped. Second-hand records do not revive it, or peers whose timeouts
    /// fire at different moments would keep reviving a cut-off peer for each other.
    pub soft_left: bool,
    /// Whether it may be ranked for czar and backup slots ahead of others
    /// (`Config::czar_eligible`, `docs/PROTOCOL.md` §6.5).
    pub czar_eligible: bool,
    /// Whether its own goodbye (a `Leave` frame) is what made it left here.
    pub said_goodbye: bool,
}

impl Member {
    /// The record gossiped about this member.
    pub fn record(&self) -> MemberRecord {
        MemberRecord {
            id: self.id,
            public_key: self.public_key,
            addr: self.addr,
            incarnation: self.incarnation,
            status: self.status,
            czar_eligible: self.czar_eligible,
        }
    }

    /// Whether it is taking part.
    pub fn is_alive(&self) -> bool {
        self.status == MemberStatus::Alive
    }

    /// Live and not suspected: *healthy* (`docs/PROTOCOL.md` §6.9).
    pub fn is_healthy(&self) -> bool {
        self.is_alive() && !self.suspected
    }
}

/// One live member's share of the member view digest: a 64-bit mix of its id
/// and incarnation. The digest is the wrapping sum of these over live members,
/// so it costs a few nanoseconds a member (it is recomputed after every view
/// change, which a forming session of n peers sees n times) and does not
/// depend on order. It only tells two views apart for anti-entropy; nothing
/// trusts it.
pub fn view_entry_hash(id: &PeerId, incarnation: u32) -> u64 {
    fn mix(mut x: u64) -> u64 {
        // The splitmix64 finaliser.
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
    let lo = u64::from_le_bytes(id.0[..8].try_into().expect("8 bytes"));
    let hi = u64::from_le_bytes(id.0[8..].try_into().expect("8 bytes"));
    mix(lo ^ mix(hi ^ mix(u64::from(incarnation) ^ 0x616e_6172_6368_7931)))
}

/// Mixed into a live member's share of the digest when it is not czar-eligible.
const NOT_ELIGIBLE_MARK: u64 = 0x6e6f_7463_7a61_7221;

/// A member's share of the live-view digest and of the live count: its entry
/// hash and 1 when alive, nothing otherwise. A member that is not
/// czar-eligible counts apart: views that differ only in that flag differ in
/// digest, so anti-entropy fixes them.
fn share(m: &Member) -> (u64, usize) {
    if !m.is_alive() {
        return (0, 0);
    }
    let flag = if m.czar_eligible { 0 } else { NOT_ELIGIBLE_MARK };
    (view_entry_hash(&m.id, m.incarnation) ^ flag, 1)
}

/// What merging a record changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOutcome {
    /// Nothing new.
    Unchanged,
    /// A peer we did not count as alive now is.
    Joined,
    /// A live peer is now gone.
    Left,
    /// Same status, newer details (address, incarnation).
    Updated,
}

/// The member list, this peer included.
#[derive(Debug, Clone)]
pub struct Membership {
    me: PeerId,
    members: BTreeMap<PeerId, Member>,
    /// The live-view digest, computed on demand and cleared by every change
    /// to who is alive or at which incarnation (it is compared on every heartbeat).
    digest: std::cell::Cell<Option<u64>>,
    /// Cached live count (asked for per member on every tick); reset with `digest`.
    alive_count: std::cell::Cell<Option<usize>>,
}

impl Membership {
    /// A list holding only ourselves.
    pub fn new(me: Member) -> Self {
        let id = me.id;
        let mut members = BTreeMap::new();
        members.insert(id, me);
        Membership { me: id, members, digest: std::cell::Cell::new(None), alive_count: std::cell::Cell::new(None) }
    }

    /// Our own id.
    pub fn me(&self) -> PeerId {
        self.me
    }

    /// Our own record.
    pub fn myself(&self) -> &Member {
        &self.members[&self.me]
    }

    /// Our own record, to change.
    pub fn myself_mut(&mut self) -> &mut Member {
        self.invalidate();
        self.members.get_mut(&self.me).expect("we are always in our own list")
    }

    /// A member by id (alive or tombstone).
    pub fn get(&self, id: &PeerId) -> Option<&Member> {
        self.members.get(id)
    }

    /// A member by id, to change its bookkeeping (address, last heard,
    /// suspicion). Status and incarnation change only through `merge`,
    /// `mark_left` and `revive`, which keep the digest right.
    pub fn get_mut(&mut self, id: &PeerId) -> Option<&mut Member> {
        self.members.get_mut(id)
    }

    /// Whether `id` is a live member.
    pub fn is_alive(&self, id: &PeerId) -> bool {
        self.members.get(id).is_some_and(Member::is_alive)
    }

    /// Whether `id` is a live member we do not suspect.
    pub fn is_healthy(&self, id: &PeerId) -> bool {
        self.members.get(id).is_some_and(Member::is_healthy)
    }

    /// All records, tombstones included, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Live members (ourselves included), in id order.
    pub fn alive(&self) -> impl Iterator<Item = &Member> {
        self.members.values().filter(|m| m.is_alive())
    }

    /// Live member ids (ourselves included), in id order.
    pub fn alive_ids(&self) -> impl Iterator<Item = &PeerId> {
        self.alive().map(|m| &m.id)
    }

    /// Live members other than ourselves.
    pub fn others(&self) -> impl Iterator<Item = &Member> {
        let me = self.me;
        self.alive().filter(move |m| m.id != me)
    }

    /// Number of live members, ourselves included.
    pub fn alive_count(&self) -> usize {
        if let Some(n) = self.alive_count.get() {
            return n;
        }
        let n = self.alive().count();
        self.alive_count.set(Some(n));
        n
    }

    /// Forgets the cached digest and count: the live view may have changed.
    fn invalidate(&self) {
        self.digest.set(None);
        self.alive_count.set(None);
    }

    /// What member `id` adds to the digest and the live count now.
    fn share_of(&self, id: &PeerId) -> (u64, usize) {
        self.members.get(id).map_or((0, 0), share)
    }

    /// One member's share went from `before` to `after`: the digest is a sum
    /// of shares, so the cached digest and count follow without a pass over
    /// every member (at 1000 members, joins made that pass most of a peer's work).
    fn adjust(&self, before: (u64, usize), after: (u64, usize)) {
        if let Some(d) = self.digest.get() {
            self.digest.set(Some(d.wrapping_sub(before.0).wrapping_add(after.0)));
        }
        if let Some(n) = self.alive_count.get() {
            self.alive_count.set(Some(n - before.1 + after.1));
        }
    }

    /// Digest of the live view: ids and incarnations, in id order.
    pub fn digest(&self) -> u64 {
        if let Some(d) = self.digest.get() {
            return d;
        }
        let d = self.compute_digest();
        self.digest.set(Some(d));
        d
    }

    fn compute_digest(&self) -> u64 {
        self.members.values().fold(0u64, |sum, m| sum.wrapping_add(share(m).0))
    }

    /// Live members that are not czar-eligible, in id order.
    pub fn ineligible_ids(&self) -> impl Iterator<Item = &PeerId> {
        self.alive().filter(|m| !m.czar_eligible).map(|m| &m.id)
    }

    /// Merges a gossiped record. Records about ourselves are never merged
    /// here: the caller refutes them.
    pub fn merge(&mut self, rec: &MemberRecord, now: Instant) -> MergeOutcome {
        let before = self.share_of(&rec.id);
        let outcome = self.merge_record(rec, now);
        self.adjust(before, self.share_of(&rec.id));
        outcome
    }

    /// [`Membership::merge`] without the cache upkeep. `Unchanged` leaves the
    /// live ids and their incarnations as they were.
    fn merge_record(&mut self, rec: &MemberRecord, now: Instant) -> MergeOutcome {
        debug_assert_ne!(rec.id, self.me, "records about ourselves are refuted, not merged");
        match self.members.get_mut(&rec.id) {
            None => {
                let alive = rec.status == MemberStatus::Alive;
                self.members.insert(
                    rec.id,
                    Member {
                        id: rec.id,
                        public_key: rec.public_key,
                        addr: rec.addr,
                        incarnation: rec.incarnation,
                        status: rec.status,
                        last_heard: now,
                        left_at: (!alive).then_some(now),
                        suspected: false,
                        known_since: now,
                        soft_left: false,
                        czar_eligible: rec.czar_eligible,
                        said_goodbye: false,
                    },
                );
                if alive {
                    MergeOutcome::Joined
                } else {
                    MergeOutcome::Unchanged
                }
            }
            Some(m) => {
                let newer = rec.incarnation > m.incarnation;
                let same = rec.incarnation == m.incarnation;
                if newer {
                    let was_alive = m.is_alive();
                    m.incarnation = rec.incarnation;
                    m.addr = rec.addr;
                    m.status = rec.status;
                    m.public_key = rec.public_key;
                    m.czar_eligible = rec.czar_eligible;
                    m.suspected = false;
                    m.soft_left = false;
                    if m.is_alive() && !was_alive {
                        m.known_since = now;
                    }
                    if m.is_alive() {
                        m.last_heard = now;
                        m.left_at = None;
                    } else {
                        m.left_at = Some(now);
                    }
                    match (was_alive, m.is_alive()) {
                        (false, true) => MergeOutcome::Joined,
                        (true, false) => MergeOutcome::Left,
                        _ => MergeOutcome::Updated,
                    }
                } else if same && rec.status == MemberStatus::Left && (m.is_alive() || m.soft_left) {
                    let was_alive = m.is_alive();
                    m.status = MemberStatus::Left;
                    m.left_at = Some(now);
                    m.soft_left = false;
                    if was_alive {
                        MergeOutcome::Left
                    } else {
                        MergeOutcome::Unchanged
                    }
                } else if same && rec.status == MemberStatus::Alive && !rec.czar_eligible && m.czar_eligible {
                    // Eligibility is fixed for a member's life, but a member
                    // first learned from a heartbeat is taken as eligible until
                    // its record arrives: at one incarnation, not eligible wins.
                    m.czar_eligible = false;
                    if m.is_alive() {
                        MergeOutcome::Updated
                    } else {
                        MergeOutcome::Unchanged
                    }
                } else {
                    MergeOutcome::Unchanged
                }
            }
        }
    }

    /// Marks a live member as left; `soft` when only our own timeout says so.
    /// Returns whether it was alive.
    pub fn mark_left(&mut self, id: &PeerId, now: Instant, soft: bool) -> bool {
        match self.members.get_mut(id) {
            Some(m) if m.is_alive() && *id != self.me => {
                let before = share(m);
                m.status = MemberStatus::Left;
                m.left_at = Some(now);
                m.suspected = false;
                m.soft_left = soft;
                m.said_goodbye = false;
                self.adjust(before, (0, 0));
                true
            }
            Some(m) if m.soft_left && !soft => {
                m.soft_left = false;
                false
            }
            _ => false,
        }
    }

    /// We heard directly from `id`, a soft tombstone: it is back.
    pub fn revive(&mut self, id: &PeerId, addr: SocketAddr, now: Instant) -> bool {
        match self.members.get_mut(id) {
            Some(m) if m.soft_left => {
                let before = share(m);
                m.known_since = now;
                m.status = MemberStatus::Alive;
                m.soft_left = false;
                m.left_at = None;
                m.suspected = false;
                m.last_heard = now;
                m.addr = addr;
                let after = share(m);
                self.adjust(before, after);
                true
            }
            _ => false,
        }
    }

    /// Members that left only by our own timeout, to probe for signs of life.
    pub fn soft_left(&self) -> impl Iterator<Item = &Member> {
        self.members.values().filter(|m| m.soft_left)
    }

    /// Live members (not us) silent since before `deadline`.
    pub fn silent_since(&self, deadline: Instant) -> Vec<PeerId> {
        self.others().filter(|m| m.last_heard < deadline).map(|m| m.id).collect()
    }

    /// Forgets tombstones older than `deadline`.
    pub fn purge_left_before(&mut self, deadline: Instant) {
        // Only tombstones carry `left_at`: the live view is untouched.
        self.members.retain(|_, m| m.left_at.is_none_or(|t| t >= deadline));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    fn member(seed: u64, inc: u32, status: MemberStatus) -> MemberRecord {
        let kp = Keypair::from_seed(seed);
        MemberRecord {
            id: kp.peer_id(),
            public_key: kp.public_key(),
            addr: format!("127.0.0.1:{}", 1000 + seed).parse().unwrap(),
            incarnation: inc,
            status,
            czar_eligible: true,
        }
    }

    fn list() -> Membership {
        let me = member(0, 0, MemberStatus::Alive);
        Membership::new(Member {
            id: me.id,
            public_key: me.public_key,
            addr: me.addr,
            incarnation: 0,
            status: MemberStatus::Alive,
            last_heard: Instant::ZERO,
            left_at: None,
            suspected: false,
            known_since: Instant::ZERO,
            soft_left: false,
            czar_eligible: true,
            said_goodbye: false,
        })
    }

    #[test]
    fn higher_incarnation_wins_and_left_wins_ties() {
        let mut m = list();
        let t = Instant::ZERO;
        assert_eq!(m.merge(&member(1, 1, MemberStatus::Alive), t), MergeOutcome::Joined);
        assert_eq!(m.merge(&member(1, 0, MemberStatus::Left), t), MergeOutcome::Unchanged);
        assert_eq!(m.merge(&member(1, 1, MemberStatus::Left), t), MergeOutcome::Left);
        assert_eq!(m.merge(&member(1, 1, MemberStatus::Alive), t), MergeOutcome::Unchanged);
        assert_eq!(m.merge(&member(1, 2, MemberStatus::Alive), t), MergeOutcome::Joined);
        assert_eq!(m.alive_count(), 2);
    }

    #[test]
    fn digest_tracks_the_live_view_only() {
        let mut a = list();
        let mut b = list();
        let t = Instant::ZERO;
        a.merge(&member(1, 0, MemberStatus::Alive), t);
        b.merge(&member(2, 0, MemberStatus::Left), t);
        b.merge(&member(1, 0, MemberStatus::Alive), t);
        assert_eq!(a.digest(), b.digest());
        a.merge(&member(3, 0, MemberStatus::Alive), t);
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn not_eligible_wins_at_one_incarnation_and_shows_in_the_digest() {
        let mut a = list();
        let mut b = list();
        let t = Instant::ZERO;
        let not_eligible = MemberRecord { czar_eligible: false, ..member(1, 3, MemberStatus::Alive) };
        a.merge(&member(1, 3, MemberStatus::Alive), t);
        b.merge(&not_eligible, t);
        assert_ne!(a.digest(), b.digest(), "views that differ only in the flag differ in digest");
        assert_eq!(a.merge(&not_eligible, t), MergeOutcome::Updated);
        assert_eq!(a.ineligible_ids().copied().collect::<Vec<_>>(), vec![not_eligible.id]);
        assert_eq!(
            a.merge(&member(1, 3, MemberStatus::Alive), t),
            MergeOutcome::Unchanged,
            "an eligible record is older news"
        );
        assert_eq!(a.digest(), b.digest());
        // A new incarnation says afresh.
        assert_eq!(a.merge(&member(1, 4, MemberStatus::Alive), t), MergeOutcome::Updated);
        assert_eq!(a.ineligible_ids().count(), 0);
    }

    #[test]
    fn the_cached_digest_and_count_follow_every_change() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut m = list();
        let t = Instant::ZERO;
        for step in 0..4000 {
            let seed = rng.gen_range(1..24u64);
            let id = member(seed, 0, MemberStatus::Alive).id;
            match rng.gen_range(0..5) {
                0 | 1 => {
                    let status = if rng.gen_bool(0.7) { MemberStatus::Alive } else { MemberStatus::Left };
                    let rec =
                        MemberRecord { czar_eligible: rng.gen_bool(0.8), ..member(seed, rng.gen_range(0..6), status) };
                    m.merge(&rec, t);
                }
                2 => {
                    m.mark_left(&id, t, rng.gen_bool(0.5));
                }
                3 => {
                    m.revive(&id, "127.0.0.1:9".parse().unwrap(), t);
                }
                _ => m.purge_left_before(Instant::from_millis(1)),
            }
            // Asked after every change, so each change starts from a cached value.
            assert_eq!(m.digest(), m.compute_digest(), "step {step}");
            assert_eq!(m.alive_count(), m.alive().count(), "step {step}");
        }
    }

    #[test]
    fn silence_and_purge() {
        let mut m = list();
        m.merge(&member(1, 0, MemberStatus::Alive), Instant::from_millis(10));
        assert_eq!(m.silent_since(Instant::from_millis(5)), vec![]);
        let id = member(1, 0, MemberStatus::Alive).id;
        assert_eq!(m.silent_since(Instant::from_millis(20)), vec![id]);
        assert!(m.mark_left(&id, Instant::from_millis(20), true));
        assert!(!m.mark_left(&id, Instant::from_millis(20), true));
        // A soft tombstone is not revived by gossip, only by direct contact.
        assert_eq!(m.merge(&member(1, 0, MemberStatus::Alive), Instant::from_millis(21)), MergeOutcome::Unchanged);
        assert!(m.revive(&id, "127.0.0.1:9".parse().unwrap(), Instant::from_millis(21)));
        assert!(m.mark_left(&id, Instant::from_millis(20), false));
        assert!(!m.revive(&id, "127.0.0.1:9".parse().unwrap(), Instant::from_millis(21)));
        assert_eq!(m.merge(&member(1, 0, MemberStatus::Alive), Instant::from_millis(21)), MergeOutcome::Unchanged);
        m.purge_left_before(Instant::from_millis(30));
        assert!(m.get(&id).is_none());
    }
}
