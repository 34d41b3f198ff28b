//! Replica: one shard's state on one peer, its version and its recent history.
//!
//! A shard is a key → bytes map at a version (epoch, seq). Sequence numbers
//! run on across epochs, so a shard's history is one line: update `seq` builds
//! on `seq - 1`. The replica applies updates strictly in order, keeps a bounded
//! log for repairing others, buffers a bounded number of early arrivals, and
//! keeps an order-independent content checksum that is updated per write.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use crate::identity::PeerId;
use crate::proof::BatchProof;
use crate::trend::{Trend, MAX_TREND_BYTES};
use crate::wire::{Op, SnapshotEntry, Update};

/// A shard version: the authority epoch, then the sequence number.
/// Ordered lexicographically; an update from an older epoch loses to any newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    /// Authority epoch: bumped by every claim or hand-over.
    pub epoch: u32,
    /// Updates applied since the shard was created.
    pub seq: u64,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.epoch, self.seq)
    }
}

/// One update in a replica's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Its sequence number.
    pub seq: u64,
    /// The epoch it was written in.
    pub epoch: u32,
    /// The change, resolved: a put, or a delete (never a patch or trend).
    pub update: Update,
    /// The op the update travels as in its run when that is a relative one
    /// ([`Op::Patch`] or [`Op::Trend`]; `None`: as `update` itself).
    pub sent_as: Option<Op>,
    /// The short state checksum right after this update.
    pub checksum: u64,
    /// The signed run this update came in, shared by every entry of the run
    /// (`None` for a czar's own writes until they are sent).
    pub proof: Option<Arc<BatchProof>>,
}

impl LogEntry {
    /// The update as its signed run carries it: what is signed, sent and resent.
    pub fn wire_update(&self) -> Update {
        match &self.sent_as {
            Some(op) => Update { key: self.update.key.clone(), op: op.clone() },
            None => self.update.clone(),
        }
    }

    /// Bytes [`LogEntry::wire_update`] takes on the wire.
    pub fn wire_len(&self) -> usize {
        match &self.sent_as {
            Some(op) => Update::encoded_len_of(&self.update.key, op.encoded_len()),
            None => self.update.encoded_len(),
        }
    }
}

/// Content checksum: XOR of a keyed BLAKE3 hash of every (key, value) pair.
/// Order-independent, so two peers with the same map agree however they got
/// there, and each write updates it in O(1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Checksum(pub [u8; 16]);

impl Checksum {
    fn toggle(&mut self, key: &[u8], value: &[u8]) {
        self.toggle_hash(&Checksum::entry_hash(key, value));
    }

    /// An entry's share of the checksum: its keyed hash, cut to 16 bytes.
    fn entry_hash(key: &[u8], value: &[u8]) -> [u8; 16] {
        // Keyed mode with a key derived once from the context: one compression
        // per short entry instead of two.
        static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
        let hash_key = KEY.get_or_init(|| blake3::derive_key("anarchy 2026 entry checksum v1", b""));
        let mut h = blake3::Hasher::new_keyed(hash_key);
        h.update(&(key.len() as u64).to_le_bytes());
        h.update(key);
        h.update(value);
        let out = h.finalize();
        let mut share = [0u8; 16];
        share.copy_from_slice(&out.as_bytes()[..16]);
        share
    }

    /// Adds or removes an entry's share (see [`Checksum::entry_hash`]).
    fn toggle_hash(&mut self, share: &[u8; 16]) {
        for (a, b) in self.0.iter_mut().zip(share) {
            *a ^= b;
        }
    }

    /// The first 8 bytes, as carried in heartbeats.
    pub fn short(&self) -> u64 {
        u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes"))
    }
}

/// One key's entry in a replica.
#[derive(Debug, Clone)]
struct Slot {
    value: Vec<u8>,
    /// The entry's checksum share, so replacing or removing the value does
    /// not hash the old one again.
    share: [u8; 16],
    /// The version of the write that gave the key this value;
    /// `Version::default()` when unknown (a split child's key, or a snapshot
    /// entry that did not say).
    written: Version,
    /// The value before the last change, for [`Op::Trend`]: kept when both
    /// have one length of at most [`MAX_TREND_BYTES`], else empty. A
    /// function of the history (and carried in snapshots), so every replica
    /// on one history holds the same; not part of the checksum.
    before: Vec<u8>,
}

/// One shard's replicated state.
#[derive(Debug, Clone, Default)]
pub struct Replica {
    /// Key → its [`Slot`].
    state: BTreeMap<Vec<u8>, Slot>,
    checksum: Checksum,
    bytes: usize,
    /// Current authority epoch.
    pub epoch: u32,
    /// Current czar, once one has claimed the shard.
    pub czar: Option<PeerId>,
    /// The czar before the current one (may serve the history it wrote).
    pub prev_czar: Option<PeerId>,
    /// The last sequence number of the previous epoch.
    pub epoch_start_seq: u64,
    /// The short checksum of the state at `epoch_start_seq`.
    pub epoch_start_checksum: u64,
    /// Whether the start was stated by the claimant itself (or found by its
    /// recovery round), rather than assumed from our own state or a relay.
    pub epoch_start_trusted: bool,
    /// Whether a majority stands behind the current czar's claim (see
    /// `Frame::Authority`); provisional claims lose to backed ones.
    pub backed: bool,
    /// The epoch whose history our state is on: the current epoch once our
    /// state is at (or a prefix of) its start, an older one while we follow a
    /// czar whose history ours is off (until its snapshot arrives).
    lineage: u32,
    seq: u64,
    /// (seq, short checksum) of the state the log starts from.
    log_base: (u64, u64),
    log: VecDeque<LogEntry>,
    early: BTreeMap<u64, (u32, Update, Option<Arc<BatchProof>>)>,
}

/// What applying a remote run of updates did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Updates applied now (including buffered ones that became contiguous).
    pub applied: Vec<LogEntry>,
    /// Updates already applied before.
    pub duplicates: usize,
    /// Updates buffered because an earlier one is missing.
    pub buffered: usize,
    /// Updates dropped because the early-arrival buffer is full.
    pub overflow: usize,
    /// Updates dropped because they do not continue our state: their run
    /// builds on another state, or its earlier updates are not the ones we
    /// applied (buffered updates of a lineage we have since left).
    pub off_history: usize,
    /// Whether a gap remains (a repair is needed).
    pub gap: bool,
}

impl Replica {
    /// The version of our state: the epoch whose history it is on (see
    /// [`Replica::set_lineage`]), then the last applied sequence number.
    pub fn version(&self) -> Version {
        Version { epoch: self.lineage, seq: self.seq }
    }

    /// Records that our state is on the history of `epoch` (never lowers it).
    pub fn set_lineage(&mut self, epoch: u32) {
        self.lineage = self.lineage.max(epoch);
    }

    /// Marks our state as on the current epoch's history once it is exactly
    /// that epoch's (trusted) starting state.
    pub fn note_start_reached(&mut self) {
        if self.epoch_start_trusted
            && self.seq == self.epoch_start_seq
            && self.checksum.short() == self.epoch_start_checksum
        {
            self.set_lineage(self.epoch);
        }
    }

    /// Whether our state is on the current epoch's history.
    pub fn on_current_lineage(&self) -> bool {
        self.lineage == self.epoch
    }

    /// The last applied sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The content checksum.
    pub fn checksum(&self) -> Checksum {
        self.checksum
    }

    /// A key's value.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.state.get(key).map(|s| s.value.as_slice())
    }

    /// The value `key` had before its last change, where kept (see [`Op::Trend`]).
    pub fn before(&self, key: &[u8]) -> Option<&[u8]> {
        self.state.get(key).map(|s| s.before.as_slice()).filter(|b| !b.is_empty())
    }

    /// The version of the write that gave `key` its current value, if known.
    /// Unlike the log, it survives log truncation and travels in snapshots:
    /// a new czar finishing a recovered critical proposal that its state
    /// already holds names the original commit with it.
    pub fn written_at(&self, key: &[u8]) -> Option<Version> {
        self.state.get(key).map(|s| s.written).filter(|w| *w != Version::default())
    }

    /// All entries, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.state.iter().map(|(k, s)| (k.as_slice(), s.value.as_slice()))
    }

    /// All entries with the version that wrote each (`Version::default()`
    /// if unknown) and the value before the last change (empty if not
    /// kept), in key order: what a snapshot carries.
    pub fn entries_written(&self) -> impl Iterator<Item = (&[u8], &[u8], Version, &[u8])> {
        self.state.iter().map(|(k, s)| (k.as_slice(), s.value.as_slice(), s.written, s.before.as_slice()))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.state.len()
    }

    /// Whether the shard has no keys.
    pub fn is_empty(&self) -> bool {
        self.state.is_empty()
    }

    /// Bytes of keys and values held.
    pub fn size_bytes(&self) -> usize {
        self.bytes
    }

    /// Whether `update` would change the state.
    pub fn changes(&self, update: &Update) -> bool {
        let current = self.get(&update.key);
        update.op.resolve_trend(current, self.before(&update.key)).as_deref() != current
    }

    /// Applies `update` and returns it resolved (a patch or trend becomes
    /// the put of the value it made) with the relative op it came as, if any.
    /// `at` is the version of the write (see [`Replica::written_at`]).
    fn apply_to_state(&mut self, update: Update, at: Version) -> (Update, Option<Op>) {
        let Update { key, op } = update;
        // One look-up for the usual case (a key that is there and stays).
        let new = match self.state.get_mut(&key) {
            Some(slot) => {
                let before = (!slot.before.is_empty()).then_some(slot.before.as_slice());
                let new = op.resolve_trend(Some(&slot.value), before);
                self.checksum.toggle_hash(&slot.share);
                self.bytes -= key.len() + slot.value.len();
                match &new {
                    Some(v) => {
                        let share = Checksum::entry_hash(&key, v);
                        self.checksum.toggle_hash(&share);
                        self.bytes += key.len() + v.len();
                        if v.len() == slot.value.len() && v.len() <= MAX_TREND_BYTES {
                            std::mem::swap(&mut slot.before, &mut slot.value);
                        } else {
                            slot.before.clear();
                        }
                        slot.value.clone_from(v);
                        slot.share = share;
                        slot.written = at;
                    }
                    None => {
                        self.state.remove(&key);
                    }
                }
                new
            }
            None => {
                let new = op.resolve(None);
                if let Some(v) = &new {
                    let share = Checksum::entry_hash(&key, v);
                    self.checksum.toggle_hash(&share);
                    self.bytes += key.len() + v.len();
                    self.state.insert(key.clone(), Slot { value: v.clone(), share, written: at, before: Vec::new() });
                }
                new
            }
        };
        let sent_as = match op {
            Op::Patch(_) | Op::Trend(_) => Some(op),
            Op::Put(_) | Op::Delete => None,
        };
        let op = match new {
            Some(v) => Op::Put(v),
            None => Op::Delete,
        };
        (Update { key, op }, sent_as)
    }

    fn push_log(&mut self, entry: LogEntry, capacity: usize) {
        if capacity == 0 {
            self.log.clear();
            self.log_base = (entry.seq, entry.checksum);
            return;
        }
        // Room first: pushing first would double a full log's buffer.
        while self.log.len() >= capacity {
            if let Some(old) = self.log.pop_front() {
                self.log_base = (old.seq, old.checksum);
            }
        }
        self.log.push_back(entry);
    }

    /// The short checksum our state had at `seq`, while the log remembers it.
    pub fn checksum_at(&self, seq: u64) -> Option<u64> {
        if seq == self.seq {
            return Some(self.checksum.short());
        }
        if seq == self.log_base.0 {
            return Some(self.log_base.1);
        }
        let first = self.log.front()?.seq;
        if seq < first || seq > self.seq {
            return None;
        }
        self.log.get((seq - first) as usize).map(|e| e.checksum)
    }

    /// The czar applies its own write: next sequence number in `epoch`.
    pub fn apply_local(&mut self, epoch: u32, update: Update, log_capacity: usize) -> LogEntry {
        debug_assert_eq!(epoch, self.epoch, "a czar writes in the current epoch");
        self.seq += 1;
        let sent_as = self.relative_op(&update);
        let (update, _) = self.apply_to_state(update, Version { epoch, seq: self.seq });
        self.set_lineage(epoch);
        let entry = LogEntry { seq: self.seq, epoch, update, sent_as, checksum: self.checksum.short(), proof: None };
        self.push_log(entry.clone(), log_capacity);
        entry
    }

    /// The smallest relative op that makes `update`'s put of our state, if
    /// one is smaller on the wire than the put: a value that changed by
    /// about what it changed last time travels as a [`Op::Trend`], one that
    /// changed in a few bytes as a [`Op::Patch`].
    fn relative_op(&self, update: &Update) -> Option<Op> {
        let Op::Put(new) = &update.op else { return None };
        let slot = self.state.get(&update.key)?;
        let old = &slot.value;
        let before = (!slot.before.is_empty()).then_some(&slot.before);
        let trend = before.and_then(|b| Trend::best(b, old, new)).map(Op::Trend);
        let patch = Op::patch(old, new);
        let whole = update.op.encoded_len();
        [trend, patch].into_iter().flatten().filter(|op| op.encoded_len() < whole).min_by_key(Op::encoded_len)
    }

    /// Records the signed run covering a czar's own logged writes, so they
    /// can be resent to others exactly as they were first sent.
    pub fn attach_proof(&mut self, proof: &Arc<BatchProof>) {
        let Some(first) = self.log.front().map(|e| e.seq) else { return };
        for seq in proof.first_seq..=proof.last_seq() {
            let Some(e) = seq.checked_sub(first).and_then(|i| self.log.get_mut(i as usize)) else { continue };
            if e.epoch == proof.epoch {
                e.proof = Some(Arc::clone(proof));
            }
        }
    }

    /// Applies a run of updates received from the czar, in order, buffering
    /// early ones (at most `max_early`) and skipping duplicates. `proof` is
    /// the run's signed header, kept with every entry for repairing others.
    pub fn apply_remote(
        &mut self,
        epoch: u32,
        first_seq: u64,
        updates: Vec<Update>,
        proof: Option<Arc<BatchProof>>,
        log_capacity: usize,
        max_early: usize,
    ) -> ApplyOutcome {
        let mut out = ApplyOutcome::default();
        for (i, update) in updates.into_iter().enumerate() {
            let seq = first_seq + i as u64;
            if seq <= self.seq {
                out.duplicates += 1;
            } else if seq == self.seq + 1 {
                if !self.continues(seq, proof.as_deref()) {
                    out.off_history += 1;
                    break;
                }
                self.apply_in_order(seq, epoch, update, proof.clone(), log_capacity, &mut out);
            } else if self.early.contains_key(&seq) {
                out.duplicates += 1;
            } else if self.early.len() < max_early {
                self.early.insert(seq, (epoch, update, proof.clone()));
                out.buffered += 1;
            } else {
                out.overflow += 1;
            }
        }
        // Drain buffered updates that are now contiguous.
        while let Some(entry) = self.early.first_entry() {
            let seq = *entry.key();
            if seq <= self.seq {
                entry.remove();
                continue;
            }
            if seq != self.seq + 1 {
                break;
            }
            let (epoch, update, proof) = entry.remove();
            if !self.continues(seq, proof.as_deref()) {
                // Buffered from a lineage we have left: none of it is ours.
                out.off_history += 1 + self.early.len();
                self.early.clear();
                break;
            }
            self.apply_in_order(seq, epoch, update, proof, log_capacity, &mut out);
        }
        out.gap = !self.early.is_empty();
        out
    }

    /// Whether the update at `seq` (next after ours) of the run `proof`
    /// continues our state: the run's first update must build on our
    /// checksum (of which a piece states half), a later
    /// one must follow an update of the run's author in the run's epoch
    /// applied just before (one czar per epoch: that is the run's own
    /// history, whether its pieces, this run or another brought it). Unverifiable (no proof, or our log restarted
    /// right there at a snapshot) counts as continuing, but a run straddling
    /// the snapshot only if it is of the epoch whose history the snapshot is
    /// on (its lineage): a run of another epoch wrote the seqs up to ours
    /// with updates our state does not hold (a follower that installed the
    /// old czar's state past the new epoch's start, then heard of the new
    /// epoch by its delta first: isolate-and-stall, 32 peers, seed 45).
    fn continues(&self, seq: u64, proof: Option<&BatchProof>) -> bool {
        let Some(p) = proof else { return true };
        if p.first_seq == seq {
            return p.builds_on(self.checksum.short());
        }
        // One czar per epoch: an update of the run's author in the run's
        // epoch just before is the run's own history, whichever of its pieces
        // or signed runs brought it.
        match self.log.back() {
            Some(last) => {
                last.seq + 1 == seq
                    && last.epoch == p.epoch
                    && last.proof.as_deref().is_some_and(|l| l == p || l.author == p.author)
            }
            None => self.log_base.0 + 1 == seq && p.epoch == self.lineage,
        }
    }

    fn apply_in_order(
        &mut self,
        seq: u64,
        epoch: u32,
        update: Update,
        proof: Option<Arc<BatchProof>>,
        log_capacity: usize,
        out: &mut ApplyOutcome,
    ) {
        let (update, sent_as) = self.apply_to_state(update, Version { epoch, seq });
        self.seq = seq;
        self.set_lineage(epoch);
        let entry = LogEntry { seq, epoch, update, sent_as, checksum: self.checksum.short(), proof };
        self.push_log(entry.clone(), log_capacity);
        out.applied.push(entry);
    }

    /// Whether updates are buffered behind a gap.
    pub fn has_gap(&self) -> bool {
        !self.early.is_empty()
    }

    /// Where the log holds `from_seq`: `None` if it no longer reaches back
    /// that far (or `from_seq` is 0 or past our next seq: the asker needs a
    /// snapshot), `Some(None)` if there is nothing after our seq to send,
    /// else the index of `from_seq` in the log.
    fn log_index(&self, from_seq: u64) -> Option<Option<usize>> {
        if from_seq == 0 || from_seq > self.seq.saturating_add(1) {
            return None;
        }
        if from_seq == self.seq + 1 {
            return Some(None);
        }
        let first = self.log.front()?.seq;
        (from_seq >= first).then(|| Some((from_seq - first) as usize))
    }

    /// The logged update at `seq`, or `None` if we have not applied that far
    /// or the log no longer reaches back to it.
    pub fn entry_at(&self, seq: u64) -> Option<&LogEntry> {
        let first = self.log.front()?.seq;
        if seq < first || seq > self.seq {
            return None;
        }
        self.log.get((seq - first) as usize).filter(|e| e.seq == seq)
    }

    /// The last logged update of `key` at or before `seq`, if the log still
    /// holds one.
    pub fn last_entry_of(&self, key: &[u8], seq: u64) -> Option<&LogEntry> {
        self.log.iter().rev().skip_while(|e| e.seq > seq).find(|e| e.update.key == key)
    }

    /// The updates of `run` as its author's pieces brought them (as they
    /// travelled), if the log holds every one of them so (unsigned, or
    /// already under `run` itself: a repair brought part of it signed): a
    /// run signature ([`crate::wire::Frame::RunSig`]) to check and keep. The
    /// caller states `run`'s base and end as our checksums there. `None`
    /// otherwise.
    pub fn pieces_of(&self, run: &BatchProof) -> Option<Vec<Update>> {
        (run.first_seq..=run.last_seq())
            .map(|seq| {
                let e = self.entry_at(seq)?;
                let p = e.proof.as_deref()?;
                let ours = (p.author == run.author && !p.is_signed()) || p == run;
                (e.epoch == run.epoch && ours).then(|| e.wire_update())
            })
            .collect()
    }

    /// Keeps the signed `run` (whose `updates` were checked against its
    /// signature) as the proof of every update we hold from it only as an
    /// unsigned piece of its author: same seq, epoch and content. A repair
    /// that resends a run signed brings the signature of the updates we
    /// already had from its pieces.
    pub fn adopt(&mut self, run: &Arc<BatchProof>, updates: &[Update]) {
        debug_assert!(run.is_signed());
        let Some(first) = self.log.front().map(|e| e.seq) else { return };
        for (seq, u) in (run.first_seq..).zip(updates) {
            let Some(e) = seq.checked_sub(first).and_then(|i| self.log.get_mut(i as usize)) else { continue };
            let piece = e.proof.as_ref().is_some_and(|p| !p.is_signed() && p.author == run.author);
            if piece && e.seq == seq && e.epoch == run.epoch && e.wire_update() == *u {
                e.proof = Some(Arc::clone(run));
            }
        }
    }

    /// Our own updates `first..=last` of `epoch`, not yet signed, as they
    /// travel: the open run a czar signs when it closes. `None` if the log
    /// no longer holds them all so (a snapshot replaced it, or it is shorter
    /// than the run).
    pub fn own_unsigned(&self, epoch: u32, first: u64, last: u64) -> Option<Vec<Update>> {
        (first..=last)
            .map(|seq| {
                let e = self.entry_at(seq)?;
                (e.epoch == epoch && e.proof.is_none()).then(|| e.wire_update())
            })
            .collect()
    }

    /// Whether the update at `seq` came in a piece whose run we hold no
    /// signature for: we cannot pass it on.
    pub fn unsigned_at(&self, seq: u64) -> bool {
        self.entry_at(seq).and_then(|e| e.proof.as_ref()).is_some_and(|p| !p.is_signed())
    }

    /// Whether the log reaches back to `seq`.
    pub fn log_covers(&self, seq: u64) -> bool {
        self.log.front().is_some_and(|e| e.seq <= seq)
    }

    /// Logged updates from `from_seq` on (at most `max`), or `None` if the log
    /// no longer reaches back that far (the asker needs a snapshot).
    pub fn log_from(&self, from_seq: u64, max: usize) -> Option<Vec<LogEntry>> {
        Some(match self.log_index(from_seq)? {
            None => Vec::new(),
            Some(start) => self.log.iter().skip(start).take(max).cloned().collect(),
        })
    }

    /// Whether an update we applied after `seq` was written by someone other
    /// than `czar` (or is an unsent write of our own), or in an epoch before
    /// `epoch`: then our state past `seq` is not on the history of `czar`'s
    /// claim at `epoch` (past its start, an epoch's history holds only
    /// updates written in it or later — the same czar's updates from an
    /// older claim it lost are not on it). `false` when the log no longer
    /// reaches back to `seq` (we cannot tell).
    pub fn foreign_after(&self, seq: u64, czar: PeerId, epoch: u32) -> bool {
        let Some(first) = self.log.front().map(|e| e.seq) else { return false };
        if seq + 1 < first {
            return false;
        }
        self.log
            .iter()
            .skip((seq + 1 - first) as usize)
            .any(|e| e.epoch < epoch || e.proof.as_ref().is_none_or(|p| p.author != czar))
    }

    /// Whole signed runs from the one holding `from_seq` on, as first sent
    /// (at most about `max` updates, at least one run), or `None` if the log
    /// no longer holds the start of that run (the asker needs a snapshot).
    /// Stops at the first entry not yet sent (no proof yet).
    pub fn signed_runs_from(&self, from_seq: u64, max: usize) -> Option<Vec<(Arc<BatchProof>, Vec<Update>)>> {
        if self.log_index(from_seq)?.is_none() {
            return Some(Vec::new());
        }
        let first = self.log.front()?.seq;
        // Each run is resent whole, with the updates our log holds at its
        // seqs (the same ones it carried, on one history; the receiver checks).
        let mut runs: Vec<(Arc<BatchProof>, Vec<Update>)> = Vec::new();
        let mut taken = 0;
        let mut seq = from_seq;
        while let Some(e) = seq.checked_sub(first).and_then(|i| self.log.get(i as usize)) {
            // Not signed yet (ours unsent, or a piece): nothing to pass on.
            let Some(p) = e.proof.as_ref().filter(|p| p.is_signed()) else { break };
            if p.first_seq < first {
                // The log starts inside this run: it cannot be resent whole.
                if runs.is_empty() {
                    return None;
                }
                break;
            }
            let n = p.count as usize;
            if p.last_seq() > self.seq || (!runs.is_empty() && taken + n > max) {
                break;
            }
            let start = (p.first_seq - first) as usize;
            // The whole run must be in our log as it came (a catch-up may have
            // kept only its first part, then written on top).
            if self.log.range(start..start + n).any(|e| e.proof.as_deref() != Some(p)) {
                if runs.is_empty() {
                    return None;
                }
                break;
            }
            let run: Vec<Update> = self.log.range(start..start + n).map(LogEntry::wire_update).collect();
            runs.push((Arc::clone(p), run));
            taken += n;
            seq = p.last_seq() + 1;
        }
        Some(runs)
    }

    /// The log's shape for debugging: base, then each entry's seq, epoch and
    /// the first seq of its signed run (`-` if not yet signed).
    pub fn debug_log(&self) -> String {
        let entries: Vec<String> = self
            .log
            .iter()
            .map(|e| match &e.proof {
                Some(p) => format!("{}@{}[{}..{}]", e.seq, e.epoch, p.first_seq, p.last_seq()),
                None => format!("{}@{}[-]", e.seq, e.epoch),
            })
            .collect();
        format!("base {} early {:?} [{}]", self.log_base.0, self.early.keys().collect::<Vec<_>>(), entries.join(" "))
    }

    /// Replaces the whole state with a snapshot at `version` (its epoch is
    /// the lineage it is on). The log restarts. Each entry carries the
    /// version that wrote it (`Version::default()`: unknown) and the value
    /// before its last change (empty: not kept).
    pub fn install(&mut self, version: Version, entries: Vec<SnapshotEntry>) {
        let seq = version.seq;
        self.lineage = version.epoch;
        self.state.clear();
        self.checksum = Checksum::default();
        self.bytes = 0;
        for (k, v, written, before) in entries {
            // A write is never after the state that holds it.
            let written = if written <= version { written } else { Version::default() };
            // Kept only as a change would have left it.
            let before = if before.len() == v.len() && v.len() <= MAX_TREND_BYTES { before } else { Vec::new() };
            let share = Checksum::entry_hash(&k, &v);
            self.checksum.toggle_hash(&share);
            self.bytes += k.len() + v.len();
            let key_len = k.len();
            if let Some(old) = self.state.insert(k, Slot { value: v, share, written, before }) {
                // A repeated key: the last one stands.
                self.checksum.toggle_hash(&old.share);
                self.bytes -= key_len + old.value.len();
            }
        }
        self.seq = seq;
        self.log.clear();
        self.log_base = (seq, self.checksum.short());
        self.early.retain(|s, _| *s > seq);
    }

    /// A new epoch begins after `start`: buffered early updates of older
    /// epochs past `start` are on none of its histories, and are forgotten
    /// (how many is returned). A czar catching up to `start` would otherwise
    /// apply one as soon as the gap before it closed.
    pub fn drop_early_past_start(&mut self, epoch: u32, start: u64) -> usize {
        let before = self.early.len();
        self.early.retain(|s, (e, _, _)| *s <= start || *e >= epoch);
        before - self.early.len()
    }

    /// The checksum `entries` would have, to check a snapshot before installing it.
    pub fn checksum_of<'a>(entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Checksum {
        let mut c = Checksum::default();
        for (k, v) in entries {
            c.toggle(k, v);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_run_is_adopted_by_the_pieces_it_covers_where_they_match() {
        let author = PeerId([1; 16]);
        let put = |k: &[u8], v: &[u8]| Update { key: k.to_vec(), op: Op::Put(v.to_vec()) };
        let mut r = Replica::default();
        let piece = Arc::new(BatchProof::unsigned(author, 0, 1, 2, r.checksum().short() as u32, 0));
        let out = r.apply_remote(0, 1, vec![put(b"a", b"1"), put(b"b", b"2")], Some(piece), 16, 16);
        assert_eq!(out.applied.len(), 2);
        let signed = Arc::new(BatchProof { author, epoch: 0, first_seq: 1, count: 2, base: 0, after: 0, sig: [9; 64] });
        // Another content at seq 2: only seq 1 takes the signature.
        r.adopt(&signed, &[put(b"a", b"1"), put(b"b", b"X")]);
        assert_eq!(r.entry_at(1).unwrap().proof.as_deref(), Some(&*signed));
        assert!(!r.entry_at(2).unwrap().proof.as_ref().unwrap().is_signed());
        // Another author's run is not ours to adopt.
        let other = Arc::new(BatchProof { author: PeerId([2; 16]), ..(*signed).clone() });
        r.adopt(&other, &[put(b"a", b"1"), put(b"b", b"2")]);
        assert!(!r.entry_at(2).unwrap().proof.as_ref().unwrap().is_signed());
        r.adopt(&signed, &[put(b"a", b"1"), put(b"b", b"2")]);
        assert_eq!(r.entry_at(2).unwrap().proof.as_deref(), Some(&*signed));
    }

    fn put(k: &str, v: &str) -> Update {
        Update { key: k.as_bytes().to_vec(), op: Op::Put(v.as_bytes().to_vec()) }
    }

    #[test]
    fn versions_order_by_epoch_first() {
        assert!(Version { epoch: 2, seq: 1 } > Version { epoch: 1, seq: 100 });
        assert!(Version { epoch: 1, seq: 2 } > Version { epoch: 1, seq: 1 });
    }

    #[test]
    fn checksum_depends_on_content_not_history() {
        let mut a = Replica::default();
        let mut b = Replica::default();
        a.apply_local(0, put("x", "1"), 16);
        a.apply_local(0, put("y", "2"), 16);
        b.apply_local(0, put("y", "2"), 16);
        b.apply_local(0, put("x", "0"), 16);
        b.apply_local(0, put("x", "1"), 16);
        assert_eq!(a.checksum(), b.checksum());
        b.apply_local(0, Update { key: b"y".to_vec(), op: Op::Delete }, 16);
        assert_ne!(a.checksum(), b.checksum());
        assert_eq!(b.checksum(), Replica::checksum_of(b.entries()));
        assert_eq!(b.size_bytes(), 2);
    }

    #[test]
    fn remote_updates_apply_in_order_with_gaps_buffered() {
        let mut r = Replica::default();
        let out = r.apply_remote(1, 3, vec![put("c", "3")], None, 16, 16);
        assert!(out.applied.is_empty());
        assert_eq!(out.buffered, 1);
        assert!(out.gap);
        let out = r.apply_remote(1, 1, vec![put("a", "1"), put("b", "2")], None, 16, 16);
        assert_eq!(out.applied.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(!out.gap);
        let out = r.apply_remote(1, 2, vec![put("b", "2")], None, 16, 16);
        assert_eq!(out.duplicates, 1);
        assert_eq!(r.seq(), 3);
    }

    #[test]
    fn a_small_change_is_logged_resolved_and_travels_as_a_patch() {
        let mut czar = Replica::default();
        let mut follower = Replica::default();
        let value = |x: u8| Update { key: b"e0".to_vec(), op: Op::Put(vec![x, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]) };
        let first = czar.apply_local(0, value(1), 16);
        assert_eq!(first.sent_as, None, "a new key goes whole");
        let second = czar.apply_local(0, value(3), 16);
        assert_eq!(second.update, value(3), "the log holds the value");
        assert_eq!(second.wire_update().op, Op::Patch(vec![2]), "trimmed: the rest stays as it was");
        assert_eq!(second.wire_len(), second.wire_update().encoded_len());
        let runs: Vec<Update> = [first, second].iter().map(LogEntry::wire_update).collect();
        let out = follower.apply_remote(0, 1, runs, None, 16, 16);
        assert_eq!(out.applied.len(), 2);
        assert_eq!(out.applied[1].update, value(3), "applied resolved");
        assert_eq!(follower.checksum(), czar.checksum());
        assert_eq!(follower.log_from(2, 1).unwrap()[0].wire_update(), czar.log_from(2, 1).unwrap()[0].wire_update());
    }

    #[test]
    fn early_buffer_is_bounded() {
        let mut r = Replica::default();
        let out = r.apply_remote(1, 10, vec![put("a", "1"), put("b", "1"), put("c", "1")], None, 16, 2);
        assert_eq!(out.buffered, 2);
        assert_eq!(out.overflow, 1);
    }

    #[test]
    fn early_updates_of_an_old_epoch_past_a_new_start_are_forgotten() {
        let mut r = Replica::default();
        // Seqs 3 and 4 of epoch 1 wait for 1 and 2; epoch 2 starts after 2.
        r.apply_remote(1, 3, vec![put("a", "3"), put("a", "4")], None, 16, 16);
        assert_eq!(r.drop_early_past_start(2, 2), 2);
        let out = r.apply_remote(1, 1, vec![put("a", "1"), put("a", "2")], None, 16, 16);
        assert_eq!((r.seq(), out.gap), (2, false), "catching up to the start stops there");
        r.apply_remote(2, 4, vec![put("b", "4")], None, 16, 16);
        assert_eq!(r.drop_early_past_start(2, 2), 0, "the new epoch's own are kept");
    }

    #[test]
    fn a_run_straddling_a_snapshot_continues_it_only_in_the_snapshots_epoch() {
        // A run of seqs 3 and 4 written in epoch 8: its update at 3 is not
        // ours (our snapshot at 3 is on epoch 5's history), so the one at 4
        // must not land on our state.
        let run = |epoch| {
            let proof = BatchProof {
                author: PeerId([7; crate::identity::PEER_ID_BYTES]),
                epoch,
                first_seq: 3,
                count: 2,
                base: 0,
                after: 0,
                sig: [0; crate::identity::SIGNATURE_BYTES],
            };
            Some(Arc::new(proof))
        };
        let mut r = Replica::default();
        r.install(
            Version { epoch: 5, seq: 3 },
            vec![(b"a".to_vec(), b"5".to_vec(), Version { epoch: 5, seq: 2 }, Vec::new())],
        );
        let out = r.apply_remote(8, 3, vec![put("a", "8"), put("b", "8")], run(8), 16, 16);
        assert_eq!((out.applied.len(), out.off_history, r.seq()), (0, 1, 3), "off our history");
        let out = r.apply_remote(5, 3, vec![put("a", "5"), put("b", "5")], run(5), 16, 16);
        assert_eq!((out.applied.len(), r.seq()), (1, 4), "the snapshot's own epoch continues it");
    }

    #[test]
    fn log_serves_repairs_until_it_runs_out() {
        let mut r = Replica::default();
        for i in 0..10 {
            r.apply_local(0, put("k", &i.to_string()), 4);
        }
        assert_eq!(r.log_from(7, 100).unwrap().len(), 4);
        assert_eq!(r.log_from(8, 2).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), vec![8, 9]);
        assert_eq!(r.log_from(11, 100), Some(vec![]));
        assert_eq!(r.log_from(3, 100), None, "log holds only the last 4");
        assert_eq!(r.log_from(0, 100), None, "0 asks for a snapshot");
        assert_eq!(r.checksum_at(10), Some(r.checksum().short()));
        assert_eq!(r.checksum_at(6), Some(r.log_from(7, 1).unwrap()[0].checksum).map(|_| r.checksum_at(6).unwrap()));
        assert!(r.checksum_at(6).is_some(), "the base of the log");
        assert_eq!(r.checksum_at(3), None, "forgotten");
    }

    #[test]
    fn the_version_that_wrote_a_key_outlives_the_log_and_travels_in_snapshots() {
        let mut r = Replica { epoch: 2, ..Default::default() };
        r.apply_local(2, put("a", "1"), 2);
        r.apply_remote(2, 2, vec![put("b", "1"), put("c", "1"), put("b", "2")], None, 2, 16);
        assert_eq!(r.written_at(b"a"), Some(Version { epoch: 2, seq: 1 }), "the log no longer holds it");
        assert!(r.last_entry_of(b"a", r.seq()).is_none());
        assert_eq!(r.written_at(b"b"), Some(Version { epoch: 2, seq: 4 }), "the last write counts");
        let entries: Vec<SnapshotEntry> =
            r.entries_written().map(|(k, v, w, b)| (k.to_vec(), v.to_vec(), w, b.to_vec())).collect();
        let mut copy = Replica::default();
        copy.install(r.version(), entries);
        assert_eq!(copy.written_at(b"a"), Some(Version { epoch: 2, seq: 1 }));
        assert_eq!(copy.checksum(), r.checksum());
        // A snapshot cannot hold a write from after its own version.
        copy.install(
            Version { epoch: 2, seq: 1 },
            vec![(b"a".to_vec(), b"1".to_vec(), Version { epoch: 2, seq: 9 }, Vec::new())],
        );
        assert_eq!(copy.written_at(b"a"), None);
    }

    #[test]
    fn a_value_moving_steadily_travels_as_a_trend_that_snapshots_carry_on() {
        let pos = |x: u16, y: u16| {
            let mut v = [0u8; 12];
            v[..2].copy_from_slice(&x.to_le_bytes());
            v[2..4].copy_from_slice(&y.to_le_bytes());
            Update { key: b"e0".to_vec(), op: Op::Put(v.to_vec()) }
        };
        let mut czar = Replica::default();
        let mut follower = Replica::default();
        let mut sent = Vec::new();
        // Moving by (+300, -5) a tick, then (+301, -5): the third write on is a guess off by at most one.
        for (i, (x, y)) in [(1000u16, 50000u16), (1300, 49995), (1601, 49990), (1902, 49985)].into_iter().enumerate() {
            let e = czar.apply_local(0, pos(x, y), 16);
            assert_eq!(e.update, pos(x, y), "the log holds the value");
            assert_eq!(e.wire_len(), e.wire_update().encoded_len());
            if i >= 2 {
                assert!(matches!(e.sent_as, Some(Op::Trend(_))), "write {i} travels as {:?}", e.sent_as);
                // In lanes of four bytes, y's steady step is part of the guess.
                assert_eq!(e.wire_len(), 1 + 2 + 1 + 1, "tag, key, header, one code byte for three lanes");
            }
            sent.push(e.wire_update());
        }
        let out = follower.apply_remote(0, 1, sent[..3].to_vec(), None, 16, 16);
        assert_eq!(out.applied.len(), 3);
        assert_eq!(Some(follower.checksum().short()), czar.checksum_at(3));
        // A snapshot of the follower's state carries the value before, so the
        // next trend applies on the copy too.
        let entries: Vec<SnapshotEntry> =
            follower.entries_written().map(|(k, v, w, b)| (k.to_vec(), v.to_vec(), w, b.to_vec())).collect();
        let mut copy = Replica::default();
        copy.install(follower.version(), entries.clone());
        for r in [&mut follower, &mut copy] {
            r.apply_remote(0, 4, vec![sent[3].clone()], None, 16, 16);
            assert_eq!(r.get(b"e0"), czar.get(b"e0"));
            assert_eq!(r.checksum(), czar.checksum());
        }
        // Without it (a split child's start), the trend leaves the value as it was.
        let mut bare = Replica::default();
        bare.install(
            Version { epoch: 0, seq: 3 },
            entries.into_iter().map(|(k, v, w, _)| (k, v, w, Vec::new())).collect(),
        );
        bare.apply_remote(0, 4, vec![sent[3].clone()], None, 16, 16);
        assert_ne!(bare.checksum(), czar.checksum());
    }
}
