//! Critical updates: a kill, a trade, a score. The czar proposes, every member
//! runs the game's validator and votes, and the update commits only when a
//! majority of the session accepts; after that it is never lost.
//!
//! The majority is counted against the *configuration*: live members plus
//! those only our own timeout removed (a peer cut off on the other side of a
//! partition still counts), so the minority side of a partition can never
//! commit. While the configuration changes under an open vote, the update
//! needs a majority of both the list it was proposed to and the current one,
//! so any two deciding majorities intersect. A member that accepted a
//! proposal keeps it as *prepared* until it sees the decision; a new czar's
//! recovery round collects the prepared proposals of a majority and finishes
//! them, which is why a commit survives crashes and takeovers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::event::{Event, WriteFailure, WriteId};
use crate::identity::PeerId;
use crate::peer::{PendingWrite, WriteError, WriteOutcome};
use crate::quorum::majority;
use crate::replica::Version;
use crate::shards::ShardId;
use crate::stats::DropReason;
use crate::time::Instant;
use crate::wire::{Decision, Frame, Op, Update, MAX_REASON_BYTES, MAX_VALUE_BYTES};

use super::split::{BaseCheck, INTERNAL_WRITE_BIT};
use super::Peer;

/// Most critical updates a czar votes on at once, per shard.
const MAX_OPEN_PROPOSALS: usize = 256;
/// Most prepared proposals a member keeps per shard.
const MAX_PREPARED: usize = 1024;
/// Decided critical updates remembered per shard (to answer retries).
const MAX_REMEMBERED_DECISIONS: usize = 4096;

/// What a validator sees of a proposed critical update.
#[derive(Debug, Clone, Copy)]
pub struct Proposal<'a> {
    /// Which shard.
    pub shard: ShardId,
    /// Who wrote it.
    pub origin: PeerId,
    /// The key.
    pub key: &'a [u8],
    /// The proposed value (`None`: delete).
    pub value: Option<&'a [u8]>,
    /// The key's current value on this peer.
    pub current: Option<&'a [u8]>,
}

/// The game's rule for critical updates: `Ok` to accept, `Err(reason)` to reject.
pub type Validator = Box<dyn FnMut(&Proposal<'_>) -> Result<(), String> + Send>;

/// (writer, writer's id): names a critical update everywhere.
pub(super) type CriticalKey = (PeerId, u64);

/// A proposal the czar is collecting votes for.
#[derive(Debug)]
pub(super) struct OpenProposal {
    epoch: u32,
    update: Update,
    /// The configuration it was proposed to.
    quorum: Vec<PeerId>,
    accepts: BTreeSet<PeerId>,
    rejects: BTreeMap<PeerId, String>,
    started: Instant,
    last_sent: Instant,
    /// Proposed again from a recovery round's copies: it may be a commit of
    /// an earlier czar that our state lacks, and nobody else will propose it.
    recovered: bool,
}

/// A proposal a member accepted and has not seen decided.
#[derive(Debug, Clone)]
pub(super) struct PreparedProposal {
    pub(super) epoch: u32,
    pub(super) update: Update,
    pub(super) since: Instant,
    /// Set once we saw it committed at this seq: the copy is kept until our
    /// replica has applied that far, since until then it may be the only one
    /// left if the czar dies.
    pub(super) committed_at: Option<u64>,
    /// For a proposal handed over in a recovery round: the commit a member
    /// reported for it (its `Decided`), checked against our history before
    /// it is proposed again.
    pub(super) reported: Option<Version>,
}

/// Per-shard bookkeeping for critical updates.
#[derive(Debug, Default)]
pub(super) struct CriticalState {
    open: BTreeMap<CriticalKey, OpenProposal>,
    pub(super) prepared: BTreeMap<CriticalKey, PreparedProposal>,
    /// Proposals learned in a recovery round, to finish once we are ready.
    pub(super) recovered: BTreeMap<CriticalKey, PreparedProposal>,
    decided: BTreeMap<CriticalKey, Decision>,
    decided_order: std::collections::VecDeque<CriticalKey>,
}

impl CriticalState {
    /// Whether no proposal is open.
    pub(super) fn open_is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Whether proposals handed over in a recovery round are still to be
    /// finished here. Until they are, the shard is not handed over: a czar
    /// that takes it by hand-over runs no round, so it would never learn of
    /// them, and a commit of the czar before might be lost (isolate-and-stall,
    /// 32 peers, seed 712).
    pub(super) fn finishing_recovered(&self) -> bool {
        !self.recovered.is_empty() || self.open.values().any(|p| p.recovered)
    }

    /// Whether an open proposal is a layout record (split, seal, merge).
    pub(super) fn open_layout(&self) -> bool {
        self.open.values().any(|p| super::split::is_layout_key(&p.update.key))
    }

    fn remember(&mut self, key: CriticalKey, decision: Decision) {
        if self.decided.insert(key, decision).is_none() {
            self.decided_order.push_back(key);
            while self.decided_order.len() > MAX_REMEMBERED_DECISIONS {
                if let Some(old) = self.decided_order.pop_front() {
                    self.decided.remove(&old);
                }
            }
        }
    }
}

impl Peer {
    /// Registers the game's validator for critical updates (default: accept all).
    /// Every member runs it on every proposal; keep it deterministic and quick.
    pub fn set_validator(&mut self, validator: Validator) {
        self.validator = Some(validator);
    }

    /// Proposes a critical update: it is applied only once a majority of the
    /// session accepts it. An [`Event::Committed`] (at every member), an
    /// [`Event::Rejected`] or an [`Event::WriteFailed`] with the returned id follows.
    pub fn write_critical(
        &mut self,
        now: Instant,
        shard: ShardId,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<WriteId, WriteError> {
        self.note_time(now);
        if !self.is_joined() {
            return Err(WriteError::NotInSession);
        }
        super::check_key(key)?;
        if let Some(v) = value.filter(|v| v.len() > MAX_VALUE_BYTES) {
            return Err(WriteError::ValueTooLarge(v.len()));
        }
        if !self.states.contains_key(&shard) {
            return Err(WriteError::UnknownShard(shard));
        }
        let shard = self.leaf_of(shard, key);
        if self.pending_critical.len() >= self.config.max_pending_writes {
            return Err(WriteError::TooManyPending(self.pending_critical.len()));
        }
        let op = match value {
            Some(v) => Op::Put(v.to_vec()),
            None => Op::Delete,
        };
        let update = Update { key: key.to_vec(), op };
        let id = self.next_write_id;
        self.next_write_id += 1;
        self.pending_critical.insert(id, PendingWrite { shard, update, created: now, last_sent: None, via: None });
        self.retry_critical(now, Some(id));
        Ok(WriteId(id))
    }

    /// The members a critical majority (and a recovery round's) is counted
    /// against: live or soft-left, ourselves included.
    pub(super) fn configuration(&self) -> Vec<PeerId> {
        self.members.iter().filter(|m| m.is_alive() || m.soft_left).map(|m| m.id).collect()
    }

    /// Whether our state holds `update` as committed at `v`: our log has it at
    /// exactly that version, or (a commit that changed nothing names the
    /// version it found) the last write of its key at or before `v` leaves
    /// the same value. A version older than our log is taken as held once we
    /// are past it; a version whose update our log has from a later epoch is
    /// on another history.
    pub(super) fn holds_commit(&self, shard: ShardId, v: Version, update: &Update) -> bool {
        let r = &self.states[&shard].replica;
        if r.seq() < v.seq {
            return false;
        }
        match r.entry_at(v.seq) {
            None => !r.log_covers(v.seq),
            Some(e) if e.epoch > v.epoch => false,
            Some(e) if e.epoch == v.epoch && e.update == *update => true,
            Some(_) => match r.last_entry_of(&update.key, v.seq) {
                Some(e) => e.update.op == update.op,
                None => {
                    let current = r.get(&update.key);
                    update.op.resolve(current).as_deref() == current
                }
            },
        }
    }

    fn validate(&mut self, shard: ShardId, origin: PeerId, update: &Update) -> Result<(), String> {
        if super::split::is_layout_key(&update.key) {
            // The protocol's own record: judged by its base, not by the game.
            return match self.split_base_check(shard, update) {
                BaseCheck::At => Ok(()),
                BaseCheck::Behind => Err("behind the split's base".to_owned()),
                BaseCheck::Off => Err("not at the split's base".to_owned()),
            };
        }
        let Some(validator) = self.validator.as_mut() else { return Ok(()) };
        let current = self.states.get(&shard).and_then(|s| s.replica.get(&update.key));
        let value = update.op.resolve(current);
        let proposal = Proposal { shard, origin, key: &update.key, value: value.as_deref(), current };
        validator(&proposal).map_err(|mut reason| {
            // Keep the reason within the wire bound, on a character boundary.
            while reason.len() > MAX_REASON_BYTES {
                reason.pop();
            }
            reason
        })
    }

    /// As ready czar: opens a vote on `update` (or answers a retry of a decided one).
    pub(super) fn start_proposal(
        &mut self,
        now: Instant,
        shard: ShardId,
        origin: PeerId,
        write_id: u64,
        update: Update,
    ) {
        let key = (origin, write_id);
        let st = self.states.get(&shard).expect("known shard");
        if let Some(decision) = st.critical.decided.get(&key).cloned() {
            self.send_decision(shard, key, decision, Some(origin));
            return;
        }
        if st.critical.open.contains_key(&key) {
            return;
        }
        let is_split = super::split::is_layout_key(&update.key);
        if st.is_retired() || (st.writes_held() && !is_split) {
            // A split is being voted on (or done): the writer retries, and
            // after the split sends its write to the child holding the key.
            self.stats.drop(DropReason::SplitPending);
            return;
        }
        if st.critical.open.len() >= MAX_OPEN_PROPOSALS {
            self.stats.drop(DropReason::BufferFull);
            return;
        }
        let epoch = st.replica.epoch;
        let quorum = self.configuration();
        let mut accepts = BTreeSet::new();
        let mut rejects = BTreeMap::new();
        match self.validate(shard, origin, &update) {
            Ok(()) => {
                accepts.insert(self.id);
            }
            Err(reason) => {
                rejects.insert(self.id, reason);
            }
        }
        let frame = Frame::Propose { origin, write_id, shard, epoch, update: update.clone() };
        let proposal =
            OpenProposal { epoch, update, quorum, accepts, rejects, started: now, last_sent: now, recovered: false };
        let st = self.states.get_mut(&shard).expect("known shard");
        if is_split {
            // Ours or a recovered one: the shard's other writes wait for it.
            st.split.proposing = Some(write_id);
        }
        st.critical.open.insert(key, proposal);
        self.broadcast(&frame);
        self.check_decision(shard, key);
    }

    /// Counts votes; commits or rejects once the outcome is certain.
    fn check_decision(&mut self, shard: ShardId, key: CriticalKey) {
        let current = self.configuration();
        let st = self.states.get(&shard).expect("known shard");
        let Some(p) = st.critical.open.get(&key) else { return };
        let count = |list: &[PeerId]| list.iter().filter(|m| p.accepts.contains(m)).count();
        let old_ok = count(&p.quorum) >= majority(p.quorum.len());
        let new_ok = count(&current) >= majority(current.len());
        let rejects = p.rejects.keys().filter(|m| p.quorum.contains(m)).count();
        let rejected = rejects > p.quorum.len() - majority(p.quorum.len());
        if old_ok && new_ok {
            if !st.is_ready_czar(self.id) || st.replica.epoch != p.epoch {
                return; // no longer ours to apply: a new czar finishes it
            }
            let p = self.states.get_mut(&shard).expect("known").critical.open.remove(&key).expect("present");
            let version = self.apply_commit(shard, p.update);
            // The delta must leave before the decision that names its version.
            self.flush_outgoing();
            self.decide(shard, key, Decision::Committed(version));
        } else if rejected {
            let st = self.states.get_mut(&shard).expect("known");
            let p = st.critical.open.remove(&key).expect("present");
            let reason =
                p.rejects.iter().find(|(m, _)| p.quorum.contains(m)).map(|(_, r)| r.clone()).unwrap_or_default();
            self.decide(shard, key, Decision::Rejected(reason));
        }
    }

    fn decide(&mut self, shard: ShardId, key: CriticalKey, decision: Decision) {
        self.send_decision(shard, key, decision.clone(), None);
        self.apply_decision(shard, key, decision);
    }

    /// Sends a decision to every member, or only to `to`.
    fn send_decision(
        &mut self,
        shard: ShardId,
        (origin, write_id): CriticalKey,
        decision: Decision,
        to: Option<PeerId>,
    ) {
        let frame = Frame::Decided { origin, write_id, shard, decision };
        match to {
            None => self.broadcast(&frame),
            Some(peer) if peer == self.id => {}
            Some(peer) => {
                if let Some(addr) = self.members.get(&peer).map(|m| m.addr) {
                    self.queue_frame(addr, &frame);
                }
            }
        }
    }

    /// Records a decision here and tells the game.
    fn apply_decision(&mut self, shard: ShardId, key: CriticalKey, decision: Decision) {
        let st = self.states.get_mut(&shard).expect("known shard");
        if st.critical.decided.contains_key(&key) {
            return;
        }
        match &decision {
            Decision::Committed(v) if st.replica.seq() < v.seq => {
                if let Some(p) = st.critical.prepared.get_mut(&key) {
                    p.committed_at = Some(v.seq);
                }
            }
            _ => {
                st.critical.prepared.remove(&key);
            }
        }
        st.critical.recovered.remove(&key);
        st.critical.remember(key, decision.clone());
        let (origin, write_id) = key;
        if write_id & INTERNAL_WRITE_BIT != 0 {
            // The protocol's own proposal (a split): nothing for the game.
            let committed = matches!(decision, Decision::Committed(_));
            if origin == self.id || self.states[&shard].split.proposing == Some(write_id) {
                let now = self.clock;
                self.layout_decided(now, shard, write_id, committed);
            }
            return;
        }
        let mine = origin == self.id;
        if mine {
            if let Some(p) = self.pending_critical.remove(&write_id) {
                if matches!(decision, Decision::Committed(_)) {
                    let waited = self.clock.saturating_duration_since(p.created);
                    self.telemetry.commit_latency.record(waited);
                }
            }
        }
        let write = mine.then_some(WriteId(write_id));
        match decision {
            Decision::Committed(version) => {
                self.stats.critical_committed += 1;
                self.push_event(Event::Committed { write, origin, shard, version });
            }
            Decision::Rejected(reason) if mine => {
                self.push_event(Event::Rejected { write: WriteId(write_id), shard, reason });
            }
            Decision::TimedOut if mine => {
                self.push_event(Event::WriteFailed { write: WriteId(write_id), shard, reason: WriteFailure::TimedOut });
            }
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_propose(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: PeerId,
        origin: PeerId,
        write_id: u64,
        shard: ShardId,
        epoch: u32,
        update: Update,
    ) {
        let Some(st) = self.states.get(&shard) else {
            self.stats.drop(DropReason::UnknownShard);
            return;
        };
        let key = (origin, write_id);
        // Only the czar we follow, in its epoch, and not one we promised away.
        let current = st.replica.czar == Some(sender) && st.replica.epoch == epoch;
        // Nor under a provisional claim (made without a majority, the minority
        // side of a partition): it loses to any backed claim, and a backed
        // czar re-asserting over it gathers no prepared proposals, so what it
        // committed would be lost. We do not vote; the czar asks again, and
        // once its claim is backed (or another czar's is) the proposal is
        // decided or times out.
        // Nor while we only assumed its standing (we took the claim from a
        // delta or snapshot, which do not state it): it may be provisional.
        // Its adverts state it within a tick.
        let assumed = st.assumes_standing(epoch, sender);
        if current && (!st.replica.backed || assumed) {
            self.stats.drop(DropReason::StaleEpoch);
            return;
        }
        // A proposal of a later epoch than the one we follow comes from a claim
        // that has not reached us yet: proposals travel first, ahead of the
        // `Authority` that announces it. No vote; the czar asks again. A
        // reject would count against it, and the proposal may be a new czar's
        // re-proposal of an update its old czar committed, which a rejection
        // would undo (isolate-and-stall, 32 peers, seed 397: the re-proposal
        // reached every voter before the claim and was rejected).
        if !current && epoch > st.replica.epoch {
            self.stats.drop(DropReason::StaleEpoch);
            return;
        }
        // A promise outlives its round's deadline by a margin; the claimant can
        // no longer complete after that, so the living czar may commit again.
        let promise_fresh = now.saturating_duration_since(st.promised_at) < self.config.recovery_timeout * 2;
        let promised_away = promise_fresh && st.promised.is_some_and(|(e, _)| e > epoch);
        // Not the czar we follow in its epoch (an older claim, or a rival's),
        // or one we promised a later epoch away from: no vote either. A
        // reject would decide nothing about the update itself, only that
        // its czar is being replaced, and a majority of such rejects made
        // the update `Rejected` everywhere: a re-proposal of a commit (the
        // new czar finishing a voter's copy while a later round gathered
        // promises) was undone, and every member dropped its copy
        // (isolate-and-stall, 32 peers, seeds 259 and 671). Unanswered, the
        // czar learns of the new claim and drops the proposal undecided, for
        // the new czar to finish; the writer retries there.
        if !current || promised_away {
            self.stats.drop(DropReason::StaleEpoch);
            return;
        }
        let seen_committed = matches!(st.critical.decided.get(&key), Some(Decision::Committed(_)));
        if !seen_committed
            && super::split::is_layout_key(&update.key)
            && self.split_base_check(shard, &update) == BaseCheck::Behind
        {
            // Not yet at the state the split is made from: vote once there
            // (the czar asks again), and fetch what we miss meanwhile.
            self.stats.drop(DropReason::SplitPending);
            self.request_repair(now, shard, self.states[&shard].replica.seq() + 1, Some(sender), false);
            return;
        }
        let verdict = if seen_committed { Ok(()) } else { self.validate(shard, origin, &update) };
        let accept = verdict.is_ok();
        let st = self.states.get(&shard).expect("known");
        let known = match st.critical.decided.get(&key) {
            Some(Decision::Committed(v)) => Some(*v),
            _ => None,
        };
        if let Some(v) = known {
            // A proposal we saw committed (a new czar finishing a copy whose
            // decision it never heard): tell it first, so it does not commit
            // it a second time if its history already holds it.
            self.queue_frame(from, &Frame::Decided { origin, write_id, shard, decision: Decision::Committed(v) });
        }
        if accept {
            let st = self.states.get_mut(&shard).expect("known");
            let applied = st.replica.seq();
            let committed_at = known.map(|v| v.seq);
            // A commit we have applied needs no copy: our state holds it.
            let needed = committed_at.is_none_or(|at| at > applied);
            if needed && (st.critical.prepared.len() < MAX_PREPARED || st.critical.prepared.contains_key(&key)) {
                st.critical
                    .prepared
                    .insert(key, PreparedProposal { epoch, update, since: now, committed_at, reported: None });
            }
        }
        let reason = verdict.err().unwrap_or_default();
        self.queue_frame(from, &Frame::Vote { origin, write_id, shard, epoch, accept, reason });
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_vote(
        &mut self,
        sender: PeerId,
        origin: PeerId,
        write_id: u64,
        shard: ShardId,
        epoch: u32,
        accept: bool,
        reason: String,
    ) {
        let key = (origin, write_id);
        let Some(p) = self.states.get_mut(&shard).and_then(|s| s.critical.open.get_mut(&key)) else {
            self.stats.drop(DropReason::Duplicate);
            return;
        };
        if p.epoch != epoch {
            self.stats.drop(DropReason::StaleEpoch);
            return;
        }
        if accept {
            p.rejects.remove(&sender);
            p.accepts.insert(sender);
        } else {
            p.accepts.remove(&sender);
            p.rejects.insert(sender, reason);
        }
        self.check_decision(shard, key);
    }

    pub(super) fn handle_decided(
        &mut self,
        sender: PeerId,
        origin: PeerId,
        write_id: u64,
        shard: ShardId,
        decision: Decision,
    ) {
        let Some(st) = self.states.get(&shard) else {
            self.stats.drop(DropReason::UnknownShard);
            return;
        };
        let key = (origin, write_id);
        // Decisions come from the czar (or, answering a retry, a former one)...
        let from_czar = st.replica.czar == Some(sender) || st.replica.prev_czar == Some(sender);
        let ours = st.replica.czar == Some(self.id);
        // ... or from a member reporting a commit of a proposal we are
        // finishing (answering our `Propose`, or after a `Prepared` copy in a
        // recovery round).
        let finishing = st.critical.open.contains_key(&key) || st.critical.recovered.contains_key(&key);
        if let (Decision::Committed(v), true, true) = (&decision, finishing, ours || !from_czar) {
            if self.members.get(&sender).is_some_and(|m| m.is_alive()) {
                self.note_reported_commit(shard, key, *v);
                return;
            }
        }
        if !from_czar {
            self.stats.drop(DropReason::NotCzar);
            return;
        }
        self.apply_decision(shard, key, decision);
    }

    /// Applies a committed proposal as czar; the version the commit names.
    /// A commit that changes nothing names the version of the write that
    /// gave its key this value (a recovered proposal whose old czar
    /// committed it and whose decision was lost: the commit is that write,
    /// not whatever our state is at now): from the log while it remembers
    /// the write, else as the state records it (it travels in snapshots, so
    /// a czar whose log starts past the write still knows it; isolate-and-
    /// stall, 32 peers, seeds 463, 513 and 701), else our current version.
    fn apply_commit(&mut self, shard: ShardId, update: Update) -> Version {
        let key = update.key.clone();
        let op = update.op.clone();
        match self.apply_as_czar(shard, update) {
            WriteOutcome::Applied(v) => v,
            WriteOutcome::Unchanged(v) => {
                let r = &self.states[&shard].replica;
                match r.last_entry_of(&key, r.seq()) {
                    Some(e) if e.update.op == op => Version { epoch: e.epoch, seq: e.seq },
                    Some(_) => v,
                    None => r.written_at(&key).unwrap_or(v),
                }
            }
            WriteOutcome::Forwarded(_) => self.states[&shard].replica.version(),
        }
    }

    /// A member tells us a proposal we are finishing was committed at `v`
    /// (it saw the decision; we did not). If our history holds that commit,
    /// the proposal is closed with the original decision instead of being
    /// committed again (a second commit would re-apply an old value over
    /// newer writes). Otherwise the report is kept, for a recovered proposal,
    /// until we finish it.
    fn note_reported_commit(&mut self, shard: ShardId, key: CriticalKey, v: Version) {
        let st = self.states.get_mut(&shard).expect("known shard");
        if let Some(p) = st.critical.recovered.get_mut(&key) {
            p.reported = Some(v);
            return;
        }
        let st = &self.states[&shard];
        let Some(p) = st.critical.open.get(&key) else { return };
        if !st.is_ready_czar(self.id) || st.replica.epoch != p.epoch || !self.holds_commit(shard, v, &p.update) {
            return;
        }
        self.states.get_mut(&shard).expect("known").critical.open.remove(&key);
        self.decide(shard, key, Decision::Committed(v));
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_forward_critical(
        &mut self,
        now: Instant,
        sender: PeerId,
        write_id: u64,
        origin: PeerId,
        shard: ShardId,
        update: Update,
    ) {
        let Some(st) = self.states.get(&shard) else {
            self.stats.drop(DropReason::UnknownShard);
            return;
        };
        if st.is_ready_czar(self.id) {
            self.start_proposal(now, shard, origin, write_id, update);
            return;
        }
        // A write we know decided (we were its czar and lost the shard before
        // the writer heard, or we saw the decision) is answered with that
        // decision, as a czar answers a retry, and not relayed: the czar we
        // follow may never have heard of it and would propose it again, so a
        // commit would commit a second time (at its current version if the
        // value is already in its state: a commit no czar authored).
        let key = (origin, write_id);
        if sender == origin {
            if let Some(decision) = st.critical.decided.get(&key).cloned() {
                self.send_decision(shard, key, decision, Some(origin));
                return;
            }
        }
        self.relay_to_czar(shard, sender, origin, &Frame::ForwardCritical { write_id, origin, shard, update });
    }

    /// In a recovery round, a voter hands over a proposal it accepted.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_prepared(
        &mut self,
        now: Instant,
        sender: PeerId,
        shard: ShardId,
        origin: PeerId,
        write_id: u64,
        epoch: u32,
        update: Update,
    ) {
        if !self.states.contains_key(&shard) {
            self.stats.drop(DropReason::UnknownShard);
            return;
        }
        let key = (origin, write_id);
        // Only for a round of ours that claims the shard: a late answer to a
        // round that has ended (our promise to ourselves outlives it) would
        // be proposed again whenever we later became czar by other means.
        let claiming = self.round_claims(shard);
        let st = self.states.get_mut(&shard).expect("known shard");
        if !claiming || st.critical.recovered.len() >= MAX_PREPARED {
            return;
        }
        // Rejected or timed out here: nothing to finish, but it completes the
        // grant. A commit we know of is kept all the same: our history may
        // not hold it (we heard the decision, never the delta or a copy), and
        // the copies the voters hand us may be the last ones left
        // (isolate-and-stall, 32 peers, seed 469). Once the round has adopted
        // a state, `drive_critical` proposes it again only if that state
        // lacks it.
        if st.critical.decided.get(&key).is_some_and(|d| !matches!(d, Decision::Committed(_))) {
            self.note_prepared_received(sender, shard, key);
            return;
        }
        st.critical.recovered.entry(key).or_insert(PreparedProposal {
            epoch,
            update,
            since: now,
            committed_at: None,
            reported: None,
        });
        self.note_prepared_received(sender, shard, key);
    }

    /// As a voter in a recovery round: hands our prepared proposals of the
    /// granted shards to the claimant.
    pub(super) fn send_prepared(&mut self, to: SocketAddr, shard: ShardId) {
        let Some(st) = self.states.get(&shard) else { return };
        let mut frames: Vec<Frame> = Vec::new();
        for (&(origin, write_id), p) in &st.critical.prepared {
            frames.push(Frame::Prepared { shard, origin, write_id, epoch: p.epoch, update: p.update.clone() });
            // A copy kept only until we apply its commit: the claimant learns
            // the commit too, so it does not commit it again if it holds it.
            if let Some(decision @ Decision::Committed(_)) = st.critical.decided.get(&(origin, write_id)) {
                frames.push(Frame::Decided { origin, write_id, shard, decision: decision.clone() });
            }
        }
        for f in frames {
            self.queue_frame(to, &f);
        }
    }

    /// As a new czar: moves our own prepared proposals into the set to finish.
    pub(super) fn adopt_own_prepared(&mut self, shard: ShardId) {
        let st = self.states.get_mut(&shard).expect("known shard");
        let own: Vec<(CriticalKey, PreparedProposal)> =
            st.critical.prepared.iter().map(|(k, p)| (*k, p.clone())).collect();
        for (k, p) in own {
            st.critical.recovered.entry(k).or_insert(p);
        }
    }

    /// Sends (or re-sends) our critical writes to their czars, proposes those
    /// that are ours to propose, and times out the ones that waited too long.
    pub(super) fn retry_critical(&mut self, now: Instant, only: Option<u64>) {
        if !self.is_joined() {
            return;
        }
        let ids: Vec<u64> = match only {
            Some(id) => vec![id],
            None => self.pending_critical.keys().copied().collect(),
        };
        for id in ids {
            let Some(p) = self.pending_critical.get(&id) else { continue };
            let shard = p.shard;
            // The czar decides `TimedOut` at `critical_timeout` and tells us; our
            // own give-up waits twice that, for when the czar is gone too.
            if now.saturating_duration_since(p.created) >= self.config.critical_timeout * 2 {
                self.pending_critical.remove(&id);
                self.push_event(Event::WriteFailed { write: WriteId(id), shard, reason: WriteFailure::TimedOut });
                continue;
            }
            let st = &self.states[&shard];
            let Some(czar) = st.replica.czar else { continue };
            let due = match p.last_sent {
                None => true,
                Some((t, to)) => to != czar || now.saturating_duration_since(t) >= self.config.critical_retry_interval,
            };
            if !due {
                continue;
            }
            let update = p.update.clone();
            self.pending_critical.get_mut(&id).expect("present").last_sent = Some((now, czar));
            if st.is_ready_czar(self.id) {
                self.start_proposal(now, shard, self.id, id, update);
            } else if czar != self.id {
                if let Some(addr) = self.members.get(&czar).filter(|m| m.is_alive()).map(|m| m.addr) {
                    self.queue_frame(addr, &Frame::ForwardCritical { write_id: id, origin: self.id, shard, update });
                }
            }
        }
    }

    /// Periodic work: re-send proposals, time them out, finish recovered ones,
    /// forget stale prepared ones.
    pub(super) fn drive_critical(&mut self, now: Instant) {
        let shards: Vec<ShardId> = self.states.keys().copied().collect();
        for shard in shards {
            let ready = self.states[&shard].is_ready_czar(self.id);
            // Finish what a recovery round handed us, now that we may write
            // (once no round of ours still collects for the shard: we may be
            // czar by a hand-over meanwhile, and the round's proposals are for
            // its own takeover only).
            if ready && !self.takeover_pending(shard) {
                let recovered = std::mem::take(&mut self.states.get_mut(&shard).expect("known").critical.recovered);
                for ((origin, write_id), p) in recovered {
                    let key = (origin, write_id);
                    match self.states[&shard].critical.decided.get(&key).cloned() {
                        // Committed and held here already: nothing to finish.
                        Some(Decision::Committed(v)) if self.holds_commit(shard, v, &p.update) => continue,
                        Some(Decision::Rejected(_)) | Some(Decision::TimedOut) => continue,
                        // Committed but not in our history: it may exist nowhere
                        // else any more, so it is proposed again.
                        Some(Decision::Committed(_)) => {
                            self.states.get_mut(&shard).expect("known").critical.decided.remove(&key);
                        }
                        None => {
                            // A voter saw it committed and our history holds
                            // it: the decision stands, announced again so
                            // copies still held are dropped.
                            if let Some(v) = p.reported.filter(|v| self.holds_commit(shard, *v, &p.update)) {
                                self.decide(shard, key, Decision::Committed(v));
                                continue;
                            }
                        }
                    }
                    self.start_proposal(now, shard, origin, write_id, p.update);
                    if let Some(open) = self.states.get_mut(&shard).and_then(|s| s.critical.open.get_mut(&key)) {
                        open.recovered = true;
                    }
                }
            }
            let st = self.states.get_mut(&shard).expect("known");
            let ttl = self.config.prepared_ttl;
            let applied = st.replica.seq();
            st.critical.prepared.retain(|_, p| {
                now.saturating_duration_since(p.since) < ttl && p.committed_at.is_none_or(|at| at > applied)
            });
            let keys: Vec<CriticalKey> = st.critical.open.keys().copied().collect();
            for key in keys {
                let st = self.states.get_mut(&shard).expect("known");
                let p = st.critical.open.get_mut(&key).expect("present");
                if !ready || p.epoch != st.replica.epoch {
                    // We lost the shard: the new czar finishes it from a recovery round.
                    st.critical.open.remove(&key);
                    continue;
                }
                if now.saturating_duration_since(p.started) >= self.config.critical_timeout {
                    let p = st.critical.open.remove(&key).expect("present");
                    // A recovered proposal may be a commit of an earlier czar:
                    // a `TimedOut` would undo it everywhere. It is dropped
                    // undecided; the voters' copies outlive it (`prepared_ttl`)
                    // for the next round to collect.
                    if !p.recovered {
                        self.decide(shard, key, Decision::TimedOut);
                    }
                    continue;
                }
                if now.saturating_duration_since(p.last_sent) >= self.config.critical_retry_interval {
                    p.last_sent = now;
                    let voted: BTreeSet<PeerId> = p.accepts.iter().chain(p.rejects.keys()).copied().collect();
                    let frame = Frame::Propose {
                        origin: key.0,
                        write_id: key.1,
                        shard,
                        epoch: p.epoch,
                        update: p.update.clone(),
                    };
                    let bytes = frame.to_bytes();
                    let addrs: Vec<SocketAddr> =
                        self.members.others().filter(|m| !voted.contains(&m.id)).map(|m| m.addr).collect();
                    for addr in addrs {
                        self.queue(addr, bytes.clone());
                    }
                }
                self.check_decision(shard, key);
            }
        }
        self.retry_critical(now, None);
    }
}
