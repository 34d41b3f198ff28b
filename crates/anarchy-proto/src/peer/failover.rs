//! Failover: suspicion, recovery rounds and takeover of a silent czar's shards.
//!
//! A member silent past `suspect_after` is only *suspected*. The first live
//! backup of each of its shards then runs one recovery round, which does three
//! jobs in one round trip: it asks every member whether the czar is silent to
//! them too (so one lossy link evicts nobody), it asks them to promise the next
//! epoch of those shards to the claimant (so two claimants never both win one
//! epoch), and it collects their versions (so nothing a majority holds is lost).
//! With a majority of the live view on its side, the claimant takes over at
//! the higher epoch and the silent peer is confirmed gone. A peer that cannot
//! reach a majority (the minority side of a partition, or a session of two)
//! falls back to the plain `peer_timeout`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::SocketAddr;

use crate::event::Event;
use crate::identity::PeerId;
use crate::membership::LeaveReason;
use crate::quorum::majority;
use crate::replica::Version;
use crate::shards::{ranks_first, ShardId, ShardInfo};
use crate::time::Instant;
use crate::wire::{Frame, MemberStatus, RecoverVote};

use super::Peer;

/// Most local-health penalty steps (Lifeguard): suspicion waits up to
/// `(1 + MAX_LOCAL_HEALTH) × suspect_after` when we seem to be the one in trouble.
const MAX_LOCAL_HEALTH: u32 = 4;

/// Members' suspicion deadlines (see `Peer::check_suspicions`).
#[derive(Debug, Default)]
pub(super) struct SuspicionQueue {
    /// (deadline no later than the member's real one, member), earliest first.
    heap: BinaryHeap<Reverse<(Instant, PeerId)>>,
    /// The live-view digest, threshold, idle grace and czars the heap was
    /// built for.
    key: Option<(u64, std::time::Duration, std::time::Duration, u64)>,
}

/// One recovery round we run about one silent peer.
#[derive(Debug)]
pub(super) struct Takeover {
    incarnation: u32,
    started: Instant,
    last_sent: Instant,
    /// The live view when the round started (the silent peer included).
    quorum: Vec<PeerId>,
    /// Shards we claim and the epoch asked for each.
    claims: Vec<(ShardId, u32)>,
    silent_votes: BTreeSet<PeerId>,
    answered: BTreeSet<PeerId>,
    /// Per shard: each granting voter's version, checksum and how many
    /// prepared proposals it said it sent.
    grants: BTreeMap<ShardId, BTreeMap<PeerId, (Version, u64, u16)>>,
    /// Prepared proposals received, by (voter, shard, proposal).
    prepared_seen: BTreeSet<(PeerId, ShardId, super::critical::CriticalKey)>,
    confirmed: bool,
    settled: BTreeSet<ShardId>,
}

impl Peer {
    /// The suspicion threshold after the local-health penalty.
    fn suspicion_threshold(&self) -> std::time::Duration {
        self.config.suspect_after * (1 + self.local_health)
    }

    /// Marks members silent past the threshold as suspected, and starts
    /// recovery rounds for them. Also computes when to look again.
    ///
    /// This runs whenever the earliest member's deadline passes, and each
    /// datagram moves its sender's deadline on: a pass over every member each
    /// time made suspicion upkeep grow with the square of the session. The
    /// deadlines wait in a heap instead, each entry a lower bound of its
    /// member's deadline (deadlines only move later while the view, the
    /// czars and the thresholds stay; any change of those rebuilds the heap).
    /// Entries are brought up to date from the earliest on, so the next check
    /// is due exactly when the earliest real deadline is.
    pub(super) fn check_suspicions(&mut self, now: Instant) {
        if !self.is_joined() {
            return;
        }
        let threshold = self.suspicion_threshold();
        let czars = self.czars();
        let idle_grace = self.config.idle_grace(self.members.alive_count());
        // Only czars we heard from since they became czar are held to the
        // short threshold; one that is heard for the first time since moves
        // its deadline earlier, so the heap is rebuilt for it.
        let czars_key = czars
            .keys()
            .filter(|c| self.members.get(c).is_some_and(|m| Self::held_as_czar(m, &czars)))
            .fold(0u64, |k, c| k.rotate_left(9) ^ crate::membership::view_entry_hash(c, 0));
        let key = (self.members.digest(), threshold, idle_grace, czars_key);
        // A member can hold more than one entry (a suspicion cleared while
        // its old entry waits); rebuilt before such entries pile up.
        let crowded = self.suspicion.heap.len() > 2 * self.members.alive_count() + 16;
        if self.suspicion.key != Some(key) || crowded {
            let heap = self
                .members
                .others()
                .filter(|m| !m.suspected)
                .map(|m| Reverse((self.silent_from_with(m, &czars, threshold, idle_grace), m.id)))
                .collect();
            self.suspicion = SuspicionQueue { heap, key: Some(key) };
        }
        let mut newly = Vec::new();
        while let Some(&Reverse((at, id))) = self.suspicion.heap.peek() {
            let due = match self.members.get(&id) {
                Some(m) if m.is_alive() && !m.suspected && id != self.id => {
                    Some(self.silent_from_with(m, &czars, threshold, idle_grace))
                }
                _ => None,
            };
            match due {
                Some(due) if due == at && due > now => break,
                Some(due) => {
                    self.suspicion.heap.pop();
                    if due <= now {
                        newly.push(id);
                    } else {
                        self.suspicion.heap.push(Reverse((due, id)));
                    }
                }
                None => {
                    self.suspicion.heap.pop();
                }
            }
        }
        self.next_suspect_check = self.suspicion.heap.peek().map_or(self.next_tick, |e| e.0 .0.min(self.next_tick));
        // In id order, as a pass over the members would find them.
        newly.sort_unstable();
        newly.dedup();
        for peer in newly {
            if let Some(m) = self.members.get_mut(&peer) {
                m.suspected = true;
                self.suspect_gen += 1;
            }
            self.push_event(Event::PeerSuspected { peer });
        }
        self.start_takeovers(now);
    }

    /// Starts a round for every suspect that has none, where we are the one to run it.
    fn start_takeovers(&mut self, now: Instant) {
        // This runs at every suspicion check. What it does depends only on the
        // live view, who is suspected, our rounds and who holds which shard:
        // while none of those changed since it last found nothing to do, it
        // would find nothing again (and the pass below costs the session's size).
        let idle_key = (
            self.members.digest(),
            self.suspect_gen,
            self.takeovers.keys().fold(
                self.states.iter().fold(0u64, |k, (id, st)| {
                    k.rotate_left(7) ^ id.0 ^ st.replica.czar.map_or(0, |c| crate::membership::view_entry_hash(&c, 1))
                }),
                |k, p| k.rotate_left(3) ^ crate::membership::view_entry_hash(p, 2),
            ),
        );
        if self.takeovers_idle == Some(idle_key) {
            return;
        }
        let opened = self.start_takeovers_in_view(now);
        self.takeovers_idle = (!opened).then_some(idle_key);
    }

    /// [`Peer::start_takeovers`]' pass; returns whether it opened a round.
    fn start_takeovers_in_view(&mut self, now: Instant) -> bool {
        let suspected: Vec<PeerId> = self.members.others().filter(|m| m.suspected).map(|m| m.id).collect();
        let suspects: Vec<PeerId> = suspected.iter().filter(|p| !self.takeovers.contains_key(p)).copied().collect();
        self.not_ours.retain(|p, _| suspected.contains(p));
        if suspects.is_empty() {
            return false;
        }
        // Whether a round is ours to run depends only on the healthy view and
        // on which shards each suspect holds. This runs every tick while a
        // suspect stays unconfirmed (in a large session there nearly always is
        // one), and each answer ranks every healthy member: it is remembered
        // per suspect until that view changes.
        let view_key = suspected
            .iter()
            .fold(self.members.digest(), |k, p| k.rotate_left(5) ^ crate::membership::view_entry_hash(p, u32::MAX));
        let held_by = |st: &BTreeMap<ShardId, super::ShardState>, gone: &PeerId| -> u64 {
            st.iter().filter(|(_, s)| s.replica.czar == Some(*gone)).fold(0u64, |k, (id, _)| k.rotate_left(7) ^ id.0)
        };
        let suspects: Vec<PeerId> = suspects
            .into_iter()
            .filter(|gone| self.not_ours.get(gone) != Some(&(view_key, held_by(&self.states, gone))))
            .collect();
        if suspects.is_empty() {
            return false;
        }
        let healthy: Vec<PeerId> = self.members.alive().filter(|m| m.is_healthy()).map(|m| m.id).collect();
        let ineligible = self.ineligible();
        // The round's quorum is the configuration, as for critical updates:
        // members we dropped only by our own timeout still count, so one side of
        // a split cannot make itself a majority by timing the other side out one
        // member at a time (idle members and czars time out at different moments).
        let view: Vec<PeerId> = self.configuration();
        if majority(view.len()) > view.len() - 1 {
            return false; // a majority needs the silent peer itself: only the timeout can help
        }
        let mut opened = false;
        for gone in suspects {
            let mut claims = Vec::new();
            for (shard, st) in &self.states {
                if st.replica.czar != Some(gone) || st.is_retired() {
                    continue;
                }
                let info = self.shards.get(*shard).expect("state implies declaration");
                if ranks_first(info, healthy.iter(), &ineligible, &self.id) {
                    let promised = st.promised.map_or(0, |(e, _)| e);
                    let epoch = super::round_epoch(st.replica.epoch.max(promised), &self.id);
                    if epoch <= crate::wire::MAX_EPOCH {
                        claims.push((*shard, epoch));
                    }
                }
            }
            // One designated peer confirms the silence even if it holds no shard.
            let pseudo =
                ShardInfo::declared(ShardId(u64::from_le_bytes(gone.0[..8].try_into().expect("8 bytes"))), "", None);
            let confirmer = ranks_first(&pseudo, healthy.iter(), &ineligible, &self.id);
            if claims.is_empty() && !confirmer {
                let held = held_by(&self.states, &gone);
                self.not_ours.insert(gone, (view_key, held));
                continue;
            }
            self.not_ours.remove(&gone);
            self.open_round(now, gone, claims, view.clone());
            opened = true;
        }
        opened
    }

    /// Runs a round about `gone` claiming `claims`, counted against `quorum`:
    /// promises the claimed epochs to ourselves and asks every live member.
    fn open_round(&mut self, now: Instant, gone: PeerId, claims: Vec<(ShardId, u32)>, quorum: Vec<PeerId>) {
        let incarnation = self.members.get(&gone).map_or(0, |m| m.incarnation);
        let mut grants: BTreeMap<ShardId, BTreeMap<PeerId, (Version, u64, u16)>> = BTreeMap::new();
        for (shard, epoch) in &claims {
            let st = self.states.get_mut(shard).expect("claimed shard");
            st.promised = Some((*epoch, self.id));
            st.promised_at = now;
            // Our own grant; the state it names is taken afresh when the round
            // completes (see `try_complete_takeover`).
            let own = (st.replica.version(), st.replica.checksum().short(), 0);
            grants.entry(*shard).or_default().insert(self.id, own);
        }
        let takeover = Takeover {
            incarnation,
            started: now,
            last_sent: now,
            quorum,
            claims: claims.clone(),
            silent_votes: BTreeSet::from([self.id]),
            answered: BTreeSet::from([self.id]),
            grants,
            prepared_seen: BTreeSet::new(),
            confirmed: false,
            settled: BTreeSet::new(),
        };
        self.takeovers.insert(gone, takeover);
        let frame = Frame::Recover { gone, incarnation, claims };
        let bytes = frame.to_bytes();
        let addrs: Vec<SocketAddr> = self.members.others().filter(|m| m.id != gone).map(|m| m.addr).collect();
        for addr in addrs {
            self.queue(addr, bytes.clone());
        }
    }

    /// Takes over `shard` from its czar `gone`, which a majority confirmed gone
    /// (or which left) before any round claimed the shard: by a round of its
    /// own rather than a plain claim, so the claim is backed and starts from
    /// the most advanced state (and the prepared proposals) of a majority.
    /// Counted against the live and soft-left members, like a critical
    /// update, so the minority side of a partition cannot complete it; if it
    /// fails, the plain (provisional) claim follows (§6.6).
    pub(super) fn recover_shard_of_gone(&mut self, now: Instant, shard: ShardId, gone: PeerId) {
        if self.takeovers.contains_key(&gone) {
            return; // the round about it still runs; ours starts once it ends
        }
        let st = &self.states[&shard];
        let promised = st.promised.map_or(0, |(e, _)| e);
        let epoch = super::round_epoch(st.replica.epoch.max(promised), &self.id);
        if epoch > crate::wire::MAX_EPOCH {
            return;
        }
        let quorum = self.configuration();
        self.open_round(now, gone, vec![(shard, epoch)], quorum);
    }

    /// Backs our provisional claims again. A czar that learns a majority
    /// counted it gone refutes and marks its claims provisional (that majority
    /// may have moved its shards on, §6.4). If nobody did, nothing else would
    /// ever back them in a healthy session: no backed czar re-asserts over
    /// them, no round runs (we are not silent), and voters give no vote under
    /// a provisional claim, so every critical update of those shards would
    /// time out. Once a claim has been provisional for `recovery_timeout`
    /// while we heard a majority (time for a round that did move the shard
    /// to finish), we run a recovery round about ourselves: only members that
    /// follow our claim and heard its standing stated grant it, with the
    /// promises, versions and prepared proposals of any round, so a claim
    /// another round took, or one a majority never followed, is never backed
    /// this way.
    pub(super) fn reaffirm_provisional_claims(&mut self, now: Instant) {
        let me = self.id;
        let ours = |st: &super::ShardState| {
            st.replica.czar == Some(me)
                && !st.replica.backed
                && !st.is_retired()
                && st.split.proposing.is_none()
                && st.catch_up_to.is_none()
        };
        // The clock runs only while we hear a majority: at a heal, the backed
        // czar on the other side re-asserts over our claim first, and the
        // members that briefly followed us go back to it.
        if !(self.states.values().any(ours) && self.hears_majority()) {
            for st in self.states.values_mut() {
                st.provisional_since = None;
            }
            return;
        }
        let rounds_claim: BTreeSet<ShardId> =
            self.takeovers.values().flat_map(|t| t.claims.iter().map(|(s, _)| *s)).collect();
        let mut due = Vec::new();
        for (shard, st) in self.states.iter_mut() {
            if !ours(st) {
                st.provisional_since = None;
                continue;
            }
            let since = *st.provisional_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= self.config.recovery_timeout && !rounds_claim.contains(shard) {
                let promised = st.promised.map_or(0, |(e, _)| e);
                let epoch = super::round_epoch(st.replica.epoch.max(promised), &me);
                if epoch <= crate::wire::MAX_EPOCH {
                    due.push((*shard, epoch));
                }
            }
        }
        if due.is_empty() || self.takeovers.contains_key(&me) {
            return;
        }
        let quorum = self.configuration();
        self.open_round(now, me, due, quorum);
    }

    /// We heard from `peer`: it is not silent after all.
    pub(super) fn heard_from(&mut self, peer: PeerId) {
        if let Some(m) = self.members.get_mut(&peer) {
            m.suspected = false;
            self.suspect_gen += 1;
            // Back in the suspicion heap, at a deadline no later than its
            // real one: the next check brings it up to date.
            self.suspicion.heap.push(Reverse((Instant::ZERO, peer)));
        }
        if let Some(t) = self.takeovers.remove(&peer) {
            self.forget_unsettled_claims(&t);
        }
    }

    /// A round of ours ended without taking over some of the shards it
    /// claimed: the prepared proposals its voters handed us for them were for
    /// that takeover only. Kept, they would be proposed again whenever we
    /// later became czar by other means (a hand-over), long after the czar
    /// that did hold the shard decided them: a commit already applied would
    /// commit a second time, or overwrite what was committed after it.
    fn forget_unsettled_claims(&mut self, t: &Takeover) {
        for (shard, _) in t.claims.iter().filter(|(s, _)| !t.settled.contains(s)) {
            if !self.takeover_pending(*shard) {
                if let Some(st) = self.states.get_mut(shard) {
                    st.critical.recovered.clear();
                }
            }
        }
    }

    /// Re-sends unanswered rounds and abandons stale ones.
    pub(super) fn drive_takeovers(&mut self, now: Instant) {
        let gones: Vec<PeerId> = self.takeovers.keys().copied().collect();
        for gone in gones {
            let t = &self.takeovers[&gone];
            // Done once the silence is confirmed and every claim is settled; the
            // claims keep the round alive so a confirmed death never turns into
            // a plain claim that skips the versions a majority holds.
            let settled = t.claims.iter().all(|(shard, _)| t.settled.contains(shard));
            let own = gone == self.id;
            if (own || (!self.members.is_alive(&gone) && t.confirmed)) && settled {
                self.takeovers.remove(&gone);
                continue;
            }
            if now.saturating_duration_since(t.started) >= self.config.recovery_timeout {
                // No majority answered: perhaps we are the one cut off. Suspect more
                // slowly, and claim the gone peer's shards plainly from now on.
                let t = self.takeovers.remove(&gone).expect("present");
                if own {
                    // Our claims stay provisional; the next round asks at a
                    // higher epoch, `recovery_timeout` from now. Not a sign
                    // that we are cut off: voters that follow another claim
                    // refuse it.
                    for (shard, _) in &t.claims {
                        if let Some(st) = self.states.get_mut(shard) {
                            st.provisional_since = Some(now);
                        }
                    }
                    self.forget_unsettled_claims(&t);
                    continue;
                }
                for (shard, _) in t.claims.iter().filter(|(s, _)| !t.settled.contains(s)) {
                    if let Some(st) = self.states.get_mut(shard) {
                        st.round_failed = Some(gone);
                    }
                }
                self.forget_unsettled_claims(&t);
                self.local_health = (self.local_health + 1).min(MAX_LOCAL_HEALTH);
                continue;
            }
            if now.saturating_duration_since(t.last_sent) >= self.config.recovery_retry_interval {
                let frame = Frame::Recover { gone, incarnation: t.incarnation, claims: t.claims.clone() };
                // Unanswered, or answered without all the prepared proposals it announced.
                let incomplete = |p: &PeerId| {
                    t.grants.iter().any(|(shard, g)| {
                        g.get(p).is_some_and(|(_, _, n)| {
                            t.prepared_seen.iter().filter(|(v, s, _)| v == p && s == shard).count() < usize::from(*n)
                        })
                    })
                };
                // A voter that answered "not silent" is asked again: on a fast
                // link our request (sent after `suspect_after`) reaches it
                // before the czar has been silent to it for `silent_vote_after`.
                // In a round about ourselves nobody votes "silent": a voter
                // that granted every claim is done.
                let refused = |p: &PeerId| {
                    if own {
                        t.claims.iter().any(|(s, _)| !t.grants.get(s).is_some_and(|g| g.contains_key(p)))
                    } else {
                        !t.silent_votes.contains(p)
                    }
                };
                let unanswered: Vec<PeerId> = t
                    .quorum
                    .iter()
                    .filter(|p| **p != gone && (!t.answered.contains(p) || refused(p) || incomplete(p)))
                    .copied()
                    .collect();
                self.takeovers.get_mut(&gone).expect("present").last_sent = now;
                let bytes = frame.to_bytes();
                for p in unanswered {
                    if let Some(addr) = self.members.get(&p).filter(|m| m.is_alive()).map(|m| m.addr) {
                        self.queue(addr, bytes.clone());
                    }
                }
            }
        }
    }

    /// A voter's side of a recovery round.
    pub(super) fn handle_recover(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: PeerId,
        gone: PeerId,
        claims: Vec<(ShardId, u32)>,
    ) {
        if gone == self.id {
            // We are suspected but alive: refute with a higher incarnation.
            let me = self.members.myself_mut();
            me.incarnation = (me.incarnation + 1).min(crate::wire::MAX_EPOCH);
            let record = self.members.myself().record();
            self.broadcast(&Frame::Members(vec![record]));
            self.queue_frame(from, &Frame::RecoverAck { gone, silent: false, votes: Vec::new() });
            return;
        }
        // A czar asking about itself wants its own provisional claims backed
        // (`reaffirm_provisional_claims`): it is not silent, and only the
        // members that follow its claim may grant.
        let reaffirm = gone == sender;
        let czars = self.czars();
        let silent = match self.members.get(&gone) {
            _ if reaffirm => false,
            Some(m) if m.is_alive() => now >= self.silent_from(m, &czars, self.config.silent_vote_after),
            _ => true,
        };
        if silent {
            if let Some(m) = self.members.get_mut(&gone) {
                if m.is_alive() && !m.suspected {
                    m.suspected = true;
                    self.suspect_gen += 1;
                    self.push_event(Event::PeerSuspected { peer: gone });
                }
            }
        }
        // A member that joined recently never saw the proposals made before it
        // came, and a peer restarted blank forgot its promises: neither may help
        // form a recovery majority until every proposal from before has settled.
        let newcomer = self.is_newcomer(now);
        let mut votes = Vec::with_capacity(claims.len());
        let mut granted_shards = Vec::new();
        for (shard, epoch) in claims {
            let Some(st) = self.states.get_mut(&shard) else {
                self.stats.drop(crate::stats::DropReason::UnknownShard);
                continue;
            };
            let czar_gone = match st.replica.czar {
                Some(c) => c == gone || !self.members.is_alive(&c),
                None => true,
            };
            let promise_free = st.promised.is_none_or(|(e, p)| e < epoch || (e == epoch && p == sender));
            // A reaffirmation is granted only by a follower of the claim that
            // heard its standing stated: one that took it from a delta may
            // have left a backed czar for it (§6.6).
            let willing = if reaffirm {
                st.replica.czar == Some(sender) && !st.assumes_standing(st.replica.epoch, sender)
            } else {
                silent && czar_gone
            };
            let granted = willing && st.replica.epoch < epoch && promise_free && !newcomer;
            if granted {
                st.promised = Some((epoch, sender));
                st.promised_at = now;
                granted_shards.push(shard);
            }
            let prepared = if granted { u16::try_from(st.critical.prepared.len()).unwrap_or(u16::MAX) } else { 0 };
            votes.push(RecoverVote {
                shard,
                epoch,
                granted,
                version: st.replica.version(),
                checksum: st.replica.checksum().short(),
                prepared,
            });
        }
        // Proposals we accepted but never saw decided go first: the claimant
        // must finish them before it writes, since they may have committed.
        for shard in granted_shards {
            self.send_prepared(from, shard);
        }
        // "Not silent" in an ordinary round grants nothing and changes
        // nothing at the claimant: it asks again every voter that has not
        // voted silent, and drops the round the moment it hears the suspect.
        // Nearly every such round is a heartbeat that came late (jitter), so
        // the answer, in a datagram of its own, was pure cost.
        if !silent && !reaffirm {
            return;
        }
        self.queue_frame(from, &Frame::RecoverAck { gone, silent, votes });
    }

    /// The claimant's side: count answers, take over once a majority agrees.
    pub(super) fn handle_recover_ack(
        &mut self,
        now: Instant,
        sender: PeerId,
        gone: PeerId,
        silent: bool,
        votes: Vec<RecoverVote>,
    ) {
        let Some(t) = self.takeovers.get_mut(&gone) else { return };
        if !t.quorum.contains(&sender) {
            return;
        }
        // A repeated answer (after a re-sent round) replaces the earlier one.
        t.answered.insert(sender);
        if silent {
            t.silent_votes.insert(sender);
        }
        for v in votes {
            if v.granted && t.claims.contains(&(v.shard, v.epoch)) {
                t.grants.entry(v.shard).or_default().insert(sender, (v.version, v.checksum, v.prepared));
            }
        }
        self.try_complete_takeover(now, gone);
    }

    fn try_complete_takeover(&mut self, now: Instant, gone: PeerId) {
        let Some(t) = self.takeovers.get(&gone) else { return };
        let needed = majority(t.quorum.len());
        let ready: Vec<(ShardId, u32, PeerId, Version, u64)> = t
            .claims
            .iter()
            .filter(|(s, _)| !t.settled.contains(s))
            .filter_map(|(s, e)| {
                // A grant counts once every prepared proposal it announced is here:
                // a commit the voter knows of must not be skipped.
                let complete: Vec<(&PeerId, &(Version, u64, u16))> = t
                    .grants
                    .get(s)?
                    .iter()
                    .filter(|(p, (_, _, n))| {
                        t.prepared_seen.iter().filter(|(v, sh, _)| v == *p && sh == s).count() >= usize::from(*n)
                    })
                    .collect();
                if complete.len() < needed {
                    return None;
                }
                // Adopt the most advanced state a majority member holds. Ours is
                // the state we hold now, not the one the round began with: we
                // may have applied more of the gone czar's history meanwhile.
                // Starting the epoch from an older state would have us install
                // it over ours (our version going back within its epoch) and
                // write the new epoch at seqs we already hold with other content
                // (isolate-and-stall, 32 peers, seed 45).
                let own = self.states.get(s).map(|st| (st.replica.version(), st.replica.checksum().short()));
                let (peer, version, sum) = complete
                    .into_iter()
                    .map(|(p, (v, sum, _))| match own.filter(|_| *p == self.id) {
                        Some((v, sum)) => (*p, v, sum),
                        None => (*p, *v, *sum),
                    })
                    .max_by_key(|(p, v, _)| (v.seq, v.epoch, *p == self.id))?;
                Some((*s, *e, peer, version, sum))
            })
            .collect();
        let confirm = gone != self.id && !t.confirmed && t.silent_votes.len() >= needed;
        for (shard, epoch, best_peer, best, sum) in ready {
            self.takeovers.get_mut(&gone).expect("present").settled.insert(shard);
            self.claim_after_recovery(now, shard, epoch, gone, best_peer, (best.seq, sum));
        }
        if confirm {
            self.takeovers.get_mut(&gone).expect("present").confirmed = true;
            if self.members.mark_left(&gone, now, false) {
                self.push_event(Event::PeerLeft { peer: gone, reason: LeaveReason::Confirmed });
                if let Some(m) = self.members.get(&gone) {
                    let record = crate::wire::MemberRecord { status: MemberStatus::Left, ..m.record() };
                    self.broadcast(&Frame::Members(vec![record]));
                }
                self.local_health = self.local_health.saturating_sub(1);
                self.reconcile_authority(now);
            }
        }
    }

    fn claim_after_recovery(
        &mut self,
        now: Instant,
        shard: ShardId,
        epoch: u32,
        gone: PeerId,
        best_peer: PeerId,
        (best_seq, best_sum): (u64, u64),
    ) {
        let me = self.id;
        if gone == me {
            // Re-backing our own claim: our unsent updates belong to the
            // epoch we leave, and must go out before the new one starts.
            self.flush_outgoing();
        }
        let st = self.states.get_mut(&shard).expect("claimed shard");
        // Someone moved the shard on meanwhile (what the voters handed us was
        // for this takeover only), or it is ours already: the silent czar
        // handed it to us while the round ran, and our state, its state, is
        // at least the one a majority holds. Taking it over again from the
        // most advanced voter's state, older than ours, would leave us and
        // every follower off the new epoch's history with nobody to serve it.
        if st.replica.epoch >= epoch || st.replica.czar.is_some_and(|c| c != gone) {
            if st.replica.czar != Some(me) {
                st.critical.recovered.clear();
            }
            return;
        }
        let old = st.replica.czar;
        let (mine, my_sum) = (st.replica.seq(), st.replica.checksum().short());
        st.replica.prev_czar = Some(gone);
        st.replica.epoch = epoch;
        st.replica.czar = Some(me);
        st.replica.epoch_start_seq = best_seq;
        st.replica.epoch_start_checksum = best_sum;
        st.replica.epoch_start_trusted = true;
        let stale = st.replica.drop_early_past_start(epoch, best_seq) as u64;
        self.stats.drop_n(crate::stats::DropReason::OffHistory, stale);
        st.out_of_sync_since = None;
        st.czar_advert = None;
        let at_start = mine == best_seq && my_sum == best_sum;
        // Behind the most advanced member: fetch what we miss. Off its history:
        // take its state whole.
        st.want_snapshot = !at_start && mine >= best_seq;
        if at_start {
            st.replica.set_lineage(epoch);
        }
        st.catch_up_to = (!at_start).then_some((best_seq, best_sum));
        self.adopt_own_prepared(shard);
        self.push_event(Event::CzarChanged { shard, old, new: me, epoch });
        st_backed(self, shard);
        self.broadcast(&Frame::Authority {
            shard,
            epoch,
            czar: me,
            seq: best_seq,
            checksum: best_sum,
            backed: true,
            start_known: true,
        });
        if !at_start {
            let from = if mine >= best_seq { 0 } else { mine + 1 };
            self.request_repair(now, shard, from, Some(best_peer), true);
        }
        self.retry_pending(now, None);
    }
}

/// A claim won in a recovery round has a majority behind it.
fn st_backed(peer: &mut Peer, shard: ShardId) {
    if let Some(st) = peer.states.get_mut(&shard) {
        st.replica.backed = true;
    }
}

impl Peer {
    /// A voter's prepared proposal arrived: it completes that voter's grant.
    pub(super) fn note_prepared_received(&mut self, voter: PeerId, shard: ShardId, key: super::critical::CriticalKey) {
        for t in self.takeovers.values_mut() {
            if t.claims.iter().any(|(s, _)| *s == shard) {
                t.prepared_seen.insert((voter, shard, key));
            }
        }
        let gones: Vec<PeerId> = self.takeovers.keys().copied().collect();
        for gone in gones {
            self.try_complete_takeover(self.clock, gone);
        }
    }
}

impl Peer {
    /// Joined through a member less than one critical timeout ago (any
    /// proposal made before we came is decided or timed out by then).
    pub(super) fn is_newcomer(&self, now: Instant) -> bool {
        self.welcomer.is_some() && now.saturating_duration_since(self.joined_at) < self.config.critical_timeout
    }
}

impl Peer {
    /// Whether a recovery round of ours is still trying to take `shard` over
    /// (then a plain claim must wait: it would skip the majority's versions).
    /// Whether a round of ours (still collecting or not yet closed) claims
    /// `shard`: only then are voters' prepared proposals for it kept.
    pub(super) fn round_claims(&self, shard: ShardId) -> bool {
        self.takeovers.values().any(|t| t.claims.iter().any(|(s, _)| *s == shard))
    }

    pub(super) fn takeover_pending(&self, shard: ShardId) -> bool {
        self.takeovers.values().any(|t| t.claims.iter().any(|(s, _)| *s == shard) && !t.settled.contains(&shard))
    }
}
