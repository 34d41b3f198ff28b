//! Stream updates and per-link send budgets.
//!
//! Owns `write_stream` and what follows it: the czar keeps each shard's
//! stream keys with the stamp of their last change, and on every flush sends
//! each member, in one [`Frame::Stream`] under the pair MAC the two share
//! (stream frames go from the czar only and are never passed on), the newest value of every key
//! changed since what that member holds: superseded values are never sent,
//! lost ones are replaced by the newest. Members acknowledge the stamp up to
//! which they miss nothing ([`Frame::StreamAck`], every other tick). The
//! acknowledgements give each link a round trip; a [`LinkRate`] per link
//! turns round trips and losses into a send budget that every datagram on the
//! link spends and that only stream sends wait for: under a short budget,
//! critical and reliable traffic goes first and streams to that member go
//! less often, each send carrying every key changed since, so no key starves.
//! Between those whole lists, whatever room the budget has goes to the keys
//! the priority accumulator picks ([`Frame::StreamPart`]): under a short
//! budget the keys the game ranks higher go more often, and every key still
//! goes in time.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::{Peer, WriteError};
use crate::event::Event;
use crate::identity::PeerId;
use crate::proof;
use crate::shards::ShardId;
use crate::stats::DropReason;
use crate::stream::{Accumulator, LinkRate, StreamValues, DEFAULT_STREAM_PRIORITY};
use crate::time::Instant;
use crate::wire::{
    Frame, Op, Update, MAX_FRAGMENTED_FRAME_BYTES, MAX_FRAME_BYTES, MAX_STREAM_VALUE_BYTES, PIECE_MAC_BYTES,
};

/// A stream frame's fields besides its entries, at their largest: type, shard,
/// epoch, three stamps, MAC, entry count.
const STREAM_FRAME_OVERHEAD: usize = 1 + 8 + 5 + 10 + 10 + 10 + PIECE_MAC_BYTES + 2;
/// A partial stream frame's fields besides its entries, at their largest:
/// type, shard, epoch, two stamps, MAC, entry count.
const STREAM_PART_OVERHEAD: usize = 1 + 8 + 5 + 10 + 10 + PIECE_MAC_BYTES + 2;
/// Stream keys and values one shard holds at most, as frame entries: all of
/// them always fit one (fragmented) `Stream` frame.
pub const MAX_STREAM_SHARD_BYTES: usize = 16 * 1024;
/// However short a link's budget, it gets a stream send at least this often:
/// streams slow down under a short budget, they never stop.
const STREAM_MAX_GAP: Duration = Duration::from_millis(500);
/// A member that follows a healthy czar and has had no stream frame from it
/// in its epoch for this long while holding stream values drops them: a czar
/// that holds any sends every member a whole list at least every
/// [`STREAM_MAX_GAP`], so this one holds none (the values came from a czar
/// that lost the shard before they reached this one).
const STREAM_QUIET_DROP: Duration = Duration::from_millis(2000);
/// Members acknowledge streams with every this many ticks.
const ACK_EVERY_TICKS: u64 = 2;
/// Sends remembered per link and shard, to time acknowledgements.
const MAX_SENDS_REMEMBERED: usize = 32;

/// A list of changes for members in the same place: the stamp it covers,
/// the encoded `Stream` frame with its MAC zeroed, where the MAC starts in
/// it, and the digest each member's MAC covers (`None`: nothing to send).
type SharedList = Option<(u64, Vec<u8>, usize, [u8; 32])>;

/// The stream side of one shard on this peer.
#[derive(Debug, Default)]
pub(super) struct ShardStreams {
    /// The values we hold.
    pub(super) values: StreamValues,
    /// As czar: the epoch our stamps belong to, and the last stamp given.
    czar_epoch: u32,
    stamp: u64,
    /// As member: the czar and epoch we hold stamps of, and the stamp up to
    /// which we miss nothing.
    have: Option<(PeerId, u32, u64)>,
    /// Our acknowledgement is due with the next acknowledging tick.
    ack_due: bool,
    /// As member holding values: the czar and epoch we follow without a
    /// stream frame from them yet, and since when (see [`STREAM_QUIET_DROP`]).
    quiet: Option<(PeerId, u32, Instant)>,
    /// As czar: the priorities the game gave keys (the others have
    /// [`DEFAULT_STREAM_PRIORITY`]).
    priorities: BTreeMap<Vec<u8>, u8>,
}

/// What a stream frame covers: every key changed in a range of stamps
/// ([`Frame::Stream`]), or some keys as of one stamp ([`Frame::StreamPart`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum Span {
    /// Every key changed in stamps `from + 1 ..= to`.
    Whole { from: u64, to: u64 },
    /// Some keys, at their values as of stamp `at`.
    Part { at: u64 },
}

impl ShardStreams {
    /// As the shard's czar at `epoch`: the first time in that epoch, the
    /// values we hold become ours (stamp 1), so every member ends with them.
    fn own(&mut self, epoch: u32) {
        if self.czar_epoch != epoch {
            self.values.adopt(epoch);
            self.czar_epoch = epoch;
            self.stamp = 1;
        }
    }

    /// Gives a key we hold its priority as czar.
    fn set_priority(&mut self, key: &[u8], priority: u8) {
        if priority == DEFAULT_STREAM_PRIORITY {
            self.priorities.remove(key);
        } else {
            self.priorities.insert(key.to_vec(), priority);
        }
    }

    /// Our stream state of the shard, for debugging.
    pub(super) fn debug(&self) -> String {
        format!(
            "[{} keys digest {:016x} czar epoch {} stamp {} have {:?}]",
            self.values.len(),
            self.values.digest(),
            self.czar_epoch,
            self.stamp,
            self.have
        )
    }
}

/// What the czar knows of one member's copy of one shard's streams.
#[derive(Debug, Default)]
struct Cursor {
    epoch: u32,
    /// The last stamp sent.
    sent: u64,
    /// The last stamp acknowledged.
    acked: u64,
    /// Recent sends: (stamp covered, when).
    sends: VecDeque<(u64, Instant)>,
    /// When the last whole list went.
    last_whole: Option<Instant>,
    /// Keys sent in partial lists since the last whole one, with the stamp
    /// they went as of: not sent again until they change.
    part: BTreeMap<Vec<u8>, u64>,
    /// Who goes next in a partial list.
    acc: Accumulator,
    /// The budget had no room for a whole list, and has not had room for
    /// two since.
    short: bool,
}

/// One member's link: its budget and its stream cursors.
#[derive(Debug)]
pub(super) struct StreamLink {
    pub(super) rate: LinkRate,
    cursors: BTreeMap<ShardId, Cursor>,
    /// The member's incarnation the cursors are for: a member that restarted
    /// holds nothing of what it acknowledged before.
    incarnation: u32,
}

impl Peer {
    /// Sets a *stream* key of `shard`: fast-changing state where only the
    /// newest value matters (positions, orientations). Only the shard's czar
    /// writes stream keys (a game streams the shards it owns). The value is
    /// applied here at once and reaches every member with the next flush;
    /// a lost or superseded value is never resent, the newest one is. Under
    /// a short link budget a member gets stream values less often, never
    /// reliable or critical updates later. Stream keys are apart from the
    /// shard's versioned state: read them with [`Peer::stream_value`].
    pub fn write_stream(&mut self, now: Instant, shard: ShardId, key: &[u8], value: &[u8]) -> Result<(), WriteError> {
        self.write_stream_with_priority(now, shard, key, value, DEFAULT_STREAM_PRIORITY)
    }

    /// [`Peer::write_stream`] with the key's priority: when a member's link
    /// budget has room for only some of the shard's changed stream keys, the
    /// priority accumulator picks them, and a key of priority `p` gains
    /// `p + 1` each time it waits ([`crate::stream::Accumulator`]). Higher
    /// goes more often; every key still goes, and every changed key reaches
    /// each member in a whole list at least every 500 ms whatever the budget.
    /// The priority stays with the key on this peer until a write gives
    /// another. [`DEFAULT_STREAM_PRIORITY`] is 15.
    pub fn write_stream_with_priority(
        &mut self,
        now: Instant,
        shard: ShardId,
        key: &[u8],
        value: &[u8],
        priority: u8,
    ) -> Result<(), WriteError> {
        self.note_time(now);
        if !self.is_joined() {
            return Err(WriteError::NotInSession);
        }
        super::check_key(key)?;
        if value.len() > MAX_STREAM_VALUE_BYTES {
            return Err(WriteError::StreamValueTooLarge(value.len()));
        }
        let me = self.id;
        let shard = self.leaf_of(shard, key);
        let st = self.states.get_mut(&shard).ok_or(WriteError::UnknownShard(shard))?;
        if !st.is_ready_czar(me) {
            return Err(WriteError::NotCzar(shard));
        }
        let epoch = st.replica.epoch;
        let streams = &mut st.streams;
        streams.own(epoch);
        let old = streams.values.get(key);
        if old == Some(value) {
            streams.set_priority(key, priority);
            return Ok(());
        }
        // Every stream key of a shard fits one (fragmented) frame.
        let now_len = streams.values.encoded_len();
        let old_len = old.map_or(0, |v| Update::encoded_len_of(key, v.len()));
        if now_len - old_len + Update::encoded_len_of(key, value.len()) > MAX_STREAM_SHARD_BYTES {
            return Err(WriteError::StreamsFull(shard));
        }
        streams.stamp += 1;
        streams.values.offer(epoch, streams.stamp, key, value);
        streams.set_priority(key, priority);
        self.streams_dirty = true;
        Ok(())
    }

    /// The value of stream key `key` of `shard`, if we hold one.
    pub fn stream_value(&self, shard: ShardId, key: &[u8]) -> Option<&[u8]> {
        let shard = self.shard_of(shard, key)?;
        self.states.get(&shard)?.streams.values.get(key)
    }

    /// A digest of every stream key and value of `shard` we hold (equal on
    /// two peers that hold the same values).
    pub fn stream_digest(&self, shard: ShardId) -> Option<u64> {
        Some(self.states.get(&shard)?.streams.values.digest())
    }

    /// A member's link budget, bytes per second, once a stream was sent to it.
    pub fn link_budget(&self, peer: &PeerId) -> Option<u64> {
        let addr = self.members.get(peer)?.addr;
        self.stream_links.get(&addr).map(|l| l.rate.rate())
    }

    /// Sends every member the stream keys changed since what it holds, for
    /// every shard we are the ready czar of, as its budget allows.
    pub(super) fn flush_streams(&mut self) {
        let now = self.clock;
        let me = self.id;
        let mut shards = Vec::new();
        for (id, st) in self.states.iter_mut() {
            if !st.is_ready_czar(me) {
                continue;
            }
            let epoch = st.replica.epoch;
            let streams = &mut st.streams;
            // Czar of a shard with stream values: a joiner gets them too.
            if !streams.values.is_empty() {
                streams.own(epoch);
            }
            if streams.czar_epoch == epoch && streams.stamp > 0 {
                shards.push(*id);
            }
        }
        if shards.is_empty() {
            return;
        }
        let members: Vec<(PeerId, std::net::SocketAddr, u32)> =
            self.members.others().map(|m| (m.id, m.addr, m.incarnation)).collect();
        // One digest and one encoding per (shard, from, base): members in
        // step share them, and each gets its own MAC.
        let mut lists: BTreeMap<(ShardId, u64, u64), SharedList> = BTreeMap::new();
        for (id, addr, incarnation) in members {
            // A member whose key gives no pair key gets no streams (an honest
            // member's key always gives one).
            let Some(pair) = self.pair_key(&id) else { continue };
            let link = self.stream_links.entry(addr).or_insert_with(|| StreamLink {
                rate: LinkRate::new(now),
                cursors: BTreeMap::new(),
                incarnation,
            });
            if link.incarnation != incarnation {
                link.incarnation = incarnation;
                link.cursors.clear();
            }
            let may_send = link.rate.may_send(now);
            // Bytes the budget has room for now: whole lists that fit go, and
            // the room that is left goes to partial lists.
            let mut room = link.rate.available(now);
            let rto = link.rate.srtt().unwrap_or(Duration::from_millis(100)).mul_f64(1.5) + Duration::from_millis(50);
            let mut frames = Vec::new();
            // First every whole list that goes, then partial lists in what
            // room is left: a shard whose lists fit is never held back by
            // another's partial lists.
            let mut short = Vec::new();
            for shard in &shards {
                let st = &self.states[shard];
                let (epoch, stamp) = (st.streams.czar_epoch, st.streams.stamp);
                let cursor = link.cursors.entry(*shard).or_default();
                if cursor.epoch != epoch {
                    *cursor = Cursor { epoch, ..Cursor::default() };
                }
                // Every shard's whole list goes at least every 500 ms, whatever
                // the budget and whatever the link's other shards send.
                let starving = cursor.last_whole.is_none_or(|t| now.saturating_duration_since(t) >= STREAM_MAX_GAP);
                if may_send || starving {
                    // Unacknowledged for longer than a round trip: the receiver
                    // missed a send; start again from what it holds.
                    let overdue = cursor.acked < cursor.sent
                        && cursor
                            .sends
                            .iter()
                            .find(|(to, _)| *to > cursor.acked)
                            .is_some_and(|(_, at)| now.saturating_duration_since(*at) > rto);
                    if overdue {
                        link.rate.on_loss(now);
                        cursor.sent = cursor.acked;
                        cursor.sends.clear();
                    }
                }
                let from = cursor.sent;
                if from >= stamp {
                    continue;
                }
                // Patches against what the member acknowledged, once it has.
                let base = if cursor.acked <= from { cursor.acked } else { 0 };
                // The whole list's size, once built (before: as large as can be).
                let mut whole_len = MAX_FRAME_BYTES;
                if may_send || starving {
                    let list = lists.entry((*shard, from, base)).or_insert_with(|| {
                        // Every changed key, in fragments if need be (see `changed_after`).
                        let budget = MAX_FRAGMENTED_FRAME_BYTES - STREAM_FRAME_OVERHEAD;
                        let (entries, to) = st.streams.values.changed_after(epoch, from, base, budget);
                        if to <= from || entries.is_empty() {
                            return None;
                        }
                        let message =
                            proof::stream_message(&self.session_tag, &me, *shard, epoch, from, to, base, &entries);
                        // The MAC follows the type byte and the header.
                        let mut header = Vec::new();
                        crate::wire::put_stream_header(&mut header, *shard, epoch, from, to, base);
                        let mac = [0; PIECE_MAC_BYTES];
                        let frame = Frame::Stream { shard: *shard, epoch, from, to, base, entries, mac }.to_bytes();
                        Some((to, frame, 1 + header.len(), message))
                    });
                    let Some((to, frame, mac_at, message)) = list else { continue };
                    whole_len = frame.len();
                    // A list no larger than a partial one's overhead twice
                    // over goes whenever the budget is paid up (a partial
                    // list would save nothing). A larger one goes if it fits;
                    // once the budget fell short of it, partial lists go
                    // until it has room for two (or 500 ms passed): whole
                    // lists would take the room the priorities share.
                    let need = if whole_len <= 2 * STREAM_PART_OVERHEAD {
                        1
                    } else if cursor.short {
                        2 * whole_len
                    } else {
                        whole_len
                    };
                    cursor.short = need as i64 > room;
                    if starving || !cursor.short {
                        room -= frame.len() as i64;
                        cursor.sent = *to;
                        cursor.sends.push_back((*to, now));
                        if cursor.sends.len() > MAX_SENDS_REMEMBERED {
                            cursor.sends.pop_front();
                        }
                        cursor.part.clear();
                        cursor.last_whole = Some(now);
                        let mut frame = frame.clone();
                        let mac = proof::stream_mac(&pair, &me, &id, message);
                        frame[*mac_at..*mac_at + PIECE_MAC_BYTES].copy_from_slice(&mac);
                        frames.push(frame);
                        continue;
                    }
                }
                short.push((*shard, from, base, whole_len));
            }
            for (shard, from, base, whole_len) in short {
                let st = &self.states[&shard];
                let (epoch, stamp) = (st.streams.czar_epoch, st.streams.stamp);
                let cursor = link.cursors.get_mut(&shard).expect("seen in the first pass");
                // No room for the whole list: the keys the accumulator picks
                // go once the budget has room for half of it, so that a
                // partial list is not mostly overhead. Until then they only
                // gain.
                let worth = (whole_len / 2).max(2 * STREAM_PART_OVERHEAD) as i64;
                let room_now = if room >= worth { room } else { 0 };
                let values = &st.streams.values;
                let priorities = &st.streams.priorities;
                let waiting: Vec<(&[u8], u64)> = values
                    .changed_keys_after(epoch, from)
                    .into_iter()
                    .filter(|(k, changed)| cursor.part.get(*k).is_none_or(|sent| sent < changed))
                    .collect();
                if waiting.is_empty() {
                    continue;
                }
                let priority = |k: &[u8]| priorities.get(k).copied().unwrap_or(DEFAULT_STREAM_PRIORITY);
                let budget = usize::try_from(room_now)
                    .unwrap_or(0)
                    .saturating_sub(STREAM_PART_OVERHEAD)
                    .min(MAX_FRAME_BYTES - STREAM_PART_OVERHEAD);
                if budget == 0 {
                    // No room (most flushes of a short link): the waiting keys
                    // only gain; no entry is built.
                    cursor.acc.wait(waiting.iter().map(|(k, _)| (*k, priority(k))));
                    continue;
                }
                let entries: Vec<Update> = waiting.iter().map(|(k, _)| values.entry(epoch, k, base)).collect();
                let pending: Vec<(&[u8], u8, usize)> =
                    waiting.iter().zip(&entries).map(|((k, _), u)| (*k, priority(k), u.encoded_len())).collect();
                let chosen = cursor.acc.pick(&pending, budget);
                if chosen.is_empty() {
                    continue;
                }
                let entries: Vec<Update> = chosen.iter().map(|i| entries[*i].clone()).collect();
                for u in &entries {
                    cursor.part.insert(u.key.clone(), stamp);
                }
                let message = proof::stream_part_message(&self.session_tag, &me, shard, epoch, stamp, base, &entries);
                let mac = proof::stream_mac(&pair, &me, &id, &message);
                let frame = Frame::StreamPart { shard, epoch, at: stamp, base, entries, mac }.to_bytes();
                room -= frame.len() as i64;
                self.stats.stream_parts_sent += 1;
                frames.push(frame);
            }
            for frame in frames {
                self.queue(addr, frame);
            }
        }
    }

    /// A [`Frame::Stream`] or [`Frame::StreamPart`] from `sender`: taken if
    /// `sender` is the czar we follow in that epoch and signed it. Only a
    /// whole list moves the stamp we acknowledge.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_stream(
        &mut self,
        sender: PeerId,
        shard: ShardId,
        epoch: u32,
        span: Span,
        base: u64,
        entries: Vec<Update>,
        mac: [u8; PIECE_MAC_BYTES],
    ) {
        let Some(st) = self.states.get(&shard) else {
            self.stats.drop(DropReason::UnknownShard);
            return;
        };
        if st.replica.czar != Some(sender) || st.replica.epoch != epoch {
            let reason = if epoch < st.replica.epoch { DropReason::StaleEpoch } else { DropReason::NotCzar };
            self.stats.drop(reason);
            return;
        }
        if self.members.get(&sender).is_none() {
            self.stats.drop(DropReason::UnknownSender);
            return;
        }
        let message = match span {
            Span::Whole { from, to } => {
                proof::stream_message(&self.session_tag, &sender, shard, epoch, from, to, base, &entries)
            }
            Span::Part { at } => {
                proof::stream_part_message(&self.session_tag, &sender, shard, epoch, at, base, &entries)
            }
        };
        #[allow(unused_mut)]
        let mut authentic =
            self.pair_key(&sender).is_some_and(|pair| proof::stream_mac(&pair, &sender, &self.id, &message) == mac);
        #[cfg(feature = "faults")]
        if self.fault == Some(super::Fault::AcceptAnySignature) {
            authentic = true;
        }
        if !authentic {
            self.stats.drop(DropReason::BadSignature);
            return;
        }
        let events = self.config.update_events;
        let st = self.states.get_mut(&shard).expect("checked");
        let streams = &mut st.streams;
        let have = match streams.have {
            Some((czar, e, have)) if czar == sender && e == epoch => have,
            _ => 0,
        };
        // A patch resolves against the key's value as of `base`, which we
        // acknowledged. Without it (a reset, a history too short) we take the
        // rest and acknowledge 0: the czar then sends every value whole.
        let resolved: Vec<(Vec<u8>, Option<Vec<u8>>)> = entries
            .into_iter()
            .map(|u| {
                let value = match &u.op {
                    Op::Patch(_) if base > have => None,
                    Op::Patch(_) => {
                        streams.values.value_as_of(epoch, &u.key, base).and_then(|old| u.op.resolve(Some(old)))
                    }
                    op => op.resolve(None),
                };
                (u.key, value)
            })
            .collect();
        let complete = resolved.iter().all(|(_, v)| v.is_some());
        let to = match span {
            Span::Whole { from, to } => {
                streams.ack_due = true;
                if complete && from <= have {
                    streams.have = Some((sender, epoch, have.max(to)));
                }
                to
            }
            Span::Part { at } => at,
        };
        if !complete {
            streams.have = Some((sender, epoch, 0));
            streams.ack_due = true;
            self.stats.drop(DropReason::StreamBaseMissing);
        } else if streams.have.is_none_or(|(czar, e, _)| czar != sender || e != epoch) {
            streams.have = Some((sender, epoch, 0));
        }
        let mut changed = Vec::new();
        let mut applied = 0;
        for (key, value) in resolved {
            let Some(value) = value else { continue };
            // A value a partial list brought is brought again by the next whole
            // list, at a later stamp: only a value that differs is news.
            let same = streams.values.get(&key) == Some(&value[..]);
            // Every value in the frame is at least as new as stamp `to`'s.
            if streams.values.offer(epoch, to, &key, &value) && !same {
                applied += 1;
                if events {
                    changed.push((key, value));
                }
            }
        }
        // A whole list from the start of the czar's epoch names every key the
        // czar holds: ours of other epochs it never had (their czar lost the
        // shard before they reached this one) would keep us apart for good.
        if let Span::Whole { from: 0, to } = span {
            if complete && to >= 1 {
                streams.values.retain_epoch(epoch);
            }
        }
        self.stats.stream_values_applied += applied;
        for (key, value) in changed {
            self.push_event(Event::Streamed { shard, author: sender, key, value });
        }
    }

    /// A member's [`Frame::StreamAck`]: it holds our stream changes up to `have`.
    pub(super) fn handle_stream_ack(
        &mut self,
        now: Instant,
        from: std::net::SocketAddr,
        shard: ShardId,
        epoch: u32,
        have: u64,
    ) {
        let Some(link) = self.stream_links.get_mut(&from) else { return };
        let Some(cursor) = link.cursors.get_mut(&shard) else { return };
        if cursor.epoch != epoch {
            return;
        }
        if have == 0 && cursor.acked > 0 {
            // It lost the base our patches were against: whole values from the start.
            *cursor = Cursor { epoch, ..Cursor::default() };
            return;
        }
        if have <= cursor.acked || have > cursor.sent {
            return;
        }
        cursor.acked = have;
        if let Some(at) = cursor.sends.iter().find(|(to, _)| *to == have).map(|(_, at)| *at) {
            link.rate.on_rtt(now, now.saturating_duration_since(at));
        }
        cursor.sends.retain(|(to, _)| *to > have);
    }

    /// With each tick: our acknowledgements to the czars whose streams we
    /// took since the last, and the links of members that are gone forgotten.
    pub(super) fn queue_stream_acks(&mut self) {
        self.drop_stream_values_no_czar_holds();
        let mut acks = Vec::new();
        // Every other tick: a czar streaming each tick needs no more to time
        // its links and find losses, and the bytes are the members' uplinks.
        let due = self.ticks % ACK_EVERY_TICKS == 0;
        for (shard, st) in self.states.iter_mut().filter(|_| due) {
            if !std::mem::take(&mut st.streams.ack_due) {
                continue;
            }
            if let Some((czar, epoch, have)) = st.streams.have {
                acks.push((czar, Frame::StreamAck { shard: *shard, epoch, have }));
            }
        }
        for (czar, frame) in acks {
            if let Some(addr) = self.members.get(&czar).filter(|m| m.is_alive()).map(|m| m.addr) {
                self.queue_frame(addr, &frame);
            }
        }
        if self.stream_links.len() > self.members.alive_count().saturating_sub(1) {
            let live: std::collections::BTreeSet<std::net::SocketAddr> =
                self.members.others().map(|m| m.addr).collect();
            self.stream_links.retain(|addr, _| live.contains(addr));
        }
    }

    /// Drops the stream values of shards whose healthy czar has sent us no
    /// stream frame in its epoch for [`STREAM_QUIET_DROP`] (it holds none),
    /// and acknowledges 0 to it, so that a czar that does hold some after
    /// all sends them whole.
    fn drop_stream_values_no_czar_holds(&mut self) {
        let now = self.clock;
        let me = self.id;
        let members = &self.members;
        let mut dropped = 0;
        for st in self.states.values_mut() {
            let streams = &mut st.streams;
            let czar = st.replica.czar.filter(|c| !streams.values.is_empty() && *c != me && members.is_healthy(c));
            let epoch = st.replica.epoch;
            let Some(czar) = czar else {
                streams.quiet = None;
                continue;
            };
            if streams.have.is_some_and(|(c, e, _)| c == czar && e == epoch) {
                streams.quiet = None;
                continue;
            }
            match streams.quiet {
                Some((c, e, since)) if c == czar && e == epoch => {
                    if now.saturating_duration_since(since) >= STREAM_QUIET_DROP {
                        dropped += streams.values.retain_epoch(epoch) as u64;
                        streams.quiet = None;
                        streams.have = Some((czar, epoch, 0));
                        streams.ack_due = true;
                    }
                }
                _ => streams.quiet = Some((czar, epoch, now)),
            }
        }
        self.stats.stream_values_dropped += dropped;
    }

    /// Pays for a datagram of `bytes` sent to `to` from that member's budget.
    pub(super) fn spend_link_budget(&mut self, to: std::net::SocketAddr, bytes: usize) {
        let now = self.clock;
        if let Some(link) = self.stream_links.get_mut(&to) {
            link.rate.spend(now, bytes);
        }
    }
}
