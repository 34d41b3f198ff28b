//! Property tests of the wire format and of the peer's handling of hostile input.
//!
//! Claims checked: every frame within its documented bounds round-trips; any
//! datagram packed from such frames decodes; no byte string, however cut or
//! mutated, makes the decoder or a joined peer panic; and every datagram that
//! fails to decode is counted as a drop.

mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anarchy_proto::identity::{PeerId, PublicKey};
use anarchy_proto::shards::ShardId;
use anarchy_proto::time::Instant;
use anarchy_proto::trend::{Trend, MAX_TREND_BYTES};
use anarchy_proto::wire::{
    decode_datagram, encode_frames, piece_shard_bits, put_header, Decision, DecodeError, Frame, MemberRecord,
    MemberStatus, Op, RecoverVote, ShardDecl, ShardLoad, ShardVersion, Update, ViewDigests, HEADER_BYTES, MAX_EPOCH,
    MAX_FRAGMENTS, MAX_FRAME_BYTES, MAX_KEY_BYTES, MAX_SEQ, MAX_SHARD_NAME_BYTES, MAX_VALUE_BYTES, PIECE_MAC_BYTES,
};
use anarchy_proto::{proof, Config, Keypair, Peer, Version, MAX_DATAGRAM_BYTES};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

/// Modest case counts keep the whole file well under 30 s in debug builds.
/// No failure persistence: the source tree stays untouched by test runs.
fn cases(n: u32) -> ProptestConfig {
    // A fixed seed: the same cases on every run, so a failure is a bug, never
    // noise. `ANARCHY_PROPTEST_SEED=N` explores other cases.
    let seed =
        std::env::var("ANARCHY_PROPTEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x0061_6e61_7263_6879);
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(seed),
        ..ProptestConfig::default()
    }
}

// ----- strategies --------------------------------------------------------------

/// Integers with the edges (0, 1, MAX - 1, MAX) drawn often: that is where
/// varint lengths and overflow checks change.
fn edgy_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => Just(0u64),
        2 => Just(1u64),
        2 => Just(u64::MAX - 1),
        2 => Just(u64::MAX),
        4 => 0u64..300,
        8 => any::<u64>(),
    ]
}

/// Epochs and incarnations: the decoder accepts up to `MAX_EPOCH`.
fn edgy_epoch() -> impl Strategy<Value = u32> {
    prop_oneof![
        2 => Just(0u32),
        2 => Just(1u32),
        2 => Just(MAX_EPOCH - 1),
        2 => Just(MAX_EPOCH),
        4 => 0u32..300,
        8 => 0u32..=MAX_EPOCH,
    ]
}

/// Sequence numbers: the decoder accepts up to `MAX_SEQ`.
fn edgy_seq() -> impl Strategy<Value = u64> {
    prop_oneof![
        2 => Just(0u64),
        2 => Just(1u64),
        2 => Just(MAX_SEQ - 1),
        2 => Just(MAX_SEQ),
        4 => 0u64..300,
        8 => 0u64..=MAX_SEQ,
    ]
}

fn peer_id() -> impl Strategy<Value = PeerId> {
    any::<[u8; 16]>().prop_map(PeerId)
}

fn public_key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey)
}

fn shard_id() -> impl Strategy<Value = ShardId> {
    edgy_u64().prop_map(ShardId)
}

fn version() -> impl Strategy<Value = Version> {
    (edgy_epoch(), edgy_seq()).prop_map(|(epoch, seq)| Version { epoch, seq })
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

/// Values up to [`MAX_VALUE_BYTES`], mostly small so several frames share a
/// datagram (the larger ones need fragments; see `fragment_props`).
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::collection::vec(any::<u8>(), 0..=16),
        2 => prop::collection::vec(any::<u8>(), 0..=900),
        1 => prop::collection::vec(any::<u8>(), 0..=MAX_VALUE_BYTES),
        1 => Just(vec![0xa5; MAX_VALUE_BYTES]),
    ]
}

/// Update keys are 1 to [`MAX_KEY_BYTES`] bytes (the decoder rejects empty ones).
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::collection::vec(any::<u8>(), 1..=8),
        1 => prop::collection::vec(any::<u8>(), 1..=MAX_KEY_BYTES),
    ]
}

fn update() -> impl Strategy<Value = Update> {
    let op = prop_oneof![3 => value().prop_map(Op::Put), 1 => Just(Op::Delete)];
    (key(), op).prop_map(|(key, op)| Update { key, op })
}

/// A trend between three values of one length (1 to `MAX_TREND_BYTES`) in
/// lanes of one of the four widths.
fn trend() -> impl Strategy<Value = Trend> {
    (1..=MAX_TREND_BYTES, 0usize..4).prop_flat_map(|(len, w)| {
        let v = move || prop::collection::vec(any::<u8>(), len);
        (v(), v(), v()).prop_map(move |(b, c, n)| Trend::between(&b, &c, &n, [1, 2, 4, 8][w]).expect("one length"))
    })
}

/// An update as a czar's run carries it: a put, delete or trend.
fn run_update() -> impl Strategy<Value = Update> {
    let op = prop_oneof![3 => value().prop_map(Op::Put), 1 => Just(Op::Delete), 2 => trend().prop_map(Op::Trend)];
    (key(), op).prop_map(|(key, op)| Update { key, op })
}

/// Shard names: 1 to 16 chars of any Unicode, so at most 64 bytes of UTF-8.
fn shard_name() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 1..=16).prop_map(|cs| {
        let s: String = cs.into_iter().collect();
        assert!(!s.is_empty() && s.len() <= MAX_SHARD_NAME_BYTES);
        s
    })
}

/// Stream entries from raw (key, bytes, patch?) triples: patches only with a
/// base, each canonical (its last byte non-zero).
fn stream_entries(raw: Vec<(Vec<u8>, Vec<u8>, bool)>, base: u64) -> Vec<Update> {
    raw.into_iter()
        .map(|(key, mut v, patch)| {
            if patch && base > 0 {
                // Canonical: it ends on a byte that changes.
                while v.last() == Some(&0) {
                    v.pop();
                }
                if v.is_empty() {
                    v.push(1);
                }
                Update { key, op: Op::Patch(v) }
            } else {
                Update { key, op: Op::Put(v) }
            }
        })
        .collect()
}

fn member_record() -> impl Strategy<Value = MemberRecord> {
    let status = prop_oneof![Just(MemberStatus::Alive), Just(MemberStatus::Left)];
    (peer_id(), public_key(), socket_addr(), edgy_epoch(), status, any::<bool>()).prop_map(
        |(id, public_key, addr, incarnation, status, czar_eligible)| MemberRecord {
            id,
            public_key,
            addr,
            incarnation,
            status,
            czar_eligible,
        },
    )
}

fn shard_decl() -> impl Strategy<Value = ShardDecl> {
    (shard_name(), prop::option::of(peer_id())).prop_map(|(name, preferred)| ShardDecl { name, preferred })
}

fn shard_version() -> impl Strategy<Value = ShardVersion> {
    let load = prop::option::of((any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(w, b, k)| ShardLoad {
        writes_per_sec: w,
        bytes_per_sec: b,
        keys: k,
    }));
    (shard_id(), version(), any::<u64>(), any::<bool>(), load, any::<bool>(), any::<bool>()).prop_map(
        |(shard, version, checksum, backed, load, by_run, implied)| {
            // By run: version and checksum are not on the wire (they decode as
            // zero); implied (only by run): nor is the shard.
            let (version, checksum) = if by_run { (Version::default(), 0) } else { (version, checksum) };
            let implied = implied && by_run;
            let shard = if implied { ShardId(0) } else { shard };
            ShardVersion { backed, shard, version, checksum, load, by_run, implied }
        },
    )
}

fn decision() -> impl Strategy<Value = Decision> {
    prop_oneof![
        version().prop_map(Decision::Committed),
        "[a-z]{0,64}".prop_map(Decision::Rejected),
        Just(Decision::TimedOut),
    ]
}

fn recover_vote() -> impl Strategy<Value = RecoverVote> {
    (shard_id(), edgy_epoch(), any::<bool>(), version(), any::<u64>()).prop_map(
        |(shard, epoch, granted, version, checksum)| RecoverVote {
            shard,
            epoch,
            granted,
            version,
            checksum,
            prepared: (checksum % 7) as u16,
        },
    )
}

/// A delta's `first_seq` is at least 1 and `first_seq + len` must not overflow.
fn delta() -> impl Strategy<Value = Frame> {
    (shard_id(), edgy_epoch(), prop::collection::vec(run_update(), 1..=6)).prop_flat_map(|(shard, epoch, updates)| {
        let max_first = MAX_SEQ - updates.len() as u64;
        let first = prop_oneof![Just(1u64), Just(max_first), 1..=max_first];
        (Just(shard), Just(epoch), first, Just(updates), peer_id(), any::<u8>()).prop_map(
            |(shard, epoch, first_seq, updates, author, s)| Frame::Delta {
                base: first_seq.wrapping_mul(31),
                after: first_seq.wrapping_mul(37),
                author,
                sig: [s; 64],
                shard,
                epoch,
                first_seq,
                updates,
            },
        )
    })
}

/// A piece: like a delta's bounds, with a MAC instead of base, author and
/// signature, and the shard's low 16 bits (all the wire carries).
fn piece() -> impl Strategy<Value = Frame> {
    delta().prop_map(|d| match d {
        Frame::Delta { shard, epoch, first_seq, after, sig, updates, .. } => Frame::Piece {
            shard: piece_shard_bits(shard),
            epoch,
            first_seq,
            base: first_seq as u32,
            after: after as u32,
            mac: [sig[0]; PIECE_MAC_BYTES],
            updates,
        },
        _ => unreachable!("delta() makes deltas"),
    })
}

/// A run signature: `count` ≥ 1, `first_seq` ≥ 1, `first_seq + count` within [`MAX_SEQ`].
fn run_sig() -> impl Strategy<Value = Frame> {
    (shard_id(), edgy_epoch(), 1u32..=u32::MAX, any::<u8>()).prop_flat_map(|(shard, epoch, count, s)| {
        let max_first = MAX_SEQ - u64::from(count);
        prop_oneof![Just(1u64), Just(max_first), 1..=max_first].prop_map(move |first_seq| Frame::RunSig {
            shard,
            epoch,
            first_seq,
            count,
            sig: [s; 64],
        })
    })
}

/// A snapshot chunk: `chunks` ≥ 1 and `chunk < chunks`; entry keys may be empty.
fn snapshot() -> impl Strategy<Value = Frame> {
    let entry = (
        prop::collection::vec(any::<u8>(), 0..=MAX_KEY_BYTES),
        value(),
        version(),
        prop::collection::vec(any::<u8>(), 0..=MAX_TREND_BYTES),
    );
    (shard_id(), version(), peer_id(), any::<[u8; 16]>(), 1u16..=u16::MAX, prop::collection::vec(entry, 0..=4))
        .prop_flat_map(|(shard, version, czar, checksum, chunks, entries)| {
            (0..chunks).prop_map(move |chunk| Frame::Snapshot {
                signer: czar,
                sig: [chunk as u8; 64],
                shard,
                version,
                czar,
                checksum,
                chunk,
                chunks,
                entries: entries.clone(),
                resync: chunk % 2 == 0,
            })
        })
}

/// Every frame variant, each field within its documented bound.
fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (public_key(), edgy_epoch(), any::<bool>()).prop_map(|(public_key, incarnation, czar_eligible)| Frame::Join {
            public_key,
            incarnation,
            czar_eligible
        }),
        Just(Frame::Welcome),
        prop::collection::vec(member_record(), 0..=12).prop_map(Frame::Members),
        prop::collection::vec(shard_decl(), 0..=12).prop_map(Frame::Shards),
        (edgy_epoch(), prop::option::of((any::<u64>(), any::<u64>())), prop::collection::vec(shard_version(), 0..=20))
            .prop_map(|(incarnation, digests, czar_of)| Frame::Heartbeat {
                incarnation,
                digests: digests.map(|(members, shards)| ViewDigests { members, shards }),
                czar_of
            }),
        edgy_epoch().prop_map(|incarnation| Frame::Leave { incarnation }),
        delta(),
        piece(),
        run_sig(),
        (edgy_u64(), peer_id(), shard_id(), update()).prop_map(|(write_id, origin, shard, update)| Frame::Forward {
            write_id,
            origin,
            shard,
            update
        }),
        (edgy_u64(), shard_id(), version()).prop_map(|(write_id, shard, version)| Frame::ForwardAck {
            write_id,
            shard,
            version
        }),
        (shard_id(), edgy_seq()).prop_map(|(shard, from_seq)| Frame::RepairReq {
            shard,
            from_seq,
            checksum: from_seq ^ 7
        }),
        snapshot(),
        (shard_id(), edgy_epoch(), peer_id(), edgy_seq(), any::<u64>()).prop_map(
            |(shard, epoch, czar, seq, checksum)| Frame::Authority {
                shard,
                epoch,
                czar,
                seq,
                checksum,
                backed: checksum % 2 == 0,
                start_known: seq % 3 == 0,
            }
        ),
        Just(Frame::SyncReq),
        (peer_id(), edgy_epoch(), prop::collection::vec((shard_id(), edgy_epoch()), 0..=20))
            .prop_map(|(gone, incarnation, claims)| Frame::Recover { gone, incarnation, claims }),
        (peer_id(), any::<bool>(), prop::collection::vec(recover_vote(), 0..=20))
            .prop_map(|(gone, silent, votes)| Frame::RecoverAck { gone, silent, votes }),
        (peer_id(), edgy_u64(), shard_id(), edgy_epoch(), update()).prop_map(
            |(origin, write_id, shard, epoch, update)| Frame::Propose { origin, write_id, shard, epoch, update }
        ),
        (peer_id(), edgy_u64(), shard_id(), edgy_epoch(), update()).prop_map(
            |(origin, write_id, shard, epoch, update)| Frame::Prepared { origin, write_id, shard, epoch, update }
        ),
        (peer_id(), edgy_u64(), shard_id(), edgy_epoch(), any::<bool>(), "[a-z ]{0,64}").prop_map(
            |(origin, write_id, shard, epoch, accept, reason)| Frame::Vote {
                origin,
                write_id,
                shard,
                epoch,
                accept,
                reason
            }
        ),
        (peer_id(), edgy_u64(), shard_id(), decision())
            .prop_map(|(origin, write_id, shard, decision)| Frame::Decided { origin, write_id, shard, decision }),
        (edgy_u64(), peer_id(), shard_id(), update()).prop_map(|(write_id, origin, shard, update)| {
            Frame::ForwardCritical { write_id, origin, shard, update }
        }),
        edgy_u64().prop_map(|stamp| Frame::Ping { stamp }),
        (edgy_u64(), any::<u32>()).prop_map(|(stamp, typical_ms)| Frame::Pong { stamp, typical_ms }),
        edgy_u64().prop_map(|nonce| Frame::AddrCheck { nonce }),
        (any::<u32>(), any::<u16>()).prop_map(|(boot, index)| Frame::ShortId { boot, index }),
        any::<u16>().prop_map(|index| Frame::ShortIdUnknown { index }),
        (edgy_u64(), any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(nonce, a, b)| {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&a);
            signature[32..].copy_from_slice(&b);
            Frame::AddrProof { nonce, signature }
        }),
        (
            shard_id(),
            0..=MAX_EPOCH,
            0..MAX_SEQ,
            1..=1000u64,
            any::<[u8; PIECE_MAC_BYTES]>(),
            prop::collection::vec((key(), prop::collection::vec(any::<u8>(), 1..=24), any::<bool>()), 1..=8)
        )
            .prop_map(|(shard, epoch, from, span, mac, raw)| {
                let base = from / 2;
                let entries = stream_entries(raw, base);
                Frame::Stream { shard, epoch, from, to: (from + span).min(MAX_SEQ), base, entries, mac }
            })
            .prop_filter("a range", |f| matches!(f, Frame::Stream { from, to, .. } if to > from)),
        (
            shard_id(),
            0..=MAX_EPOCH,
            1..=MAX_SEQ,
            any::<[u8; PIECE_MAC_BYTES]>(),
            prop::collection::vec((key(), prop::collection::vec(any::<u8>(), 1..=24), any::<bool>()), 1..=8)
        )
            .prop_map(|(shard, epoch, at, mac, raw)| {
                let base = at / 3;
                let entries = stream_entries(raw, base);
                Frame::StreamPart { shard, epoch, at, base, entries, mac }
            }),
        (shard_id(), 0..=MAX_EPOCH, 0..=MAX_SEQ).prop_map(|(shard, epoch, have)| Frame::StreamAck {
            shard,
            epoch,
            have
        }),
        (any::<u32>(), 2..=MAX_FRAGMENTS, prop::collection::vec(any::<u8>(), 1..=64)).prop_flat_map(
            |(id, count, bytes)| {
                (0..count).prop_map(move |index| Frame::Fragment { id, index, count, bytes: bytes.clone() })
            }
        ),
    ]
}

/// An encoded datagram and the frames it carries.
type Packed = (Vec<u8>, Vec<Frame>);

/// Packs frames greedily into datagrams of at most [`MAX_DATAGRAM_BYTES`], the
/// way a sender would. Frames too large for any datagram are returned apart.
fn pack(sender: &PeerId, frames: &[Frame]) -> (Vec<Packed>, Vec<Frame>) {
    let mut datagrams = Vec::new();
    let mut too_big = Vec::new();
    let mut current: Vec<Frame> = Vec::new();
    let mut len = HEADER_BYTES;
    for f in frames {
        let n = f.to_bytes().len();
        if n > MAX_FRAME_BYTES {
            too_big.push(f.clone());
            continue;
        }
        if len + n > MAX_DATAGRAM_BYTES {
            datagrams.push((encode_frames(sender, &current), std::mem::take(&mut current)));
            len = HEADER_BYTES;
        }
        current.push(f.clone());
        len += n;
    }
    if !current.is_empty() {
        datagrams.push((encode_frames(sender, &current), current));
    }
    (datagrams, too_big)
}

/// One valid datagram of 1 to 4 frames that fits in [`MAX_DATAGRAM_BYTES`].
fn valid_datagram() -> impl Strategy<Value = Vec<u8>> {
    (peer_id(), prop::collection::vec(frame(), 1..=4)).prop_map(|(sender, frames)| {
        let (datagrams, _) = pack(&sender, &frames);
        match datagrams.into_iter().next() {
            Some((bytes, _)) => bytes,
            None => encode_frames(&sender, &[Frame::SyncReq]),
        }
    })
}

/// What to do to a valid datagram before it is decoded.
#[derive(Debug, Clone)]
enum Damage {
    /// Replace the byte at this index (modulo length) with this value.
    Set(usize, u8),
    /// Flip these bits of the byte at this index.
    Flip(usize, u8),
    /// Keep only this many bytes (modulo length + 1).
    Truncate(usize),
    /// Insert a byte at this index.
    Insert(usize, u8),
    /// Remove the byte at this index.
    Remove(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Set(i, b)),
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Damage::Flip(i, b)),
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Insert(i, b)),
        any::<usize>().prop_map(Damage::Remove),
    ]
}

fn apply_damage(bytes: &mut Vec<u8>, d: &Damage) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    match *d {
        Damage::Set(i, b) => bytes[i % n] = b,
        Damage::Flip(i, b) => bytes[i % n] ^= b,
        Damage::Truncate(i) => bytes.truncate(i % (n + 1)),
        Damage::Insert(i, b) => bytes.insert(i % (n + 1), b),
        Damage::Remove(i) => {
            bytes.remove(i % n);
        }
    }
}

fn header(sender: &PeerId) -> Vec<u8> {
    let mut out = Vec::new();
    put_header(&mut out, sender);
    out
}

/// Whatever decodes must re-encode to something that decodes to the same
/// frames (re-encoding is canonical, so never longer than the input).
fn check_reencode(bytes: &[u8]) {
    if let Ok(d) = decode_datagram(bytes) {
        let again = encode_frames(&d.sender, &d.frames);
        assert!(again.len() <= bytes.len(), "canonical re-encoding grew: {} > {}", again.len(), bytes.len());
        assert_eq!(decode_datagram(&again).as_ref(), Ok(&d));
    }
}

// ----- wire properties -----------------------------------------------------------

proptest! {
    #![proptest_config(cases(1024))]

    #[test]
    fn every_frame_within_bounds_round_trips(sender in peer_id(), f in frame()) {
        let bytes = encode_frames(&sender, std::slice::from_ref(&f));
        if bytes.len() <= MAX_DATAGRAM_BYTES {
            let d = decode_datagram(&bytes).expect("a frame that fits decodes");
            prop_assert_eq!(d.sender, sender);
            prop_assert_eq!(d.frames, vec![f]);
        } else {
            prop_assert_eq!(decode_datagram(&bytes), Err(DecodeError::Oversized));
        }
    }

    #[test]
    fn update_encoded_len_matches_its_encoding(u in update(), write_id in edgy_u64(), origin in peer_id()) {
        let bare = Frame::Forward { write_id, origin, shard: ShardId(0), update: Update { key: vec![1], op: Op::Delete } };
        let with = Frame::Forward { write_id, origin, shard: ShardId(0), update: u.clone() };
        let diff = with.to_bytes().len() - bare.to_bytes().len();
        prop_assert_eq!(diff + 2, u.encoded_len(), "a one-byte-key delete takes 2 bytes: tag and key");
    }

    #[test]
    fn datagrams_packed_from_fitting_frames_decode(sender in peer_id(), frames in prop::collection::vec(frame(), 1..=12)) {
        let (datagrams, too_big) = pack(&sender, &frames);
        let mut decoded = Vec::new();
        for (bytes, packed) in &datagrams {
            prop_assert!(bytes.len() <= MAX_DATAGRAM_BYTES);
            let d = decode_datagram(bytes).expect("a packed datagram decodes");
            prop_assert_eq!(d.sender, sender);
            prop_assert_eq!(&d.frames, packed);
            decoded.extend(d.frames);
        }
        let fitting: Vec<Frame> = frames.iter().filter(|f| !too_big.contains(f)).cloned().collect();
        prop_assert_eq!(decoded, fitting);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1500)) {
        let result = decode_datagram(&bytes);
        if bytes.len() > MAX_DATAGRAM_BYTES {
            prop_assert_eq!(result, Err(DecodeError::Oversized));
        }
        check_reencode(&bytes);
    }

    #[test]
    fn random_bytes_after_a_valid_header_never_panic(sender in peer_id(), body in prop::collection::vec(any::<u8>(), 0..1200)) {
        let mut bytes = header(&sender);
        bytes.extend_from_slice(&body);
        match decode_datagram(&bytes) {
            Ok(d) => prop_assert_eq!(d.sender, sender),
            Err(DecodeError::BadMagic | DecodeError::UnsupportedVersion(_) | DecodeError::UnknownFlags(_)) => {
                prop_assert!(false, "a valid header was rejected");
            }
            Err(DecodeError::Empty) => prop_assert!(body.is_empty()),
            Err(_) => {}
        }
        check_reencode(&bytes);
    }

    #[test]
    fn random_frame_type_and_body_never_panic(
        sender in peer_id(),
        kind in prop_oneof![4 => 0u8..=32, 1 => any::<u8>()],
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        // Focuses the search on short bodies behind each known type byte (and
        // the first unknown ones: new frame types are added at the top).
        let mut bytes = header(&sender);
        bytes.push(kind);
        bytes.extend_from_slice(&body);
        if kind == 0 || kind == u8::MAX {
            prop_assert_eq!(decode_datagram(&bytes), Err(DecodeError::UnknownFrame(kind)));
        }
        check_reencode(&bytes);
    }

    #[test]
    fn mutated_and_truncated_datagrams_never_panic(bytes in valid_datagram(), damages in prop::collection::vec(damage(), 1..=4)) {
        let mut bytes = bytes;
        for d in &damages {
            apply_damage(&mut bytes, d);
        }
        let _ = decode_datagram(&bytes);
        check_reencode(&bytes);
    }

    #[test]
    fn every_truncation_of_a_valid_datagram_is_handled(bytes in valid_datagram()) {
        for cut in 0..bytes.len() {
            let r = decode_datagram(&bytes[..cut]);
            if cut < HEADER_BYTES {
                prop_assert!(r.is_err());
            } else if cut == HEADER_BYTES {
                prop_assert_eq!(r, Err(DecodeError::Empty));
            }
            check_reencode(&bytes[..cut]);
        }
    }
}

// ----- a peer fed hostile datagrams ----------------------------------------------------

const BOOT_MS: u64 = 1_000;

/// The other member of the session in these tests: its datagrams pass the
/// sender check, so they reach the frame handlers.
fn other() -> Keypair {
    Keypair::from_seed(2)
}

/// A delta from [`other`], signed with its key (based on the empty state).
fn signed_delta(shard: ShardId, epoch: u32, first_seq: u64, updates: Vec<Update>) -> Frame {
    let tag = proof::session_tag(&Config::default().session_secret);
    proof::BatchProof::sign(&other(), &tag, shard, epoch, first_seq, 0, 0, &updates).frame(shard, updates)
}

/// An empty snapshot sent and signed by [`other`], naming `czar`.
fn empty_snapshot(shard: ShardId, version: Version, czar: PeerId, resync: bool) -> Frame {
    let digest = proof::snapshot_digest(std::iter::empty());
    let message = proof::snapshot_message(
        &proof::session_tag(&Config::default().session_secret),
        shard,
        version,
        &czar,
        &[0; 16],
        1,
        &digest,
    );
    Frame::Snapshot {
        shard,
        version,
        czar,
        checksum: [0; 16],
        chunk: 0,
        chunks: 1,
        entries: Vec::new(),
        resync,
        signer: other().peer_id(),
        sig: other().sign(&message),
    }
}

fn other_addr() -> SocketAddr {
    "127.0.0.1:7002".parse().unwrap()
}

const SHARD_NAMES: [&str; 2] = ["world", "lobby"];

/// A peer alone in its session, with two declared shards and a couple of keys,
/// that has let `other()` join through it.
fn joined_peer() -> Peer {
    let now = Instant::from_millis(BOOT_MS);
    let addr = "127.0.0.1:7001".parse().unwrap();
    let mut peer = Peer::new(Config::default(), Keypair::from_seed(1), addr, 42, now);
    let world = peer.declare_shard(now, SHARD_NAMES[0], None).unwrap();
    peer.declare_shard(now, SHARD_NAMES[1], Some(peer.id())).unwrap();
    peer.join(now, &[]);
    peer.write(now, world, b"door", b"open").unwrap();
    let kp = other();
    let join = encode_frames(
        &kp.peer_id(),
        &[Frame::Join { public_key: kp.public_key(), incarnation: 0, czar_eligible: true }],
    );
    peer.handle_datagram(now, other_addr(), &support::seal(&join));
    drain(&mut peer);
    assert!(peer.is_joined());
    assert_eq!(peer.live_members().count(), 2);
    peer
}

/// Drains every output, as the sans-IO contract asks after each input, and
/// checks that whatever the peer sends is itself a valid datagram.
fn drain(peer: &mut Peer) {
    while let Some(t) = peer.poll_transmit() {
        assert!(t.payload.len() <= MAX_DATAGRAM_BYTES, "peer sent {} bytes", t.payload.len());
        let d = support::decode(&t.payload).expect("the peer sends only valid sealed datagrams");
        assert_eq!(d.sender, peer.id());
    }
    while peer.poll_event().is_some() {}
}

/// Epochs for frames aimed at the peer: the edges near zero, the decoder's
/// limit and anything beyond it (rejected and counted).
fn peer_epoch() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(1u32), 0u32..300, Just(MAX_EPOCH), Just(u32::MAX), any::<u32>()]
}

/// Sequence numbers for frames aimed at the peer, the same way.
fn peer_seq() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(1u64), 0u64..300, Just(MAX_SEQ), Just(u64::MAX), any::<u64>()]
}

/// Frames aimed at the peer's real shards, so they get past the unknown-shard check.
fn frame_for_peer() -> impl Strategy<Value = Frame> {
    let shard = || {
        prop_oneof![
            4 => prop::sample::select(SHARD_NAMES.to_vec()).prop_map(ShardId::from_name),
            1 => shard_id(),
        ]
    };
    let me = Keypair::from_seed(1).peer_id();
    let them = other().peer_id();
    let czar = || prop_oneof![Just(me), Just(them), peer_id()];
    prop_oneof![
        frame(),
        (shard(), peer_epoch(), czar(), peer_seq(), any::<u64>()).prop_map(|(shard, epoch, czar, seq, checksum)| {
            Frame::Authority { shard, epoch, czar, seq, checksum, backed: checksum % 2 == 0, start_known: seq % 2 == 0 }
        }),
        (shard(), peer_epoch(), 1u64..=5, prop::collection::vec(update(), 1..=3))
            .prop_map(|(shard, epoch, first_seq, updates)| signed_delta(shard, epoch, first_seq, updates)),
        (shard(), edgy_u64()).prop_map(|(shard, from_seq)| Frame::RepairReq {
            shard,
            from_seq,
            checksum: from_seq ^ 7
        }),
        (edgy_u64(), prop_oneof![Just(them), peer_id()], shard(), update())
            .prop_map(|(write_id, origin, shard, update)| Frame::Forward { write_id, origin, shard, update }),
        (shard(), peer_epoch(), peer_seq(), any::<u64>()).prop_map(|(shard, epoch, seq, checksum)| {
            Frame::Heartbeat {
                incarnation: 0,
                digests: Some(ViewDigests { members: 0, shards: 0 }),
                czar_of: vec![ShardVersion {
                    shard,
                    version: Version { epoch, seq },
                    checksum,
                    backed: seq % 2 == 0,
                    load: None,
                    by_run: false,
                    implied: false,
                }],
            }
        }),
        // An empty snapshot's checksum is all zeros: these can actually install.
        (shard(), peer_epoch(), peer_seq(), czar()).prop_map(|(shard, epoch, seq, czar)| empty_snapshot(
            shard,
            Version { epoch, seq },
            czar,
            seq % 2 == 0
        )),
        (shard(), edgy_u64(), edgy_epoch()).prop_map(|(shard, write_id, epoch)| Frame::ForwardAck {
            write_id,
            shard,
            version: Version { epoch, seq: 1 },
        }),
        edgy_epoch().prop_map(|incarnation| Frame::Leave { incarnation }),
        Just(Frame::SyncReq),
    ]
}

/// One input to the peer.
#[derive(Debug, Clone)]
enum Input {
    /// Random bytes, from some address.
    Noise(Vec<u8>, SocketAddr),
    /// Frames from `other()` (a live member), maybe damaged.
    FromMember(Vec<Frame>, Vec<Damage>, SocketAddr),
    /// Frames from an arbitrary sender id, maybe damaged.
    FromStranger(PeerId, Vec<Frame>, Vec<Damage>, SocketAddr),
    /// Frames from `other()`, damaged after sealing.
    DamagedSeal(Vec<Frame>, Vec<Damage>, SocketAddr),
    /// Time passes by this many milliseconds.
    Wait(u64),
}

fn from_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![Just(other_addr()), socket_addr()]
}

fn input() -> impl Strategy<Value = Input> {
    let frames = || prop::collection::vec(frame_for_peer(), 1..=3);
    let damages = || prop_oneof![2 => Just(Vec::new()), 1 => prop::collection::vec(damage(), 1..=3)];
    prop_oneof![
        2 => (prop::collection::vec(any::<u8>(), 0..1500), from_addr()).prop_map(|(b, a)| Input::Noise(b, a)),
        5 => (frames(), damages(), from_addr()).prop_map(|(f, d, a)| Input::FromMember(f, d, a)),
        1 => (peer_id(), frames(), damages(), from_addr()).prop_map(|(s, f, d, a)| Input::FromStranger(s, f, d, a)),
        1 => (frames(), prop::collection::vec(damage(), 1..=3), from_addr())
            .prop_map(|(f, d, a)| Input::DamagedSeal(f, d, a)),
        1 => (0u64..400).prop_map(Input::Wait),
    ]
}

/// Seals a (maybe damaged) plain datagram as a member would; one too short
/// to have a header goes out as it is.
fn sealed(plain: Vec<u8>, from: SocketAddr) -> (Vec<u8>, Option<Vec<u8>>, SocketAddr) {
    if plain.len() < HEADER_BYTES {
        return (plain, None, from);
    }
    (support::seal(&plain), Some(plain), from)
}

fn datagram_bytes(sender: &PeerId, frames: &[Frame], damages: &[Damage]) -> Vec<u8> {
    let (datagrams, _) = pack(sender, frames);
    let mut bytes = match datagrams.into_iter().next() {
        Some((b, _)) => b,
        None => encode_frames(sender, &[Frame::SyncReq]),
    };
    for d in damages {
        apply_damage(&mut bytes, d);
    }
    bytes
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn joined_peer_survives_hostile_datagrams_and_counts_undecodable_ones(inputs in prop::collection::vec(input(), 1..=40)) {
        let mut peer = joined_peer();
        let mut now = Instant::from_millis(BOOT_MS);
        let them = other().peer_id();
        for input in inputs {
            // `plain`: what the peer should find after opening, if the seal holds.
            let (bytes, plain, from) = match input {
                Input::Wait(ms) => {
                    now = Instant::from_millis(now.as_micros() / 1000 + ms);
                    if peer.poll_timeout().is_some_and(|t| t <= now) {
                        peer.handle_timeout(now);
                    }
                    drain(&mut peer);
                    continue;
                }
                Input::Noise(bytes, from) => (bytes, None, from),
                Input::FromMember(frames, damages, from) => sealed(datagram_bytes(&them, &frames, &damages), from),
                Input::FromStranger(sender, frames, damages, from) => {
                    sealed(datagram_bytes(&sender, &frames, &damages), from)
                }
                Input::DamagedSeal(frames, damages, from) => {
                    let (mut bytes, plain, from) = sealed(datagram_bytes(&them, &frames, &[]), from);
                    let intact = bytes.clone();
                    for d in &damages {
                        apply_damage(&mut bytes, d);
                    }
                    // Some damage leaves the bytes as they were (a truncation at
                    // the end, a flip by zero): then the seal holds.
                    let plain = if bytes == intact { plain } else { None };
                    (bytes, plain, from)
                }
            };
            let before = peer.stats().total_drops();
            let datagrams_before = peer.stats().datagrams_in;
            peer.handle_datagram(now, from, &bytes);
            prop_assert_eq!(peer.stats().datagrams_in, datagrams_before + 1);
            match plain.map(|p| decode_datagram(&p)) {
                Some(Err(e)) => prop_assert!(
                    peer.stats().total_drops() > before,
                    "undecodable datagram ({e}) was not counted as a drop"
                ),
                // Noise and damaged seals never open (2^-128 aside).
                None => prop_assert!(peer.stats().total_drops() > before, "unsealed datagram was not counted as a drop"),
                Some(Ok(_)) => {}
            }
            drain(&mut peer);
        }
    }
}

// ----- known core bugs -------------------------------------------------------------------
//
// Found by the property test above. Ignored until the core is fixed (this file
// does not own `src/`); run with `cargo test --test wire_props -- --ignored`.
// Regression tests for two overflows the peer property found: epochs,
// incarnations and sequence numbers above the protocol limits (`MAX_EPOCH`,
// `MAX_SEQ`) are now refused by the decoder, so `+ 1` in the core cannot overflow.

/// A delta at epoch `u32::MAX` used to be accepted as a claim; when its sender
/// left, our own claim overflowed `epoch += 1`. Now it is refused and counted.
#[test]
fn claiming_after_a_claim_at_the_last_epoch_does_not_overflow() {
    let mut peer = joined_peer();
    let now = Instant::from_millis(BOOT_MS);
    let them = other().peer_id();
    let world = ShardId::from_name(SHARD_NAMES[0]);
    let update = Update { key: vec![0], op: Op::Put(Vec::new()) };
    let before = peer.stats().total_drops();
    let delta = signed_delta(world, u32::MAX, 1, vec![update.clone()]);
    peer.handle_datagram(now, other_addr(), &support::seal(&encode_frames(&them, &[delta])));
    assert_eq!(peer.stats().total_drops(), before + 1);
    // At the limit itself it is accepted, and the claim after it does not overflow.
    let delta = signed_delta(world, MAX_EPOCH, 1, vec![update]);
    peer.handle_datagram(now, other_addr(), &support::seal(&encode_frames(&them, &[delta])));
    drain(&mut peer);
    peer.handle_datagram(now, other_addr(), &support::seal(&encode_frames(&them, &[Frame::Leave { incarnation: 0 }])));
    drain(&mut peer);
}

/// An empty snapshot at seq `u64::MAX` used to install, and the next repair
/// request overflowed `seq + 1` in `Replica::log_from`. Now it is refused.
#[test]
fn a_snapshot_at_the_last_seq_does_not_overflow() {
    let mut peer = joined_peer();
    let now = Instant::from_millis(BOOT_MS);
    let them = other().peer_id();
    let world = ShardId::from_name(SHARD_NAMES[0]);
    let claim =
        Frame::Authority { shard: world, epoch: 100, czar: them, seq: 1, checksum: 0, backed: true, start_known: true };
    for seq in [u64::MAX, MAX_SEQ] {
        let snapshot = empty_snapshot(world, Version { epoch: 100, seq }, them, false);
        peer.handle_datagram(now, other_addr(), &support::seal(&encode_frames(&them, &[claim.clone(), snapshot])));
        drain(&mut peer);
        let repair = Frame::RepairReq { shard: world, from_seq: 5, checksum: 0 };
        peer.handle_datagram(now, other_addr(), &support::seal(&encode_frames(&them, &[repair])));
        drain(&mut peer);
    }
    assert!(peer.version_of(world).unwrap().seq <= MAX_SEQ);
}
