//! Hostile members (`anarchy sim --byzantine K`): insiders that hold the
//! session's secret and a valid identity, run an honest core (so they stay
//! members and play), and on top of it attack the honest peers with crafted
//! datagrams: forged updates for shards they do not own, updates posing as
//! the czar without its key (signed runs, and pieces under the attacker's own
//! pair key with the target), forged run signatures, replays of captured
//! datagrams and of old signed runs with altered checksums or stale epochs,
//! forged snapshots, garbage, and floods.
//!
//! Every attack is built from what the attacker could really know: its own
//! key, its own core's view of the session, and datagrams sent to it. What the
//! honest peers reject is counted in their drop statistics (the report's
//! `rejected`); anything they accept that its czar did not sign is a
//! `signed-by-czar` violation (the report's `forged_accepted`, which must be 0).

use std::collections::VecDeque;

use anarchy_proto::identity::PeerId;
use anarchy_proto::seal::{open_datagram_as, seal_datagram, SessionSecret, SEAL_OVERHEAD_BYTES};
use anarchy_proto::wire::{self, Frame, Op, Update};
use anarchy_proto::{compress, proof, Keypair, Peer, ShardId};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Datagrams an attacker keeps for replaying.
const CAPTURED: usize = 64;
/// Datagrams in one flood: more than a source's whole burst allowance
/// (`Config::source_burst_datagrams`, 10 000 by default).
const FLOOD: usize = 12_000;
/// Only every this many turns of the flood attack floods (the others pass).
const FLOOD_EVERY: u64 = 10;

/// One kind of attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// A run for a shard we are not czar of, signed with our own key.
    Forge,
    /// A run posing as the shard's czar (its id as sender and author), without its key.
    Impersonate,
    /// A datagram sent to us, replayed to someone else as its sender.
    Replay,
    /// A captured signed run sent again, its checksums altered.
    AlteredChecksum,
    /// A run of an older epoch than the shard's, signed with our own key.
    StaleEpoch,
    /// Random bytes.
    Garbage,
    /// Many datagrams at once to one peer.
    Flood,
    /// A snapshot of a shard we do not rule, posing as its czar (unsigned)
    /// or signed with our own key, with forged content.
    ForgedSnapshot,
    /// A piece posing as the shard's czar (its id as sender), MAC'd under
    /// the pair key we share with the target: the best a member can do
    /// without the czar's pair key.
    ForgedPiece,
    /// A run signature posing as the shard's czar, over the target's last
    /// updates of that shard, with a random signature.
    ForgedRunSig,
}

impl Attack {
    /// Every attack, in the order the attacker cycles through them.
    pub const ALL: [Attack; 10] = [
        Attack::Forge,
        Attack::Impersonate,
        Attack::Replay,
        Attack::AlteredChecksum,
        Attack::StaleEpoch,
        Attack::Garbage,
        Attack::Flood,
        Attack::ForgedSnapshot,
        Attack::ForgedPiece,
        Attack::ForgedRunSig,
    ];
}

/// A crafted datagram: who it claims to come from (a slot index) and its bytes.
pub struct Crafted {
    /// The slot whose address the datagram comes from.
    pub from: usize,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// The hostile half of a byzantine slot.
pub struct Attacker {
    keypair: Keypair,
    secret: SessionSecret,
    session_tag: [u8; 32],
    boot: u32,
    counter: u64,
    me: usize,
    captured: VecDeque<(usize, (PeerId, u32), Vec<u8>)>,
    next: usize,
    /// Attacks made, by kind.
    pub made: [u64; Attack::ALL.len()],
}

impl Attacker {
    /// The attacker in slot `me`, holding that slot's key and the session's
    /// secret (it is a member). `boot` is the life it seals its datagrams in.
    pub fn new(keypair: Keypair, secret: SessionSecret, boot: u32, me: usize) -> Self {
        let session_tag = proof::session_tag(&secret);
        Attacker {
            keypair,
            secret,
            session_tag,
            boot,
            counter: 0,
            me,
            captured: VecDeque::new(),
            next: 0,
            made: [0; Attack::ALL.len()],
        }
    }

    /// Seals `plain` as the secret's holder may, whatever sender it names.
    fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        self.counter += 1;
        seal_datagram(&self.secret, self.boot, self.counter, plain)
    }

    /// Keeps a datagram sent to us (from slot `from`, whose core had this
    /// id and boot) for later replays.
    pub fn capture(&mut self, from: usize, sender: (PeerId, u32), bytes: &[u8]) {
        if self.captured.len() >= CAPTURED {
            self.captured.pop_front();
        }
        self.captured.push_back((from, sender, bytes.to_vec()));
    }

    /// The next attack on the peer `target` (another slot's core, as our own
    /// core sees the session): the datagrams to send, each with the slot it
    /// claims to come from. `slot_of` maps a peer id to its slot.
    pub fn attack(
        &mut self,
        rng: &mut ChaCha8Rng,
        own: &Peer,
        target: usize,
        slot_of: impl Fn(&PeerId) -> Option<usize>,
    ) -> Vec<Crafted> {
        let kind = Attack::ALL[self.next % Attack::ALL.len()];
        self.next += 1;
        let out = self.craft(kind, rng, own, target, &slot_of);
        if !out.is_empty() {
            self.made[kind as usize] += 1;
        }
        out
    }

    fn craft(
        &mut self,
        kind: Attack,
        rng: &mut ChaCha8Rng,
        own: &Peer,
        target: usize,
        slot_of: &impl Fn(&PeerId) -> Option<usize>,
    ) -> Vec<Crafted> {
        let me = own.id();
        // A shard someone else rules, as our core sees it.
        let shards: Vec<(ShardId, PeerId)> =
            own.shards().filter_map(|s| own.czar_of(s.id).map(|c| (s.id, c))).filter(|(_, c)| *c != me).collect();
        let pick = |rng: &mut ChaCha8Rng| (!shards.is_empty()).then(|| shards[rng.gen_range(0..shards.len())]);
        match kind {
            Attack::Forge | Attack::StaleEpoch => {
                let Some((shard, _)) = pick(rng) else { return Vec::new() };
                let Some(version) = own.version_of(shard) else { return Vec::new() };
                let epoch = if kind == Attack::StaleEpoch { version.epoch.saturating_sub(1) } else { version.epoch };
                let base = own.checksum_of(shard).map_or(0, |c| c.short());
                let updates = vec![Update { key: b"gold".to_vec(), op: Op::Put(b"forged".to_vec()) }];
                let frame = self.signed_run(shard, epoch, version.seq + 1, base, base ^ 1, updates);
                let bytes = self.seal(&wire::encode_frames(&me, &[frame]));
                vec![Crafted { from: self.me, bytes }]
            }
            Attack::Impersonate => {
                let Some((shard, czar)) = pick(rng) else { return Vec::new() };
                let Some(from) = slot_of(&czar) else { return Vec::new() };
                let Some(version) = own.version_of(shard) else { return Vec::new() };
                let base = own.checksum_of(shard).map_or(0, |c| c.short());
                let mut sig = [0u8; 64];
                rng.fill(&mut sig[..]);
                let frame = Frame::Delta {
                    shard,
                    epoch: version.epoch,
                    first_seq: version.seq + 1,
                    base,
                    after: base ^ 1,
                    author: czar,
                    sig,
                    updates: vec![Update { key: b"gold".to_vec(), op: Op::Put(b"stolen".to_vec()) }],
                };
                vec![Crafted { from, bytes: self.seal(&wire::encode_frames(&czar, &[frame])) }]
            }
            Attack::Replay => {
                let pool: Vec<_> = self.captured.iter().filter(|(from, _, _)| *from != target).collect();
                if pool.is_empty() {
                    return Vec::new();
                }
                let (from, _, bytes) = pool[rng.gen_range(0..pool.len())];
                vec![Crafted { from: *from, bytes: bytes.clone() }]
            }
            Attack::AlteredChecksum => {
                // A real signed run from a captured datagram, its checksums changed.
                let runs: Vec<(usize, Frame)> = self
                    .captured
                    .iter()
                    .filter_map(|(from, (id, boot), bytes)| {
                        open_datagram_as(&self.secret, bytes, id, *boot).ok().map(|(_, plain)| (*from, plain))
                    })
                    .filter_map(|(from, plain)| compress::decode_received(&plain).ok().map(|d| (from, d)))
                    .flat_map(|(from, d)| d.frames.into_iter().map(move |f| (from, f)))
                    .filter(|(from, f)| matches!(f, Frame::Delta { .. }) && *from != target)
                    .collect();
                if runs.is_empty() {
                    return Vec::new();
                }
                let (from, frame) = runs[rng.gen_range(0..runs.len())].clone();
                let Frame::Delta { shard, epoch, first_seq, base, after, author, sig, updates } = frame else {
                    return Vec::new();
                };
                let altered = Frame::Delta {
                    shard,
                    epoch,
                    first_seq,
                    base: base ^ 0xff,
                    after: after ^ 0xff,
                    author,
                    sig,
                    updates,
                };
                let sender = slot_of(&author).map_or(from, |s| s);
                vec![Crafted { from: sender, bytes: self.seal(&wire::encode_frames(&author, &[altered])) }]
            }
            Attack::Garbage => {
                let len = rng.gen_range(1..wire::MAX_DATAGRAM_BYTES);
                let mut bytes = vec![0u8; len];
                rng.fill(&mut bytes[..]);
                let variant = rng.gen_range(0..3);
                if variant == 2 {
                    // A well-formed sealed datagram, one bit flipped on the way.
                    let mut sealed = self.seal(&wire::encode_frames(&me, &[Frame::SyncReq]));
                    let at = rng.gen_range(wire::HEADER_BYTES..sealed.len());
                    sealed[at] ^= 1 << rng.gen_range(0..8);
                    bytes = sealed;
                } else if variant == 1 {
                    // Our header, then junk, sealed as a member may: past the
                    // tag, it must fail to decode.
                    let room = wire::MAX_DATAGRAM_BYTES - wire::HEADER_BYTES - SEAL_OVERHEAD_BYTES;
                    let mut framed = wire::encode_frames(&me, &[Frame::SyncReq]);
                    framed.truncate(wire::HEADER_BYTES);
                    framed.extend_from_slice(&bytes[..len.min(room)]);
                    bytes = self.seal(&framed);
                }
                vec![Crafted { from: self.me, bytes }]
            }
            Attack::ForgedSnapshot => {
                let Some((shard, czar)) = pick(rng) else { return Vec::new() };
                let Some(version) = own.version_of(shard) else { return Vec::new() };
                let entries =
                    vec![(b"gold".to_vec(), b"forged".to_vec(), anarchy_proto::Version::default(), Vec::new())];
                let checksum = anarchy_proto::Replica::checksum_of(
                    entries.iter().map(|(k, v, _, _)| (k.as_slice(), v.as_slice())),
                )
                .0;
                let version = anarchy_proto::Version { epoch: version.epoch, seq: version.seq + 5 };
                let as_czar = rng.gen_bool(0.5);
                let (sender, from) = if as_czar { (czar, slot_of(&czar)) } else { (me, Some(self.me)) };
                let Some(from) = from else { return Vec::new() };
                let mut sig = [0u8; 64];
                rng.fill(&mut sig[..]);
                let frame = Frame::Snapshot {
                    shard,
                    version,
                    czar,
                    checksum,
                    chunk: 0,
                    chunks: 1,
                    entries,
                    resync: true,
                    signer: sender,
                    sig,
                };
                vec![Crafted { from, bytes: self.seal(&wire::encode_frames(&sender, &[frame])) }]
            }
            Attack::ForgedPiece => {
                let Some((shard, czar)) = pick(rng) else { return Vec::new() };
                let Some(from) = slot_of(&czar) else { return Vec::new() };
                let Some(victim) = own.members().find(|m| slot_of(&m.id) == Some(target)) else { return Vec::new() };
                let Some(shared) = self.keypair.agree(&victim.public_key) else { return Vec::new() };
                let key = proof::pair_key(&self.session_tag, &shared, &me, &victim.id);
                let Some(version) = own.version_of(shard) else { return Vec::new() };
                let checksum = own.checksum_of(shard).map_or(0, |c| c.short());
                let (base, after) = (checksum as u32, (checksum ^ 1) as u32);
                let updates = vec![Update { key: b"gold".to_vec(), op: Op::Put(b"pieced".to_vec()) }];
                let (epoch, first_seq) = (version.epoch, version.seq + 1);
                let mac = proof::piece_mac(&key, &czar, &victim.id, shard, epoch, first_seq, base, after, &updates);
                let frame = Frame::Piece { shard, epoch, first_seq, base, after, mac, updates };
                vec![Crafted { from, bytes: self.seal(&wire::encode_frames(&czar, &[frame])) }]
            }
            Attack::ForgedRunSig => {
                let Some((shard, czar)) = pick(rng) else { return Vec::new() };
                let Some(from) = slot_of(&czar) else { return Vec::new() };
                let Some(version) = own.version_of(shard) else { return Vec::new() };
                let count = rng.gen_range(1..=4u32).min(version.seq.max(1) as u32);
                let first_seq = version.seq.saturating_sub(u64::from(count) - 1).max(1);
                let mut sig = [0u8; 64];
                rng.fill(&mut sig[..]);
                let frame = Frame::RunSig { shard, epoch: version.epoch, first_seq, count, sig };
                vec![Crafted { from, bytes: self.seal(&wire::encode_frames(&czar, &[frame])) }]
            }
            Attack::Flood => {
                if self.made[Attack::Flood as usize] * FLOOD_EVERY > self.next as u64 / Attack::ALL.len() as u64 {
                    return Vec::new();
                }
                let plain = wire::encode_frames(&me, &[Frame::SyncReq]);
                (0..FLOOD).map(|_| Crafted { from: self.me, bytes: self.seal(&plain) }).collect()
            }
        }
    }

    fn signed_run(
        &self,
        shard: ShardId,
        epoch: u32,
        first_seq: u64,
        base: u64,
        after: u64,
        updates: Vec<Update>,
    ) -> Frame {
        proof::BatchProof::sign(&self.keypair, &self.session_tag, shard, epoch, first_seq, base, after, &updates)
            .frame(shard, updates)
    }
}
