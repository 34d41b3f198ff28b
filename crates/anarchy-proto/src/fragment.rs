//! Fragments: frames too large for one datagram.
//!
//! Owns cutting an encoded frame larger than [`MAX_FRAME_BYTES`] into
//! [`Frame::Fragment`]s, and joining them again on the receiving side. Each
//! fragment rides in a sealed datagram of its own sender, so a piece is as
//! authentic as any other frame; what this module guards against is memory:
//! partial frames are kept per sender, a sender holds at most a few, all of
//! them together hold at most a byte budget, and a partial frame that is not
//! complete within a timeout is dropped. Every drop is reported to the caller,
//! which counts it. A lost piece loses the whole frame; the protocol's repair
//! paths resend it like any lost datagram. Pure: time comes in as an
//! [`Instant`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::identity::PeerId;
use crate::stats::DropReason;
use crate::time::Instant;
use crate::wire::{self, Frame, MAX_FRAGMENTED_FRAME_BYTES, MAX_FRAGMENTS, MAX_FRAME_BYTES};

/// Most bytes a fragment frame adds around its piece: type byte, id (5-byte
/// varint), index and count (1 byte each below 128) and the piece's length.
pub const FRAGMENT_OVERHEAD_BYTES: usize = 1 + 5 + 1 + 1 + 2;

/// Largest piece of a frame one fragment carries.
pub const FRAGMENT_PIECE_BYTES: usize = MAX_FRAME_BYTES - FRAGMENT_OVERHEAD_BYTES;

// Every frame up to the fragmented maximum is cut into at most MAX_FRAGMENTS pieces.
const _: () = assert!(MAX_FRAGMENTED_FRAME_BYTES.div_ceil(FRAGMENT_PIECE_BYTES) <= MAX_FRAGMENTS as usize);
const _: () = assert!((MAX_FRAGMENTS as usize) < 128, "index and count stay one-byte varints");

/// Cuts `frame` (an encoded frame over [`MAX_FRAME_BYTES`]) into encoded
/// fragment frames numbered `id`, each at most [`MAX_FRAME_BYTES`]. `None`
/// for a frame over [`MAX_FRAGMENTED_FRAME_BYTES`], which no receiver would
/// join (a bug in the caller: every frame the protocol builds stays under it).
pub fn split(id: u32, frame: &[u8]) -> Option<Vec<Vec<u8>>> {
    if frame.len() > MAX_FRAGMENTED_FRAME_BYTES {
        return None;
    }
    let count = u16::try_from(frame.len().div_ceil(FRAGMENT_PIECE_BYTES)).ok()?;
    let pieces = frame
        .chunks(FRAGMENT_PIECE_BYTES)
        .enumerate()
        .map(|(index, piece)| {
            let f = Frame::Fragment { id, index: index as u16, count, bytes: piece.to_vec() };
            let bytes = f.to_bytes();
            debug_assert!(bytes.len() <= MAX_FRAME_BYTES, "fragment of {} bytes", bytes.len());
            bytes
        })
        .collect();
    Some(pieces)
}

/// The knobs of [`Reassembly`] (copied from [`crate::Config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblySettings {
    /// A partial frame not complete this long after its first piece is dropped.
    pub timeout: Duration,
    /// Partial frames kept per sender; a newer one pushes out its oldest.
    pub max_per_sender: usize,
    /// Bytes all partial frames may hold together; the oldest go first.
    pub max_bytes: usize,
}

#[derive(Debug, Clone)]
struct Partial {
    started: Instant,
    pieces: Vec<Option<Vec<u8>>>,
    have: usize,
    bytes: usize,
}

/// Partial frames being joined, per sender and frame id.
#[derive(Debug, Clone)]
pub struct Reassembly {
    settings: ReassemblySettings,
    partial: BTreeMap<(PeerId, u32), Partial>,
    bytes: usize,
}

impl Reassembly {
    /// Nothing held, with these settings.
    pub fn new(settings: ReassemblySettings) -> Self {
        Reassembly { settings, partial: BTreeMap::new(), bytes: 0 }
    }

    /// Partial frames held.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Bytes held in partial frames.
    pub fn pending_bytes(&self) -> usize {
        self.bytes
    }

    /// Takes one piece (the fields of a [`Frame::Fragment`] `sender` sent, as
    /// the decoder checked them). Returns the joined frame once its last piece
    /// arrives, decoded (never a fragment). Every piece or partial frame that
    /// is dropped on the way is pushed onto `dropped`, with its reason.
    pub fn insert(
        &mut self,
        now: Instant,
        sender: PeerId,
        fragment: (u32, u16, u16, Vec<u8>),
        dropped: &mut Vec<DropReason>,
    ) -> Option<Frame> {
        let (id, index, count, bytes) = fragment;
        if count < 2 || index >= count || bytes.is_empty() || bytes.len() > MAX_FRAME_BYTES {
            dropped.push(DropReason::Invalid);
            return None;
        }
        let key = (sender, id);
        if !self.partial.contains_key(&key) {
            self.make_room_for(sender, dropped);
            self.partial
                .insert(key, Partial { started: now, pieces: vec![None; usize::from(count)], have: 0, bytes: 0 });
        }
        let partial = self.partial.get_mut(&key).expect("present");
        if partial.pieces.len() != usize::from(count) {
            // Two frames under one id: neither can be trusted to join.
            self.remove(&key);
            dropped.push(DropReason::Invalid);
            return None;
        }
        let slot = &mut partial.pieces[usize::from(index)];
        if slot.is_some() {
            dropped.push(DropReason::Duplicate);
            return None;
        }
        let len = bytes.len();
        if partial.bytes + len > MAX_FRAGMENTED_FRAME_BYTES {
            self.remove(&key);
            dropped.push(DropReason::TooLong);
            return None;
        }
        *slot = Some(bytes);
        partial.have += 1;
        partial.bytes += len;
        self.bytes += len;
        if partial.have < partial.pieces.len() {
            self.shed_bytes(&key, dropped);
            return None;
        }
        let whole = self.remove(&key).expect("present");
        let mut joined = Vec::with_capacity(whole.bytes);
        for piece in whole.pieces.into_iter().flatten() {
            joined.extend_from_slice(&piece);
        }
        match wire::decode_joined_frame(&joined, &sender) {
            Ok(frame) => Some(frame),
            Err(e) => {
                dropped.push(DropReason::from(e));
                None
            }
        }
    }

    /// Drops the partial frames whose time ran out; each is pushed onto
    /// `dropped` as [`DropReason::FragmentExpired`].
    pub fn expire(&mut self, now: Instant, dropped: &mut Vec<DropReason>) {
        let timeout = self.settings.timeout;
        let old: Vec<(PeerId, u32)> = self
            .partial
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.started) >= timeout)
            .map(|(k, _)| *k)
            .collect();
        for key in old {
            self.remove(&key);
            dropped.push(DropReason::FragmentExpired);
        }
    }

    /// Forgets every partial frame of `sender` (it left, or restarted).
    pub fn forget(&mut self, sender: &PeerId) {
        let keys: Vec<(PeerId, u32)> =
            self.partial.range((*sender, 0)..=(*sender, u32::MAX)).map(|(k, _)| *k).collect();
        for key in keys {
            self.remove(&key);
        }
    }

    fn remove(&mut self, key: &(PeerId, u32)) -> Option<Partial> {
        let p = self.partial.remove(key)?;
        self.bytes -= p.bytes;
        Some(p)
    }

    /// Before a new partial frame of `sender`: at most `max_per_sender - 1`
    /// of its others stay.
    fn make_room_for(&mut self, sender: PeerId, dropped: &mut Vec<DropReason>) {
        loop {
            let mine = self.partial.range((sender, 0)..=(sender, u32::MAX));
            let (n, oldest) = mine.fold((0, None::<(Instant, (PeerId, u32))>), |(n, o), (k, p)| {
                let o = match o {
                    Some((t, _)) if t <= p.started => o,
                    _ => Some((p.started, *k)),
                };
                (n + 1, o)
            });
            if n < self.settings.max_per_sender.max(1) {
                return;
            }
            let (_, key) = oldest.expect("n > 0");
            self.remove(&key);
            dropped.push(DropReason::FragmentOverflow);
        }
    }

    /// Over the byte budget: the oldest partial frames other than `keep` go.
    fn shed_bytes(&mut self, keep: &(PeerId, u32), dropped: &mut Vec<DropReason>) {
        while self.bytes > self.settings.max_bytes {
            let oldest =
                self.partial.iter().filter(|(k, _)| *k != keep).min_by_key(|(k, p)| (p.started, **k)).map(|(k, _)| *k);
            let key = oldest.unwrap_or(*keep);
            self.remove(&key);
            dropped.push(DropReason::FragmentOverflow);
            if key == *keep {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::shards::ShardId;
    use crate::wire::{decode_datagram, encode_datagram, Op, Update, MAX_KEY_BYTES, MAX_VALUE_BYTES};

    fn settings() -> ReassemblySettings {
        ReassemblySettings { timeout: Duration::from_secs(2), max_per_sender: 4, max_bytes: 64 * 1024 }
    }

    fn big_forward(fill: u8) -> Frame {
        let update = Update { key: vec![fill; MAX_KEY_BYTES], op: Op::Put(vec![fill; MAX_VALUE_BYTES]) };
        Frame::Forward { write_id: u64::MAX, origin: Keypair::from_seed(9).peer_id(), shard: ShardId(7), update }
    }

    fn fields(bytes: &[u8], sender: &PeerId) -> (u32, u16, u16, Vec<u8>) {
        let datagram = decode_datagram(&encode_datagram(sender, &[bytes])).expect("a fragment decodes");
        match datagram.frames.into_iter().next() {
            Some(Frame::Fragment { id, index, count, bytes }) => (id, index, count, bytes),
            other => panic!("not a fragment: {other:?}"),
        }
    }

    #[test]
    fn the_largest_update_travels_in_fragments_that_each_fit_a_datagram_and_join_in_any_order() {
        let sender = Keypair::from_seed(1).peer_id();
        let frame = big_forward(0x5a);
        let encoded = frame.to_bytes();
        assert!(encoded.len() > MAX_FRAME_BYTES && encoded.len() <= MAX_FRAGMENTED_FRAME_BYTES);
        let pieces = split(u32::MAX, &encoded).expect("fits the fragmented maximum");
        assert_eq!(pieces.len(), encoded.len().div_ceil(FRAGMENT_PIECE_BYTES));
        assert!(pieces.iter().all(|p| p.len() <= MAX_FRAME_BYTES));
        let mut r = Reassembly::new(settings());
        let mut dropped = Vec::new();
        let mut order: Vec<usize> = (0..pieces.len()).rev().collect();
        order.swap(0, 3);
        let mut joined = None;
        for (n, i) in order.iter().enumerate() {
            let out = r.insert(Instant::ZERO, sender, fields(&pieces[*i], &sender), &mut dropped);
            assert_eq!(out.is_some(), n + 1 == pieces.len(), "joined only at the last piece");
            joined = joined.or(out);
        }
        assert_eq!(joined, Some(frame));
        assert!(dropped.is_empty(), "{dropped:?}");
        assert_eq!((r.pending(), r.pending_bytes()), (0, 0));
    }

    #[test]
    fn a_frame_over_the_fragmented_maximum_is_not_cut() {
        assert!(split(1, &vec![0; MAX_FRAGMENTED_FRAME_BYTES + 1]).is_none());
        let n = MAX_FRAGMENTED_FRAME_BYTES.div_ceil(FRAGMENT_PIECE_BYTES);
        assert_eq!(split(1, &vec![7; MAX_FRAGMENTED_FRAME_BYTES]).map(|p| p.len()), Some(n));
        assert!(n <= usize::from(MAX_FRAGMENTS));
    }

    #[test]
    fn duplicates_mismatched_counts_nesting_and_garbage_are_dropped_and_counted() {
        let sender = Keypair::from_seed(1).peer_id();
        let mut r = Reassembly::new(settings());
        let mut dropped = Vec::new();
        let t = Instant::ZERO;
        assert!(r.insert(t, sender, (1, 0, 2, vec![1; 10]), &mut dropped).is_none());
        assert!(r.insert(t, sender, (1, 0, 2, vec![1; 10]), &mut dropped).is_none());
        assert!(r.insert(t, sender, (1, 1, 3, vec![1; 10]), &mut dropped).is_none());
        assert_eq!(dropped, vec![DropReason::Duplicate, DropReason::Invalid]);
        assert_eq!(r.pending(), 0, "an id used for two frames is given up");
        dropped.clear();
        // A fragment inside fragments, and bytes that are no frame at all.
        let inner = Frame::Fragment { id: 5, index: 0, count: 2, bytes: vec![1] }.to_bytes();
        let (a, b) = inner.split_at(2);
        assert!(r.insert(t, sender, (2, 0, 2, a.to_vec()), &mut dropped).is_none());
        assert!(r.insert(t, sender, (2, 1, 2, b.to_vec()), &mut dropped).is_none());
        assert!(r.insert(t, sender, (3, 0, 2, vec![0xff]), &mut dropped).is_none());
        assert!(r.insert(t, sender, (3, 1, 2, vec![0xff]), &mut dropped).is_none());
        assert!(r.insert(t, sender, (4, 2, 2, vec![0xff]), &mut dropped).is_none());
        assert_eq!(dropped, vec![DropReason::Invalid, DropReason::UnknownFrame, DropReason::Invalid]);
        assert_eq!((r.pending(), r.pending_bytes()), (0, 0));
    }

    #[test]
    fn partial_frames_are_bounded_per_sender_in_bytes_and_in_time() {
        let (a, b) = (Keypair::from_seed(1).peer_id(), Keypair::from_seed(2).peer_id());
        let mut r = Reassembly::new(ReassemblySettings { max_bytes: 6 * 1000, ..settings() });
        let mut dropped = Vec::new();
        let ms = |n: u64| Instant::ZERO + Duration::from_millis(n);
        for id in 0..6 {
            r.insert(ms(id.into()), a, (id, 0, 3, vec![0; 1000]), &mut dropped);
        }
        assert_eq!(r.pending(), 4, "a sender keeps at most four partial frames");
        assert_eq!(dropped, vec![DropReason::FragmentOverflow; 2]);
        dropped.clear();
        for id in 0..3 {
            r.insert(ms(10), b, (id, 0, 3, vec![0; 1000]), &mut dropped);
        }
        assert!(r.pending_bytes() <= 6000);
        assert_eq!(r.pending(), 6);
        assert_eq!(dropped, vec![DropReason::FragmentOverflow], "the oldest partial frame went");
        dropped.clear();
        r.expire(ms(2005), &mut dropped);
        assert_eq!(r.pending(), 3, "{dropped:?}");
        assert_eq!(dropped, vec![DropReason::FragmentExpired; 3]);
        r.forget(&b);
        assert_eq!((r.pending(), r.pending_bytes()), (0, 0));
    }
}
