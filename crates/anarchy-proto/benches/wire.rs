//! Encode and decode of standard-workload datagrams (issue 6): one czar's tick
//! of 16 entities with 12-byte quantized values, about half moving, as one
//! datagram to one member with a heartbeat: the run (values that changed in a
//! few bytes as patches, its author left out) signed by its czar, the
//! frames compressed when that pays, the datagram sealed. `encode` is what
//! the sender does per tick (sign, encode, compress, seal), `decode` what a
//! receiver does (open, decompress, decode, verify the signature, uncached).
//! `sign_run` / `verify_run` isolate the signature's share.
//! `pieces/encode` and `pieces/decode` are the same ticks as a czar sends them
//! by default: each tick a `Piece` MAC'd for the member (pair key), and every
//! tenth tick (500 ms at 20 Hz, `run_sign_interval`) the `RunSig` of the ten;
//! the receiver checks each MAC and the run's signature over the updates its
//! pieces brought. `standard/*` is the signed-`Delta`-per-tick path
//! (`run_sign_interval` zero), kept to compare in one run.
//! `seal/seal_*` seals one datagram of that many bytes (ChaCha20 and the
//! 8-byte BLAKE3 tag), `seal/round_trip_*` seals it and opens it through a
//! receiver's replay window: opening costs the difference.
//! Throughput is in updates (seal: datagrams); bytes per update are printed
//! before the runs.
//!
//! `cargo bench -p anarchy-proto --bench wire`

use std::hint::black_box;

use anarchy_proto::compress::{compress_datagram, decompress_datagram};
use anarchy_proto::seal::{open_datagram, seal_datagram, Opener, Sealer, SessionSecret};
use anarchy_proto::wire::{
    decode_datagram, encode_datagram, piece_shard_bits, Frame, Op, ShardVersion, Update, ViewDigests,
};
use anarchy_proto::{proof, Keypair, PeerId, Replica, ShardId, Version};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ENTITIES: usize = 16;
const TICKS: usize = 64;

/// One entity's change in a tick: key, old value, new value.
type Change = (Vec<u8>, Vec<u8>, Vec<u8>);

/// `TICKS` consecutive ticks of one avatar shard: per tick, the changes of
/// every entity whose value changed.
fn ticks() -> Vec<Vec<Change>> {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let speed = [32i32, 32, 4, 8, 2, 0];
    let mut coords: Vec<[u16; 6]> = (0..ENTITIES).map(|_| rng.gen()).collect();
    let mut velocity: Vec<[i32; 6]> =
        (0..ENTITIES).map(|_| std::array::from_fn(|c| rng.gen_range(-speed[c]..=speed[c]))).collect();
    let mut moving: Vec<bool> = (0..ENTITIES).map(|_| rng.gen()).collect();
    let value = |c: &[u16; 6]| c.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    (0..TICKS)
        .map(|_| {
            let mut changed = Vec::new();
            for e in 0..ENTITIES {
                if rng.gen::<f64>() < 1.0 / 40.0 {
                    moving[e] = !moving[e];
                }
                if !moving[e] {
                    continue;
                }
                let old = value(&coords[e]);
                for c in 0..6 {
                    coords[e][c] = coords[e][c].wrapping_add_signed(velocity[e][c] as i16);
                    velocity[e][c] = (velocity[e][c] + rng.gen_range(-1..=1)).clamp(-speed[c], speed[c]);
                }
                let new = value(&coords[e]);
                if new != old {
                    changed.push((format!("e{e}").into_bytes(), old, new));
                }
            }
            changed
        })
        .collect()
}

/// A czar's heartbeat: full (with view digests) on every fifth tick to a
/// member, short on the others, as a czar with steady views sends them.
fn heartbeat(shard: ShardId, seq: u64, tick: u64) -> Frame {
    Frame::Heartbeat {
        incarnation: 1,
        digests: (tick % 5 == 0)
            .then_some(ViewDigests { members: 0x1234_5678_9abc_def0, shards: 0x0fed_cba9_8765_4321 }),
        czar_of: vec![ShardVersion {
            shard,
            version: Version { epoch: 1, seq },
            checksum: seq * 31,
            backed: true,
            load: None,
            by_run: false,
            implied: false,
        }],
    }
}

/// One tick's run: (first seq, updates), as a czar's replica logs them:
/// each change as the smallest of a put, a patch and a trend.
fn runs() -> Vec<(u64, Vec<Update>)> {
    let ticks = ticks();
    // The entities as the members already hold them before the first tick.
    let mut replica = Replica::default();
    for (key, old, _) in ticks.iter().flatten() {
        if replica.get(key).is_none() {
            replica.apply_local(0, Update { key: key.clone(), op: Op::Put(old.clone()) }, 16);
        }
    }
    ticks
        .into_iter()
        .filter(|t| !t.is_empty())
        .map(|tick| {
            let first = replica.seq() + 1;
            let updates = tick
                .into_iter()
                .map(|(key, _, new)| replica.apply_local(0, Update { key, op: Op::Put(new) }, 16).wire_update())
                .collect();
            (first, updates)
        })
        .collect()
}

struct Sender {
    keypair: Keypair,
    tag: [u8; 32],
    secret: SessionSecret,
    shard: ShardId,
    counter: u64,
}

impl Sender {
    fn new() -> Self {
        let secret = SessionSecret::from_passphrase("bench");
        Sender {
            keypair: Keypair::from_seed(3),
            tag: proof::session_tag(&secret),
            secret,
            shard: ShardId::from_name("avatars-1"),
            counter: 0,
        }
    }

    /// Everything the sender does for one tick's datagram to one member.
    fn datagram(&mut self, first_seq: u64, updates: &[Update]) -> Vec<u8> {
        let (base, after) = (first_seq.wrapping_mul(7), first_seq.wrapping_mul(11));
        let run = proof::BatchProof::sign(&self.keypair, &self.tag, self.shard, 1, first_seq, base, after, updates);
        let delta = run.frame(self.shard, updates.to_vec());
        let author = run.author;
        let frames = [delta.to_bytes_from(&author), heartbeat(self.shard, first_seq, self.counter).to_bytes()];
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        self.counter += 1;
        seal_datagram(&self.secret, 1, self.counter, &compress_datagram(encode_datagram(&author, &refs)))
    }
}

/// Ticks per signed run on the piece path: 500 ms at 20 Hz
/// (`Config::run_sign_interval`).
const TICKS_PER_RUN: usize = 10;

impl Sender {
    /// The pair key with `receiver` and its id.
    fn pair(&self, receiver: &Keypair) -> ([u8; 32], PeerId) {
        let shared = self.keypair.agree(&receiver.public_key()).expect("bench keys agree");
        (proof::pair_key(&self.tag, &shared, &self.keypair.peer_id(), &receiver.peer_id()), receiver.peer_id())
    }

    /// One tick's datagram on the piece path: the piece for `to`, and when
    /// the run closes (`run`: its first seq and every update) its signature.
    fn piece_datagram(
        &mut self,
        pair: &([u8; 32], PeerId),
        first_seq: u64,
        updates: &[Update],
        run: Option<(u64, &[Update])>,
    ) -> Vec<u8> {
        let author = self.keypair.peer_id();
        let (base, after) = (first_seq.wrapping_mul(7), first_seq.wrapping_mul(11));
        let mac =
            proof::piece_mac(&pair.0, &author, &pair.1, self.shard, 1, first_seq, base as u32, after as u32, updates);
        let piece = Frame::Piece {
            shard: self.shard,
            epoch: 1,
            first_seq,
            base: base as u32,
            after: after as u32,
            mac,
            updates: updates.to_vec(),
        };
        let mut frames = vec![piece.to_bytes(), heartbeat(self.shard, first_seq, self.counter).to_bytes()];
        if let Some((first, all)) = run {
            let (base, after) = (first.wrapping_mul(7), first_seq.wrapping_mul(11));
            let signed = proof::BatchProof::sign(&self.keypair, &self.tag, self.shard, 1, first, base, after, all);
            let count = signed.count;
            frames.push(
                Frame::RunSig { shard: self.shard, epoch: 1, first_seq: first, count, sig: signed.sig }.to_bytes(),
            );
        }
        let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
        self.counter += 1;
        seal_datagram(&self.secret, 1, self.counter, &compress_datagram(encode_datagram(&author, &refs)))
    }
}

/// Every tick's datagram on the piece path, to the member `pair` names.
fn piece_datagrams(sender: &mut Sender, pair: &([u8; 32], PeerId), runs: &[(u64, Vec<Update>)]) -> Vec<Vec<u8>> {
    runs.chunks(TICKS_PER_RUN)
        .flat_map(|chunk| {
            let all: Vec<Update> = chunk.iter().flat_map(|r| r.1.iter().cloned()).collect();
            let first = chunk[0].0;
            let last = chunk.len() - 1;
            chunk
                .iter()
                .enumerate()
                .map(|(i, (seq, u))| sender.piece_datagram(pair, *seq, u, (i == last).then_some((first, &all[..]))))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The updates of the open run a receiver holds from its pieces: the run's
/// first seq, the last piece's first seq (its checksums stand in for the
/// receiver's log), and the updates.
#[derive(Default)]
struct Held {
    first: u64,
    last_piece: u64,
    updates: Vec<Update>,
}

/// What a receiver does with one piece-path datagram before applying it: the
/// MAC of each piece, and a run signature over the updates its pieces brought.
fn receive_piece(
    secret: &SessionSecret,
    tag: &[u8; 32],
    key: &anarchy_proto::PublicKey,
    pair: &([u8; 32], PeerId),
    held: &mut Held,
    bytes: &[u8],
) -> usize {
    let (_, plain) = open_datagram(secret, bytes).expect("ours");
    let plain = decompress_datagram(&plain).expect("ours");
    let datagram = decode_datagram(&plain).expect("ours");
    let author = datagram.sender;
    let mut n = 0;
    for f in datagram.frames {
        match f {
            Frame::Piece { shard: bits, epoch, first_seq, base, after, mac, updates } => {
                // A piece states the shard's low bits; the receiver knows the shard.
                let shard = ShardId::from_name("avatars-1");
                assert_eq!(piece_shard_bits(shard), bits);
                let want = proof::piece_mac(&pair.0, &author, &pair.1, shard, epoch, first_seq, base, after, &updates);
                assert_eq!(mac, want);
                if held.updates.is_empty() {
                    held.first = first_seq;
                }
                held.last_piece = first_seq;
                n += updates.len();
                held.updates.extend(updates);
            }
            Frame::RunSig { shard, epoch, first_seq, sig, .. } => {
                assert_eq!(first_seq, held.first);
                let (base, after) = (first_seq.wrapping_mul(7), held.last_piece.wrapping_mul(11));
                let message = proof::delta_message(tag, shard, epoch, first_seq, base, after, &author, &held.updates);
                assert!(key.verify(&message, &sig));
                held.updates.clear();
            }
            _ => {}
        }
    }
    n
}

/// Everything a receiver does with one datagram before applying it.
fn receive(secret: &SessionSecret, tag: &[u8; 32], key: &anarchy_proto::PublicKey, bytes: &[u8]) -> usize {
    let (_, plain) = open_datagram(secret, bytes).expect("ours");
    let plain = decompress_datagram(&plain).expect("ours");
    let datagram = decode_datagram(&plain).expect("ours");
    let mut n = 0;
    for f in datagram.frames {
        if let Frame::Delta { shard, epoch, first_seq, base, after, author, sig, updates } = f {
            let message = proof::delta_message(tag, shard, epoch, first_seq, base, after, &author, &updates);
            assert!(key.verify(&message, &sig));
            n += updates.len();
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let runs = runs();
    let updates: usize = runs.iter().map(|r| r.1.len()).sum();
    let mut sender = Sender::new();
    let encoded: Vec<Vec<u8>> = runs.iter().map(|(first, u)| sender.datagram(*first, u)).collect();
    let bytes: usize = encoded.iter().map(Vec::len).sum();
    let payload: usize = ticks().iter().flatten().map(|(k, _, v)| k.len() + v.len()).sum();
    println!(
        "standard: {} datagrams, {updates} updates, {:.2} wire bytes/update (header, heartbeat, signature and \
         seal included), {:.2} payload bytes/update",
        encoded.len(),
        bytes as f64 / updates as f64,
        payload as f64 / updates as f64
    );
    let key = sender.keypair.public_key();
    let (secret, tag) = (sender.secret.clone(), sender.tag);
    let mut g = c.benchmark_group("standard");
    g.throughput(Throughput::Elements(updates as u64));
    g.bench_function("encode", |b| {
        b.iter(|| {
            for (first, u) in &runs {
                black_box(sender.datagram(*first, black_box(u)));
            }
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            for bytes in &encoded {
                black_box(receive(&secret, &tag, &key, black_box(bytes)));
            }
        })
    });
    g.finish();
    let member = Keypair::from_seed(4);
    let pair = sender.pair(&member);
    let pieces = piece_datagrams(&mut sender, &pair, &runs);
    let piece_bytes: usize = pieces.iter().map(Vec::len).sum();
    println!(
        "pieces: {} datagrams, {updates} updates, {:.2} wire bytes/update (a run signature every {TICKS_PER_RUN} \
         ticks); the signed-delta path above: {:.2}, ratio {:.3}",
        pieces.len(),
        piece_bytes as f64 / updates as f64,
        bytes as f64 / updates as f64,
        piece_bytes as f64 / bytes as f64
    );
    let mut g = c.benchmark_group("pieces");
    g.throughput(Throughput::Elements(updates as u64));
    g.bench_function("encode", |b| b.iter(|| black_box(piece_datagrams(&mut sender, &pair, black_box(&runs)))));
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut held = Held::default();
            for bytes in &pieces {
                black_box(receive_piece(&secret, &tag, &key, &pair, &mut held, black_box(bytes)));
            }
        })
    });
    g.finish();
    let mut g = c.benchmark_group("signature");
    g.throughput(Throughput::Elements(1));
    let message = [5u8; 32];
    let sig = proof::sign(&sender.keypair, &message);
    g.bench_function("sign_run", |b| b.iter(|| black_box(proof::sign(&sender.keypair, black_box(&message)))));
    g.bench_function("verify_run", |b| b.iter(|| black_box(key.verify(black_box(&message), &sig))));
    g.finish();
    let mut g = c.benchmark_group("seal");
    g.throughput(Throughput::Elements(1));
    let secret = SessionSecret::from_passphrase("bench");
    let id = sender.keypair.peer_id();
    let header = encode_datagram(&id, &[&Frame::SyncReq.to_bytes()[..]]);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for size in [100usize, 1000] {
        let mut plain = header[..anarchy_proto::wire::HEADER_BYTES].to_vec();
        plain.extend((plain.len()..size).map(|_| rng.gen::<u8>()));
        let mut sealer = Sealer::new(&secret, &id, 1);
        g.bench_function(format!("seal_{size}"), |b| b.iter(|| black_box(sealer.seal(black_box(&plain)))));
        let mut sealer = Sealer::new(&secret, &id, 2);
        let mut opener = Opener::new(secret.clone());
        g.bench_function(format!("round_trip_{size}"), |b| {
            b.iter(|| black_box(opener.open(&sealer.seal(black_box(&plain))).expect("opens").plain.len()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
