//! Proofs: what a czar signs, and how a receiver checks it.
//!
//! A czar signs each run of updates it sends (one [`crate::wire::Frame::Delta`])
//! once, over the session, the shard, the epoch, the sequence range, the
//! state checksum the run builds on and the one it produces, and a hash of
//! the updates themselves. The signature travels with the run wherever it
//! goes: peers keep it in their log and resend it unchanged when they repair
//! others, so every peer can check that the czar of that epoch wrote what it
//! applies, whoever relayed it. Snapshots are signed by the peer that sends
//! them, over a collision-resistant hash of their whole content.
//!
//! A czar's own pushes go out as *pieces* of an open run
//! ([`crate::wire::Frame::Piece`]), each authenticated to its one receiver by
//! a MAC under the pair key of czar and receiver ([`pair_key`], from their
//! Diffie-Hellman secret): 16 bytes instead of a 64-byte signature per
//! datagram. The run is signed once when it closes
//! ([`crate::wire::Frame::RunSig`]), and from then on travels like any other.
//!
//! Verification is strict Ed25519 (`verify_strict`), one signature at a time.
//! Results are memoised per thread by a hash of (key, message, signature):
//! the answer never depends on the cache, and a simulator running many peers
//! in one thread checks each broadcast signature once instead of once per
//! receiver.

use std::cell::RefCell;
use std::collections::HashSet;

use crate::identity::{Keypair, PeerId, PublicKey, PEER_ID_BYTES, SIGNATURE_BYTES};
use crate::replica::Version;
use crate::seal::SessionSecret;
use crate::shards::ShardId;
use crate::wire::{put_piece_header, put_update, put_updates, Frame, Update, PIECE_MAC_BYTES};

const DELTA_CONTEXT: &str = "anarchy 2026 signed delta v1";
const STREAM_CONTEXT: &str = "anarchy 2026 stream v2";
const STREAM_PART_CONTEXT: &str = "anarchy 2026 stream part v2";
/// Domain of a stream frame's pair MAC ([`stream_mac`]).
pub const STREAM_MAC_CONTEXT: &[u8] = b"anarchy 2026 stream mac v1";
const SNAPSHOT_CONTEXT: &str = "anarchy 2026 signed snapshot v1";
const SNAPSHOT_DIGEST_CONTEXT: &str = "anarchy 2026 snapshot digest v3";
const VERIFIED_CONTEXT: &str = "anarchy 2026 verified signature cache v1";

const SESSION_TAG_CONTEXT: &str = "anarchy 2026 session signing tag v1";

/// The 32 bytes every signature of a session is bound to, derived from the
/// session's secret: a signature made in one session means nothing in another.
pub fn session_tag(secret: &SessionSecret) -> [u8; 32] {
    blake3::derive_key(SESSION_TAG_CONTEXT, &secret.to_bytes())
}

/// An Ed25519 signature as carried on the wire.
pub type Signature = [u8; SIGNATURE_BYTES];

/// The signed header of one run of updates: everything a receiver needs to
/// check the run, and to pass it on unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchProof {
    /// The czar that wrote the run (and signed it).
    pub author: PeerId,
    /// The epoch the run was written in.
    pub epoch: u32,
    /// Sequence number of the first update.
    pub first_seq: u64,
    /// How many updates the run holds.
    pub count: u32,
    /// Short state checksum before the first update.
    pub base: u64,
    /// Short state checksum after the last update.
    pub after: u64,
    /// The author's signature over [`delta_message`].
    pub sig: Signature,
}

impl BatchProof {
    /// Signs a run of `updates` of `shard` as its author `keypair` would:
    /// the header a czar sends and every peer keeps.
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        keypair: &Keypair,
        session: &[u8; 32],
        shard: ShardId,
        epoch: u32,
        first_seq: u64,
        base: u64,
        after: u64,
        updates: &[Update],
    ) -> Self {
        let author = keypair.peer_id();
        let count = updates.len() as u32;
        let mut run = BatchProof { author, epoch, first_seq, count, base, after, sig: [0; SIGNATURE_BYTES] };
        run.sig = sign(keypair, &run.message(session, shard, updates));
        run
    }

    /// The delta frame carrying this run.
    pub fn frame(&self, shard: ShardId, updates: Vec<Update>) -> Frame {
        Frame::Delta {
            shard,
            epoch: self.epoch,
            first_seq: self.first_seq,
            base: self.base,
            after: self.after,
            author: self.author,
            sig: self.sig,
            updates,
        }
    }

    /// The message this run's signature covers (see [`delta_message`]).
    pub fn message(&self, session: &[u8; 32], shard: ShardId, updates: &[Update]) -> [u8; 32] {
        delta_message(session, shard, self.epoch, self.first_seq, self.base, self.after, &self.author, updates)
    }

    /// The last sequence number the run covers.
    pub fn last_seq(&self) -> u64 {
        self.first_seq + u64::from(self.count).saturating_sub(1)
    }

    /// The header of a piece ([`Frame::Piece`]): authenticated by its pair
    /// MAC to the one peer that received it, not signed yet. Its signature is
    /// all zeros, which strict verification never accepts (the zero point
    /// encoding is of small order), and its `base` and `after` hold only
    /// the low 32 bits a piece states ([`BatchProof::checksum_mask`]).
    pub fn unsigned(author: PeerId, epoch: u32, first_seq: u64, count: u32, base: u32, after: u32) -> Self {
        let (base, after) = (u64::from(base), u64::from(after));
        BatchProof { author, epoch, first_seq, count, base, after, sig: [0; SIGNATURE_BYTES] }
    }

    /// The bits of a short checksum the run's `base` and `after` state: all
    /// of them signed, the low 32 in a piece.
    pub fn checksum_mask(&self) -> u64 {
        if self.is_signed() {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        }
    }

    /// Whether the run builds on a state of short checksum `checksum`: its
    /// `base`, of which a piece states the low 32 bits.
    pub fn builds_on(&self, checksum: u64) -> bool {
        self.base == checksum & self.checksum_mask()
    }

    /// Whether this header carries its author's signature (see
    /// [`BatchProof::unsigned`]): only a signed run can be passed on.
    pub fn is_signed(&self) -> bool {
        self.sig != [0; SIGNATURE_BYTES]
    }
}

/// BLAKE3 `derive_key` context of the pair keys ([`pair_key`]).
pub const PAIR_KEY_CONTEXT: &str = "anarchy 2026 pair key v1";
/// Domain of a piece's MAC ([`piece_mac`]).
pub const PIECE_MAC_CONTEXT: &[u8] = b"anarchy 2026 piece v2";

/// The key two members share: `derive_key(PAIR_KEY_CONTEXT, session tag ‖
/// their Diffie-Hellman secret ‖ the lower id ‖ the higher id)`. Only the two
/// can compute it (the session secret alone does not give it), so a MAC under
/// it proves to one of them that the other made it.
pub fn pair_key(session: &[u8; 32], shared: &[u8; 32], a: &PeerId, b: &PeerId) -> [u8; 32] {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut material = Vec::with_capacity(32 + 32 + 2 * PEER_ID_BYTES);
    material.extend_from_slice(session);
    material.extend_from_slice(shared);
    material.extend_from_slice(&lo.0);
    material.extend_from_slice(&hi.0);
    blake3::derive_key(PAIR_KEY_CONTEXT, &material)
}

/// The MAC of a piece `author` sends to `receiver` ([`Frame::Piece`]): the
/// first [`PIECE_MAC_BYTES`] of a BLAKE3 keyed hash under their pair key of
/// the domain, both ids (so it is good in one direction, to one peer), and
/// the piece's fields and updates as the frame carries them.
#[allow(clippy::too_many_arguments)]
pub fn piece_mac(
    pair: &[u8; 32],
    author: &PeerId,
    receiver: &PeerId,
    shard: ShardId,
    epoch: u32,
    first_seq: u64,
    base: u32,
    after: u32,
    updates: &[Update],
) -> [u8; PIECE_MAC_BYTES] {
    let mut encoded = Vec::with_capacity(updates.iter().map(Update::encoded_len).sum::<usize>() + 4);
    put_updates(&mut encoded, updates);
    piece_mac_encoded(pair, author, receiver, shard, epoch, first_seq, base, after, &encoded)
}

/// [`piece_mac`] of updates already encoded as the frame carries them
/// (count, then each update): a czar encodes a run once for all members.
#[allow(clippy::too_many_arguments)]
pub fn piece_mac_encoded(
    pair: &[u8; 32],
    author: &PeerId,
    receiver: &PeerId,
    shard: ShardId,
    epoch: u32,
    first_seq: u64,
    base: u32,
    after: u32,
    updates: &[u8],
) -> [u8; PIECE_MAC_BYTES] {
    let mut header = Vec::with_capacity(PIECE_MAC_CONTEXT.len() + 2 * PEER_ID_BYTES + 8 + 10 + 10 + 4 + 4);
    header.extend_from_slice(PIECE_MAC_CONTEXT);
    header.extend_from_slice(&author.0);
    header.extend_from_slice(&receiver.0);
    put_piece_header(&mut header, shard, epoch, first_seq, base, after);
    let hash = blake3::Hasher::new_keyed(pair).update(&header).update(updates).finalize();
    let mut mac = [0u8; PIECE_MAC_BYTES];
    mac.copy_from_slice(&hash.as_bytes()[..PIECE_MAC_BYTES]);
    mac
}

/// The 32 bytes a czar signs for a run of updates. Every field that gives the
/// run its meaning is in it, so a signature cannot be replayed for another
/// session, shard, epoch, position in the history, or content.
#[allow(clippy::too_many_arguments)]
pub fn delta_message(
    session: &[u8; 32],
    shard: ShardId,
    epoch: u32,
    first_seq: u64,
    base: u64,
    after: u64,
    author: &PeerId,
    updates: &[Update],
) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(DELTA_CONTEXT);
    h.update(session);
    h.update(&shard.0.to_le_bytes());
    h.update(&epoch.to_le_bytes());
    h.update(&first_seq.to_le_bytes());
    h.update(&(updates.len() as u64).to_le_bytes());
    h.update(&base.to_le_bytes());
    h.update(&after.to_le_bytes());
    h.update(&author.0);
    let mut buf = Vec::with_capacity(64);
    for u in updates {
        buf.clear();
        put_update(&mut buf, u);
        h.update(&buf);
    }
    *h.finalize().as_bytes()
}

/// What the czar `author` MACs for one [`Frame::Stream`]: the session, the
/// shard, the epoch, the stamp range, the base and every entry as encoded.
#[allow(clippy::too_many_arguments)]
pub fn stream_message(
    session: &[u8; 32],
    author: &PeerId,
    shard: ShardId,
    epoch: u32,
    from: u64,
    to: u64,
    base: u64,
    entries: &[Update],
) -> [u8; 32] {
    let mut header = Vec::with_capacity(64);
    crate::wire::put_stream_header(&mut header, shard, epoch, from, to, base);
    stream_digest(STREAM_CONTEXT, session, author, &header, entries)
}

/// The MAC the czar `author` gives a stream frame for `receiver`
/// ([`Frame::Stream`], [`Frame::StreamPart`]): the first
/// [`PIECE_MAC_BYTES`] of a BLAKE3 keyed hash under their pair key of the
/// domain, both ids and the frame's digest (`message`, from
/// [`stream_message`] or [`stream_part_message`]). Stream frames go only
/// from the czar to each member and are never passed on, so the pair MAC is
/// all the authentication they need.
pub fn stream_mac(pair: &[u8; 32], author: &PeerId, receiver: &PeerId, message: &[u8; 32]) -> [u8; PIECE_MAC_BYTES] {
    let hash = blake3::Hasher::new_keyed(pair)
        .update(STREAM_MAC_CONTEXT)
        .update(&author.0)
        .update(&receiver.0)
        .update(message)
        .finalize();
    let mut mac = [0u8; PIECE_MAC_BYTES];
    mac.copy_from_slice(&hash.as_bytes()[..PIECE_MAC_BYTES]);
    mac
}

/// What the czar `author` MACs for one [`Frame::StreamPart`]: the session,
/// the shard, the epoch, the stamp, the base and every entry as encoded. Its
/// own context, so a partial list can never pass for a whole one.
pub fn stream_part_message(
    session: &[u8; 32],
    author: &PeerId,
    shard: ShardId,
    epoch: u32,
    at: u64,
    base: u64,
    entries: &[Update],
) -> [u8; 32] {
    let mut header = Vec::with_capacity(64);
    crate::wire::put_stream_part_header(&mut header, shard, epoch, at, base);
    stream_digest(STREAM_PART_CONTEXT, session, author, &header, entries)
}

/// The digest of a stream frame, whole or partial, that its MAC covers: its context, the
/// session, the author, the frame's encoded header fields, the entry count
/// and every entry as encoded.
fn stream_digest(context: &str, session: &[u8; 32], author: &PeerId, header: &[u8], entries: &[Update]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(context);
    h.update(session);
    h.update(&author.0);
    h.update(header);
    h.update(&(entries.len() as u64).to_le_bytes());
    let mut buf = Vec::with_capacity(64);
    for u in entries {
        buf.clear();
        put_update(&mut buf, u);
        h.update(&buf);
    }
    *h.finalize().as_bytes()
}

/// A collision-resistant digest of a shard's complete state, entries in key
/// order (as a snapshot carries them), each with the version that wrote it.
pub fn snapshot_digest<'a>(entries: impl IntoIterator<Item = (&'a [u8], &'a [u8], Version, &'a [u8])>) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(SNAPSHOT_DIGEST_CONTEXT);
    for (k, v, written, before) in entries {
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(k);
        h.update(&(v.len() as u64).to_le_bytes());
        h.update(v);
        h.update(&written.epoch.to_le_bytes());
        h.update(&written.seq.to_le_bytes());
        h.update(&(before.len() as u64).to_le_bytes());
        h.update(before);
    }
    *h.finalize().as_bytes()
}

/// The 32 bytes the sender of a snapshot signs.
pub fn snapshot_message(
    session: &[u8; 32],
    shard: ShardId,
    version: Version,
    czar: &PeerId,
    checksum: &[u8; 16],
    chunks: u16,
    digest: &[u8; 32],
) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(SNAPSHOT_CONTEXT);
    h.update(session);
    h.update(&shard.0.to_le_bytes());
    h.update(&version.epoch.to_le_bytes());
    h.update(&version.seq.to_le_bytes());
    h.update(&czar.0);
    h.update(checksum);
    h.update(&chunks.to_le_bytes());
    h.update(digest);
    *h.finalize().as_bytes()
}

/// Signs a message built by [`delta_message`] or [`snapshot_message`].
pub fn sign(keypair: &Keypair, message: &[u8; 32]) -> Signature {
    keypair.sign(message)
}

/// Checks `sig` over `message` by `key`, strictly. Memoised per thread (see
/// the module docs); only successes are remembered, so a forgery costs its
/// sender a full verification every time.
pub fn verify(key: &PublicKey, message: &[u8; 32], sig: &Signature) -> bool {
    thread_local! {
        static VERIFIED: RefCell<HashSet<[u8; 32]>> = RefCell::new(HashSet::new());
    }
    const MAX_CACHED: usize = 1 << 16;
    let mut h = blake3::Hasher::new_derive_key(VERIFIED_CONTEXT);
    h.update(&key.0).update(message).update(sig);
    let fingerprint = *h.finalize().as_bytes();
    if VERIFIED.with(|v| v.borrow().contains(&fingerprint)) {
        return true;
    }
    if !key.verify(message, sig) {
        return false;
    }
    VERIFIED.with(|v| {
        let mut v = v.borrow_mut();
        if v.len() >= MAX_CACHED {
            v.clear();
        }
        v.insert(fingerprint);
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Op;

    fn updates() -> Vec<Update> {
        vec![Update { key: b"hp".to_vec(), op: Op::Put(vec![9]) }, Update { key: b"x".to_vec(), op: Op::Delete }]
    }

    #[test]
    fn a_delta_signature_binds_every_field() {
        let kp = Keypair::from_seed(1);
        let me = kp.peer_id();
        let s = [7u8; 32];
        let m = delta_message(&s, ShardId(1), 2, 10, 5, 6, &me, &updates());
        let sig = sign(&kp, &m);
        assert!(verify(&kp.public_key(), &m, &sig));
        let other = Keypair::from_seed(2).peer_id();
        let mut changed_update = updates();
        changed_update[0].op = Op::Put(vec![10]);
        let variants = [
            delta_message(&[8u8; 32], ShardId(1), 2, 10, 5, 6, &me, &updates()),
            delta_message(&s, ShardId(2), 2, 10, 5, 6, &me, &updates()),
            delta_message(&s, ShardId(1), 3, 10, 5, 6, &me, &updates()),
            delta_message(&s, ShardId(1), 2, 11, 5, 6, &me, &updates()),
            delta_message(&s, ShardId(1), 2, 10, 4, 6, &me, &updates()),
            delta_message(&s, ShardId(1), 2, 10, 5, 7, &me, &updates()),
            delta_message(&s, ShardId(1), 2, 10, 5, 6, &other, &updates()),
            delta_message(&s, ShardId(1), 2, 10, 5, 6, &me, &changed_update),
            delta_message(&s, ShardId(1), 2, 10, 5, 6, &me, &updates()[..1]),
        ];
        for v in variants {
            assert_ne!(v, m);
            assert!(!verify(&kp.public_key(), &v, &sig));
        }
        assert!(!verify(&Keypair::from_seed(2).public_key(), &m, &sig));
    }

    #[test]
    fn a_cached_success_never_vouches_for_another_signature() {
        let kp = Keypair::from_seed(3);
        let m = [1u8; 32];
        let sig = sign(&kp, &m);
        assert!(verify(&kp.public_key(), &m, &sig));
        assert!(verify(&kp.public_key(), &m, &sig), "cached answer is the same");
        let mut bad = sig;
        bad[5] ^= 1;
        assert!(!verify(&kp.public_key(), &m, &bad));
        assert!(!verify(&kp.public_key(), &[2u8; 32], &sig));
    }

    #[test]
    fn snapshot_digest_depends_on_entry_boundaries() {
        let w = Version { epoch: 1, seq: 2 };
        let a = snapshot_digest([(&b"ab"[..], &b"c"[..], w, &[][..])]);
        let b = snapshot_digest([(&b"a"[..], &b"bc"[..], w, &[][..])]);
        assert_ne!(a, b);
    }

    #[test]
    fn snapshot_digest_covers_the_versions_that_wrote_the_entries() {
        let a = snapshot_digest([(&b"k"[..], &b"v"[..], Version { epoch: 1, seq: 2 }, &[][..])]);
        let b = snapshot_digest([(&b"k"[..], &b"v"[..], Version { epoch: 1, seq: 3 }, &[][..])]);
        assert_ne!(a, b);
        let c = snapshot_digest([(&b"k"[..], &b"v"[..], Version { epoch: 1, seq: 2 }, &b"u"[..])]);
        assert_ne!(a, c, "and the values before their last change");
    }
}
