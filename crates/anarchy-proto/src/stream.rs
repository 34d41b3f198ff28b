//! Streams: fast-changing state where only the newest value matters, and the
//! send budget of each link.
//!
//! Owns the two pure pieces of the stream path. [`StreamValues`] is one
//! shard's stream keys on one peer: each value with the (epoch, stamp) it was
//! last changed at, newer wins, and the czar's view of which keys changed
//! after a stamp. [`LinkRate`] is the send budget of one link: a token bucket
//! whose rate follows additive-increase, multiplicative-decrease on the round
//! trips and losses the stream acknowledgements show. Stream values are not
//! part of the shard's versioned, checksummed log: they are never repaired
//! one by one, the newest value of every key changed since the receiver's
//! acknowledgement is sent again instead. Pure: time comes in as an [`Instant`].

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::time::Instant;
use crate::wire::{Op, Update};

/// Values kept per key, newest last, to patch against (czar) or to resolve
/// patches against (member). A member may record one change twice (from a
/// partial list and from the next whole one), so the czar patches only
/// against a base at most [`PATCH_CHANGES`] changes back: the member still
/// holds the base's value then.
const HISTORY: usize = 16;
/// The czar patches a value only if the key changed at most this many times
/// since the base the member acknowledged.
const PATCH_CHANGES: usize = 7;

/// One stream key's recent values in the epoch of its last change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StreamEntry {
    epoch: u32,
    /// (stamp, value) of the key's last changes in `epoch`, oldest first;
    /// never empty: the last is the current value and its stamp.
    history: VecDeque<(u64, Vec<u8>)>,
}

impl StreamEntry {
    fn current(&self) -> &(u64, Vec<u8>) {
        self.history.back().expect("never empty")
    }

    fn stamp(&self) -> u64 {
        self.current().0
    }

    fn value(&self) -> &[u8] {
        &self.current().1
    }
}

/// One shard's stream keys as one peer holds them.
#[derive(Debug, Clone, Default)]
pub struct StreamValues {
    values: BTreeMap<Vec<u8>, StreamEntry>,
    /// Keys by (epoch, stamp) of their last change, for [`StreamValues::changed_after`].
    by_stamp: BTreeMap<(u32, u64), Vec<Vec<u8>>>,
    /// [`StreamValues::encoded_len`], kept as values change (a czar checks it on every write).
    encoded: usize,
}

impl StreamValues {
    /// The value of `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.values.get(key).map(StreamEntry::value)
    }

    /// Stream keys held.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no stream key is held.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Every key and value, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.values.iter().map(|(k, e)| (k.as_slice(), e.value()))
    }

    /// Takes `value` for `key` as changed at (`epoch`, `stamp`) if that is
    /// newer than what we hold. Returns whether it was taken.
    pub fn offer(&mut self, epoch: u32, stamp: u64, key: &[u8], value: &[u8]) -> bool {
        let mut history = VecDeque::new();
        if let Some(mut e) = self.values.remove(key) {
            if (e.epoch, e.stamp()) >= (epoch, stamp) {
                // Older than what we hold: still what the key was as of `stamp`.
                if e.epoch == epoch {
                    remember(&mut e.history, stamp, value);
                }
                self.values.insert(key.to_vec(), e);
                return false;
            }
            self.unlist(key, &e);
            if e.epoch == epoch {
                history = e.history;
            }
        }
        remember(&mut history, stamp, value);
        self.encoded += Update::encoded_len_of(key, value.len());
        self.values.insert(key.to_vec(), StreamEntry { epoch, history });
        self.by_stamp.entry((epoch, stamp)).or_default().push(key.to_vec());
        true
    }

    /// Bytes every stream key and value of the shard take as frame entries:
    /// a frame with all of them must fit [`crate::wire::MAX_FRAGMENTED_FRAME_BYTES`].
    pub fn encoded_len(&self) -> usize {
        self.encoded
    }

    /// `key`'s value as of stamp `at` of `epoch`: its last change at or before
    /// it, if we still hold it (`None` too if the key changed only later).
    pub fn value_as_of(&self, epoch: u32, key: &[u8], at: u64) -> Option<&[u8]> {
        let e = self.values.get(key).filter(|e| e.epoch == epoch)?;
        e.history.iter().rev().find(|(stamp, _)| *stamp <= at).map(|(_, v)| v.as_slice())
    }

    /// As czar at `epoch`: every key last changed after `from` in that epoch
    /// (or, if `from` is 0, every key whatever its epoch), oldest change
    /// first, and the stamp the list covers: as many keys as fit in
    /// `max_bytes` of encoded entries, always whole stamps, at least one key.
    /// With a `base` (a stamp the receiver acknowledged, at most `from`), a
    /// value goes as a patch against the key's value as of `base` when that
    /// is smaller; otherwise whole. Patches need whole lists: a list cut
    /// short leaves out keys changed in range that changed again after its
    /// last stamp, and the receiver's view as of that stamp would be stale,
    /// so the czar passes a `max_bytes` that holds every key.
    pub fn changed_after(&self, epoch: u32, from: u64, base: u64, max_bytes: usize) -> (Vec<Update>, u64) {
        let start = if from == 0 { (0, 0) } else { (epoch, from + 1) };
        let mut out: Vec<Update> = Vec::new();
        let mut used = 0;
        let mut to = from;
        for ((e, stamp), keys) in self.by_stamp.range(start..=(epoch, u64::MAX)) {
            let updates: Vec<Update> = keys.iter().map(|k| self.entry(epoch, k, base)).collect();
            let len: usize = updates.iter().map(Update::encoded_len).sum();
            if !out.is_empty() && used + len > max_bytes {
                break;
            }
            used += len;
            out.extend(updates);
            // Older epochs are all sent at once (from 0): they count as stamp 0 of ours.
            to = if *e == epoch { (*stamp).max(to) } else { to };
        }
        (out, to)
    }

    /// As czar at `epoch`: the keys [`StreamValues::changed_after`] would
    /// list, each with the stamp of its last change (0 for an older epoch's),
    /// oldest change first.
    pub fn changed_keys_after(&self, epoch: u32, from: u64) -> Vec<(&[u8], u64)> {
        let start = if from == 0 { (0, 0) } else { (epoch, from + 1) };
        let mut out = Vec::new();
        for ((e, stamp), keys) in self.by_stamp.range(start..=(epoch, u64::MAX)) {
            let stamp = if *e == epoch { *stamp } else { 0 };
            out.extend(keys.iter().map(|k| (k.as_slice(), stamp)));
        }
        out
    }

    /// `key`'s newest value as a frame entry: a patch against its value as of
    /// `base` (a stamp of `epoch` the receiver acknowledged, 0 for none) when
    /// that is smaller, otherwise whole. The key must be held.
    pub fn entry(&self, epoch: u32, key: &[u8], base: u64) -> Update {
        let e = &self.values[key];
        let new = e.value();
        let recent = e.history.iter().filter(|(stamp, _)| *stamp > base).count() <= PATCH_CHANGES;
        let old = (base > 0 && recent).then(|| self.value_as_of(epoch, key, base)).flatten();
        let op = old.and_then(|old| Op::patch(old, new)).unwrap_or_else(|| Op::Put(new.to_vec()));
        Update { key: key.to_vec(), op }
    }

    /// Stamps every key as changed at (`epoch`, 1): a new czar takes the
    /// values it holds as its own, so that every member ends with them.
    pub fn adopt(&mut self, epoch: u32) {
        let keys: Vec<Vec<u8>> = self.values.keys().cloned().collect();
        self.by_stamp.clear();
        for k in &keys {
            let e = self.values.get_mut(k).expect("present");
            e.epoch = epoch;
            let value = e.history.pop_back().expect("never empty").1;
            e.history = VecDeque::from([(1, value)]);
        }
        if !keys.is_empty() {
            self.by_stamp.insert((epoch, 1), keys);
        }
    }

    /// A 64-bit digest of every key and value (not their stamps), for
    /// comparing what peers hold.
    pub fn digest(&self) -> u64 {
        let mut h = blake3::Hasher::new();
        for (k, e) in &self.values {
            h.update(&(k.len() as u64).to_le_bytes());
            h.update(k);
            h.update(&(e.value().len() as u64).to_le_bytes());
            h.update(e.value());
        }
        u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
    }

    /// Drops every key not last changed in `epoch`, and returns how many.
    /// A member that took a czar's whole list from the start of its epoch
    /// holds every key the czar holds at `epoch` (the czar stamped them all
    /// so when it took the shard, [`StreamValues::adopt`]): a key of
    /// another epoch is one the czar never had, written by a czar that lost
    /// the shard before the key reached the new one.
    pub fn retain_epoch(&mut self, epoch: u32) -> usize {
        let stale: Vec<Vec<u8>> =
            self.values.iter().filter(|(_, e)| e.epoch != epoch).map(|(k, _)| k.clone()).collect();
        for key in &stale {
            let e = self.values.remove(key).expect("listed");
            self.unlist(key, &e);
        }
        stale.len()
    }

    /// Takes out of the stamp index and the encoded length the entry `e`
    /// of `key`, just removed from `values`.
    fn unlist(&mut self, key: &[u8], e: &StreamEntry) {
        let at = (e.epoch, e.stamp());
        if let Some(keys) = self.by_stamp.get_mut(&at) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_stamp.remove(&at);
            }
        }
        self.encoded -= Update::encoded_len_of(key, e.value().len());
    }
}

/// Records `value` as the key's value as of `stamp` in `history` (kept in
/// stamp order, the oldest forgotten past [`HISTORY`]).
fn remember(history: &mut VecDeque<(u64, Vec<u8>)>, stamp: u64, value: &[u8]) {
    match history.binary_search_by_key(&stamp, |(s, _)| *s) {
        Ok(_) => {}
        Err(at) => history.insert(at, (stamp, value.to_vec())),
    }
    while history.len() > HISTORY {
        history.pop_front();
    }
}

/// A stream key's priority when the game gives none (see
/// [`Accumulator`]): room above and below for keys that matter more or less.
pub const DEFAULT_STREAM_PRIORITY: u8 = 15;

/// The priority accumulator of one link and shard: which stream keys go when
/// a link's budget has room for only some of them.
///
/// At every send opportunity each key still waiting gains its priority plus
/// one; the keys with the most go first, as many as fit, and start again from
/// zero. A key that waits keeps gaining, so however low its priority it
/// overtakes any higher one in time: nothing starves. Higher goes more
/// often: with room for one key per send, keys of priority 0, 15 and 47
/// always waiting go 2 %, 33 % and 65 % of the time.
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    acc: BTreeMap<Vec<u8>, u64>,
}

impl Accumulator {
    /// One send opportunity with room for `budget` bytes of entries.
    /// `pending` lists every key waiting, oldest change first, as (key,
    /// priority, bytes its entry takes). Each gains its priority plus one;
    /// then keys go highest total first (ties: older change first) while
    /// they fit, stopping at the first that does not, so the key that has
    /// waited longest for its priority is never passed over by smaller ones.
    /// Returns the indexes into `pending` of the keys to send, in `pending`
    /// order; they start again from zero, and keys not in `pending` are
    /// forgotten.
    pub fn pick(&mut self, pending: &[(&[u8], u8, usize)], budget: usize) -> Vec<usize> {
        let mut scored: Vec<(u64, usize)> = pending
            .iter()
            .enumerate()
            .map(|(i, (key, priority, _))| (self.acc.get(*key).copied().unwrap_or(0) + u64::from(*priority) + 1, i))
            .collect();
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut chosen = vec![false; pending.len()];
        let mut used = 0;
        for &(_, i) in &scored {
            let len = pending[i].2;
            if used + len > budget {
                break;
            }
            used += len;
            chosen[i] = true;
        }
        self.acc =
            scored.iter().filter(|(_, i)| !chosen[*i]).map(|&(total, i)| (pending[i].0.to_vec(), total)).collect();
        (0..pending.len()).filter(|i| chosen[*i]).collect()
    }

    /// A send opportunity with no room: what [`Accumulator::pick`] does with
    /// a budget of 0, without the entry sizes it would not look at. Each
    /// waiting key (key, priority) gains its priority plus one; keys not
    /// waiting are forgotten.
    pub fn wait<'a>(&mut self, waiting: impl IntoIterator<Item = (&'a [u8], u8)>) {
        let next: BTreeMap<Vec<u8>, u64> = waiting
            .into_iter()
            .map(|(key, priority)| (key.to_vec(), self.total(key) + u64::from(priority) + 1))
            .collect();
        self.acc = next;
    }

    /// What `key` has gained while waiting (0 if it is not waiting).
    pub fn total(&self, key: &[u8]) -> u64 {
        self.acc.get(key).copied().unwrap_or(0)
    }
}

/// Lowest send budget of a link, bytes per second.
pub const MIN_RATE: u64 = 2_000;
/// Highest send budget of a link, bytes per second.
pub const MAX_RATE: u64 = 1_000_000;
/// A link's budget before anything is measured, bytes per second.
pub const START_RATE: u64 = 64_000;
/// Added to the budget per good round trip, bytes per second.
const INCREASE: u64 = 2_000;
/// The budget is multiplied by this (in thousandths) on congestion.
const DECREASE_PER_MILLE: u64 = 700;
/// A round trip this far above the link's lowest is queueing: congestion.
const QUEUE_DELAY: Duration = Duration::from_millis(80);
/// How much of a second's budget the bucket holds at most.
const BURST_MILLIS: u64 = 100;
/// The lowest round trip is forgotten after this long (a route may change).
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);

/// The send budget of one link: AIMD on acknowledged round trips and losses,
/// spent as a token bucket by everything sent on the link.
#[derive(Debug, Clone)]
pub struct LinkRate {
    rate: u64,
    /// Bytes that may be sent now, times 1000 (may go below zero: reliable
    /// traffic is never held back, streams wait until it is paid for).
    tokens: i64,
    refilled: Instant,
    srtt: Option<Duration>,
    min_rtt: Option<(Duration, Instant)>,
    last_change: Option<Instant>,
    losses: u64,
    samples: u64,
}

impl LinkRate {
    /// A link first seen at `now`, at [`START_RATE`].
    pub fn new(now: Instant) -> Self {
        LinkRate {
            rate: START_RATE,
            tokens: (START_RATE * BURST_MILLIS) as i64,
            refilled: now,
            srtt: None,
            min_rtt: None,
            last_change: None,
            losses: 0,
            samples: 0,
        }
    }

    /// The budget, bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The smoothed acknowledged round trip, once measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The share of stream sends that had to be repeated (losses over sends).
    pub fn loss(&self) -> Option<f64> {
        (self.samples + self.losses > 0).then(|| self.losses as f64 / (self.samples + self.losses) as f64)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_micros() as u64;
        self.refilled = self.refilled.max(now);
        let cap = (self.rate * BURST_MILLIS).max(8_000_000) as i64;
        // rate bytes/s × elapsed µs / 1000 = thousandths of a byte.
        let add = (self.rate.saturating_mul(elapsed) / 1000).min(i64::MAX as u64) as i64;
        self.tokens = self.tokens.saturating_add(add).min(cap);
    }

    /// Whether a stream send may go now (everything sent so far is paid for).
    pub fn may_send(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens > 0
    }

    /// Bytes that may be sent now without going over the budget (at most
    /// 0 while earlier sends are still being paid for).
    pub fn available(&mut self, now: Instant) -> i64 {
        self.refill(now);
        self.tokens / 1000
    }

    /// Pays for `bytes` sent at `now`.
    pub fn spend(&mut self, now: Instant, bytes: usize) {
        self.refill(now);
        self.tokens = self.tokens.saturating_sub(bytes as i64 * 1000);
    }

    /// An acknowledgement showed a round trip of `rtt`.
    pub fn on_rtt(&mut self, now: Instant, rtt: Duration) {
        self.samples += 1;
        self.srtt = Some(match self.srtt {
            None => rtt,
            Some(s) => (s * 7 + rtt) / 8,
        });
        let min = match self.min_rtt {
            Some((m, at)) if m <= rtt && now.saturating_duration_since(at) < MIN_RTT_WINDOW => (m, at),
            _ => (rtt, now),
        };
        self.min_rtt = Some(min);
        if rtt > min.0 + QUEUE_DELAY {
            self.decrease(now);
        } else if self.may_change(now) {
            self.rate = (self.rate + INCREASE).min(MAX_RATE);
            self.last_change = Some(now);
        }
    }

    /// A stream send was lost (its acknowledgement never came).
    pub fn on_loss(&mut self, now: Instant) {
        self.losses += 1;
        self.decrease(now);
    }

    fn decrease(&mut self, now: Instant) {
        if self.may_change(now) {
            self.rate = (self.rate * DECREASE_PER_MILLE / 1000).max(MIN_RATE);
            self.last_change = Some(now);
        }
    }

    /// At most one change per smoothed round trip (at least 50 ms).
    fn may_change(&self, now: Instant) -> bool {
        let every = self.srtt.unwrap_or(Duration::ZERO).max(Duration::from_millis(50));
        self.last_change.is_none_or(|t| now.saturating_duration_since(t) >= every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(n)
    }

    #[test]
    fn newer_values_win_and_the_czar_lists_changes_after_a_stamp_oldest_first() {
        let mut s = StreamValues::default();
        assert!(s.offer(1, 1, b"a", b"a1"));
        assert!(s.offer(1, 2, b"b", b"b2"));
        assert!(s.offer(1, 3, b"a", b"a3"));
        assert!(!s.offer(1, 2, b"a", b"old"), "an older change loses");
        assert!(!s.offer(1, 3, b"a", b"same stamp"));
        assert_eq!(s.get(b"a"), Some(&b"a3"[..]));
        let (all, to) = s.changed_after(1, 0, 0, 1 << 20);
        assert_eq!((all, to), (vec![put(b"b", b"b2"), put(b"a", b"a3")], 3));
        let (after_two, to) = s.changed_after(1, 2, 0, 1 << 20);
        assert_eq!((after_two, to), (vec![put(b"a", b"a3")], 3));
        let (none, to) = s.changed_after(1, 3, 0, 1 << 20);
        assert_eq!((none.len(), to), (0, 3));
        // A budget of bytes cuts at whole stamps, always sending one.
        let (first, to) = s.changed_after(1, 0, 0, 1);
        assert_eq!((first.len(), to), (1, 2));
        assert!(s.offer(2, 1, b"c", b"c"), "a later epoch beats any stamp of an earlier one");
    }

    #[test]
    fn a_member_drops_the_keys_its_czar_never_had() {
        // The czar that lost the shard wrote `orphan`; the new czar never got it.
        let mut member = StreamValues::default();
        member.offer(3, 7, b"orphan", b"o");
        member.offer(3, 8, b"a", b"old");
        let mut czar = StreamValues::default();
        czar.offer(3, 6, b"a", b"a");
        czar.adopt(5);
        let (list, to) = czar.changed_after(5, 0, 0, 1 << 20);
        for u in &list {
            member.offer(5, to, &u.key, &u.op.resolve(None).expect("whole"));
        }
        assert_ne!(member.digest(), czar.digest());
        assert_eq!(member.retain_epoch(5), 1);
        assert_eq!(member.digest(), czar.digest());
        assert_eq!(member.encoded_len(), czar.encoded_len());
        assert_eq!(member.changed_after(5, 0, 0, 1 << 20), czar.changed_after(5, 0, 0, 1 << 20));
    }

    #[test]
    fn a_new_czar_adopts_what_it_holds_and_sends_it_all() {
        let mut s = StreamValues::default();
        s.offer(3, 40, b"a", b"x");
        s.offer(3, 41, b"b", b"y");
        let digest = s.digest();
        s.adopt(5);
        assert_eq!(s.digest(), digest, "values unchanged");
        let (all, to) = s.changed_after(5, 0, 0, 1 << 20);
        assert_eq!((all.len(), to), (2, 1));
        assert!(!s.offer(3, 99, b"a", b"late"), "the old czar's late values lose");
        assert!(s.offer(5, 2, b"a", b"z"));
        assert_eq!(s.changed_after(5, 1, 0, 1 << 20).0, vec![put(b"a", b"z")]);
    }

    fn put(k: &[u8], v: &[u8]) -> Update {
        Update { key: k.to_vec(), op: Op::Put(v.to_vec()) }
    }

    #[test]
    fn values_go_as_patches_against_what_the_receiver_acknowledged() {
        let pos = |x: u8| [x, 0, 0, 0, 7, 7, 7, 7, 9, 9, 9, 9];
        let mut czar = StreamValues::default();
        for stamp in 1..=4u64 {
            czar.offer(2, stamp, b"e0", &pos(stamp as u8));
        }
        // The receiver acknowledged stamp 2: e0 was pos(2) then.
        assert_eq!(czar.value_as_of(2, b"e0", 2), Some(&pos(2)[..]));
        let (sent, to) = czar.changed_after(2, 3, 2, 1 << 20);
        assert_eq!(to, 4);
        assert_eq!(sent[0].op, Op::Patch(vec![2 ^ 4]));
        assert_eq!(sent[0].op.resolve(Some(&pos(2))), Some(pos(4).to_vec()));
        // Without a base, or once the base is older than the history kept: whole.
        assert_eq!(czar.changed_after(2, 3, 0, 1 << 20).0[0].op, Op::Put(pos(4).to_vec()));
        for stamp in 5..=20u64 {
            czar.offer(2, stamp, b"e0", &pos(stamp as u8));
        }
        assert_eq!(czar.value_as_of(2, b"e0", 2), None, "only the last 8 values are kept");
        assert_eq!(czar.changed_after(2, 19, 2, 1 << 20).0[0].op, Op::Put(pos(20).to_vec()));
        assert_eq!(czar.value_as_of(3, b"e0", 20), None, "another epoch");
    }

    #[test]
    fn a_late_older_value_still_says_what_the_key_was_as_of_its_stamp() {
        // A member took frames (13, 20] and then a late (8, 13]: as of 13 the
        // key was the late frame's value, though it holds the newer one.
        let mut member = StreamValues::default();
        member.offer(4, 8, b"k", b"v5");
        member.offer(4, 20, b"k", b"v15");
        assert!(!member.offer(4, 13, b"k", b"v12"));
        assert_eq!(member.get(b"k"), Some(&b"v15"[..]));
        assert_eq!(member.value_as_of(4, b"k", 13), Some(&b"v12"[..]));
        assert_eq!(member.value_as_of(4, b"k", 12), Some(&b"v5"[..]));
        assert_eq!(member.value_as_of(4, b"k", 7), None);
    }

    #[test]
    fn the_budget_backs_off_on_queueing_and_loss_and_recovers_on_a_good_link() {
        let mut l = LinkRate::new(ms(0));
        l.on_rtt(ms(100), Duration::from_millis(80));
        assert_eq!(l.rate(), START_RATE + INCREASE, "a good round trip");
        l.on_rtt(ms(400), Duration::from_millis(300));
        assert_eq!(l.rate(), (START_RATE + INCREASE) * 7 / 10, "220 ms of queueing: cut");
        l.on_rtt(ms(410), Duration::from_millis(300));
        assert_eq!(l.rate(), (START_RATE + INCREASE) * 7 / 10, "at most one change per round trip");
        l.on_loss(ms(1000));
        assert_eq!(l.rate(), (START_RATE + INCREASE) * 7 / 10 * 7 / 10);
        for i in 0..100 {
            l.on_loss(ms(1000 + i * 500));
        }
        assert_eq!(l.rate(), MIN_RATE, "never below the floor");
        let mut t = 60_000;
        while l.rate() < START_RATE {
            l.on_rtt(ms(t), Duration::from_millis(80));
            t += 200;
        }
        assert!(t < 60_000 + 200 * 40, "recovers within 31 good round trips");
        assert!(l.loss().unwrap() > 0.5);
    }

    #[test]
    fn the_accumulator_sends_keys_in_proportion_to_priority_and_starves_none() {
        let mut acc = Accumulator::default();
        // Three keys always waiting, room for one 10-byte entry per send.
        let pending: [(&[u8], u8, usize); 3] = [(b"low", 0, 10), (b"mid", 15, 10), (b"high", 47, 10)];
        let mut sent = [0usize; 3];
        let mut waited = [0usize; 3];
        let mut longest_wait = [0usize; 3];
        for _ in 0..6_500 {
            let chosen = acc.pick(&pending, 10);
            assert_eq!(chosen.len(), 1);
            for (i, w) in waited.iter_mut().enumerate() {
                if chosen[0] == i {
                    sent[i] += 1;
                    *w = 0;
                } else {
                    *w += 1;
                    longest_wait[i] = longest_wait[i].max(*w);
                }
            }
        }
        // Higher goes more often (measured: 132, 2 122 and 4 246 sends).
        assert!(sent[2] > sent[1] * 3 / 2 && sent[1] > sent[0] * 10 && sent[0] > 100, "{sent:?}");
        // And the lowest key never waits much longer than its usual turn.
        assert!(longest_wait[0] <= 6_500 / sent[0] + 5, "{longest_wait:?} for {sent:?}");
        // A sent key starts again from zero; one still waiting keeps its total.
        let chosen = acc.pick(&pending[..2], 1_000);
        assert_eq!(chosen, vec![0, 1]);
        assert_eq!(acc.total(b"low"), 0);
    }

    #[test]
    fn the_accumulator_never_lets_smaller_keys_pass_the_one_that_waited_longest() {
        let mut acc = Accumulator::default();
        let pending: [(&[u8], u8, usize); 2] = [(b"big", 200, 300), (b"small", 0, 10)];
        // The big key does not fit: nothing goes, both gain.
        assert!(acc.pick(&pending, 100).is_empty());
        assert_eq!((acc.total(b"big"), acc.total(b"small")), (201, 1));
        // Once there is room, the big one goes first, then what still fits.
        assert_eq!(acc.pick(&pending, 305), vec![0]);
        assert_eq!(acc.pick(&pending, 400), vec![0, 1]);
        // No room: `wait` gains as `pick` with a budget of 0 does.
        let (mut a, mut b) = (acc.clone(), acc.clone());
        assert!(a.pick(&pending, 0).is_empty());
        b.wait(pending.iter().map(|(k, p, _)| (*k, *p)));
        assert_eq!((a.total(b"big"), a.total(b"small")), (b.total(b"big"), b.total(b"small")));
        // A key no longer waiting is forgotten.
        acc.pick(&pending[..1], 0);
        assert_eq!(acc.total(b"small"), 0);
    }

    #[test]
    fn the_bucket_lets_streams_go_only_once_everything_sent_is_paid_for() {
        let mut l = LinkRate::new(ms(0));
        assert!(l.may_send(ms(0)));
        l.spend(ms(0), 20_000);
        assert!(!l.may_send(ms(0)), "6 400 bytes of burst, 20 000 spent");
        assert!(!l.may_send(ms(150)), "64 000 B/s pays 9 600 bytes in 150 ms");
        assert!(l.may_send(ms(250)));
    }
}
