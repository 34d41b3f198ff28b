//! Wire format: every message that crosses the network and its encoding.
//!
//! A plain datagram is a fixed header (magic, protocol version, sender id)
//! followed by one or more frames; on the network it always travels sealed
//! (`seal`), so what is decoded here has already been authenticated. Decoding is bounded by the datagram's length: every
//! count is checked against the bytes left before anything is allocated, and
//! any malformed input is an error, never a panic. The layout is documented
//! frame by frame in `docs/PROTOCOL.md`; keep the two in step.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::identity::{PeerId, PublicKey, PEER_ID_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES};
use crate::proof::Signature;
use crate::replica::Version;
use crate::shards::ShardId;
use crate::trend::{Trend, TrendError, MAX_TREND_BYTES};

/// The two bytes every datagram starts with.
pub const MAGIC: [u8; 2] = *b"AY";
/// The protocol version this build speaks (2: every datagram is sealed, see
/// `seal`; 3: snapshot entries carry the version that wrote them; 4: epochs
/// name their claimant, see `peer::claimant_tag`; 5: partial stream lists,
/// [`Frame::StreamPart`]; 6: the short seal form, [`Frame::ShortId`]; 7:
/// pieces, [`Frame::Piece`]; 8: trends, [`Op::Trend`], and snapshot entries
/// carry the value before the last change; 9: the 20-byte seal, see `seal`;
/// 10: a [`Frame::Pong`] states the answerer's typical round trip).
pub const PROTOCOL_VERSION: u8 = 10;
/// No datagram is ever larger than this: safe for IPv6 and most tunnels.
pub const MAX_DATAGRAM_BYTES: usize = 1200;
/// Bytes in the datagram header: magic, version, flags, sender id.
pub const HEADER_BYTES: usize = 2 + 1 + 1 + PEER_ID_BYTES;
/// Largest plain datagram (header + frames region): what sealing adds
/// ([`crate::seal::SEAL_OVERHEAD_BYTES`]) still fits in [`MAX_DATAGRAM_BYTES`].
pub const MAX_PLAIN_DATAGRAM_BYTES: usize = MAX_DATAGRAM_BYTES - crate::seal::SEAL_OVERHEAD_BYTES;
/// Largest frame one datagram carries whole; a larger one travels as
/// [`Frame::Fragment`]s (see `fragment`).
pub const MAX_FRAME_BYTES: usize = MAX_PLAIN_DATAGRAM_BYTES - HEADER_BYTES;
/// Largest frame that may travel in fragments: a single update with the
/// largest key and value, in any frame, with room to spare.
pub const MAX_FRAGMENTED_FRAME_BYTES: usize = 24 * 1024;
/// Most fragments one frame is cut into.
pub const MAX_FRAGMENTS: u16 = 32;
/// Longest key a shard accepts.
pub const MAX_KEY_BYTES: usize = 64;
/// Longest value a shard accepts. An update too large for one datagram travels
/// in fragments, alone in its frame; [`MAX_FRAGMENTED_FRAME_BYTES`] leaves room
/// for the largest key and any frame's fields around it.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// Longest value of a stream key (see [`Frame::Stream`]): a stream carries
/// fast-changing state (positions, orientations), and one value always fits
/// in one datagram with its frame.
pub const MAX_STREAM_VALUE_BYTES: usize = 896;
/// Longest shard name.
pub const MAX_SHARD_NAME_BYTES: usize = 64;
/// Largest epoch or incarnation a datagram may carry. Far above anything a
/// session reaches, and low enough that the `+ 1` of a claim or a refutation
/// can never overflow, whatever a peer sends.
pub const MAX_EPOCH: u32 = u32::MAX / 2;
/// Largest sequence number a datagram may carry (same reasoning as [`MAX_EPOCH`]).
pub const MAX_SEQ: u64 = u64::MAX / 4;
/// Bytes of a [`Frame::Piece`]'s pair MAC. Eight: a member forging another
/// member's piece must guess 64 bits per datagram it sends, every miss is
/// counted, and the run signature that follows within
/// `Config::run_sign_interval` checks the same updates again.
pub const PIECE_MAC_BYTES: usize = 8;

/// A change to one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    /// Set the key to this value.
    Put(Vec<u8>),
    /// Remove the key.
    Delete,
    /// Set the key to its current value XOR these bytes, the shorter of the
    /// two counting as zeros past its end (the new value is as long as the
    /// longer; a missing value counts as empty). Canonical: not empty and its
    /// last byte non-zero ([`Op::patch`] trims). Only a czar's own runs carry
    /// it, for a write that changes a few bytes of a value of the same length;
    /// it travels sparse: a mask of the non-zero bytes, seven to a byte, then
    /// those bytes.
    Patch(Vec<u8>),
    /// Set the key to the value its current one moves on to if it changes by
    /// what it changed last time, give or take per lane (see
    /// [`crate::trend`]). Only a czar's own runs carry it, for a small value
    /// that changes by about the same each time (a moving entity's
    /// position); it resolves against the key's current value and the one
    /// before its last change, which every replica keeps for values of at
    /// most [`crate::trend::MAX_TREND_BYTES`]. Where they do not fit it, the
    /// key keeps its value (the end checksum then tells the replica so).
    Trend(Trend),
}

impl Op {
    /// The patch that turns `old` into `new`, if it is smaller on the wire
    /// than putting `new` whole: same length, and few enough bytes differ.
    pub fn patch(old: &[u8], new: &[u8]) -> Option<Op> {
        if old.len() != new.len() || new.is_empty() {
            return None;
        }
        let mut xor: Vec<u8> = old.iter().zip(new).map(|(a, b)| a ^ b).collect();
        while xor.last() == Some(&0) {
            xor.pop();
        }
        (!xor.is_empty() && patch_value_len(&xor) < varint_len(new.len() as u64) + new.len()).then_some(Op::Patch(xor))
    }

    /// Bytes the op takes on the wire after the update's tag and key.
    pub fn encoded_len(&self) -> usize {
        match self {
            Op::Put(v) => varint_len(v.len() as u64) + v.len(),
            Op::Delete => 0,
            Op::Patch(x) => patch_value_len(x),
            Op::Trend(t) => t.encoded_len(),
        }
    }

    /// The value this op leaves for a key whose value was `old` (`None`: the key is gone).
    /// A trend needs the value before `old` too (see [`Op::resolve_trend`]):
    /// here it leaves `old` as it was.
    pub fn resolve(&self, old: Option<&[u8]>) -> Option<Vec<u8>> {
        self.resolve_trend(old, None)
    }

    /// [`Op::resolve`] for a key whose value before `old` was `before`
    /// (`None`: not kept).
    pub fn resolve_trend(&self, old: Option<&[u8]>, before: Option<&[u8]>) -> Option<Vec<u8>> {
        match self {
            Op::Trend(t) => {
                let old = old?;
                Some(before.and_then(|b| t.apply(b, old)).unwrap_or_else(|| old.to_vec()))
            }
            Op::Put(v) => Some(v.clone()),
            Op::Delete => None,
            Op::Patch(x) => {
                let old = old.unwrap_or_default();
                let len = old.len().max(x.len());
                let at = |v: &[u8], i: usize| v.get(i).copied().unwrap_or(0);
                Some((0..len).map(|i| at(old, i) ^ at(x, i)).collect())
            }
        }
    }
}

/// Bytes a patch `x` takes on the wire after the key: mask, changed bytes.
pub fn patch_value_len(x: &[u8]) -> usize {
    patch_mask_len(x.len()) + x.iter().filter(|&&b| b != 0).count()
}

/// Bytes of a patch's mask for a patch of `len` bytes: seven bits per byte,
/// the eighth saying whether another mask byte follows.
fn patch_mask_len(len: usize) -> usize {
    len.div_ceil(PATCH_MASK_BITS)
}

/// Bytes one mask byte of a patch covers.
const PATCH_MASK_BITS: usize = 7;
/// A mask byte's bit saying another mask byte follows.
const PATCH_MASK_MORE: u8 = 0x80;
/// The op in an update's tag byte (the low two bits).
const UPDATE_OP_BITS: u8 = 0b11;
/// An update's tag bit saying its key is the previous update's in the same
/// run with its last bytes replaced (see [`put_updates`]).
const UPDATE_SHARED_KEY: u8 = 0b100;
/// The tag's high five bits: the key's length minus one, or with
/// [`UPDATE_SHARED_KEY`] the replaced bytes minus one; `31` without it: a
/// length byte follows.
const UPDATE_KEY_SHIFT: u32 = 3;
/// The tag value (before the shift) whose key length follows as a byte.
const UPDATE_LONG_KEY: u8 = 31;

/// One key's change, as carried in a delta.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Update {
    /// The key.
    pub key: Vec<u8>,
    /// What happens to it.
    pub op: Op,
}

impl Update {
    /// Bytes this update takes on the wire.
    pub fn encoded_len(&self) -> usize {
        Self::encoded_len_of(&self.key, self.op.encoded_len())
    }

    /// Bytes on the wire of an update of `key` whose op takes `value_len`
    /// bytes, its key whole (in a run it may take fewer, see [`put_updates`]).
    pub fn encoded_len_of(key: &[u8], value_len: usize) -> usize {
        1 + usize::from(key.len() > usize::from(UPDATE_LONG_KEY)) + key.len() + value_len
    }
}

/// Whether a member is in the session or has left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    /// Taking part.
    Alive,
    /// Announced a graceful leave, or was removed after silence.
    Left,
}

/// One member as gossiped in a [`Frame::Members`] list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemberRecord {
    /// Its id; must equal the id derived from `public_key`.
    pub id: PeerId,
    /// Its public key.
    pub public_key: PublicKey,
    /// Where it can be reached.
    pub addr: SocketAddr,
    /// Bumped each time the peer (re)joins; a higher incarnation wins.
    pub incarnation: u32,
    /// Alive or left.
    pub status: MemberStatus,
    /// Whether it may be ranked for czar and backup slots ahead of others
    /// (`Config::czar_eligible`, `docs/PROTOCOL.md` §6.5). Sent as bit 1 of
    /// the status byte, set when the member is *not* eligible.
    pub czar_eligible: bool,
}

/// Bit 1 of a member record's status byte: the member is not czar-eligible.
const MEMBER_NOT_CZAR_ELIGIBLE: u8 = 2;
/// Bit 0 of a join's flags byte: the joiner is not czar-eligible.
const JOIN_NOT_CZAR_ELIGIBLE: u8 = 1;

/// A shard declaration as gossiped in a [`Frame::Shards`] list. The shard id
/// is derived from the name, so it is not sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShardDecl {
    /// The game's name for the shard.
    pub name: String,
    /// A peer that gets the shard whenever it is live (its avatar, say).
    pub preferred: Option<PeerId>,
}

/// A shard's version as advertised by its czar in heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardVersion {
    /// Which shard.
    pub shard: ShardId,
    /// Its current version at the czar.
    pub version: Version,
    /// The first 8 bytes of the czar's state checksum at that version.
    pub checksum: u64,
    /// Whether the czar's claim is backed by a majority (see [`Frame::Authority`]).
    pub backed: bool,
    /// The shard's load as its czar measures it; sent about once a second.
    pub load: Option<ShardLoad>,
    /// An advert *by run*: `version` and `checksum` are where the sender's
    /// own run of this shard in the same datagram ends, and are not on the
    /// wire (they decode as zero; the receiver takes them from the run).
    pub by_run: bool,
    /// By run, and the shard is not on the wire either (it decodes as 0):
    /// the sender's own runs before this heartbeat in its datagram are of
    /// exactly the shards of its implied adverts, which take them in
    /// ascending order (the receiver fills them in).
    pub implied: bool,
}

/// Advert flag bits: backed, load summary follows, by run (no version or checksum).
const ADVERT_BACKED: u8 = 0b001;
const ADVERT_LOAD: u8 = 0b010;
/// Advert flag bit: implied (by run, no shard either; only with [`ADVERT_BY_RUN`]).
const ADVERT_IMPLIED: u8 = 0b1000;
const ADVERT_BY_RUN: u8 = 0b100;

/// A shard's load over its czar's last measuring window, as adverts carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ShardLoad {
    /// Updates the czar applied per second.
    pub writes_per_sec: u32,
    /// Bytes of key and value the czar applied per second.
    pub bytes_per_sec: u32,
    /// Keys the shard holds.
    pub keys: u32,
}

/// One voter's answer about one shard in a recovery round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecoverVote {
    /// Which shard.
    pub shard: ShardId,
    /// The epoch the claimant asked for.
    pub epoch: u32,
    /// Whether the voter promises that epoch to the claimant.
    pub granted: bool,
    /// The voter's version of the shard.
    pub version: Version,
    /// The first 8 bytes of the voter's state checksum.
    pub checksum: u64,
    /// How many [`Frame::Prepared`] proposals the voter sent with this answer:
    /// a grant counts only once they have all arrived.
    pub prepared: u16,
}

/// Longest reason a validator may give for rejecting a critical update.
pub const MAX_REASON_BYTES: usize = 64;

/// How a critical update ended, as the czar announces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Decision {
    /// A majority accepted: applied at this version.
    Committed(Version),
    /// Enough members rejected that no majority can accept.
    Rejected(String),
    /// No decision in time; the proposal is dropped.
    TimedOut,
}

/// One snapshot entry: key, value, the version of the write that gave the
/// key that value (`Version::default()` if unknown), and the value before
/// its last change, for [`Op::Trend`] (empty if not kept).
pub type SnapshotEntry = (Vec<u8>, Vec<u8>, Version, Vec<u8>);

/// One protocol message. Several frames may share a datagram.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Frame {
    /// "Let me in": sent to a bootstrap member's address.
    Join {
        /// The joiner's public key (its id must match the header's sender).
        public_key: PublicKey,
        /// The joiner's incarnation.
        incarnation: u32,
        /// Whether the joiner may be ranked for czar and backup slots ahead
        /// of others (see [`MemberRecord::czar_eligible`]).
        czar_eligible: bool,
    },
    /// "You are in": the reply to [`Frame::Join`], followed by member and shard lists.
    Welcome,
    /// Part of the member list.
    Members(Vec<MemberRecord>),
    /// Part of the shard list.
    Shards(Vec<ShardDecl>),
    /// Liveness, view digests and the versions of the shards the sender is czar of.
    Heartbeat {
        /// The sender's incarnation.
        incarnation: u32,
        /// Digests of the sender's member view and shard list. A heartbeat
        /// without them (a *short* one, type 31) says nothing about the
        /// sender's views: they have not changed lately, and a full one
        /// follows within `sync_interval`.
        digests: Option<ViewDigests>,
        /// Shards the sender is czar of and their versions.
        czar_of: Vec<ShardVersion>,
    },
    /// A graceful leave.
    Leave {
        /// The incarnation that is leaving.
        incarnation: u32,
    },
    /// Consecutive updates of one shard: update `i` has sequence `first_seq + i`.
    Delta {
        /// Which shard.
        shard: ShardId,
        /// The authority epoch the updates were written in.
        epoch: u32,
        /// Sequence number of the first update.
        first_seq: u64,
        /// The sender's short state checksum at `first_seq - 1`: the state the
        /// run builds on. A receiver whose state there differs is off the
        /// sender's history and resyncs instead of applying.
        base: u64,
        /// The author's short state checksum after the last update: a
        /// receiver that ends elsewhere has diverged and resyncs.
        after: u64,
        /// The czar that wrote the run and signed it.
        author: PeerId,
        /// The author's signature (see `proof::delta_message`); relays pass it on unchanged.
        sig: Signature,
        /// The updates, in order.
        updates: Vec<Update>,
    },
    /// A write made by a non-czar, sent to the czar.
    Forward {
        /// The writer's id for this write (unique per writer).
        write_id: u64,
        /// The peer that made the write (the sender may be relaying it).
        origin: PeerId,
        /// Which shard.
        shard: ShardId,
        /// The change.
        update: Update,
    },
    /// The czar applied a forwarded write at `version`.
    ForwardAck {
        /// The writer's id for the write.
        write_id: u64,
        /// Which shard.
        shard: ShardId,
        /// The version the write got.
        version: Version,
    },
    /// "Send me this shard's updates from `from_seq` on."
    RepairReq {
        /// Which shard.
        shard: ShardId,
        /// First sequence number wanted (0: send a snapshot).
        from_seq: u64,
        /// The asker's short checksum at `from_seq - 1`: the log is sent only
        /// if the asker's history is a prefix of the responder's; otherwise a
        /// snapshot is.
        checksum: u64,
    },
    /// One chunk of a shard's full state.
    Snapshot {
        /// Which shard.
        shard: ShardId,
        /// The version the state is at.
        version: Version,
        /// The czar of that version.
        czar: PeerId,
        /// Content checksum of the complete state.
        checksum: [u8; 16],
        /// Index of this chunk.
        chunk: u16,
        /// How many chunks make up the state.
        chunks: u16,
        /// Entries in this chunk: key, value, and the version of the write
        /// that gave the key that value (`Version::default()` if unknown).
        entries: Vec<SnapshotEntry>,
        /// Sent because the asker's history is not a prefix of the sender's:
        /// installing it discards updates (reported as `Event::Diverged`).
        resync: bool,
        /// The peer that signed the snapshot (its sender).
        signer: PeerId,
        /// `signer`'s signature over the whole snapshot (see `proof::snapshot_message`).
        sig: Signature,
    },
    /// `czar` holds the shard from `epoch` on, starting at sequence `seq`.
    /// Sent by a claimant, or by an old czar handing over.
    Authority {
        /// Which shard.
        shard: ShardId,
        /// The new epoch.
        epoch: u32,
        /// The czar for that epoch.
        czar: PeerId,
        /// The last sequence number of the previous epoch: the new czar's starting point.
        seq: u64,
        /// The first 8 bytes of the state checksum at `seq`, so a peer can tell
        /// whether its own history is a prefix of the new czar's.
        checksum: u64,
        /// Whether a majority stands behind the claim (a recovery round, a
        /// graceful hand-over, a fresh shard). A claim made only because our own
        /// timeout removed the old czar (the minority side of a partition) is
        /// provisional: it loses to any backed claim when the sides meet again,
        /// so nothing committed on the majority side is ever undone.
        backed: bool,
        /// Whether `seq` and `checksum` are the epoch's start as its claimant
        /// (or the old czar handing over) stated it. A hint relayed by anyone
        /// else clears it when the relay only assumed the start.
        start_known: bool,
    },
    /// "Send me your member and shard lists."
    SyncReq,
    /// A recovery round: "`gone` is silent to me; is it to you? If so, promise
    /// me these epochs of its shards and tell me your versions."
    Recover {
        /// The silent peer.
        gone: PeerId,
        /// Its incarnation as the claimant knows it.
        incarnation: u32,
        /// The shards claimed and the epoch asked for each.
        claims: Vec<(ShardId, u32)>,
    },
    /// A critical update the czar asks every member to validate and vote on.
    Propose {
        /// The peer that made the write.
        origin: PeerId,
        /// The writer's id for it.
        write_id: u64,
        /// Which shard.
        shard: ShardId,
        /// The czar's epoch (a member that promised a later one refuses).
        epoch: u32,
        /// The change.
        update: Update,
    },
    /// A member's vote on a [`Frame::Propose`].
    Vote {
        /// The proposal's writer.
        origin: PeerId,
        /// The writer's id for it.
        write_id: u64,
        /// Which shard.
        shard: ShardId,
        /// The epoch voted in.
        epoch: u32,
        /// Accept or reject.
        accept: bool,
        /// Why not, when rejecting (at most [`MAX_REASON_BYTES`]).
        reason: String,
    },
    /// The czar's decision on a critical update, sent to every member.
    Decided {
        /// The proposal's writer.
        origin: PeerId,
        /// The writer's id for it.
        write_id: u64,
        /// Which shard.
        shard: ShardId,
        /// How it ended.
        decision: Decision,
    },
    /// A critical write made by a non-czar, sent to the czar to propose.
    ForwardCritical {
        /// The writer's id for this write.
        write_id: u64,
        /// The peer that made the write.
        origin: PeerId,
        /// Which shard.
        shard: ShardId,
        /// The change.
        update: Update,
    },
    /// In a recovery round, a proposal the voter accepted and has not seen
    /// decided: the new czar must finish it, since it may have committed.
    Prepared {
        /// Which shard.
        shard: ShardId,
        /// The proposal's writer.
        origin: PeerId,
        /// The writer's id for it.
        write_id: u64,
        /// The epoch it was proposed in.
        epoch: u32,
        /// The change.
        update: Update,
    },
    /// A round-trip probe: the receiver echoes `stamp` in a [`Frame::Pong`].
    Ping {
        /// The sender's clock when it sent the probe (opaque to the receiver).
        stamp: u64,
    },
    /// The echo of a [`Frame::Ping`].
    Pong {
        /// The stamp from the ping.
        stamp: u64,
        /// The answerer's typical round trip in milliseconds: the median over
        /// its links of its smoothed probe round trips, 0 before it has one.
        /// The prober compares its own round trip with it (`uplink`).
        typical_ms: u32,
    },
    /// The answer to [`Frame::Recover`].
    RecoverAck {
        /// The silent peer the round is about.
        gone: PeerId,
        /// Whether the voter has also not heard from it recently.
        silent: bool,
        /// One answer per claimed shard.
        votes: Vec<RecoverVote>,
    },
    /// "A datagram of yours came from this address: prove it is yours." Sent
    /// to a member's new address; its address moves only on the signed answer.
    AddrCheck {
        /// A fresh random challenge.
        nonce: u64,
    },
    /// The answer to [`Frame::AddrCheck`]: the member's Ed25519 signature over
    /// `seal::addr_proof_message(member, checker, nonce)`.
    AddrProof {
        /// The challenge answered.
        nonce: u64,
        /// The signature.
        signature: [u8; SIGNATURE_BYTES],
    },
    /// The newest values of a shard's stream keys, from its czar (the
    /// datagram's sender): every stream key the czar changed in stamps
    /// `from + 1 ..= to` of `epoch`, each at its newest value, whole
    /// ([`Op::Put`]) or as a patch ([`Op::Patch`]) against the key's value as
    /// of stamp `base`, which the receiver acknowledged. Lost or superseded
    /// values are never resent; the czar resends from what the receiver
    /// acknowledged ([`Frame::StreamAck`]).
    Stream {
        /// Which shard.
        shard: ShardId,
        /// The czar's epoch.
        epoch: u32,
        /// The receiver already holds every change up to this stamp (0: none).
        from: u64,
        /// The last stamp covered; above `from`.
        to: u64,
        /// The acknowledged stamp patches are against (0: no patches); at most `from`.
        base: u64,
        /// Keys and their newest values (at least one; `Put` or, with a base, `Patch`).
        entries: Vec<Update>,
        /// The czar's pair MAC for the receiver (see `proof::stream_mac`
        /// over `proof::stream_message`).
        mac: [u8; PIECE_MAC_BYTES],
    },
    /// Some of a shard's stream keys at their newest values as of stamp `at`,
    /// from its czar (the datagram's sender): what a link's budget left room
    /// for, chosen by the priority accumulator. Unlike [`Frame::Stream`] it
    /// says nothing of the keys it leaves out, so the receiver takes its
    /// values without moving the stamp it acknowledges. Patches are against
    /// the key's value as of `base`, which the receiver acknowledged.
    StreamPart {
        /// Which shard.
        shard: ShardId,
        /// The czar's epoch.
        epoch: u32,
        /// The czar's stamp when it sent these values; at least 1.
        at: u64,
        /// The acknowledged stamp patches are against (0: no patches); at most `at`.
        base: u64,
        /// Keys and their newest values (at least one; `Put` or, with a base, `Patch`).
        entries: Vec<Update>,
        /// The czar's pair MAC for the receiver (see `proof::stream_mac`
        /// over `proof::stream_part_message`).
        mac: [u8; PIECE_MAC_BYTES],
    },
    /// "Datagrams you seal in your life `boot` may name you to me by
    /// `index`": the receiver may then seal to the sender in the short form
    /// (`seal`), 22 bytes less per datagram.
    ShortId {
        /// The receiver's boot the index is for.
        boot: u32,
        /// The index the sender's seal table gave the receiver.
        index: u16,
    },
    /// "A short-form datagram under `index` came from your address, and the
    /// index names no one I know": the receiver goes back to the long form
    /// towards the sender if that is the index it uses.
    ShortIdUnknown {
        /// The index that named no one.
        index: u16,
    },
    /// "I hold every stream change of this shard's czar up to `have`."
    StreamAck {
        /// Which shard.
        shard: ShardId,
        /// The czar's epoch.
        epoch: u32,
        /// The highest stamp up to which nothing is missing.
        have: u64,
    },
    /// Updates of the sender's open run (§6.7): consecutive updates of a
    /// shard the sender is czar of, like an own [`Frame::Delta`] with half a
    /// base and no signature. `mac` authenticates it to its one receiver (a keyed
    /// hash under the pair key of sender and receiver, `proof::piece_mac`);
    /// the run's signature follows in a [`Frame::RunSig`] once the run closes.
    Piece {
        /// Which shard. The wire carries its low 16 bits only
        /// ([`piece_shard_bits`]): a decoded piece holds just those, and
        /// the receiver finds the shard among those it knows, by the MAC
        /// (which covers the whole id) where several share the bits.
        shard: ShardId,
        /// The epoch the updates were written in.
        epoch: u32,
        /// Sequence number of the first update.
        first_seq: u64,
        /// The low 32 bits of the sender's short state checksum at
        /// `first_seq - 1`: a receiver whose state there differs is off the
        /// sender's history and resyncs instead of applying.
        base: u32,
        /// The low 32 bits of the sender's short state checksum after the
        /// last update.
        after: u32,
        /// The pair MAC over everything else (see `proof::piece_mac`).
        mac: [u8; PIECE_MAC_BYTES],
        /// The updates, in order.
        updates: Vec<Update>,
    },
    /// The signature of a run the sender wrote and sent in [`Frame::Piece`]s.
    /// It states no checksums: a receiver that holds the run's updates as
    /// its pieces takes the run's base and end from its own log (its state
    /// there is the czar's, or the signature fails), checks the signature,
    /// and keeps the whole header as the updates' proof.
    RunSig {
        /// Which shard.
        shard: ShardId,
        /// The epoch the run was written in.
        epoch: u32,
        /// Sequence number of the run's first update.
        first_seq: u64,
        /// How many updates the run holds (at least one).
        count: u32,
        /// The sender's signature over `proof::delta_message` of the run.
        sig: Signature,
    },
    /// One piece of a frame larger than [`MAX_FRAME_BYTES`]: the receiver
    /// joins the `count` pieces of `id` in index order and decodes the result
    /// as one frame (never itself a fragment).
    Fragment {
        /// The sender's number for the whole frame.
        id: u32,
        /// This piece's place, below `count`.
        index: u16,
        /// How many pieces, 2 to [`MAX_FRAGMENTS`].
        count: u16,
        /// The piece (not empty).
        bytes: Vec<u8>,
    },
}

impl Frame {
    /// The frame's type byte.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Join { .. } => FrameKind::Join,
            Frame::Welcome => FrameKind::Welcome,
            Frame::Members(_) => FrameKind::Members,
            Frame::Shards(_) => FrameKind::Shards,
            Frame::Heartbeat { .. } => FrameKind::Heartbeat,
            Frame::Leave { .. } => FrameKind::Leave,
            Frame::Delta { .. } => FrameKind::Delta,
            Frame::Forward { .. } => FrameKind::Forward,
            Frame::ForwardAck { .. } => FrameKind::ForwardAck,
            Frame::RepairReq { .. } => FrameKind::RepairReq,
            Frame::Snapshot { .. } => FrameKind::Snapshot,
            Frame::Authority { .. } => FrameKind::Authority,
            Frame::SyncReq => FrameKind::SyncReq,
            Frame::Recover { .. } => FrameKind::Recover,
            Frame::RecoverAck { .. } => FrameKind::RecoverAck,
            Frame::Propose { .. } => FrameKind::Propose,
            Frame::Vote { .. } => FrameKind::Vote,
            Frame::Decided { .. } => FrameKind::Decided,
            Frame::ForwardCritical { .. } => FrameKind::ForwardCritical,
            Frame::Prepared { .. } => FrameKind::Prepared,
            Frame::Ping { .. } => FrameKind::Ping,
            Frame::Pong { .. } => FrameKind::Pong,
            Frame::AddrCheck { .. } => FrameKind::AddrCheck,
            Frame::AddrProof { .. } => FrameKind::AddrProof,
            Frame::Fragment { .. } => FrameKind::Fragment,
            Frame::Stream { .. } => FrameKind::Stream,
            Frame::StreamPart { .. } => FrameKind::StreamPart,
            Frame::StreamAck { .. } => FrameKind::StreamAck,
            Frame::ShortId { .. } => FrameKind::ShortId,
            Frame::ShortIdUnknown { .. } => FrameKind::ShortIdUnknown,
            Frame::Piece { .. } => FrameKind::Piece,
            Frame::RunSig { .. } => FrameKind::RunSig,
        }
    }

    /// Appends the frame's encoding (type byte first) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(match self {
            Frame::Heartbeat { digests: None, .. } => SHORT_HEARTBEAT_KIND,
            _ => self.kind() as u8,
        });
        match self {
            Frame::Join { public_key, incarnation, czar_eligible } => {
                out.extend_from_slice(&public_key.0);
                put_varint(out, u64::from(*incarnation));
                out.push(if *czar_eligible { 0 } else { JOIN_NOT_CZAR_ELIGIBLE });
            }
            Frame::Welcome | Frame::SyncReq => {}
            Frame::Members(members) => {
                put_varint(out, members.len() as u64);
                for m in members {
                    out.extend_from_slice(&m.id.0);
                    out.extend_from_slice(&m.public_key.0);
                    put_addr(out, &m.addr);
                    put_varint(out, u64::from(m.incarnation));
                    let status = match m.status {
                        MemberStatus::Alive => 0,
                        MemberStatus::Left => 1,
                    };
                    out.push(status | if m.czar_eligible { 0 } else { MEMBER_NOT_CZAR_ELIGIBLE });
                }
            }
            Frame::Shards(shards) => {
                put_varint(out, shards.len() as u64);
                for s in shards {
                    put_bytes(out, s.name.as_bytes());
                    match s.preferred {
                        None => out.push(0),
                        Some(p) => {
                            out.push(1);
                            out.extend_from_slice(&p.0);
                        }
                    }
                }
            }
            Frame::Heartbeat { incarnation, digests, czar_of } => {
                put_varint(out, u64::from(*incarnation));
                if let Some(d) = digests {
                    out.extend_from_slice(&d.members.to_le_bytes());
                    out.extend_from_slice(&d.shards.to_le_bytes());
                }
                put_varint(out, czar_of.len() as u64);
                for sv in czar_of {
                    let implied = sv.by_run && sv.implied;
                    let flags = if sv.backed { ADVERT_BACKED } else { 0 }
                        | if sv.load.is_some() { ADVERT_LOAD } else { 0 }
                        | if sv.by_run { ADVERT_BY_RUN } else { 0 }
                        | if implied { ADVERT_IMPLIED } else { 0 };
                    out.push(flags);
                    if !implied {
                        out.extend_from_slice(&sv.shard.0.to_le_bytes());
                    }
                    if !sv.by_run {
                        put_version(out, sv.version);
                        out.extend_from_slice(&sv.checksum.to_le_bytes());
                    }
                    if let Some(l) = sv.load {
                        put_varint(out, u64::from(l.writes_per_sec));
                        put_varint(out, u64::from(l.bytes_per_sec));
                        put_varint(out, u64::from(l.keys));
                    }
                }
            }
            Frame::Leave { incarnation } => put_varint(out, u64::from(*incarnation)),
            Frame::Delta { shard, epoch, first_seq, base, after, author, sig, updates } => {
                put_delta(out, *shard, *epoch, *first_seq, *base, *after, Some(author), sig, updates);
            }
            Frame::Forward { write_id, origin, shard, update } => {
                put_varint(out, *write_id);
                out.extend_from_slice(&origin.0);
                out.extend_from_slice(&shard.0.to_le_bytes());
                put_update(out, update);
            }
            Frame::ForwardAck { write_id, shard, version } => {
                put_varint(out, *write_id);
                out.extend_from_slice(&shard.0.to_le_bytes());
                put_version(out, *version);
            }
            Frame::RepairReq { shard, from_seq, checksum } => {
                out.extend_from_slice(&shard.0.to_le_bytes());
                put_varint(out, *from_seq);
                out.extend_from_slice(&checksum.to_le_bytes());
            }
            Frame::Snapshot { shard, version, czar, checksum, chunk, chunks, entries, resync, signer, sig } => {
                out.push(u8::from(*resync));
                out.extend_from_slice(&shard.0.to_le_bytes());
                put_version(out, *version);
                out.extend_from_slice(&czar.0);
                out.extend_from_slice(checksum);
                out.extend_from_slice(&signer.0);
                out.extend_from_slice(sig);
                put_varint(out, u64::from(*chunk));
                put_varint(out, u64::from(*chunks));
                put_varint(out, entries.len() as u64);
                for (k, v, written, before) in entries {
                    put_bytes(out, k);
                    put_bytes(out, v);
                    put_version(out, *written);
                    put_bytes(out, before);
                }
            }
            Frame::Authority { shard, epoch, czar, seq, checksum, backed, start_known } => {
                out.extend_from_slice(&shard.0.to_le_bytes());
                put_varint(out, u64::from(*epoch));
                out.extend_from_slice(&czar.0);
                put_varint(out, *seq);
                out.extend_from_slice(&checksum.to_le_bytes());
                out.push(u8::from(*backed) | u8::from(*start_known) << 1);
            }
            Frame::Recover { gone, incarnation, claims } => {
                out.extend_from_slice(&gone.0);
                put_varint(out, u64::from(*incarnation));
                put_varint(out, claims.len() as u64);
                for (shard, epoch) in claims {
                    out.extend_from_slice(&shard.0.to_le_bytes());
                    put_varint(out, u64::from(*epoch));
                }
            }
            Frame::Propose { origin, write_id, shard, epoch, update }
            | Frame::Prepared { origin, write_id, shard, epoch, update } => {
                out.extend_from_slice(&origin.0);
                put_varint(out, *write_id);
                out.extend_from_slice(&shard.0.to_le_bytes());
                put_varint(out, u64::from(*epoch));
                put_update(out, update);
            }
            Frame::Vote { origin, write_id, shard, epoch, accept, reason } => {
                out.extend_from_slice(&origin.0);
                put_varint(out, *write_id);
                out.extend_from_slice(&shard.0.to_le_bytes());
                put_varint(out, u64::from(*epoch));
                out.push(u8::from(*accept));
                put_bytes(out, reason.as_bytes());
            }
            Frame::Decided { origin, write_id, shard, decision } => {
                out.extend_from_slice(&origin.0);
                put_varint(out, *write_id);
                out.extend_from_slice(&shard.0.to_le_bytes());
                match decision {
                    Decision::Committed(v) => {
                        out.push(0);
                        put_version(out, *v);
                    }
                    Decision::Rejected(reason) => {
                        out.push(1);
                        put_bytes(out, reason.as_bytes());
                    }
                    Decision::TimedOut => out.push(2),
                }
            }
            Frame::Ping { stamp } => put_varint(out, *stamp),
            Frame::Pong { stamp, typical_ms } => {
                put_varint(out, *stamp);
                put_varint(out, u64::from(*typical_ms));
            }
            Frame::AddrCheck { nonce } => out.extend_from_slice(&nonce.to_le_bytes()),
            Frame::AddrProof { nonce, signature } => {
                out.extend_from_slice(&nonce.to_le_bytes());
                out.extend_from_slice(signature);
            }
            Frame::Stream { shard, epoch, from, to, base, entries, mac } => {
                put_stream_header(out, *shard, *epoch, *from, *to, *base);
                out.extend_from_slice(mac);
                put_varint(out, entries.len() as u64);
                for u in entries {
                    put_update(out, u);
                }
            }
            Frame::StreamPart { shard, epoch, at, base, entries, mac } => {
                put_stream_part_header(out, *shard, *epoch, *at, *base);
                out.extend_from_slice(mac);
                put_varint(out, entries.len() as u64);
                for u in entries {
                    put_update(out, u);
                }
            }
            Frame::StreamAck { shard, epoch, have } => {
                out.extend_from_slice(&shard.0.to_le_bytes());
                put_varint(out, u64::from(*epoch));
                put_varint(out, *have);
            }
            Frame::ShortId { boot, index } => {
                out.extend_from_slice(&boot.to_le_bytes());
                put_varint(out, u64::from(*index));
            }
            Frame::ShortIdUnknown { index } => put_varint(out, u64::from(*index)),
            Frame::Piece { shard, epoch, first_seq, base, after, mac, updates } => {
                put_piece_wire_header(out, *shard, *epoch, *first_seq, *base, *after);
                out.extend_from_slice(mac);
                put_updates(out, updates);
            }
            Frame::RunSig { shard, epoch, first_seq, count, sig } => {
                out.extend_from_slice(&shard.0.to_le_bytes());
                put_varint(out, u64::from(*epoch));
                put_varint(out, *first_seq);
                put_varint(out, u64::from(*count));
                out.extend_from_slice(sig);
            }
            Frame::Fragment { id, index, count, bytes } => {
                put_varint(out, u64::from(*id));
                put_varint(out, u64::from(*index));
                put_varint(out, u64::from(*count));
                put_bytes(out, bytes);
            }
            Frame::ForwardCritical { write_id, origin, shard, update } => {
                put_varint(out, *write_id);
                out.extend_from_slice(&origin.0);
                out.extend_from_slice(&shard.0.to_le_bytes());
                put_update(out, update);
            }
            Frame::RecoverAck { gone, silent, votes } => {
                out.extend_from_slice(&gone.0);
                out.push(u8::from(*silent));
                put_varint(out, votes.len() as u64);
                for v in votes {
                    out.extend_from_slice(&v.shard.0.to_le_bytes());
                    put_varint(out, u64::from(v.epoch));
                    out.push(u8::from(v.granted));
                    put_version(out, v.version);
                    out.extend_from_slice(&v.checksum.to_le_bytes());
                    put_varint(out, u64::from(v.prepared));
                }
            }
        }
    }

    /// The frame's encoding as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Appends the frame's encoding for a datagram `sender` sends: a run
    /// `sender` wrote itself goes as an own delta (type 25), whose author is
    /// the datagram's sender and is not repeated, and a write it forwards on
    /// its own behalf as an own forward (type 30), without its origin;
    /// anything else as [`Frame::encode`].
    pub fn encode_from(&self, sender: &PeerId, out: &mut Vec<u8>) {
        match self {
            Frame::Delta { shard, epoch, first_seq, base, after, author, sig, updates } if author == sender => {
                out.push(OWN_DELTA_KIND);
                put_delta(out, *shard, *epoch, *first_seq, *base, *after, None, sig, updates);
            }
            Frame::Forward { write_id, origin, shard, update } if origin == sender => {
                out.push(OWN_FORWARD_KIND);
                put_varint(out, *write_id);
                out.extend_from_slice(&shard.0.to_le_bytes());
                put_update(out, update);
            }
            _ => self.encode(out),
        }
    }

    /// [`Frame::encode_from`] as a new buffer.
    pub fn to_bytes_from(&self, sender: &PeerId) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_from(sender, &mut out);
        out
    }
}

/// Frame type bytes. Values are part of the protocol: never reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// [`Frame::Join`]
    Join = 1,
    /// [`Frame::Welcome`]
    Welcome = 2,
    /// [`Frame::Members`]
    Members = 3,
    /// [`Frame::Shards`]
    Shards = 4,
    /// [`Frame::Heartbeat`]
    Heartbeat = 5,
    /// [`Frame::Leave`]
    Leave = 6,
    /// [`Frame::Delta`]
    Delta = 7,
    /// [`Frame::Forward`]
    Forward = 8,
    /// [`Frame::ForwardAck`]
    ForwardAck = 9,
    /// [`Frame::RepairReq`]
    RepairReq = 10,
    /// [`Frame::Snapshot`]
    Snapshot = 11,
    /// [`Frame::Authority`]
    Authority = 12,
    /// [`Frame::SyncReq`]
    SyncReq = 13,
    /// [`Frame::Recover`]
    Recover = 14,
    /// [`Frame::RecoverAck`]
    RecoverAck = 15,
    /// [`Frame::Propose`]
    Propose = 16,
    /// [`Frame::Vote`]
    Vote = 17,
    /// [`Frame::Decided`]
    Decided = 18,
    /// [`Frame::ForwardCritical`]
    ForwardCritical = 19,
    /// [`Frame::Prepared`]
    Prepared = 20,
    /// [`Frame::Ping`]
    Ping = 21,
    /// [`Frame::Pong`]
    Pong = 22,
    /// [`Frame::AddrCheck`]
    AddrCheck = 23,
    /// [`Frame::AddrProof`]
    AddrProof = 24,
    /// [`Frame::Fragment`]
    Fragment = 26,
    /// [`Frame::Stream`]
    Stream = 27,
    /// [`Frame::StreamAck`]
    StreamAck = 28,
    /// [`Frame::StreamPart`]
    StreamPart = 29,
    /// [`Frame::ShortId`]
    ShortId = 32,
    /// [`Frame::ShortIdUnknown`]
    ShortIdUnknown = 33,
    /// [`Frame::Piece`]
    Piece = 34,
    /// [`Frame::RunSig`]
    RunSig = 35,
}

/// A decoded datagram: who sent it and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The sender's peer id, from the header.
    pub sender: PeerId,
    /// The frames, in order.
    pub frames: Vec<Frame>,
}

/// Why a datagram could not be decoded. Every variant is counted by the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DecodeError {
    /// Larger than [`MAX_DATAGRAM_BYTES`].
    #[error("datagram larger than {MAX_DATAGRAM_BYTES} bytes")]
    Oversized,
    /// Shorter than the header, or a field runs past the end.
    #[error("datagram truncated")]
    Truncated,
    /// Does not start with the protocol's magic bytes.
    #[error("not an anarchy datagram (bad magic)")]
    BadMagic,
    /// Speaks a protocol version this build does not.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// Header flags this version does not define.
    #[error("unknown header flags {0:#04x}")]
    UnknownFlags(u8),
    /// A frame type byte this version does not define.
    #[error("unknown frame type {0}")]
    UnknownFrame(u8),
    /// A datagram with a header and no frames.
    #[error("datagram has no frames")]
    Empty,
    /// A varint longer than 10 bytes or above its field's range.
    #[error("bad varint")]
    BadVarint,
    /// A length or count above its documented bound.
    #[error("{0} exceeds its bound")]
    TooLong(&'static str),
    /// A field holds a value outside its domain.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// A compressed frames region that is malformed or expands past its bound.
    #[error("bad compressed frames region")]
    BadCompression,
}

/// Encodes a datagram header followed by already-encoded frames.
pub fn encode_datagram(sender: &PeerId, frames: &[&[u8]]) -> Vec<u8> {
    let len = HEADER_BYTES + frames.iter().map(|f| f.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    put_header(&mut out, sender);
    for f in frames {
        out.extend_from_slice(f);
    }
    debug_assert!(out.len() <= MAX_PLAIN_DATAGRAM_BYTES, "plain datagram of {} bytes", out.len());
    out
}

/// Appends the datagram header for `sender`.
pub fn put_header(out: &mut Vec<u8>, sender: &PeerId) {
    out.extend_from_slice(&MAGIC);
    out.push(PROTOCOL_VERSION);
    out.push(0);
    out.extend_from_slice(&sender.0);
}

/// Encodes a whole datagram from frames (tests and tools; the peer packs
/// pre-encoded frames with [`encode_datagram`]).
pub fn encode_frames(sender: &PeerId, frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    put_header(&mut out, sender);
    for f in frames {
        f.encode_from(sender, &mut out);
    }
    out
}

/// Decodes a datagram. Never panics; allocates at most in proportion to `bytes.len()`.
pub fn decode_datagram(bytes: &[u8]) -> Result<Datagram, DecodeError> {
    if bytes.len() > MAX_DATAGRAM_BYTES {
        return Err(DecodeError::Oversized);
    }
    let mut r = Reader::new(bytes);
    if r.take(2)? != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = r.u8()?;
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let flags = r.u8()?;
    if flags != 0 {
        return Err(DecodeError::UnknownFlags(flags));
    }
    let sender = r.peer_id()?;
    let mut frames = Vec::new();
    while !r.is_empty() {
        frames.push(decode_frame(&mut r, &sender)?);
    }
    if frames.is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(Datagram { sender, frames })
}

fn decode_frame(r: &mut Reader<'_>, sender: &PeerId) -> Result<Frame, DecodeError> {
    let kind = r.u8()?;
    let frame = match kind {
        1 => {
            let public_key = r.public_key()?;
            let incarnation = r.epoch()?;
            let czar_eligible = match r.u8()? {
                0 => true,
                JOIN_NOT_CZAR_ELIGIBLE => false,
                _ => return Err(DecodeError::Invalid("join flags")),
            };
            Frame::Join { public_key, incarnation, czar_eligible }
        }
        2 => Frame::Welcome,
        3 => {
            // id + key + shortest addr (family, 4 bytes, port) + incarnation + status
            let n = r.count(PEER_ID_BYTES + PUBLIC_KEY_BYTES + 7 + 1 + 1)?;
            let mut members = Vec::with_capacity(n);
            for _ in 0..n {
                let id = r.peer_id()?;
                let public_key = r.public_key()?;
                let addr = r.addr()?;
                let incarnation = r.epoch()?;
                let byte = r.u8()?;
                let status = match byte & !MEMBER_NOT_CZAR_ELIGIBLE {
                    0 => MemberStatus::Alive,
                    1 => MemberStatus::Left,
                    _ => return Err(DecodeError::Invalid("member status")),
                };
                let czar_eligible = byte & MEMBER_NOT_CZAR_ELIGIBLE == 0;
                members.push(MemberRecord { id, public_key, addr, incarnation, status, czar_eligible });
            }
            Frame::Members(members)
        }
        4 => {
            let n = r.count(2)?;
            let mut shards = Vec::with_capacity(n);
            for _ in 0..n {
                let name = r.bytes(MAX_SHARD_NAME_BYTES, "shard name")?;
                let name = std::str::from_utf8(name).map_err(|_| DecodeError::Invalid("shard name"))?;
                if name.is_empty() {
                    return Err(DecodeError::Invalid("shard name"));
                }
                let preferred = match r.u8()? {
                    0 => None,
                    1 => Some(r.peer_id()?),
                    _ => return Err(DecodeError::Invalid("preferred flag")),
                };
                shards.push(ShardDecl { name: name.to_owned(), preferred });
            }
            Frame::Shards(shards)
        }
        5 | SHORT_HEARTBEAT_KIND => {
            let incarnation = r.epoch()?;
            let digests =
                if kind == 5 { Some(ViewDigests { members: r.u64_le()?, shards: r.u64_le()? }) } else { None };
            let n = r.count(1)?;
            let mut czar_of = Vec::with_capacity(n);
            for _ in 0..n {
                let flags = r.u8()?;
                let implied = flags & ADVERT_IMPLIED != 0;
                if flags > ADVERT_BACKED | ADVERT_LOAD | ADVERT_BY_RUN | ADVERT_IMPLIED
                    || (implied && flags & ADVERT_BY_RUN == 0)
                {
                    return Err(DecodeError::Invalid("advert flags"));
                }
                let shard = if implied { ShardId(0) } else { r.shard()? };
                let by_run = flags & ADVERT_BY_RUN != 0;
                let (version, checksum) = if by_run { (Version::default(), 0) } else { (r.version()?, r.u64_le()?) };
                let load = if flags & ADVERT_LOAD != 0 {
                    Some(ShardLoad {
                        writes_per_sec: r.varint_u32()?,
                        bytes_per_sec: r.varint_u32()?,
                        keys: r.varint_u32()?,
                    })
                } else {
                    None
                };
                czar_of.push(ShardVersion {
                    shard,
                    version,
                    checksum,
                    backed: flags & ADVERT_BACKED != 0,
                    load,
                    by_run,
                    implied,
                });
            }
            Frame::Heartbeat { incarnation, digests, czar_of }
        }
        6 => Frame::Leave { incarnation: r.epoch()? },
        7 | 25 => {
            let shard = r.shard()?;
            let epoch = r.epoch()?;
            let first_seq = r.seq()?;
            let base = r.u64_le()?;
            let after = r.u64_le()?;
            // An own run names no author: it is the datagram's sender.
            let author = if kind == 25 { *sender } else { r.peer_id()? };
            let sig: Signature = r.array()?;
            let updates = r.run_updates(first_seq)?;
            Frame::Delta { shard, epoch, first_seq, base, after, author, sig, updates }
        }
        8 => {
            Frame::Forward { write_id: r.varint()?, origin: r.peer_id()?, shard: r.shard()?, update: r.update(false)? }
        }
        OWN_FORWARD_KIND => {
            Frame::Forward { write_id: r.varint()?, origin: *sender, shard: r.shard()?, update: r.update(false)? }
        }
        9 => Frame::ForwardAck { write_id: r.varint()?, shard: r.shard()?, version: r.version()? },
        10 => Frame::RepairReq { shard: r.shard()?, from_seq: r.seq()?, checksum: r.u64_le()? },
        11 => {
            let resync = r.bool()?;
            let shard = r.shard()?;
            let version = r.version()?;
            let czar = r.peer_id()?;
            let checksum: [u8; 16] = r.array()?;
            let signer = r.peer_id()?;
            let sig: Signature = r.array()?;
            let chunk = r.varint_u16()?;
            let chunks = r.varint_u16()?;
            if chunks == 0 || chunk >= chunks {
                return Err(DecodeError::Invalid("snapshot chunk index"));
            }
            let n = r.count(4)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                let k = r.bytes(MAX_KEY_BYTES, "key")?.to_vec();
                let v = r.bytes(MAX_VALUE_BYTES, "value")?.to_vec();
                let written = r.version()?;
                let before = r.bytes(MAX_TREND_BYTES, "value before")?.to_vec();
                entries.push((k, v, written, before));
            }
            Frame::Snapshot { shard, version, czar, checksum, chunk, chunks, entries, resync, signer, sig }
        }
        12 => {
            let (shard, epoch, czar, seq, checksum) = (r.shard()?, r.epoch()?, r.peer_id()?, r.seq()?, r.u64_le()?);
            let flags = r.u8()?;
            if flags > 3 {
                return Err(DecodeError::Invalid("authority flags"));
            }
            Frame::Authority { shard, epoch, czar, seq, checksum, backed: flags & 1 != 0, start_known: flags & 2 != 0 }
        }
        13 => Frame::SyncReq,
        14 => {
            let gone = r.peer_id()?;
            let incarnation = r.epoch()?;
            let n = r.count(8 + 1)?;
            let mut claims = Vec::with_capacity(n);
            for _ in 0..n {
                claims.push((r.shard()?, r.epoch()?));
            }
            Frame::Recover { gone, incarnation, claims }
        }
        15 => {
            let gone = r.peer_id()?;
            let silent = r.bool()?;
            let n = r.count(8 + 1 + 1 + 2 + 8 + 1)?;
            let mut votes = Vec::with_capacity(n);
            for _ in 0..n {
                votes.push(RecoverVote {
                    shard: r.shard()?,
                    epoch: r.epoch()?,
                    granted: r.bool()?,
                    version: r.version()?,
                    checksum: r.u64_le()?,
                    prepared: r.varint_u16()?,
                });
            }
            Frame::RecoverAck { gone, silent, votes }
        }
        16 | 20 => {
            let origin = r.peer_id()?;
            let write_id = r.varint()?;
            let shard = r.shard()?;
            let epoch = r.epoch()?;
            let update = r.update(false)?;
            if kind == 16 {
                Frame::Propose { origin, write_id, shard, epoch, update }
            } else {
                Frame::Prepared { origin, write_id, shard, epoch, update }
            }
        }
        17 => Frame::Vote {
            origin: r.peer_id()?,
            write_id: r.varint()?,
            shard: r.shard()?,
            epoch: r.epoch()?,
            accept: r.bool()?,
            reason: r.reason()?,
        },
        18 => {
            let origin = r.peer_id()?;
            let write_id = r.varint()?;
            let shard = r.shard()?;
            let decision = match r.u8()? {
                0 => Decision::Committed(r.version()?),
                1 => Decision::Rejected(r.reason()?),
                2 => Decision::TimedOut,
                _ => return Err(DecodeError::Invalid("decision")),
            };
            Frame::Decided { origin, write_id, shard, decision }
        }
        21 => Frame::Ping { stamp: r.varint()? },
        22 => Frame::Pong { stamp: r.varint()?, typical_ms: r.varint_u32()? },
        23 => Frame::AddrCheck { nonce: r.u64_le()? },
        24 => Frame::AddrProof { nonce: r.u64_le()?, signature: r.array()? },
        19 => Frame::ForwardCritical {
            write_id: r.varint()?,
            origin: r.peer_id()?,
            shard: r.shard()?,
            update: r.update(false)?,
        },
        26 => {
            let id = r.varint_u32()?;
            let index = r.varint_u16()?;
            let count = r.varint_u16()?;
            let bytes = r.bytes(MAX_FRAME_BYTES, "fragment")?.to_vec();
            if !(2..=MAX_FRAGMENTS).contains(&count) || index >= count || bytes.is_empty() {
                return Err(DecodeError::Invalid("fragment"));
            }
            Frame::Fragment { id, index, count, bytes }
        }
        27 => {
            let shard = r.shard()?;
            let epoch = r.epoch()?;
            let from = r.seq()?;
            let to = r.seq()?;
            let base = r.seq()?;
            let mac = r.array()?;
            if to <= from {
                return Err(DecodeError::Invalid("stream range"));
            }
            if base > from {
                return Err(DecodeError::Invalid("stream base"));
            }
            let entries = stream_entries(r, base)?;
            Frame::Stream { shard, epoch, from, to, base, entries, mac }
        }
        29 => {
            let shard = r.shard()?;
            let epoch = r.epoch()?;
            let at = r.seq()?;
            let base = r.seq()?;
            let mac = r.array()?;
            if at == 0 {
                return Err(DecodeError::Invalid("stream stamp"));
            }
            if base > at {
                return Err(DecodeError::Invalid("stream base"));
            }
            let entries = stream_entries(r, base)?;
            Frame::StreamPart { shard, epoch, at, base, entries, mac }
        }
        28 => Frame::StreamAck { shard: r.shard()?, epoch: r.epoch()?, have: r.seq()? },
        32 => Frame::ShortId { boot: u32::from_le_bytes(r.array()?), index: r.varint_u16()? },
        33 => Frame::ShortIdUnknown { index: r.varint_u16()? },
        34 => {
            let shard = ShardId(u64::from(u16::from_le_bytes(r.array()?)));
            let epoch = r.epoch()?;
            let first_seq = r.seq()?;
            let base = u32::from_le_bytes(r.array()?);
            let after = u32::from_le_bytes(r.array()?);
            let mac = r.array()?;
            let updates = r.run_updates(first_seq)?;
            Frame::Piece { shard, epoch, first_seq, base, after, mac, updates }
        }
        35 => {
            let shard = r.shard()?;
            let epoch = r.epoch()?;
            let first_seq = r.seq()?;
            let count = r.varint()?;
            if count == 0 || count > u64::from(u32::MAX) {
                return Err(DecodeError::Invalid("run count"));
            }
            if first_seq == 0 || first_seq + count > MAX_SEQ {
                return Err(DecodeError::Invalid("delta sequence"));
            }
            let sig = r.array()?;
            Frame::RunSig { shard, epoch, first_seq, count: count as u32, sig }
        }
        other => return Err(DecodeError::UnknownFrame(other)),
    };
    Ok(frame)
}

/// The entries of a stream frame: at least one, each a `Put` of at most
/// [`MAX_STREAM_VALUE_BYTES`] or, with a `base`, a `Patch`.
fn stream_entries(r: &mut Reader<'_>, base: u64) -> Result<Vec<Update>, DecodeError> {
    let n = r.count(3)?;
    if n == 0 {
        return Err(DecodeError::Invalid("empty stream"));
    }
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let u = r.update(base > 0)?;
        match &u.op {
            Op::Put(v) if v.len() > MAX_STREAM_VALUE_BYTES => return Err(DecodeError::TooLong("value")),
            // Stream values are kept per member, without the value before.
            Op::Delete | Op::Trend(_) => return Err(DecodeError::Invalid("update op")),
            Op::Patch(x) if x.len() > MAX_STREAM_VALUE_BYTES => return Err(DecodeError::TooLong("value")),
            _ => {}
        }
        entries.push(u);
    }
    Ok(entries)
}

/// Decodes a frame joined from fragments `sender` sent: exactly one frame,
/// never itself a fragment, at most [`MAX_FRAGMENTED_FRAME_BYTES`].
pub fn decode_joined_frame(bytes: &[u8], sender: &PeerId) -> Result<Frame, DecodeError> {
    if bytes.len() > MAX_FRAGMENTED_FRAME_BYTES {
        return Err(DecodeError::TooLong("joined frame"));
    }
    let mut r = Reader::new(bytes);
    let frame = decode_frame(&mut r, sender)?;
    if matches!(frame, Frame::Fragment { .. }) {
        return Err(DecodeError::Invalid("nested fragment"));
    }
    if !r.is_empty() {
        return Err(DecodeError::Invalid("joined frame"));
    }
    Ok(frame)
}

/// The fields of a [`Frame::Stream`] before its signature: also what its
/// signature covers, with the session, author and entries (`proof::stream_message`).
pub(crate) fn put_stream_header(out: &mut Vec<u8>, shard: ShardId, epoch: u32, from: u64, to: u64, base: u64) {
    out.extend_from_slice(&shard.0.to_le_bytes());
    put_varint(out, u64::from(epoch));
    put_varint(out, from);
    put_varint(out, to);
    put_varint(out, base);
}

/// The fields of a [`Frame::StreamPart`] before its signature: also what its
/// signature covers, with the session, author and entries (`proof::stream_part_message`).
pub(crate) fn put_stream_part_header(out: &mut Vec<u8>, shard: ShardId, epoch: u32, at: u64, base: u64) {
    out.extend_from_slice(&shard.0.to_le_bytes());
    put_varint(out, u64::from(epoch));
    put_varint(out, at);
    put_varint(out, base);
}

/// Bytes a LEB128 varint of `v` takes.
pub fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_version(out: &mut Vec<u8>, v: Version) {
    put_varint(out, u64::from(v.epoch));
    put_varint(out, v.seq);
}

/// The type byte of a `Delta` whose author is the datagram's sender (see
/// [`Frame::encode_from`]); it decodes to a [`Frame::Delta`] like type 7.
pub const OWN_DELTA_KIND: u8 = 25;

/// The type byte of a `Forward` whose origin is the datagram's sender (see
/// [`Frame::encode_from`]); it decodes to a [`Frame::Forward`] like type 8.
pub const OWN_FORWARD_KIND: u8 = 30;

/// The type byte of a `Heartbeat` without view digests (a *short*
/// heartbeat); it decodes to a [`Frame::Heartbeat`] whose `digests` is `None`.
pub const SHORT_HEARTBEAT_KIND: u8 = 31;

/// The digests a heartbeat states of its sender's views: a receiver whose own
/// differ asks the sender for its lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ViewDigests {
    /// Digest of the sender's live member view.
    pub members: u64,
    /// Digest of the sender's shard list.
    pub shards: u64,
}

/// A delta's fields after its type byte; `author` is `None` in an own delta.
#[allow(clippy::too_many_arguments)]
fn put_delta(
    out: &mut Vec<u8>,
    shard: ShardId,
    epoch: u32,
    first_seq: u64,
    base: u64,
    after: u64,
    author: Option<&PeerId>,
    sig: &Signature,
    updates: &[Update],
) {
    out.extend_from_slice(&shard.0.to_le_bytes());
    put_varint(out, u64::from(epoch));
    put_varint(out, first_seq);
    out.extend_from_slice(&base.to_le_bytes());
    out.extend_from_slice(&after.to_le_bytes());
    if let Some(author) = author {
        out.extend_from_slice(&author.0);
    }
    out.extend_from_slice(sig);
    put_updates(out, updates);
}

/// Appends the fields of a [`Frame::Piece`] before its MAC: what the MAC
/// covers with the updates (see `proof::piece_mac`).
pub(crate) fn put_piece_header(out: &mut Vec<u8>, shard: ShardId, epoch: u32, first_seq: u64, base: u32, after: u32) {
    out.extend_from_slice(&shard.0.to_le_bytes());
    put_piece_fields(out, epoch, first_seq, base, after);
}

/// The low bits of a shard id that a [`Frame::Piece`] carries.
pub fn piece_shard_bits(shard: ShardId) -> ShardId {
    ShardId(shard.0 & 0xffff)
}

/// Appends the fields of a [`Frame::Piece`] before its MAC as the wire
/// carries them: the shard's low 16 bits only.
fn put_piece_wire_header(out: &mut Vec<u8>, shard: ShardId, epoch: u32, first_seq: u64, base: u32, after: u32) {
    out.extend_from_slice(&(shard.0 as u16).to_le_bytes());
    put_piece_fields(out, epoch, first_seq, base, after);
}

fn put_piece_fields(out: &mut Vec<u8>, epoch: u32, first_seq: u64, base: u32, after: u32) {
    put_varint(out, u64::from(epoch));
    put_varint(out, first_seq);
    out.extend_from_slice(&base.to_le_bytes());
    out.extend_from_slice(&after.to_le_bytes());
}

/// Appends a run's updates as a `Delta` or `Piece` carries them: the count,
/// then each update, where an update whose key has the previous one's length
/// and differs from it only in its last few bytes names it by those bytes
/// (`e3` after `e2`: one byte instead of two). A piece's MAC covers these
/// very bytes; a run's signature covers each update with its key whole.
pub(crate) fn put_updates(out: &mut Vec<u8>, updates: &[Update]) {
    put_varint(out, updates.len() as u64);
    let mut prev: Option<&[u8]> = None;
    for u in updates {
        put_update_after(out, u, prev);
        prev = Some(&u.key);
    }
}

/// How many last bytes of `key` differ from `prev`'s, if the two have one
/// length and the shared form is shorter than the whole key.
fn shared_key_suffix(prev: Option<&[u8]>, key: &[u8]) -> Option<usize> {
    let prev = prev.filter(|p| p.len() == key.len())?;
    let same = prev.iter().zip(key).take_while(|(a, b)| a == b).count();
    let suffix = (key.len() - same).max(1);
    let whole = usize::from(key.len() > usize::from(UPDATE_LONG_KEY)) + key.len();
    (suffix <= usize::from(UPDATE_LONG_KEY) + 1 && suffix < whole).then_some(suffix)
}

/// Appends a whole [`Frame::Piece`] (type byte first) whose updates are
/// already encoded by [`put_updates`]: a czar encodes a run's updates once
/// and MACs and frames them for each member.
#[allow(clippy::too_many_arguments)]
pub(crate) fn put_piece_encoded(
    out: &mut Vec<u8>,
    shard: ShardId,
    epoch: u32,
    first_seq: u64,
    base: u32,
    after: u32,
    mac: &[u8; PIECE_MAC_BYTES],
    updates: &[u8],
) {
    out.push(FrameKind::Piece as u8);
    put_piece_wire_header(out, shard, epoch, first_seq, base, after);
    out.extend_from_slice(mac);
    out.extend_from_slice(updates);
}

/// Appends `u` with its key whole: what signatures cover, and the form of
/// an update outside a run.
pub(crate) fn put_update(out: &mut Vec<u8>, u: &Update) {
    put_update_after(out, u, None);
}

/// Appends `u`, its key in the shared form if it follows the key `prev` in
/// a run (see [`put_updates`]).
fn put_update_after(out: &mut Vec<u8>, u: &Update, prev: Option<&[u8]>) {
    debug_assert!((1..=MAX_KEY_BYTES).contains(&u.key.len()), "a key of {} bytes", u.key.len());
    let op = match &u.op {
        Op::Put(_) => 0,
        Op::Delete => 1,
        Op::Patch(_) => 2,
        Op::Trend(_) => 3,
    };
    if let Some(suffix) = shared_key_suffix(prev, &u.key) {
        out.push(op | UPDATE_SHARED_KEY | (((suffix - 1) as u8) << UPDATE_KEY_SHIFT));
        out.extend_from_slice(&u.key[u.key.len() - suffix..]);
    } else if u.key.len() > usize::from(UPDATE_LONG_KEY) {
        out.push(op | (UPDATE_LONG_KEY << UPDATE_KEY_SHIFT));
        out.push(u.key.len() as u8);
        out.extend_from_slice(&u.key);
    } else {
        out.push(op | (((u.key.len() - 1) as u8) << UPDATE_KEY_SHIFT));
        out.extend_from_slice(&u.key);
    }
    match &u.op {
        Op::Put(value) => put_bytes(out, value),
        Op::Delete => {}
        Op::Patch(x) => {
            debug_assert!(x.last().is_some_and(|b| *b != 0), "a canonical patch");
            let mut mask = vec![0u8; patch_mask_len(x.len())];
            for (i, b) in x.iter().enumerate() {
                if *b != 0 {
                    mask[i / PATCH_MASK_BITS] |= 1 << (i % PATCH_MASK_BITS);
                }
            }
            let last = mask.len().saturating_sub(1);
            for m in &mut mask[..last] {
                *m |= PATCH_MASK_MORE;
            }
            out.extend_from_slice(&mask);
            out.extend(x.iter().filter(|&&b| b != 0));
        }
        Op::Trend(t) => t.encode(out),
    }
}

fn put_addr(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_le_bytes());
}

/// A bounded cursor over untrusted bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn reason(&mut self) -> Result<String, DecodeError> {
        let b = self.bytes(MAX_REASON_BYTES, "reason")?;
        std::str::from_utf8(b).map(str::to_owned).map_err(|_| DecodeError::Invalid("reason"))
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid("boolean")),
        }
    }

    fn u64_le(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && bits > 1 {
                return Err(DecodeError::BadVarint);
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint)
    }

    fn varint_u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError::BadVarint)
    }

    /// An epoch or incarnation, at most [`MAX_EPOCH`].
    fn epoch(&mut self) -> Result<u32, DecodeError> {
        let v = self.varint_u32()?;
        if v > MAX_EPOCH {
            return Err(DecodeError::Invalid("epoch or incarnation above limit"));
        }
        Ok(v)
    }

    /// A sequence number, at most [`MAX_SEQ`].
    fn seq(&mut self) -> Result<u64, DecodeError> {
        let v = self.varint()?;
        if v > MAX_SEQ {
            return Err(DecodeError::Invalid("sequence number above limit"));
        }
        Ok(v)
    }

    fn varint_u16(&mut self) -> Result<u16, DecodeError> {
        u16::try_from(self.varint()?).map_err(|_| DecodeError::BadVarint)
    }

    /// Reads an element count and checks that `min_elem_bytes` per element fit
    /// in what is left, so a lying count can never drive an allocation.
    fn count(&mut self, min_elem_bytes: usize) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        let max = (self.remaining() / min_elem_bytes.max(1)) as u64;
        if n > max {
            return Err(DecodeError::Truncated);
        }
        Ok(n as usize)
    }

    fn bytes(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.varint()?;
        if n > max as u64 {
            return Err(DecodeError::TooLong(what));
        }
        self.take(n as usize)
    }

    fn peer_id(&mut self) -> Result<PeerId, DecodeError> {
        Ok(PeerId(self.array()?))
    }

    fn public_key(&mut self) -> Result<PublicKey, DecodeError> {
        Ok(PublicKey(self.array()?))
    }

    fn shard(&mut self) -> Result<ShardId, DecodeError> {
        Ok(ShardId(self.u64_le()?))
    }

    fn version(&mut self) -> Result<Version, DecodeError> {
        Ok(Version { epoch: self.epoch()?, seq: self.seq()? })
    }

    /// The updates of a run (`Delta` or `Piece`) from `first_seq` on: a
    /// count, at least one, whose last seq stays within [`MAX_SEQ`], then
    /// the updates, patches allowed.
    fn run_updates(&mut self, first_seq: u64) -> Result<Vec<Update>, DecodeError> {
        let n = self.count(2)?;
        if n == 0 {
            return Err(DecodeError::Invalid("empty delta"));
        }
        if first_seq == 0 || first_seq + n as u64 > MAX_SEQ {
            return Err(DecodeError::Invalid("delta sequence"));
        }
        let mut updates: Vec<Update> = Vec::with_capacity(n);
        for _ in 0..n {
            let u = self.update_after(true, updates.last().map(|u| u.key.as_slice()))?;
            updates.push(u);
        }
        Ok(updates)
    }

    /// An update with its key whole; a patch or trend only where `relative`
    /// allows it (a czar's runs).
    fn update(&mut self, relative: bool) -> Result<Update, DecodeError> {
        self.update_after(relative, None)
    }

    /// An update that follows the key `prev` in a run (`None`: the first, or
    /// not in a run): only then may its key be in the shared form.
    fn update_after(&mut self, relative: bool, prev: Option<&[u8]>) -> Result<Update, DecodeError> {
        let tag = self.u8()?;
        let n = usize::from(tag >> UPDATE_KEY_SHIFT);
        let key = if tag & UPDATE_SHARED_KEY != 0 {
            // The previous key with its last n + 1 bytes replaced.
            let prev = prev.filter(|p| p.len() > n).ok_or(DecodeError::Invalid("shared key"))?;
            let mut key = prev[..prev.len() - n - 1].to_vec();
            key.extend_from_slice(self.take(n + 1)?);
            key
        } else if n == usize::from(UPDATE_LONG_KEY) {
            let len = usize::from(self.u8()?);
            if len <= usize::from(UPDATE_LONG_KEY) {
                return Err(DecodeError::Invalid("key length"));
            }
            if len > MAX_KEY_BYTES {
                return Err(DecodeError::TooLong("key"));
            }
            self.take(len)?.to_vec()
        } else {
            self.take(n + 1)?.to_vec()
        };
        let op = match tag & UPDATE_OP_BITS {
            0 => Op::Put(self.bytes(MAX_VALUE_BYTES, "value")?.to_vec()),
            1 => Op::Delete,
            2 if relative => Op::Patch(self.patch()?),
            3 if relative => Op::Trend(self.trend()?),
            _ => return Err(DecodeError::Invalid("update op")),
        };
        Ok(Update { key, op })
    }

    /// A patch in its one canonical form: a length, a mask whose bits past
    /// the length are clear, then exactly one non-zero byte per set bit.
    fn patch(&mut self) -> Result<Vec<u8>, DecodeError> {
        // The mask: seven bits per byte while the eighth says more follow.
        let mut mask = Vec::new();
        loop {
            if mask.len() * PATCH_MASK_BITS >= MAX_VALUE_BYTES {
                return Err(DecodeError::TooLong("value"));
            }
            let m = self.u8()?;
            mask.push(m & !PATCH_MASK_MORE);
            if m & PATCH_MASK_MORE == 0 {
                break;
            }
        }
        // Canonical: the last mask byte lists a byte (so the patch ends on one).
        let Some(&last) = mask.last().filter(|m| **m != 0) else { return Err(DecodeError::Invalid("patch")) };
        let len = (mask.len() - 1) * PATCH_MASK_BITS + (8 - last.leading_zeros() as usize);
        if len > MAX_VALUE_BYTES {
            return Err(DecodeError::TooLong("value"));
        }
        let mut x = vec![0u8; len];
        for (i, m) in mask.iter().enumerate() {
            for bit in 0..PATCH_MASK_BITS {
                if m & (1 << bit) != 0 {
                    let b = self.u8()?;
                    if b == 0 {
                        return Err(DecodeError::Invalid("patch"));
                    }
                    x[i * PATCH_MASK_BITS + bit] = b;
                }
            }
        }
        Ok(x)
    }

    /// A trend in its one canonical form (see [`crate::trend`]).
    fn trend(&mut self) -> Result<Trend, DecodeError> {
        let cell = std::cell::RefCell::new(self);
        let t = Trend::decode(|| cell.borrow_mut().u8().ok(), || cell.borrow_mut().varint().ok());
        t.map_err(|e| match e {
            TrendError::Truncated => DecodeError::Truncated,
            TrendError::Invalid => DecodeError::Invalid("trend"),
        })
    }

    fn addr(&mut self) -> Result<SocketAddr, DecodeError> {
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            _ => return Err(DecodeError::Invalid("address family")),
        };
        let port = u16::from_le_bytes(self.array()?);
        Ok(SocketAddr::new(ip, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;

    fn sample_frames() -> Vec<Frame> {
        let kp = Keypair::from_seed(1);
        let id = kp.peer_id();
        vec![
            Frame::Join { public_key: kp.public_key(), incarnation: 3, czar_eligible: false },
            Frame::Welcome,
            Frame::Members(vec![MemberRecord {
                id,
                public_key: kp.public_key(),
                addr: "[::1]:9000".parse().unwrap(),
                incarnation: 1,
                status: MemberStatus::Left,
                czar_eligible: false,
            }]),
            Frame::Shards(vec![ShardDecl { name: "world".into(), preferred: Some(id) }]),
            Frame::Heartbeat {
                incarnation: 1,
                digests: Some(ViewDigests { members: 42, shards: 7 }),
                czar_of: vec![
                    ShardVersion {
                        shard: ShardId(9),
                        version: Version { epoch: 2, seq: 300 },
                        checksum: 5,
                        backed: true,
                        load: None,
                        by_run: false,
                        implied: false,
                    },
                    ShardVersion {
                        shard: ShardId(10),
                        version: Version { epoch: 3, seq: 1 },
                        checksum: 6,
                        backed: false,
                        load: Some(ShardLoad { writes_per_sec: 320, bytes_per_sec: 7_000, keys: 16 }),
                        by_run: false,
                        implied: false,
                    },
                    ShardVersion {
                        shard: ShardId(11),
                        version: Version::default(),
                        checksum: 0,
                        backed: true,
                        load: None,
                        by_run: true,
                        implied: false,
                    },
                ],
            },
            Frame::Heartbeat { incarnation: 4, digests: None, czar_of: Vec::new() },
            Frame::Leave { incarnation: 1 },
            Frame::Delta {
                shard: ShardId(1),
                epoch: 1,
                first_seq: 10,
                base: 99,
                after: 98,
                author: id,
                sig: [3; 64],
                updates: vec![
                    Update { key: b"x".to_vec(), op: Op::Put(vec![1, 2, 3]) },
                    Update { key: b"y".to_vec(), op: Op::Delete },
                    Update { key: b"z".to_vec(), op: Op::Patch(vec![0, 0, 5, 0, 0, 0, 0, 0, 0, 9]) },
                    Update {
                        key: b"w".to_vec(),
                        op: Op::Trend(
                            Trend::between(&[0; 12], &[3; 12], &[6, 6, 7, 6, 6, 6, 4, 6, 9, 1, 6, 6], 2).unwrap(),
                        ),
                    },
                ],
            },
            Frame::Forward {
                write_id: 5,
                origin: id,
                shard: ShardId(2),
                update: Update { key: b"k".to_vec(), op: Op::Delete },
            },
            Frame::ForwardAck { write_id: 5, shard: ShardId(2), version: Version { epoch: 1, seq: 1 } },
            Frame::RepairReq { shard: ShardId(3), from_seq: 17, checksum: 4 },
            Frame::Snapshot {
                shard: ShardId(3),
                version: Version { epoch: 4, seq: 99 },
                czar: id,
                checksum: [7; 16],
                chunk: 1,
                chunks: 2,
                entries: vec![
                    (b"a".to_vec(), b"b".to_vec(), Version { epoch: 4, seq: 98 }, b"c".to_vec()),
                    (b"d".to_vec(), b"e".to_vec(), Version { epoch: 4, seq: 97 }, Vec::new()),
                ],
                resync: true,
                signer: id,
                sig: [4; 64],
            },
            Frame::Authority {
                shard: ShardId(3),
                epoch: 5,
                czar: id,
                seq: 99,
                checksum: 12,
                backed: false,
                start_known: true,
            },
            Frame::SyncReq,
            Frame::Recover { gone: id, incarnation: 2, claims: vec![(ShardId(1), 4), (ShardId(2), 9)] },
            Frame::Propose {
                origin: id,
                write_id: 3,
                shard: ShardId(1),
                epoch: 2,
                update: Update { key: b"kill".to_vec(), op: Op::Put(b"p7".to_vec()) },
            },
            Frame::Vote {
                origin: id,
                write_id: 3,
                shard: ShardId(1),
                epoch: 2,
                accept: false,
                reason: "no ammo".into(),
            },
            Frame::Decided {
                origin: id,
                write_id: 3,
                shard: ShardId(1),
                decision: Decision::Committed(Version { epoch: 2, seq: 9 }),
            },
            Frame::Decided { origin: id, write_id: 4, shard: ShardId(1), decision: Decision::Rejected("x".into()) },
            Frame::Decided { origin: id, write_id: 5, shard: ShardId(1), decision: Decision::TimedOut },
            Frame::Ping { stamp: 123_456 },
            Frame::Pong { stamp: u64::MAX, typical_ms: 0 },
            Frame::Pong { stamp: 7, typical_ms: u32::MAX },
            Frame::ForwardCritical {
                write_id: 6,
                origin: id,
                shard: ShardId(1),
                update: Update { key: b"k".to_vec(), op: Op::Delete },
            },
            Frame::Prepared {
                shard: ShardId(1),
                origin: id,
                write_id: 3,
                epoch: 2,
                update: Update { key: b"kill".to_vec(), op: Op::Put(b"p7".to_vec()) },
            },
            Frame::RecoverAck {
                gone: id,
                silent: true,
                votes: vec![RecoverVote {
                    shard: ShardId(1),
                    epoch: 4,
                    granted: true,
                    version: Version { epoch: 3, seq: 10 },
                    checksum: 77,
                    prepared: 1,
                }],
            },
            Frame::Stream {
                shard: ShardId(9),
                epoch: 2,
                from: 40,
                to: 45,
                base: 38,
                entries: vec![
                    Update { key: b"e3".to_vec(), op: Op::Put(vec![1; 12]) },
                    Update { key: b"e7".to_vec(), op: Op::Patch(vec![0, 0, 3]) },
                ],
                mac: [5; PIECE_MAC_BYTES],
            },
            Frame::StreamAck { shard: ShardId(9), epoch: 2, have: 45 },
            Frame::ShortId { boot: 0xdead_beef, index: 700 },
            Frame::ShortIdUnknown { index: 65535 },
            Frame::StreamPart {
                shard: ShardId(9),
                epoch: 2,
                at: 47,
                base: 45,
                entries: vec![Update { key: b"e1".to_vec(), op: Op::Patch(vec![0, 9]) }],
                mac: [6; PIECE_MAC_BYTES],
            },
        ]
    }

    #[test]
    fn a_patch_is_chosen_only_when_it_is_smaller_and_resolves_to_the_new_value() {
        let old = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        let mut new = old;
        new[0] = 200;
        new[9] = 0;
        let op = Op::patch(&old, &new).expect("two bytes of twelve changed");
        assert_eq!(op.resolve(Some(&old)), Some(new.to_vec()));
        let patched = Update { key: b"e1".to_vec(), op };
        let put = Update { key: b"e1".to_vec(), op: Op::Put(new.to_vec()) };
        assert!(patched.encoded_len() < put.encoded_len(), "{} vs {}", patched.encoded_len(), put.encoded_len());
        assert_eq!(Op::patch(&old, &old), None, "nothing changed");
        assert_eq!(Op::patch(&old, &[0u8; 12]), None, "every byte changed: a put is smaller");
        assert_eq!(Op::patch(&old, &new[..11]), None, "another length");
        // Total on any current value: the shorter counts as zeros past its end.
        assert_eq!(Op::Patch(vec![1, 2, 3]).resolve(None), Some(vec![1, 2, 3]));
        assert_eq!(Op::Patch(vec![1, 2, 3]).resolve(Some(&[1][..])), Some(vec![0, 2, 3]));
        assert_eq!(Op::Patch(vec![1]).resolve(Some(&[1, 2, 3][..])), Some(vec![0, 2, 3]));
        // Trimmed: a patch ends on a byte that changes.
        assert_eq!(Op::patch(&[1, 2, 3, 4, 5, 6, 7, 8, 9], &[1, 3, 3, 4, 5, 6, 7, 8, 9]), Some(Op::Patch(vec![0, 1])));
    }

    #[test]
    fn a_patch_travels_only_in_a_delta_and_only_in_its_canonical_form() {
        let sender = Keypair::from_seed(2).peer_id();
        let patch = Update { key: b"k".to_vec(), op: Op::Patch(vec![0, 7]) };
        let forward = Frame::Forward { write_id: 1, origin: sender, shard: ShardId(1), update: patch.clone() };
        let bytes = encode_frames(&sender, &[forward]);
        assert_eq!(decode_datagram(&bytes), Err(DecodeError::Invalid("update op")));
        let delta = |updates| run_of(sender, updates);
        let good = encode_frames(&sender, &[delta(vec![patch.clone()])]);
        assert!(decode_datagram(&good).is_ok());
        // The patch is the last thing in the datagram: tag (op 2, key of 1
        // byte), key, mask 0b010 (one mask byte: no 0x80), byte 7.
        assert_eq!(&good[good.len() - 4..], &[2, b'k', 0b010, 7]);
        let with = |tail: &[u8]| {
            let mut b = good[..good.len() - 2].to_vec();
            b.extend_from_slice(tail);
            decode_datagram(&b)
        };
        assert_eq!(with(&[0b010, 0]), Err(DecodeError::Invalid("patch")), "a listed byte that is zero");
        assert_eq!(with(&[0]), Err(DecodeError::Invalid("patch")), "a patch that changes nothing");
        assert_eq!(with(&[0x82, 0, 7]), Err(DecodeError::Invalid("patch")), "a last mask byte that lists nothing");
        assert_eq!(
            with(&[0x82, 0b1, 7, 9]).map(|d| d.frames),
            Ok(vec![delta(vec![Update { key: b"k".to_vec(), op: Op::Patch(vec![0, 7, 0, 0, 0, 0, 0, 9]) }])])
        );
        assert_eq!(with(&[0b011, 7]), Err(DecodeError::Truncated));
        // A mask that runs past the largest value (only a frame joined from
        // fragments is that long).
        let mut long = delta(vec![patch.clone()]).to_bytes();
        long.truncate(long.len() - 2);
        long.extend(std::iter::repeat_n(0x80, MAX_VALUE_BYTES / 7 + 1));
        long.push(1);
        assert_eq!(decode_joined_frame(&long, &sender), Err(DecodeError::TooLong("value")));
        // Op 3 is a trend (a tag's key length is its high six bits plus
        // one): one lane of four bytes, whose code byte must not go past it.
        let mut bad_trend = good[..good.len() - 4].to_vec();
        bad_trend.extend_from_slice(&[3, b'k', 0b010, 7]);
        assert_eq!(decode_datagram(&bad_trend), Err(DecodeError::Invalid("trend")));
        let mut trend = good[..good.len() - 4].to_vec();
        trend.extend_from_slice(&[3, b'k', 0b010, 1]);
        let t = Trend::between(&[0; 4], &[0; 4], &[1, 0, 0, 0], 4).unwrap();
        assert_eq!(
            decode_datagram(&trend).map(|d| d.frames),
            Ok(vec![delta(vec![Update { key: b"k".to_vec(), op: Op::Trend(t) }])])
        );
    }

    #[test]
    fn a_partial_stream_list_needs_a_stamp_a_base_no_later_and_an_entry() {
        let sender = Keypair::from_seed(2).peer_id();
        let put = Update { key: b"e1".to_vec(), op: Op::Put(vec![1; 12]) };
        let part = |at, base, entries: Vec<Update>| {
            let f = Frame::StreamPart { shard: ShardId(3), epoch: 2, at, base, entries, mac: [1; PIECE_MAC_BYTES] };
            decode_datagram(&encode_frames(&sender, &[f]))
        };
        assert!(part(9, 9, vec![put.clone()]).is_ok());
        assert_eq!(part(0, 0, vec![put.clone()]), Err(DecodeError::Invalid("stream stamp")));
        assert_eq!(part(9, 10, vec![put.clone()]), Err(DecodeError::Invalid("stream base")));
        assert_eq!(part(9, 0, vec![]), Err(DecodeError::Invalid("empty stream")));
        let delete = Update { key: b"e1".to_vec(), op: Op::Delete };
        assert_eq!(part(9, 0, vec![delete]), Err(DecodeError::Invalid("update op")));
    }

    #[test]
    fn an_own_delta_leaves_out_its_author_and_decodes_the_same() {
        let sender = Keypair::from_seed(2).peer_id();
        let other = Keypair::from_seed(3).peer_id();
        let delta = |author| Frame::Delta {
            shard: ShardId(1),
            epoch: 3,
            first_seq: 10,
            base: 1,
            after: 2,
            author,
            sig: [9; 64],
            updates: vec![Update { key: b"k".to_vec(), op: Op::Put(vec![1]) }],
        };
        for (author, saved) in [(sender, PEER_ID_BYTES), (other, 0)] {
            let frame = delta(author);
            let own = frame.to_bytes_from(&sender);
            assert_eq!(own.len() + saved, frame.to_bytes().len());
            let mut bytes = Vec::new();
            put_header(&mut bytes, &sender);
            bytes.extend_from_slice(&own);
            assert_eq!(decode_datagram(&bytes).unwrap().frames, vec![frame]);
        }
    }

    #[test]
    fn an_own_forward_leaves_out_its_origin_and_decodes_the_same() {
        let sender = Keypair::from_seed(2).peer_id();
        let other = Keypair::from_seed(3).peer_id();
        let forward = |origin| Frame::Forward {
            write_id: 77,
            origin,
            shard: ShardId(4),
            update: Update { key: b"e3".to_vec(), op: Op::Put(vec![5; 12]) },
        };
        for (origin, saved) in [(sender, PEER_ID_BYTES), (other, 0)] {
            let frame = forward(origin);
            let own = frame.to_bytes_from(&sender);
            assert_eq!(own.len() + saved, frame.to_bytes().len());
            assert_eq!(own[0], if saved > 0 { OWN_FORWARD_KIND } else { FrameKind::Forward as u8 });
            let mut bytes = Vec::new();
            put_header(&mut bytes, &sender);
            bytes.extend_from_slice(&own);
            assert_eq!(decode_datagram(&bytes).unwrap().frames, vec![frame]);
        }
    }

    /// A `Delta` of `sender`'s at seq 1 of shard 1 carrying `updates`.
    fn run_of(sender: PeerId, updates: Vec<Update>) -> Frame {
        Frame::Delta {
            shard: ShardId(1),
            epoch: 1,
            first_seq: 1,
            base: 0,
            after: 0,
            author: sender,
            sig: [0; 64],
            updates,
        }
    }

    #[test]
    fn a_runs_keys_that_differ_from_the_previous_in_their_last_bytes_travel_as_those_bytes() {
        let sender = Keypair::from_seed(2).peer_id();
        let del = |k: &[u8]| Update { key: k.to_vec(), op: Op::Delete };
        let long_a = [b'a'; 40];
        let mut long_b = long_a;
        long_b[39] = b'b';
        let updates = vec![
            del(b"e0"),
            del(b"e1"),
            del(b"e9"),
            del(b"e10"),
            del(b"e15"),
            del(b"x15"),
            del(&long_a),
            del(&long_b),
            del(b"e1"),
        ];
        let mut out = Vec::new();
        put_updates(&mut out, &updates);
        // Count, then: e0 whole (3); e1, e9 by one byte (2 each); e10 whole
        // (4); e15 by one byte (2); x15 whole (it differs in its first byte,
        // 4); the long key whole with its length byte (42); the next by one
        // byte (2); e1 whole (3).
        assert_eq!(out.len(), 1 + 3 + 2 + 2 + 4 + 2 + 4 + 42 + 2 + 3);
        let frame = |updates| run_of(sender, updates);
        let bytes = encode_frames(&sender, &[frame(updates.clone())]);
        assert_eq!(decode_datagram(&bytes).unwrap().frames, vec![frame(updates.clone())]);
        // Every update costs at most what it costs whole.
        assert!(out.len() <= 1 + updates.iter().map(Update::encoded_len).sum::<usize>());
        // The first update of a run has no key to share, and a shared key
        // cannot replace more bytes than the previous one has.
        let good = encode_frames(&sender, &[frame(vec![del(b"k")])]);
        let with_tag = |tag: &[u8]| {
            let mut b = good[..good.len() - 2].to_vec();
            b.extend_from_slice(tag);
            decode_datagram(&b)
        };
        assert!(with_tag(&[1, b'k']).is_ok());
        assert_eq!(with_tag(&[1 | UPDATE_SHARED_KEY, b'k']), Err(DecodeError::Invalid("shared key")));
        // A length byte only for keys longer than 31 bytes, and never over 64.
        assert_eq!(with_tag(&[1 | (31 << 3), 31]), Err(DecodeError::Invalid("key length")));
        assert_eq!(with_tag(&[1 | (31 << 3), 65]), Err(DecodeError::TooLong("key")));
    }

    #[test]
    fn a_piece_and_a_run_signature_round_trip_and_refuse_what_no_czar_sends() {
        let sender = Keypair::from_seed(2).peer_id();
        let piece = Frame::Piece {
            shard: ShardId(4),
            epoch: 3,
            first_seq: 10,
            base: 5,
            after: 99,
            mac: [7; PIECE_MAC_BYTES],
            updates: vec![Update { key: b"e3".to_vec(), op: Op::Patch(vec![0, 5]) }],
        };
        let sig = Frame::RunSig { shard: ShardId(4), epoch: 3, first_seq: 6, count: 5, sig: [3; 64] };
        let bytes = encode_frames(&sender, &[piece.clone(), sig.clone()]);
        assert_eq!(decode_datagram(&bytes).unwrap().frames, vec![piece.clone(), sig.clone()]);
        // 1 + 2 + 1 + 1 + 4 + 4 + 8 + 1 header bytes: the shard's low 16
        // bits, half a base and end, no author or signature.
        assert_eq!(
            piece.to_bytes().len(),
            22 + Update::encoded_len(&Update { key: b"e3".to_vec(), op: Op::Patch(vec![0, 5]) })
        );
        // A piece carries only the low 16 bits of its shard's id.
        let mut wide = piece.clone();
        if let Frame::Piece { shard, .. } = &mut wide {
            *shard = ShardId(0xabcd_0004);
        }
        assert_eq!(decode_datagram(&encode_frames(&sender, &[wide])).unwrap().frames, vec![piece.clone()]);
        for (frame, error) in [
            (Frame::RunSig { shard: ShardId(4), epoch: 3, first_seq: 6, count: 0, sig: [3; 64] }, "run count"),
            (Frame::RunSig { shard: ShardId(4), epoch: 3, first_seq: 0, count: 1, sig: [3; 64] }, "delta sequence"),
            (
                Frame::RunSig { shard: ShardId(4), epoch: 3, first_seq: MAX_SEQ, count: 1, sig: [3; 64] },
                "delta sequence",
            ),
            (
                Frame::Piece {
                    shard: ShardId(4),
                    epoch: 3,
                    first_seq: 1,
                    base: 0,
                    after: 9,
                    mac: [0; PIECE_MAC_BYTES],
                    updates: vec![],
                },
                "empty delta",
            ),
        ] {
            assert_eq!(decode_datagram(&encode_frames(&sender, &[frame])), Err(DecodeError::Invalid(error)));
        }
    }

    #[test]
    fn an_implied_advert_leaves_its_shard_out_and_needs_the_by_run_flag() {
        let sender = Keypair::from_seed(2).peer_id();
        let advert = ShardVersion {
            shard: ShardId(0),
            version: Version::default(),
            checksum: 0,
            backed: true,
            load: None,
            by_run: true,
            implied: true,
        };
        let beat = |a: ShardVersion| Frame::Heartbeat { incarnation: 3, digests: None, czar_of: vec![a] };
        let named = beat(ShardVersion { shard: ShardId(9), implied: false, ..advert });
        assert_eq!(beat(advert).to_bytes().len() + 8, named.to_bytes().len(), "8 bytes of shard id saved");
        assert_eq!(decode_datagram(&encode_frames(&sender, &[beat(advert)])).unwrap().frames, vec![beat(advert)]);
        // Flags byte first: implied without by run is not an encoding.
        let mut bytes = encode_frames(&sender, &[beat(advert)]);
        let flags = bytes.len() - 1;
        assert_eq!(bytes[flags], ADVERT_BACKED | ADVERT_BY_RUN | ADVERT_IMPLIED);
        bytes[flags] = ADVERT_BACKED | ADVERT_IMPLIED;
        assert_eq!(decode_datagram(&bytes), Err(DecodeError::Invalid("advert flags")));
    }

    #[test]
    fn every_frame_round_trips() {
        let sender = Keypair::from_seed(2).peer_id();
        for f in sample_frames() {
            let bytes = encode_frames(&sender, std::slice::from_ref(&f));
            let d = decode_datagram(&bytes).unwrap();
            assert_eq!(d.sender, sender);
            assert_eq!(d.frames, vec![f]);
        }
        let all = sample_frames();
        let bytes = encode_frames(&sender, &all);
        assert!(bytes.len() <= MAX_DATAGRAM_BYTES);
        assert_eq!(decode_datagram(&bytes).unwrap().frames, all);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let sender = Keypair::from_seed(2).peer_id();
        let bytes = encode_frames(&sender, &sample_frames());
        for cut in 0..bytes.len() {
            // A cut at a frame boundary is a valid shorter datagram; anything else must fail cleanly.
            let _ = decode_datagram(&bytes[..cut]);
        }
        assert_eq!(decode_datagram(&bytes[..5]), Err(DecodeError::Truncated));
        assert_eq!(decode_datagram(&bytes[..HEADER_BYTES]), Err(DecodeError::Empty));
    }

    #[test]
    fn header_errors_are_named() {
        let sender = Keypair::from_seed(2).peer_id();
        let mut bytes = encode_frames(&sender, &[Frame::SyncReq]);
        bytes[2] = 99;
        assert_eq!(decode_datagram(&bytes), Err(DecodeError::UnsupportedVersion(99)));
        bytes[2] = PROTOCOL_VERSION;
        bytes[0] = b'X';
        assert_eq!(decode_datagram(&bytes), Err(DecodeError::BadMagic));
        bytes[0] = MAGIC[0];
        bytes[3] = 1;
        assert_eq!(decode_datagram(&bytes), Err(DecodeError::UnknownFlags(1)));
        bytes[3] = 0;
        bytes[HEADER_BYTES] = 200;
        assert_eq!(decode_datagram(&bytes), Err(DecodeError::UnknownFrame(200)));
        assert_eq!(decode_datagram(&[0u8; MAX_DATAGRAM_BYTES + 1]), Err(DecodeError::Oversized));
    }

    #[test]
    fn lying_counts_do_not_allocate() {
        let sender = Keypair::from_seed(2).peer_id();
        let mut bytes = Vec::new();
        put_header(&mut bytes, &sender);
        bytes.push(FrameKind::Members as u8);
        put_varint(&mut bytes, u64::MAX >> 1);
        assert_eq!(decode_datagram(&bytes), Err(DecodeError::Truncated));
    }

    #[test]
    fn varints_reject_overlong_encodings() {
        let mut out = Vec::new();
        put_varint(&mut out, u64::MAX);
        assert_eq!(out.len(), 10);
        assert_eq!(Reader::new(&out).varint(), Ok(u64::MAX));
        let overlong = [0xffu8; 11];
        assert_eq!(Reader::new(&overlong).varint(), Err(DecodeError::BadVarint));
        for v in [0u64, 127, 128, 16383, 16384, 1 << 40] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
        }
    }
}
