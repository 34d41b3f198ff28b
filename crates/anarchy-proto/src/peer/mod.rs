//! Peer: one player's protocol state machine, and the only way in or out.
//!
//! Inputs are `handle_datagram`, `handle_timeout` and the commands (`join`,
//! `declare_shard`, `write`, `leave`); outputs are drained with
//! `poll_transmit`, `poll_event` and `poll_timeout`. After any input, drain
//! `poll_transmit` and `poll_event`, then sleep until `poll_timeout`. The peer
//! never reads a clock, opens a socket or draws entropy of its own: the same
//! inputs give the same outputs, byte for byte.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::compress;
use crate::config::Config;
use crate::event::{Event, StepDownReason, WriteFailure, WriteId};
use crate::fragment::{self, Reassembly};
use crate::identity::{Keypair, PeerId, PublicKey};
use crate::limits::SourceLimits;
use crate::membership::{LeaveReason, Member, Membership, MergeOutcome};
use crate::proof::{self, BatchProof, Signature};
use crate::replica::{Checksum, LogEntry, Replica, Version};
use crate::seal::{Opener, Sealer};
use crate::shards::{
    claim_strength, ranking, ranking_eligible, RankCache, RankedTops, ShardError, ShardId, ShardInfo, ShardMap,
};
use crate::stats::{DropReason, Stats};
use crate::time::Instant;
mod admission;
mod critical;
mod failover;
mod split;
mod status;
mod stream;

pub use critical::{Proposal, Validator};
pub use split::RESERVED_KEY_PREFIX;
pub use status::{LatencyView, MemberView, PeerStatus, ShardView};

use crate::wire::{
    self, Frame, FrameKind, MemberRecord, MemberStatus, Op, ShardDecl, ShardLoad, ShardVersion, Update, ViewDigests,
    HEADER_BYTES, MAX_EPOCH, MAX_FRAME_BYTES, MAX_KEY_BYTES, MAX_PLAIN_DATAGRAM_BYTES, MAX_VALUE_BYTES,
};

/// Sequence numbers a peer accepts from others stay this far below the wire
/// limit, so its own writes after them can never produce an undecodable frame.
const SEQ_HEADROOM: u64 = 1 << 32;
/// How long we remember having sent an authority hint (hints are rate-limited
/// to one per heartbeat per shard and address; older entries are useless).
const HINT_MEMORY: Duration = Duration::from_secs(1);
/// A czar's adverts carry its shards' load every this many ticks (a second at 50 ms).
const LOAD_ADVERT_TICKS: u64 = 20;
/// Most updates sent in answer to one repair request.
const MAX_REPAIR_UPDATES: usize = 256;
/// An answer to one repair request stops after the run that reaches this
/// many bytes (the first run always goes).
const MAX_REPAIR_BYTES: usize = 32 * 1024;
/// Most chunks in one snapshot (bounds reassembly memory to about 4.5 MiB).
const MAX_SNAPSHOT_CHUNKS: u16 = 4096;
/// Bytes a snapshot frame spends on everything but its entries (upper bound).
const SNAPSHOT_FRAME_OVERHEAD: usize = 1 + 1 + 8 + 15 + 16 + 16 + 16 + 64 + 3 + 3 + 3;
/// Bytes a delta frame spends on everything but its updates (upper bound:
/// type, shard, epoch, first seq, base, after, author, signature, count).
const DELTA_FRAME_OVERHEAD: usize = 1 + 8 + 5 + 10 + 8 + 8 + 16 + 64 + 3;
/// The most update bytes one run holds: it must fit one `Delta` frame when
/// it is passed on, author included (an open run closes before it would
/// grow past this).
const MAX_RUN_BYTES: usize = MAX_FRAME_BYTES - DELTA_FRAME_OVERHEAD;
/// A piece's frame bytes before its updates, at most: type, shard, epoch,
/// first seq, base, after, MAC (a capacity hint).
const PIECE_HEADER_BYTES: usize = 1 + 2 + 5 + 10 + 4 + 4 + wire::PIECE_MAC_BYTES;
/// Shards besides the first whose low 16 bits a piece's MAC is tried
/// against (see `Peer::resolve_piece_shard`): ids are hashes, so two known shards
/// rarely share them, and a member that declared many that do to make
/// receivers work gets this many MACs per piece at most.
const MAX_PIECE_SHARD_CANDIDATES: usize = 7;
/// Pair keys kept (members beyond this are computed again when needed).
const MAX_PAIR_KEYS: usize = 4096;
/// Members per gossiped member-list frame.
const MEMBERS_PER_FRAME: usize = 12;
/// Shard declarations per gossiped shard-list frame.
const SHARDS_PER_FRAME: usize = 12;
/// Forwarded writes remembered per czar for de-duplicating retries.
const MAX_REMEMBERED_FORWARDS: usize = 4096;
/// Most forwarded writes sent again per `forward_retry_interval` (see
/// `Peer::take_forward_retry`). Loss takes one write in a hundred: this is
/// far more than a writer at 200 writes a second needs to cover it.
const FORWARD_RETRY_WINDOW: usize = 16;
/// Bits of an epoch that name the peer that made the claim (see
/// `claimant_tag`).
const EPOCH_TAG_BITS: u32 = 12;

/// The low bits every epoch a peer claims carries: the first bits of its id
/// (a hash of its public key). An epoch is a round number above these bits, so
/// two peers claiming from the same round never pick the same epoch (but for
/// a 1-in-4096 clash of tags): whatever raced, the later epoch wins, and no
/// two czars write in one epoch.
pub(crate) fn claimant_tag(by: &PeerId) -> u32 {
    u32::from(u16::from_be_bytes([by.0[0], by.0[1]])) >> (16 - EPOCH_TAG_BITS)
}

/// The round number of an epoch (the bits above the claimant's tag).
pub(crate) fn epoch_round(e: u32) -> u32 {
    e >> EPOCH_TAG_BITS
}

/// An epoch as people read it: its round number, a dot, and the claimant's
/// 12-bit tag in hex (the first three hex digits of the claimant's id):
/// `17.896` for epoch 71 830. Epochs compare as plain numbers; this only
/// shows who claimed which round.
pub fn epoch_label(e: u32) -> String {
    format!("{}.{:03x}", epoch_round(e), e & ((1 << EPOCH_TAG_BITS) - 1))
}

/// The epoch of a claim made alone by `by` (a first claim, a plain claim, a
/// hand-over): above `e`, with a round number that is 1 mod 4. Round numbers
/// come in three classes so that claims made without asking a majority never
/// land on the round another kind of claim may take at the same moment, even
/// when two claimants' tags clash:
///
/// - even: recovery rounds (`round_epoch`), which collect promises, so a czar
///   whose uplink jams (silent to the others while it hands its shard over)
///   never writes in the epoch a round takes;
/// - 1 mod 4: claims and hand-overs;
/// - 3 mod 4: re-assertions of a backed claim (`reassert_epoch`), so the backed
///   czar re-asserting over a provisional claim at a heal never shares an
///   epoch with that provisional czar's hand-over made from the same epoch
///   (isolate-and-stall, 32 peers, seed 33).
///
/// The claimant's tag then keeps two claims of one class apart: two first
/// claims while a session forms (seed 329), or two re-assertions made from
/// different epochs that reach the same round (seed 685).
///
/// Saturates at `u32::MAX`; callers refuse a result above `MAX_EPOCH`.
pub(crate) fn unilateral_epoch(e: u32, by: &PeerId) -> u32 {
    next_epoch_of_class(e, 1, by)
}

/// The epoch a recovery round by `by` asks to be promised: above `e`, with an
/// **even** round number (see `unilateral_epoch`).
pub(crate) fn round_epoch(e: u32, by: &PeerId) -> u32 {
    let next = epoch_round(e).saturating_add(1);
    tagged(next.saturating_add(next % 2), by)
}

/// The epoch of a re-assertion by `by`: above `e`, with a round number that is
/// 3 mod 4 (see `unilateral_epoch`).
pub(crate) fn reassert_epoch(e: u32, by: &PeerId) -> u32 {
    next_epoch_of_class(e, 3, by)
}

/// The smallest epoch claimed by `by` above `e` whose round number is `class`
/// mod 4.
fn next_epoch_of_class(e: u32, class: u32, by: &PeerId) -> u32 {
    let next = epoch_round(e).saturating_add(1);
    let skip = (class + 4 - next % 4) % 4;
    tagged(next.saturating_add(skip), by)
}

/// The epoch of round `round` claimed by `by` (`u32::MAX` when the round does
/// not fit).
fn tagged(round: u32, by: &PeerId) -> u32 {
    if round > u32::MAX >> EPOCH_TAG_BITS {
        return u32::MAX;
    }
    (round << EPOCH_TAG_BITS) | claimant_tag(by)
}

/// Forwarded writes a shard's heir holds while its czar is suspected.
const MAX_HELD_FORWARDS: usize = 1024;

/// A datagram for the driver to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub destination: SocketAddr,
    /// The bytes, sealed; never more than [`crate::MAX_DATAGRAM_BYTES`].
    pub payload: Vec<u8>,
}

/// What a write did right away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// We are the czar: applied now at this version, the delta goes out on the next flush.
    Applied(Version),
    /// The value was already there: nothing changes and nothing is sent.
    Unchanged(Version),
    /// Sent (or queued) to the czar; an [`Event::WriteApplied`] or
    /// [`Event::WriteFailed`] with this id follows.
    Forwarded(WriteId),
}

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The shard was never declared.
    #[error("shard {0} is not declared")]
    UnknownShard(ShardId),
    /// Keys must not be empty.
    #[error("key is empty")]
    EmptyKey,
    /// Key longer than [`MAX_KEY_BYTES`].
    #[error("key of {0} bytes exceeds {MAX_KEY_BYTES}")]
    KeyTooLong(usize),
    /// Value longer than [`MAX_VALUE_BYTES`].
    #[error("value of {0} bytes exceeds {MAX_VALUE_BYTES}")]
    ValueTooLarge(usize),
    /// This peer has left the session.
    #[error("this peer has left the session")]
    NotInSession,
    /// Too many writes are waiting for their czar.
    #[error("too many writes waiting for a czar ({0})")]
    TooManyPending(usize),
    /// A stream value longer than [`crate::wire::MAX_STREAM_VALUE_BYTES`].
    #[error("stream value of {0} bytes exceeds {max}", max = crate::wire::MAX_STREAM_VALUE_BYTES)]
    StreamValueTooLarge(usize),
    /// Stream keys are written only by their shard's czar, and we are not it (yet).
    #[error("not the czar of shard {0}: only a shard's czar writes its stream keys")]
    NotCzar(ShardId),
    /// The shard's stream keys and values would pass 16 KiB.
    #[error("the stream keys of shard {0} would pass 16 KiB")]
    StreamsFull(ShardId),
    /// Keys starting with bytes `FF FF` belong to the protocol.
    #[error("keys starting with bytes FF FF are reserved for the protocol")]
    ReservedKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Joining { since: Instant, last_sent: Option<Instant> },
    Joined,
    Left,
}

/// A write of ours waiting for its czar's acknowledgement.
#[derive(Debug)]
struct PendingWrite {
    shard: ShardId,
    update: Update,
    created: Instant,
    last_sent: Option<(Instant, PeerId)>,
    /// The shard we first sent it to and that shard's czar, when that shard
    /// split or merged back before the write was acknowledged: that czar may
    /// have applied it, so retries ask it first (see `retry_pending`).
    via: Option<(ShardId, PeerId)>,
}

/// A (key, value) pair of a snapshot.
type Entry = wire::SnapshotEntry;

/// The fields every chunk of one snapshot repeats.
struct SnapshotHeader {
    shard: ShardId,
    version: Version,
    czar: PeerId,
    checksum: [u8; 16],
    chunks: u16,
    resync: bool,
    signer: PeerId,
    sig: Signature,
}

#[derive(Debug)]
struct Assembly {
    version: Version,
    czar: PeerId,
    checksum: [u8; 16],
    signer: PeerId,
    sig: Signature,
    chunks: Vec<Option<Vec<Entry>>>,
    received: usize,
    started: Instant,
}

/// A shard's replica plus the bookkeeping this peer keeps around it.
#[derive(Debug, Default)]
struct ShardState {
    replica: Replica,
    /// Updates applied as czar and not yet sent.
    outgoing: Vec<LogEntry>,
    /// As new czar: not ready until our state reaches this (seq, short checksum).
    catch_up_to: Option<(u64, u64)>,
    /// Who we catch up from (a member known to hold the starting state).
    catch_up_source: Option<PeerId>,
    /// While catching up: our (epoch, seq) and since when it has not moved.
    catch_up_still: Option<((u32, u64), Instant)>,
    /// Our state disagrees with the czar's: the next repair asks for a snapshot.
    want_snapshot: bool,
    /// Since when our version has disagreed with the czar's advertised one.
    out_of_sync_since: Option<Instant>,
    /// The czar's last advert: epoch, seq, checksum, and the bits of the
    /// checksum it states (all of them, or the low 32 of a piece's end).
    czar_advert: Option<(u32, u64, u64, u64)>,
    last_repair: Option<Instant>,
    /// Where we asked last, and our seq then: a catching-up czar whose last
    /// request brought nothing asks someone else next.
    last_repair_asked: Option<(PeerId, u64)>,
    assembly: Option<Assembly>,
    /// Forwarded writes applied as czar: (origin, write id) → version.
    applied_forwards: BTreeMap<(PeerId, u64), Version>,
    /// When we accepted the current czar's claim from someone else.
    czar_since: Instant,
    /// The claim (epoch, czar) whose standing we only assumed: we took it
    /// from a frame that implies it (a delta, a snapshot) and have not heard
    /// it stated since. A hint never states such a standing as backed.
    standing_assumed: Option<(u32, PeerId)>,
    /// When we last re-asserted a backed claim (see `reassert`).
    last_reassert: Option<Instant>,
    /// A recovery round of ours claiming this shard from this gone czar timed
    /// out: a plain claim may follow.
    round_failed: Option<PeerId>,
    /// Since when our own claim to this shard has been provisional (see
    /// `reaffirm_provisional_claims`).
    provisional_since: Option<Instant>,
    /// The highest epoch we promised in a recovery round, and to whom.
    promised: Option<(u32, PeerId)>,
    /// When we made that promise (a promise of a round that never completed
    /// lapses, so a wrongly suspected czar is not fenced off for good).
    promised_at: Instant,
    /// Critical-update votes, prepared proposals and decisions.
    critical: critical::CriticalState,
    /// Update rates for the status snapshot.
    load: status::ShardLoad,
    applied_order: VecDeque<(PeerId, u64)>,
    /// Writes forwarded to us as the shard's heir while its czar is suspected
    /// (or while we catch up as its new czar): applied once we are ready.
    held_forwards: VecDeque<HeldForward>,
    /// Stream keys (see `stream`).
    streams: stream::ShardStreams,
    /// The load our czar last advertised (§6.17).
    czar_load: Option<ShardLoad>,
    /// Split bookkeeping (see `split`).
    split: split::SplitState,
    /// As czar: our run that went out in pieces and is not signed yet.
    open_run: Option<OpenRun>,
    /// A run signature that came before the last of its updates (they were
    /// being repaired): tried again once we hold them.
    early_run_sig: Option<EarlyRunSig>,
}

/// A [`Frame::RunSig`] kept until we hold its run (see `early_run_sig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EarlyRunSig {
    author: PeerId,
    epoch: u32,
    first_seq: u64,
    count: u32,
    sig: Signature,
}

/// Where a run of ours ends: (shard, version, short checksum).
type RunEnd = (ShardId, Version, u64);

/// A czar's run sent in pieces ([`Frame::Piece`]) and not yet signed: our
/// log's updates `first_seq..=last_seq` of `epoch` (§6.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpenRun {
    epoch: u32,
    first_seq: u64,
    last_seq: u64,
    /// Our short checksum before `first_seq`.
    base: u64,
    /// The updates' bytes as they travel: the run must fit one `Delta` when it is passed on.
    bytes: usize,
    /// When its first piece went out.
    opened: Instant,
}

/// A forwarded write held by a shard's heir (see `ShardState::held_forwards`).
#[derive(Debug)]
struct HeldForward {
    origin: PeerId,
    write_id: u64,
    update: Update,
    reply_to: SocketAddr,
    at: Instant,
}

impl ShardState {
    fn is_ready_czar(&self, me: PeerId) -> bool {
        self.replica.czar == Some(me) && self.catch_up_to.is_none()
    }

    /// Whether we only assumed the standing of `czar`'s claim at `epoch`
    /// (see `standing_assumed`).
    fn assumes_standing(&self, epoch: u32, czar: PeerId) -> bool {
        self.standing_assumed == Some((epoch, czar))
    }

    /// The shard's load as we measure it over the last window (as its czar).
    fn own_load(&self) -> ShardLoad {
        let (writes, bytes) = self.load.rates();
        ShardLoad {
            writes_per_sec: writes.round().clamp(0.0, f64::from(u32::MAX)) as u32,
            bytes_per_sec: bytes.round().clamp(0.0, f64::from(u32::MAX)) as u32,
            keys: u32::try_from(self.replica.len()).unwrap_or(u32::MAX),
        }
    }
}

/// One player's protocol state machine. See the module docs for the rules.
pub struct Peer {
    config: Config,
    keypair: Keypair,
    id: PeerId,
    /// What every signature is bound to, so none can be replayed in another session.
    session_tag: [u8; 32],
    rng: ChaCha8Rng,
    phase: Phase,
    bootstraps: Vec<SocketAddr>,
    members: Membership,
    shards: ShardMap,
    states: BTreeMap<ShardId, ShardState>,
    next_tick: Instant,
    outbox: BTreeMap<SocketAddr, Vec<Queued>>,
    /// The shards our runs of this flush bring to our current state, with
    /// that state: their heartbeat adverts may go by run.
    fresh_runs: Vec<(ShardId, Version, u64)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    pending: BTreeMap<u64, PendingWrite>,
    /// Critical writes we made that are not decided yet.
    pending_critical: BTreeMap<u64, PendingWrite>,
    /// The game's rule for critical updates (none: accept all).
    validator: Option<Validator>,
    next_write_id: u64,
    last_sync_request: Option<Instant>,
    /// The view digests our heartbeats last stated, and when they last
    /// changed: for `sync_interval` after a change every heartbeat carries
    /// them, otherwise only every `sync_interval` per member.
    stated_digests: Option<(ViewDigests, Instant)>,
    /// Where we last asked for the lists: its answer is taken even if we do
    /// not know the sender yet (a joiner whose welcomer's lists were lost).
    sync_target: Option<SocketAddr>,
    last_refute_hint: BTreeMap<PeerId, Instant>,
    /// When we entered the session.
    joined_at: Instant,
    /// When we last told an address about a shard's authority.
    last_hint: BTreeMap<(ShardId, SocketAddr), Instant>,
    /// The member that let us in: its lists are accepted even if they arrive
    /// before we know it.
    welcomer: Option<PeerId>,
    /// Recovery rounds we run, by the silent peer they are about.
    takeovers: BTreeMap<PeerId, failover::Takeover>,
    /// Suspects whose round is not ours to run, with the view (healthy members
    /// and the shards the suspect holds) that answer was for.
    not_ours: BTreeMap<PeerId, (u64, u64)>,
    /// When a member may next cross the suspicion threshold.
    next_suspect_check: Instant,
    /// Members' suspicion deadlines, earliest first (see `check_suspicions`).
    suspicion: failover::SuspicionQueue,
    /// Bumped whenever we mark a member suspected or clear its suspicion
    /// (the membership clears it only along with a change of its digest).
    suspect_gen: u64,
    /// The view in which `start_takeovers` last found nothing to do.
    takeovers_idle: Option<(u64, u64, u64)>,
    /// Lifeguard-style local health: 0 is healthy; each failed round slows suspicion.
    local_health: u32,
    /// A tick passed: heartbeats go out with the next flush.
    heartbeat_due: bool,
    /// Ticks run since we joined: picks which members an idle peer beats this tick.
    ticks: u64,
    /// The top-ranked live members of every shard, for the member view and
    /// shard map digests given (see `top_ranked`).
    ranked_cache: RankCache,
    /// `ranked_cache`'s tops filled up with members that are not
    /// czar-eligible, when too few eligible ones are live (§6.5).
    ranked_filled: Option<RankedTops>,
    /// The member view and shard map digests `ranked_cache` is current for.
    ranked_key: Option<(u64, u64)>,
    /// Deltas of forwarded writes wait in `outgoing` until then (see
    /// `Config::delta_batch_delay`), with the acknowledgements that name them.
    deltas_held_until: Option<Instant>,
    held_acks: Vec<(SocketAddr, Vec<u8>)>,
    /// The pair key we share with each member we sent a piece to or took
    /// one from (`None`: its public key gives none), see `proof::pair_key`.
    pair_keys: std::collections::HashMap<PeerId, Option<[u8; 32]>>,
    /// The latest time we were given (for status and event stamps).
    clock: Instant,
    /// When we last resumed after a stall (no call for longer than
    /// `suspect_after`: others may have suspected us and moved our shards).
    resumed_at: Option<Instant>,
    /// Link measurements, rates and recent events for the status snapshot.
    telemetry: status::Telemetry,
    stats: Stats,
    /// Seals what we send (our boot and counter).
    sealer: Sealer,
    /// Opens what we receive (replay windows per sender).
    opener: Opener,
    /// Rate limits and blocks per source address.
    limits: SourceLimits,
    /// Address checks in flight, by member.
    addr_checks: BTreeMap<PeerId, admission::AddrCheck>,
    /// Short indexes given and told (see `admission`).
    short_ids: admission::ShortIds,
    /// The number of the next frame we send in fragments.
    next_fragment_id: u32,
    /// Frames members send us in fragments, being joined.
    reassembly: Reassembly,
    /// Send budgets and stream cursors per member address (see `stream`).
    stream_links: BTreeMap<SocketAddr, stream::StreamLink>,
    /// Whether our uplink queues what we send (probe round trips, `uplink`).
    uplink: crate::uplink::UplinkWatch,
    /// (start, count) of forwarded writes sent again in the current
    /// `forward_retry_interval` ([`FORWARD_RETRY_WINDOW`]).
    forward_retries: (Instant, usize),
    /// A stream key was written since the last flush.
    streams_dirty: bool,
    /// Flushes so far: which destination goes first.
    flushes: u64,
    #[cfg(feature = "faults")]
    fault: Option<Fault>,
    #[cfg(feature = "faults")]
    fault_fired: bool,
}

/// Test-only deliberate bugs, to prove that the simulator's checkers catch them.
#[cfg(feature = "faults")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Skip the next remote update (its sequence number still advances) and
    /// never repair the divergence that follows.
    SkipDeltaSilently,
    /// Take every run's signature and every piece's MAC as valid (proves the
    /// simulator catches forgeries).
    AcceptAnySignature,
    /// On a split, put one key of child 0 into child 1 (proves the simulator
    /// catches a split that loses or misplaces keys).
    MisplaceKeyOnSplit,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("id", &self.id).field("phase", &self.phase).finish_non_exhaustive()
    }
}

impl Peer {
    /// A peer with identity `keypair`, reachable at `local_addr` (the address
    /// other members should send to), drawing its randomness from `seed`.
    pub fn new(config: Config, keypair: Keypair, local_addr: SocketAddr, seed: u64, now: Instant) -> Self {
        let id = keypair.peer_id();
        let me = Member {
            id,
            public_key: keypair.public_key(),
            addr: local_addr,
            incarnation: 0,
            status: MemberStatus::Alive,
            last_heard: now,
            left_at: None,
            suspected: false,
            known_since: now,
            soft_left: false,
            czar_eligible: config.czar_eligible,
            said_goodbye: false,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // The boot comes from the seed's second stream, so the main stream (and
        // every run replayed from a seed) is the same as without it.
        let mut boot_rng = ChaCha8Rng::seed_from_u64(seed);
        boot_rng.set_stream(1);
        let sealer = Sealer::new(&config.session_secret, &id, boot_rng.gen());
        // Fragment numbers start at random, so a restarted peer's pieces never
        // join with its previous life's.
        let next_fragment_id = boot_rng.gen();
        let reassembly = Reassembly::new(config.reassembly_settings());
        let opener = Opener::new(config.session_secret.clone());
        let limits = SourceLimits::new(config.limit_settings());
        // Spread first ticks so peers started together do not beat in lockstep.
        let interval = config.heartbeat_interval.as_micros().max(1) as u64;
        let next_tick = now + Duration::from_micros(rng.gen_range(0..interval));
        let session_tag = proof::session_tag(&config.session_secret);
        Peer {
            config,
            keypair,
            id,
            session_tag,
            rng,
            phase: Phase::Idle,
            bootstraps: Vec::new(),
            members: Membership::new(me),
            shards: ShardMap::default(),
            states: BTreeMap::new(),
            next_tick,
            outbox: BTreeMap::new(),
            fresh_runs: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            pending: BTreeMap::new(),
            pending_critical: BTreeMap::new(),
            validator: None,
            next_write_id: 1,
            last_sync_request: None,
            stated_digests: None,
            sync_target: None,
            last_refute_hint: BTreeMap::new(),
            joined_at: now,
            last_hint: BTreeMap::new(),
            welcomer: None,
            takeovers: BTreeMap::new(),
            not_ours: BTreeMap::new(),
            next_suspect_check: next_tick,
            suspicion: failover::SuspicionQueue::default(),
            suspect_gen: 0,
            takeovers_idle: None,
            local_health: 0,
            heartbeat_due: false,
            ticks: 0,
            ranked_cache: RankCache::default(),
            ranked_filled: None,
            ranked_key: None,
            deltas_held_until: None,
            held_acks: Vec::new(),
            pair_keys: std::collections::HashMap::new(),
            clock: now,
            resumed_at: None,
            telemetry: status::Telemetry::default(),
            stats: Stats::default(),
            sealer,
            opener,
            limits,
            addr_checks: BTreeMap::new(),
            short_ids: Default::default(),
            next_fragment_id,
            reassembly,
            stream_links: BTreeMap::new(),
            uplink: Default::default(),
            forward_retries: (now, 0),
            streams_dirty: false,
            flushes: 0,
            #[cfg(feature = "faults")]
            fault: None,
            #[cfg(feature = "faults")]
            fault_fired: false,
        }
    }

    // ----- accessors -------------------------------------------------------

    /// Our peer id.
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// Our public key.
    pub fn public_key(&self) -> PublicKey {
        self.keypair.public_key()
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether we are in a session (joined and not left).
    pub fn is_joined(&self) -> bool {
        self.phase == Phase::Joined
    }

    /// Whether we have left.
    pub fn has_left(&self) -> bool {
        self.phase == Phase::Left
    }

    /// Every member record we hold, tombstones included, in id order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.iter()
    }

    /// Live members, ourselves included, in id order.
    pub fn live_members(&self) -> impl Iterator<Item = &Member> {
        self.members.alive()
    }

    /// Declared shards, in id order.
    pub fn shards(&self) -> impl Iterator<Item = &ShardInfo> {
        self.shards.iter()
    }

    /// A declared shard.
    pub fn shard(&self, shard: ShardId) -> Option<&ShardInfo> {
        self.shards.get(shard)
    }

    /// The czar we follow for `shard`.
    pub fn czar_of(&self, shard: ShardId) -> Option<PeerId> {
        self.states.get(&shard)?.replica.czar
    }

    /// The ranked backups of `shard` in our live view (the peers that would
    /// claim it next, strongest first, the current czar excluded).
    pub fn backups_of(&self, shard: ShardId) -> Vec<PeerId> {
        let (Some(info), Some(st)) = (self.shards.get(shard), self.states.get(&shard)) else {
            return Vec::new();
        };
        let czar = st.replica.czar;
        let live: Vec<&PeerId> = self.members.alive_ids().filter(|p| Some(**p) != czar).collect();
        ranking_eligible(info, live, &self.ineligible(), self.config.backups)
    }

    /// `shard`'s replica on this peer (state, version, checksum).
    pub fn replica(&self, shard: ShardId) -> Option<&Replica> {
        self.states.get(&shard).map(|s| &s.replica)
    }

    /// A key's value in `shard` (read from the child that holds it, if the
    /// shard split: see [`Peer::shard_of`]).
    pub fn get(&self, shard: ShardId, key: &[u8]) -> Option<&[u8]> {
        let shard = self.shard_of(shard, key)?;
        self.states.get(&shard)?.replica.get(key)
    }

    /// The shard's current version.
    pub fn version_of(&self, shard: ShardId) -> Option<Version> {
        Some(self.states.get(&shard)?.replica.version())
    }

    /// The shard's content checksum.
    pub fn checksum_of(&self, shard: ShardId) -> Option<Checksum> {
        Some(self.states.get(&shard)?.replica.checksum())
    }

    /// A one-line dump of this peer's bookkeeping for `shard`, for debugging
    /// tools (the format is not stable).
    pub fn debug_shard(&self, shard: ShardId) -> String {
        let Some(st) = self.states.get(&shard) else { return "unknown shard".into() };
        format!(
            "czar {:?} prev {:?} epoch {} ({}) backed {} start {} seq {} want_snapshot {} catch_up {:?} source {:?} advert {:?} since {:?} gap {} last_repair {:?} streams {} log {}",
            st.replica.czar,
            st.replica.prev_czar,
            st.replica.epoch,
            epoch_label(st.replica.epoch),
            st.replica.backed,
            st.replica.epoch_start_seq,
            st.replica.seq(),
            st.want_snapshot,
            st.catch_up_to,
            st.catch_up_source,
            st.czar_advert,
            st.out_of_sync_since,
            st.replica.has_gap(),
            st.last_repair,
            st.streams.debug(),
            st.replica.debug_log(),
        )
    }

    /// `shard`'s load: measured here if we are its czar, otherwise as its
    /// czar last advertised it (about once a second). `None` before either.
    pub fn shard_load(&self, shard: ShardId) -> Option<ShardLoad> {
        let st = self.states.get(&shard)?;
        if st.is_ready_czar(self.id) {
            Some(st.own_load())
        } else {
            st.czar_load
        }
    }

    /// Writes waiting for a czar's acknowledgement.
    pub fn pending_writes(&self) -> usize {
        self.pending.len()
    }

    /// Test-only: makes this peer deliberately broken (see [`Fault`]).
    #[cfg(feature = "faults")]
    pub fn inject_fault(&mut self, fault: Fault) {
        self.fault = Some(fault);
    }

    #[cfg(feature = "faults")]
    fn never_resync(&self) -> bool {
        self.fault == Some(Fault::SkipDeltaSilently)
    }

    #[cfg(not(feature = "faults"))]
    fn never_resync(&self) -> bool {
        false
    }

    #[cfg(feature = "faults")]
    fn misplaces_on_split(&self) -> bool {
        self.fault == Some(Fault::MisplaceKeyOnSplit)
    }

    #[cfg(not(feature = "faults"))]
    fn misplaces_on_split(&self) -> bool {
        false
    }

    // ----- commands ---------------------------------------------------------

    /// Declares a shard (idempotent). Declarations spread to every member; a
    /// shard with a `preferred` czar goes to that peer whenever it is live.
    pub fn declare_shard(
        &mut self,
        now: Instant,
        name: &str,
        preferred: Option<PeerId>,
    ) -> Result<ShardId, ShardError> {
        let (id, changed) = self.shards.declare(name, preferred)?;
        if changed {
            self.shard_declared(id);
            if self.phase == Phase::Joined {
                let decl = self.shards.get(id).expect("just declared").decl();
                self.broadcast(&Frame::Shards(vec![decl]));
                self.reconcile_authority(now);
            }
        }
        Ok(id)
    }

    /// Joins the session through any of `bootstraps`; with none, starts a new
    /// session of one. The join is re-sent until a member answers.
    pub fn join(&mut self, now: Instant, bootstraps: &[SocketAddr]) {
        if self.phase == Phase::Joined {
            return;
        }
        if self.phase == Phase::Left {
            // Rejoining after a leave: a new incarnation, so our old tombstone loses.
            let me = self.members.myself_mut();
            me.incarnation = (me.incarnation + 1).min(MAX_EPOCH);
            me.status = MemberStatus::Alive;
            me.left_at = None;
        }
        self.bootstraps = bootstraps.to_vec();
        if bootstraps.is_empty() {
            self.enter_session(now);
        } else {
            self.phase = Phase::Joining { since: now, last_sent: None };
            self.send_join(now);
        }
    }

    /// Leaves the session: hands our shards to their next czars and announces
    /// the leave. Drain `poll_transmit` afterwards so the announcement goes out.
    pub fn leave(&mut self, now: Instant) {
        self.note_time(now);
        if self.phase != Phase::Joined {
            self.phase = Phase::Left;
            return;
        }
        // A shard whose recovered proposals are unfinished is not handed
        // over: the goodbye lets the next czar take it by a recovery round,
        // which collects the voters' copies again.
        let mine: Vec<ShardId> = self
            .states
            .iter()
            .filter(|(_, s)| s.replica.czar == Some(self.id) && !s.critical.finishing_recovered())
            .map(|(id, _)| *id)
            .collect();
        for shard in mine {
            let info = self.shards.get(shard).expect("state implies declaration").clone();
            let others: Vec<&PeerId> = self.members.alive_ids().filter(|p| **p != self.id).collect();
            if let Some(next) = ranking_eligible(&info, others, &self.ineligible(), 1).first().copied() {
                self.hand_over(shard, next);
            }
        }
        // Held deltas (and their acks) leave before the goodbye.
        self.flush_outgoing();
        let incarnation = self.members.myself().incarnation;
        self.broadcast(&Frame::Leave { incarnation });
        self.flush();
        self.phase = Phase::Left;
        self.members.myself_mut().status = MemberStatus::Left;
        let pending = std::mem::take(&mut self.pending).into_iter().chain(std::mem::take(&mut self.pending_critical));
        for (id, p) in pending.collect::<Vec<_>>() {
            self.push_event(Event::WriteFailed { write: WriteId(id), shard: p.shard, reason: WriteFailure::Left });
        }
    }

    /// Sets `key` in `shard` to `value`.
    pub fn write(
        &mut self,
        now: Instant,
        shard: ShardId,
        key: &[u8],
        value: &[u8],
    ) -> Result<WriteOutcome, WriteError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(WriteError::ValueTooLarge(value.len()));
        }
        self.submit(now, shard, Update { key: key.to_vec(), op: Op::Put(value.to_vec()) })
    }

    /// Removes `key` from `shard`.
    pub fn delete(&mut self, now: Instant, shard: ShardId, key: &[u8]) -> Result<WriteOutcome, WriteError> {
        self.submit(now, shard, Update { key: key.to_vec(), op: Op::Delete })
    }

    fn submit(&mut self, now: Instant, shard: ShardId, update: Update) -> Result<WriteOutcome, WriteError> {
        self.note_time(now);
        if self.phase == Phase::Left {
            return Err(WriteError::NotInSession);
        }
        check_key(&update.key)?;
        if !self.states.contains_key(&shard) {
            return Err(WriteError::UnknownShard(shard));
        }
        // A shard that split holds the key in one of its children.
        let shard = self.leaf_of(shard, &update.key);
        let st = &self.states[&shard];
        if self.phase == Phase::Joined && st.is_ready_czar(self.id) && !st.writes_held() {
            // The game's own write: whatever forwarded deltas wait leave with it.
            self.deltas_held_until = None;
            return Ok(self.apply_as_czar(shard, update));
        }
        if self.pending.len() >= self.config.max_pending_writes {
            return Err(WriteError::TooManyPending(self.pending.len()));
        }
        let id = self.next_write_id;
        self.next_write_id += 1;
        self.pending.insert(id, PendingWrite { shard, update, created: now, last_sent: None, via: None });
        self.retry_pending(now, Some(id));
        Ok(WriteOutcome::Forwarded(WriteId(id)))
    }

    fn apply_as_czar(&mut self, shard: ShardId, update: Update) -> WriteOutcome {
        let st = self.states.get_mut(&shard).expect("caller checked");
        debug_assert!(st.is_ready_czar(self.id));
        if !st.replica.changes(&update) {
            return WriteOutcome::Unchanged(st.replica.version());
        }
        let epoch = st.replica.epoch;
        let bytes = update.encoded_len();
        let entry = st.replica.apply_local(epoch, update, self.config.log_capacity);
        let version = Version { epoch, seq: entry.seq };
        st.load.updates += 1;
        st.load.bytes += bytes as u64;
        st.outgoing.push(entry);
        self.stats.updates_written += 1;
        if self.config.update_events {
            self.push_event(Event::Authored { shard, version });
        }
        WriteOutcome::Applied(version)
    }

    /// Applies as czar and returns the version the write ended at.
    fn apply_as_czar_version(&mut self, shard: ShardId, update: Update) -> Version {
        match self.apply_as_czar(shard, update) {
            WriteOutcome::Applied(v) | WriteOutcome::Unchanged(v) => v,
            WriteOutcome::Forwarded(_) => self.states[&shard].replica.version(),
        }
    }

    // ----- driving ------------------------------------------------------------

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Idle | Phase::Left => None,
            Phase::Joining { .. } => Some(self.next_tick),
            Phase::Joined => {
                let next = self.next_tick.min(self.next_suspect_check);
                Some(self.deltas_held_until.map_or(next, |t| next.min(t)))
            }
        }
    }

    /// Runs periodic work whose time has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.note_time(now);
        if self.phase == Phase::Joined && now >= self.next_suspect_check {
            self.check_suspicions(now);
        }
        if now < self.next_tick {
            return;
        }
        self.tick(now);
        self.derive_splits(now);
        // Up to 5% jitter keeps peers from beating in lockstep.
        let interval = self.config.heartbeat_interval;
        let jitter = (interval.as_micros() as u64 / 20).max(1);
        self.next_tick += interval + Duration::from_micros(self.rng.gen_range(0..jitter));
        if self.next_tick <= now {
            self.next_tick = now + self.config.heartbeat_interval;
        }
    }

    /// The next datagram to send, if any. Writes made since the last call
    /// leave together, batched per shard.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.transmits.is_empty() {
            self.flush();
        }
        let t = self.transmits.pop_front()?;
        self.stats.datagrams_out += 1;
        self.stats.bytes_out += t.payload.len() as u64;
        self.note_bytes_out(t.destination, t.payload.len());
        Some(t)
    }

    /// The next event for the game, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Advances our clock, noting a stall: while joined we are called at
    /// least every heartbeat (`poll_timeout`), so a longer gap means the
    /// process was stopped (paused, swapped out, in a debugger).
    pub(super) fn note_time(&mut self, now: Instant) {
        if self.phase == Phase::Joined && now.saturating_duration_since(self.clock) > self.config.suspect_after {
            self.resumed_at = Some(now);
        }
        self.clock = self.clock.max(now);
    }

    /// Just back from a stall: for one `recovery_timeout` we make no
    /// authority change of our own (hand-over, re-assertion). A round about
    /// us may have given our shards to another peer at the very epoch such a
    /// change would create; by then it has completed or failed, and if it
    /// completed its claim has reached us (an answer to our adverts).
    fn just_resumed(&self, now: Instant) -> bool {
        self.resumed_at.is_some_and(|t| now.saturating_duration_since(t) < self.config.recovery_timeout)
    }

    /// Handles a datagram that arrived from `from`. Malformed or unwanted
    /// input is dropped and counted in [`Stats`], never a panic.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.note_time(now);
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        if self.phase == Phase::Left || self.phase == Phase::Idle {
            self.stats.drop(DropReason::NotInSession);
            return;
        }
        // Limits, tag, replay window and decoding: nothing else is done for a datagram that fails them.
        let Some((opened, datagram)) = self.admit(now, from, bytes) else { return };
        let sender = datagram.sender;
        if sender == self.id {
            self.stats.drop(DropReason::Invalid);
            return;
        }
        let mut moved = false;
        let mut was_suspected = false;
        // One look-up of the sender for its bookkeeping; the byte count and
        // the end of a suspicion touch other state, so they follow.
        let member = self.members.get_mut(&sender);
        let known = member.is_some();
        if let Some(m) = member {
            if m.is_alive() {
                m.last_heard = now;
                // Its newest datagram from elsewhere: the address moves only once
                // the member proves it with its key (a delayed one proves nothing).
                moved = opened.newest && m.addr != from;
                was_suspected = m.suspected;
            }
        }
        if known {
            self.note_bytes_in(sender, bytes.len());
        }
        if was_suspected {
            self.heard_from(sender);
        }
        if moved {
            self.check_address(now, sender, from, bytes.len());
        }
        if !opened.short && self.members.is_alive(&sender) {
            self.offer_short_id(now, from, sender, &opened);
        }
        let mut adverts = Vec::new();
        let mut heartbeat = false;
        // The sender's own runs here, by where they end, with the bits of
        // their end checksum they state: adverts by run read them.
        let mut own_runs: Vec<(ShardId, Version, u64, u64)> = Vec::new();
        for mut frame in datagram.frames {
            if let Err(reason) = self.resolve_piece_shard(sender, &mut frame) {
                self.stats.drop(reason);
                continue;
            }
            let own = match &frame {
                Frame::Delta { shard, epoch, first_seq, after, author, updates, .. } if *author == sender => {
                    Some((shard, epoch, first_seq, *after, u64::MAX, updates))
                }
                Frame::Piece { shard, epoch, first_seq, after, updates, .. } => {
                    Some((shard, epoch, first_seq, u64::from(*after), u64::from(u32::MAX), updates))
                }
                _ => None,
            };
            if let Some((shard, epoch, first_seq, after, mask, updates)) = own {
                if !updates.is_empty() {
                    let end = Version { epoch: *epoch, seq: first_seq.saturating_add(updates.len() as u64 - 1) };
                    own_runs.push((*shard, end, after, mask));
                }
            }
            if let Frame::ShortId { boot, index } = frame {
                self.handle_short_id(from, sender, opened.header.boot, boot, index);
                continue;
            }
            if let Frame::Heartbeat { czar_of, .. } = &frame {
                // Version adverts are checked after the datagram's deltas are applied.
                if self.members.is_alive(&sender) {
                    heartbeat = true;
                    // Implied adverts name the shards of the sender's own runs
                    // before them here, in ascending order, all of them.
                    let mut shards: Vec<ShardId> = own_runs.iter().map(|r| r.0).collect();
                    shards.sort_unstable();
                    shards.dedup();
                    let implied = czar_of.iter().filter(|a| a.implied).count();
                    if implied > 0 && implied != shards.len() {
                        self.stats.drop(DropReason::Invalid);
                        adverts.extend(czar_of.iter().filter(|a| !a.implied));
                    } else {
                        let mut named = shards.into_iter();
                        adverts.extend(czar_of.iter().map(|a| match a.implied {
                            true => ShardVersion { shard: named.next().expect("counted"), implied: false, ..*a },
                            false => *a,
                        }));
                    }
                }
            }
            self.handle_frame(now, from, sender, frame);
        }
        if heartbeat {
            self.check_czar_knows(now, from, sender, &adverts);
        }
        for mut advert in adverts {
            let mut mask = u64::MAX;
            if advert.by_run {
                // Where the sender's newest own run of the shard here ends.
                let run = own_runs.iter().filter(|r| r.0 == advert.shard).max_by_key(|r| r.1);
                let Some(&(_, version, checksum, bits)) = run else {
                    self.stats.drop(DropReason::Invalid);
                    continue;
                };
                (advert.version, advert.checksum, mask) = (version, checksum, bits);
            }
            self.handle_czar_advert(now, sender, advert, mask);
        }
        self.derive_splits(now);
    }

    /// A heartbeat from a peer we follow as czar of some shard that it does
    /// not advertise: it may have missed the claim naming it (it was still
    /// joining, say). Tell it; it answers `Same` if it knew and is only
    /// catching up.
    fn check_czar_knows(&mut self, now: Instant, from: SocketAddr, sender: PeerId, adverts: &[ShardVersion]) {
        let unadvertised: Vec<ShardId> = self
            .states
            .iter()
            .filter(|(id, st)| st.replica.czar == Some(sender) && !adverts.iter().any(|a| a.shard == **id))
            .map(|(id, _)| *id)
            .collect();
        for shard in unadvertised {
            self.send_authority_hint(now, shard, from);
        }
    }

    fn handle_frame(&mut self, now: Instant, from: SocketAddr, sender: PeerId, frame: Frame) {
        let known_alive = self.members.is_alive(&sender);
        let joining = matches!(self.phase, Phase::Joining { .. }) || self.welcomer == Some(sender);
        let asked = self.sync_target == Some(from);
        match frame {
            Frame::Join { public_key, incarnation, czar_eligible } => {
                self.handle_join(now, from, sender, public_key, incarnation, czar_eligible)
            }
            Frame::Heartbeat { incarnation, digests, .. } => {
                self.handle_heartbeat(now, from, sender, incarnation, digests)
            }
            // A welcome whose lists were lost (we do not know the welcomer) is
            // not entered on: alone in our view, we would claim every shard
            // as if it never had a czar. The `Join` is retried and answered
            // again, lists first.
            Frame::Welcome if matches!(self.phase, Phase::Joining { .. }) && !known_alive => {
                self.stats.drop(DropReason::UnknownSender)
            }
            Frame::Welcome if matches!(self.phase, Phase::Joining { .. }) => {
                self.welcomer = Some(sender);
                self.enter_session(now)
            }
            // Records merge by incarnation whoever relays them; a tombstone may be
            // telling us we were counted as gone.
            Frame::Members(records) if self.members.get(&sender).is_some() || joining || asked => {
                self.handle_members(now, from, records)
            }
            Frame::Shards(decls) if known_alive || joining || asked => self.handle_shards(now, decls),
            Frame::Snapshot { shard, version, czar, checksum, chunk, chunks, entries, resync, signer, sig }
                if known_alive || joining =>
            {
                let header = SnapshotHeader { shard, version, czar, checksum, chunks, resync, signer, sig };
                self.handle_snapshot(now, header, chunk, entries, joining)
            }
            // A member we count as gone may know nobody (a joiner whose lists
            // were lost, then confirmed gone for its silence): our lists carry its
            // tombstone, which it refutes to come back.
            Frame::SyncReq if !known_alive && self.members.get(&sender).is_some() => self.send_lists(from),
            // The joined frame meets the same checks as one that came whole.
            Frame::Fragment { id, index, count, bytes } if known_alive || joining => {
                let mut dropped = Vec::new();
                let joined = self.reassembly.insert(now, sender, (id, index, count, bytes), &mut dropped);
                for reason in dropped {
                    self.stats.drop(reason);
                }
                if let Some(frame) = joined {
                    self.stats.frames_joined += 1;
                    if matches!(frame, Frame::Piece { .. }) {
                        // A piece's run fits one frame (`MAX_RUN_BYTES`), so
                        // it never comes in fragments, and its shard is found
                        // with the datagram's (see `resolve_piece_shard`).
                        self.stats.drop(DropReason::Invalid);
                    } else {
                        self.handle_frame(now, from, sender, frame);
                    }
                }
            }
            _ if !known_alive => self.stats.drop(DropReason::UnknownSender),
            Frame::Fragment { .. } => {}
            Frame::Stream { shard, epoch, from, to, base, entries, mac } => {
                self.handle_stream(sender, shard, epoch, stream::Span::Whole { from, to }, base, entries, mac)
            }
            Frame::StreamPart { shard, epoch, at, base, entries, mac } => {
                self.handle_stream(sender, shard, epoch, stream::Span::Part { at }, base, entries, mac)
            }
            Frame::StreamAck { shard, epoch, have } => self.handle_stream_ack(now, from, shard, epoch, have),
            Frame::Welcome | Frame::Members(_) | Frame::Shards(_) | Frame::Snapshot { .. } => {}
            Frame::Leave { incarnation } => self.handle_leave(now, sender, incarnation),
            Frame::Delta { shard, epoch, first_seq, base, after, author, sig, updates } => {
                let proof = BatchProof { author, epoch, first_seq, count: updates.len() as u32, base, after, sig };
                self.handle_delta(now, sender, shard, proof, updates, false)
            }
            Frame::Piece { shard, epoch, first_seq, base, after, mac, updates } => {
                #[allow(unused_mut)]
                let mut authentic = self.pair_key(&sender).is_some_and(|key| {
                    proof::piece_mac(&key, &sender, &self.id, shard, epoch, first_seq, base, after, &updates) == mac
                });
                #[cfg(feature = "faults")]
                if self.fault == Some(Fault::AcceptAnySignature) {
                    authentic = true;
                }
                if !authentic {
                    self.stats.drop(DropReason::BadSignature);
                    return;
                }
                let proof = BatchProof::unsigned(sender, epoch, first_seq, updates.len() as u32, base, after);
                self.handle_delta(now, sender, shard, proof, updates, true)
            }
            Frame::RunSig { shard, epoch, first_seq, count, sig } => {
                self.handle_run_sig(shard, EarlyRunSig { author: sender, epoch, first_seq, count, sig }, true)
            }
            Frame::Forward { write_id, origin, shard, update } => {
                self.handle_forward(now, from, sender, write_id, origin, shard, update)
            }
            Frame::ForwardAck { write_id, shard, version } => self.handle_forward_ack(write_id, shard, version),
            Frame::RepairReq { shard, from_seq, checksum } => {
                self.handle_repair_request(from, sender, shard, from_seq, checksum)
            }
            Frame::Authority { shard, epoch, czar, seq, checksum, backed, start_known } => {
                // The stated start is trusted from the claimant itself, or from a
                // sender that says it knows it (the old czar handing over, a
                // relay that learned it from the claimant); a hint whose sender
                // only assumed the start says so.
                let start = Start { seq, checksum, trusted: sender == czar || start_known };
                match self.offer_authority(now, shard, epoch, czar, Some(backed), Some(start), Some(sender)) {
                    Verdict::Stale => self.send_authority_hint(now, shard, from),
                    Verdict::Unknown => self.stats.drop(DropReason::UnknownShard),
                    Verdict::Retired => self.stats.drop(DropReason::SplitPending),
                    _ => {}
                }
            }
            Frame::SyncReq => self.send_lists(from),
            Frame::Recover { gone, claims, .. } => self.handle_recover(now, from, sender, gone, claims),
            Frame::RecoverAck { gone, silent, votes } => self.handle_recover_ack(now, sender, gone, silent, votes),
            Frame::Propose { origin, write_id, shard, epoch, update } => {
                self.handle_propose(now, from, sender, origin, write_id, shard, epoch, update)
            }
            Frame::Vote { origin, write_id, shard, epoch, accept, reason } => {
                self.handle_vote(sender, origin, write_id, shard, epoch, accept, reason)
            }
            Frame::Decided { origin, write_id, shard, decision } => {
                self.handle_decided(sender, origin, write_id, shard, decision)
            }
            Frame::ForwardCritical { write_id, origin, shard, update } => {
                self.handle_forward_critical(now, sender, write_id, origin, shard, update)
            }
            Frame::Ping { stamp } => {
                let typical_ms = self.typical_rtt_ms();
                self.queue_frame(from, &Frame::Pong { stamp, typical_ms })
            }
            Frame::AddrCheck { nonce } => self.handle_addr_check(from, sender, nonce),
            Frame::AddrProof { nonce, signature } => self.handle_addr_proof(from, sender, nonce, signature),
            Frame::Pong { stamp, typical_ms } => self.handle_pong(now, sender, stamp, typical_ms),
            Frame::ShortIdUnknown { index } => self.handle_short_id_unknown(from, index),
            // Handled with its datagram's header; never sent in fragments.
            Frame::ShortId { .. } => self.stats.drop(DropReason::Invalid),
            Frame::Prepared { shard, origin, write_id, epoch, update } => {
                self.handle_prepared(now, sender, shard, origin, write_id, epoch, update)
            }
        }
    }

    // ----- membership -----------------------------------------------------------

    /// Just joined through a member: shards whose czar we have not heard of
    /// yet are left alone for a moment, since the member's state may be on its way.
    fn in_join_grace(&self, now: Instant) -> bool {
        self.welcomer.is_some() && now.saturating_duration_since(self.joined_at) < self.config.heartbeat_interval * 4
    }

    fn enter_session(&mut self, now: Instant) {
        if self.phase == Phase::Joined {
            return;
        }
        self.phase = Phase::Joined;
        self.joined_at = now;
        let members = self.members.alive_count();
        self.push_event(Event::Joined { members });
        self.reconcile_authority(now);
        self.retry_pending(now, None);
    }

    fn send_join(&mut self, now: Instant) {
        if let Phase::Joining { since, .. } = self.phase {
            self.phase = Phase::Joining { since, last_sent: Some(now) };
        }
        let me = self.members.myself();
        let frame = Frame::Join {
            public_key: self.keypair.public_key(),
            incarnation: me.incarnation,
            czar_eligible: me.czar_eligible,
        };
        let bytes = frame.to_bytes();
        for addr in self.bootstraps.clone() {
            self.queue(addr, bytes.clone());
        }
    }

    fn handle_join(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: PeerId,
        public_key: PublicKey,
        incarnation: u32,
        czar_eligible: bool,
    ) {
        if PeerId::from_public_key(&public_key) != sender {
            self.stats.drop(DropReason::IdMismatch);
            return;
        }
        if self.phase != Phase::Joined {
            self.stats.drop(DropReason::NotInSession);
            return;
        }
        // A restarted peer may come back with an old incarnation: give it one
        // above anything we remember so its old tombstone cannot shadow it.
        let incarnation = match self.members.get(&sender) {
            Some(m) if !m.is_alive() && m.incarnation >= incarnation => (m.incarnation + 1).min(MAX_EPOCH),
            Some(m) if m.is_alive() => m.incarnation.max(incarnation),
            _ => incarnation,
        };
        // A live member's address moves only once it proves the new one with its
        // key (the `Join` itself is not signed and its public key is public).
        let addr = match self.members.get(&sender) {
            Some(m) if m.is_alive() => m.addr,
            _ => from,
        };
        let record =
            MemberRecord { id: sender, public_key, addr, incarnation, status: MemberStatus::Alive, czar_eligible };
        let outcome = self.members.merge(&record, now);
        if let Some(m) = self.members.get_mut(&sender) {
            m.addr = addr;
            m.last_heard = now;
        }
        // Lists and state first, the welcome last: the joiner accepts them while
        // it is still joining, and knows every shard's czar before it may claim.
        self.send_lists(from);
        let shards: Vec<ShardId> = self.states.keys().copied().collect();
        for shard in shards {
            self.send_snapshot(from, shard, false);
        }
        self.queue_frame(from, &Frame::Welcome);
        if outcome == MergeOutcome::Joined {
            self.push_event(Event::PeerJoined { peer: sender, addr: from });
            let frame = Frame::Members(vec![record]);
            let bytes = frame.to_bytes();
            let others: Vec<SocketAddr> = self.members.others().filter(|m| m.id != sender).map(|m| m.addr).collect();
            for addr in others {
                self.queue(addr, bytes.clone());
            }
            self.reconcile_authority(now);
        }
    }

    fn handle_heartbeat(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: PeerId,
        incarnation: u32,
        digests: Option<ViewDigests>,
    ) {
        match self.members.get(&sender) {
            None => {
                // Someone who knows us but whom we do not know yet: ask for the lists.
                self.stats.drop(DropReason::UnknownSender);
                self.request_sync(now, from);
                return;
            }
            Some(m) if !m.is_alive() => {
                if incarnation > m.incarnation || (m.soft_left && incarnation == m.incarnation) {
                    if m.soft_left && incarnation == m.incarnation {
                        self.members.revive(&sender, from, now);
                    } else {
                        // A new incarnation is taken as eligible until its
                        // record arrives (not eligible wins at one incarnation).
                        let record = MemberRecord {
                            incarnation,
                            status: MemberStatus::Alive,
                            addr: from,
                            czar_eligible: true,
                            ..m.record()
                        };
                        self.members.merge(&record, now);
                    }
                    self.push_event(Event::PeerJoined { peer: sender, addr: from });
                    self.reconcile_authority(now);
                } else {
                    // Tell it we count it as gone so it can refute with a higher incarnation.
                    self.stats.drop(DropReason::UnknownSender);
                    let hint_due = self
                        .last_refute_hint
                        .get(&sender)
                        .is_none_or(|t| now.saturating_duration_since(*t) >= self.config.sync_interval);
                    if hint_due {
                        self.last_refute_hint.insert(sender, now);
                        let record = m.record();
                        self.queue_frame(from, &Frame::Members(vec![record]));
                    }
                    return;
                }
            }
            Some(m) => {
                if incarnation > m.incarnation {
                    let record = MemberRecord { incarnation, addr: from, czar_eligible: true, ..m.record() };
                    self.members.merge(&record, now);
                }
            }
        }
        // A short heartbeat states no digests: the sender's views have not
        // changed lately, and its next full heartbeat says what they are.
        if digests.is_some_and(|d| d.members != self.members.digest() || d.shards != self.shards.digest()) {
            self.request_sync(now, from);
        }
    }

    fn request_sync(&mut self, now: Instant, to: SocketAddr) {
        let due = self.last_sync_request.is_none_or(|t| now.saturating_duration_since(t) >= self.config.sync_interval);
        if due {
            self.last_sync_request = Some(now);
            self.sync_target = Some(to);
            self.queue_frame(to, &Frame::SyncReq);
        }
    }

    fn send_lists(&mut self, to: SocketAddr) {
        let records: Vec<MemberRecord> = self.members.iter().filter(|m| !m.soft_left).map(Member::record).collect();
        for chunk in records.chunks(MEMBERS_PER_FRAME) {
            self.queue_frame(to, &Frame::Members(chunk.to_vec()));
        }
        let decls: Vec<ShardDecl> = self.shards.declared_shards().map(ShardInfo::decl).collect();
        for chunk in decls.chunks(SHARDS_PER_FRAME) {
            self.queue_frame(to, &Frame::Shards(chunk.to_vec()));
        }
    }

    fn handle_members(&mut self, now: Instant, from: SocketAddr, records: Vec<MemberRecord>) {
        let mut changed = false;
        for rec in records {
            if PeerId::from_public_key(&rec.public_key) != rec.id {
                self.stats.drop(DropReason::IdMismatch);
                continue;
            }
            if rec.id == self.id {
                self.refute(from, &rec);
                continue;
            }
            match self.members.merge(&rec, now) {
                MergeOutcome::Joined => {
                    changed = true;
                    self.push_event(Event::PeerJoined { peer: rec.id, addr: rec.addr });
                }
                MergeOutcome::Left => {
                    changed = true;
                    self.push_event(Event::PeerLeft { peer: rec.id, reason: LeaveReason::Gossip });
                }
                MergeOutcome::Updated | MergeOutcome::Unchanged => {}
            }
        }
        if changed {
            self.reconcile_authority(now);
        }
    }

    /// A record about ourselves: adopt a higher live incarnation, refute a
    /// leave, and correct a wrong czar eligibility (a record of an earlier
    /// life at our incarnation, say) with an incarnation above it.
    fn refute(&mut self, from: SocketAddr, rec: &MemberRecord) {
        if self.phase == Phase::Left || self.phase == Phase::Idle {
            return;
        }
        let mine = self.members.myself().incarnation;
        let wrong_flag = rec.czar_eligible != self.members.myself().czar_eligible;
        let new = match rec.status {
            MemberStatus::Alive if wrong_flag && rec.incarnation >= mine && rec.incarnation < MAX_EPOCH => {
                rec.incarnation + 1
            }
            MemberStatus::Alive if rec.incarnation > mine => rec.incarnation,
            MemberStatus::Left if rec.incarnation >= mine && rec.incarnation < MAX_EPOCH => rec.incarnation + 1,
            _ => return,
        };
        self.members.myself_mut().incarnation = new;
        if rec.status == MemberStatus::Left {
            // Someone counts us gone, most likely by a majority's confirmation:
            // that majority may have moved our shards on without the versions we
            // hold. Our claims no longer outrank theirs, so we must not re-assert
            // over them (which would undo what they committed meanwhile).
            for st in self.states.values_mut() {
                if st.replica.czar == Some(self.id) {
                    st.replica.backed = false;
                }
            }
            // Counted gone while we hear a majority: they do not hear us,
            // though we hear them. Our upload is what fails (full, or cut one
            // way); as a czar we would fill it again the moment we were back,
            // and be counted gone again. The refutation says we step down. A
            // process back from a pause was not heard for another reason (the
            // news of its leave can reach it well after it resumed, once it
            // has timed the others out and rejoined them).
            let me = self.members.myself();
            if self.config.step_down_when_evicted && me.czar_eligible && self.upload_fails() {
                self.members.myself_mut().czar_eligible = false;
                self.push_event(Event::SteppedDown { incarnation: new, reason: StepDownReason::Evicted });
            }
        }
        let record = self.members.myself().record();
        let frame = Frame::Members(vec![record]);
        // The teller may not be in our live view (a healed partition): tell it too.
        if !self.members.others().any(|m| m.addr == from) {
            self.queue_frame(from, &frame);
        }
        self.broadcast(&frame);
    }

    /// Whether what we send fails to get out although we hear the session:
    /// we heard a majority lately, and did not resume from a stall lately (a
    /// process back from a pause was not heard for another reason; the news
    /// of its leave, or the round trips of probes it sent before the pause,
    /// can reach it well after it resumed).
    fn upload_fails(&self) -> bool {
        let paused_lately =
            self.resumed_at.is_some_and(|t| self.clock.saturating_duration_since(t) < self.config.peer_timeout * 2);
        self.heard_majority_lately() && !paused_lately
    }

    /// Whether we stepped down (`Event::SteppedDown`, either reason): the
    /// game let us be czar, and we gave it up because what we sent did not
    /// get out in time. Our uplink is narrow.
    fn stepped_down(&self) -> bool {
        self.config.czar_eligible && !self.members.myself().czar_eligible
    }

    /// Steps down as soon as the uplink watch judges that our uplink queues
    /// what we send while we are a ready czar, or the top-ranked peer of a
    /// shard (about to be handed it): every member's copy of our shards waits
    /// in that queue, and so do our own repair requests, so updates to us
    /// wait too. The watch already asks for several members' probes, three in
    /// four queued; waiting longer only lets a majority count us gone first.
    /// The step-down is announced as a new incarnation of our record, not
    /// eligible; the ranking then names other czars for our shards and we
    /// hand them over (`docs/PROTOCOL.md` §6.5). Like the step-down of an
    /// evicted czar, it lasts the session.
    fn step_down_if_uplink_queued(&mut self, now: Instant) {
        let me = self.members.myself();
        if !self.config.step_down_when_congested || !me.czar_eligible || me.incarnation >= MAX_EPOCH {
            return;
        }
        if self.uplink.queued_for(now).is_none() || !self.upload_fails() {
            return;
        }
        // As czar, or as the peer a shard is about to be handed to.
        let id = self.id;
        let czar = self.states.values().any(|st| st.is_ready_czar(id) && !st.is_retired());
        if !czar && !self.top_ranked_all().values().any(|top| top.first() == Some(&id)) {
            return;
        }
        let me = self.members.myself_mut();
        me.incarnation += 1;
        me.czar_eligible = false;
        let incarnation = me.incarnation;
        let queued_ms = u32::try_from(self.uplink.median_excess().unwrap_or_default().as_millis()).unwrap_or(u32::MAX);
        self.push_event(Event::SteppedDown { incarnation, reason: StepDownReason::UplinkQueued { queued_ms } });
        let record = self.members.myself().record();
        self.broadcast(&Frame::Members(vec![record]));
        self.reconcile_authority(now);
    }

    fn handle_leave(&mut self, now: Instant, sender: PeerId, incarnation: u32) {
        let current = self.members.get(&sender).map(|m| m.incarnation).unwrap_or(0);
        if incarnation >= current && self.members.mark_left(&sender, now, false) {
            if let Some(m) = self.members.get_mut(&sender) {
                m.said_goodbye = true;
            }
            self.push_event(Event::PeerLeft { peer: sender, reason: LeaveReason::Graceful });
            self.reconcile_authority(now);
        }
    }

    fn handle_shards(&mut self, now: Instant, decls: Vec<ShardDecl>) {
        let mut changed = false;
        for decl in decls {
            match self.shards.declare(&decl.name, decl.preferred) {
                Ok((id, true)) => {
                    changed = true;
                    self.shard_declared(id);
                }
                Ok(_) => {}
                Err(_) => self.stats.drop(DropReason::Invalid),
            }
        }
        if changed {
            self.reconcile_authority(now);
        }
    }

    fn shard_declared(&mut self, id: ShardId) {
        if let std::collections::btree_map::Entry::Vacant(slot) = self.states.entry(id) {
            slot.insert(ShardState::default());
            let name = self.shards.get(id).expect("declared").name.clone();
            self.push_event(Event::ShardDeclared { shard: id, name });
        }
    }

    // ----- authority ------------------------------------------------------------

    /// Claims unowned shards we rank first for, and hands ours to a stronger live peer.
    fn reconcile_authority(&mut self, now: Instant) {
        if self.phase != Phase::Joined {
            return;
        }
        let ids: Vec<ShardId> = self.states.keys().copied().collect();
        for shard in ids {
            let st = &self.states[&shard];
            // A shard that split needs no czar; one whose split is being voted
            // on keeps its czar until the vote ends.
            if st.is_retired() || st.split.proposing.is_some() {
                continue;
            }
            let Some(desired) = self.top_ranked(shard).first().copied() else {
                continue;
            };
            let st = &self.states[&shard];
            match st.replica.czar {
                Some(c) if c == self.id => {
                    // Hand over only to a peer we have known for a while: during a
                    // join storm views differ, and a shard passed to every newcomer
                    // that ranks higher in one view would flap between czars. Never
                    // to a suspect: it may be cut off, and a shard handed to a peer
                    // the majority then confirms gone is claimed again without a
                    // round, while the suspect (hearing us, unheard) holds a
                    // backed claim to it.
                    let settled = self.members.get(&desired).is_some_and(|m| {
                        !m.suspected && now.saturating_duration_since(m.known_since) >= self.config.handover_delay
                    });
                    // Nor just after a stall (`just_resumed`), nor while
                    // proposals from our recovery round are unfinished.
                    if desired != self.id
                        && st.catch_up_to.is_none()
                        && settled
                        && !st.critical.finishing_recovered()
                        && !self.just_resumed(now)
                    {
                        self.hand_over(shard, desired);
                    }
                }
                Some(c) if self.members.is_alive(&c) => {}
                // We were told of this czar after we counted it gone: our record
                // of it is older than its claim (it came back, and we have not
                // heard of it yet). Claiming over it would undo what it holds.
                // A czar that came back beats every tick, so this waits one
                // `peer_timeout` at most: a leaving czar may have handed the
                // shard to a peer leaving at the same moment, which never
                // comes back (grow-shrink, 24 peers: `world` had no czar for
                // the 30 s of the tombstones).
                Some(c)
                    if self.members.get(&c).and_then(|m| m.left_at).is_some_and(|t| t < st.czar_since)
                        && now.saturating_duration_since(st.czar_since) < self.config.peer_timeout => {}
                // A czar we have never heard of: our member lists are not
                // complete yet (the welcome overtook them, say). Its state may
                // hold what a majority holds; a newcomer waits to learn of it.
                Some(c) if self.members.get(&c).is_none() && self.is_newcomer(now) => {}
                None if self.in_join_grace(now) => {}
                _ if self.takeover_pending(shard) => {}
                // A czar that left for good (a majority confirmed it gone, or it
                // said goodbye): a recovery round of our own takes the shard
                // over, backed, from the most advanced state of a majority.
                // While we hear a majority, so does one only our own timeout
                // removed (a czar silent to us alone, through a jammed uplink or
                // one bad link, may still be serving the others), and a round
                // that failed is tried again at a higher epoch: a plain claim
                // from our own state would undo whatever we had not received,
                // commits included. Only a side that hears no majority (where
                // no round can complete) claims plainly, so play goes on.
                Some(c)
                    if desired == self.id
                        && self.members.get(&c).is_some_and(|m| {
                            m.left_at.is_some()
                                && (self.hears_majority() || (!m.soft_left && st.round_failed != Some(c)))
                        }) =>
                {
                    self.recover_shard_of_gone(now, shard, c);
                }
                _ => {
                    if desired == self.id {
                        self.claim(shard);
                    }
                }
            }
        }
    }

    fn claim(&mut self, shard: ShardId) {
        // Only a fresh shard's first claim is backed by itself. Taking over
        // from a czar that is gone without a recovery round (our own timeout,
        // or a death confirmed by a round that did not cover this shard) skipped
        // the majority's versions: such a claim is provisional and loses to any
        // backed claim it meets.
        let backed = self.states[&shard].replica.czar.is_none();
        let st = self.states.get_mut(&shard).expect("caller checked");
        if unilateral_epoch(st.replica.epoch, &self.id) > MAX_EPOCH {
            return; // epochs are exhausted (only a hostile peer gets here)
        }
        st.replica.backed = backed;
        let old = st.replica.czar;
        st.replica.prev_czar = old;
        st.replica.epoch = unilateral_epoch(st.replica.epoch, &self.id);
        st.replica.czar = Some(self.id);
        let epoch = st.replica.epoch;
        st.replica.set_lineage(epoch);
        st.replica.epoch_start_seq = st.replica.seq();
        st.replica.epoch_start_checksum = st.replica.checksum().short();
        st.replica.epoch_start_trusted = true;
        st.catch_up_to = None;
        st.want_snapshot = false;
        st.round_failed = None;
        let (epoch, seq, checksum) = (st.replica.epoch, st.replica.seq(), st.replica.checksum().short());
        self.adopt_own_prepared(shard);
        self.push_event(Event::CzarChanged { shard, old, new: self.id, epoch });
        self.broadcast(&Frame::Authority { shard, epoch, czar: self.id, seq, checksum, backed, start_known: true });
    }

    fn hand_over(&mut self, shard: ShardId, to: PeerId) {
        // Our unsent updates must reach everyone before the hand-over does.
        self.flush_outgoing();
        let st = self.states.get_mut(&shard).expect("caller checked");
        debug_assert_eq!(st.replica.czar, Some(self.id));
        if unilateral_epoch(st.replica.epoch, &self.id) > MAX_EPOCH {
            return;
        }
        st.replica.prev_czar = Some(self.id);
        st.replica.epoch = unilateral_epoch(st.replica.epoch, &self.id);
        st.replica.czar = Some(to);
        let epoch = st.replica.epoch;
        st.replica.set_lineage(epoch);
        st.replica.epoch_start_seq = st.replica.seq();
        st.replica.epoch_start_checksum = st.replica.checksum().short();
        st.replica.epoch_start_trusted = true;
        let (epoch, seq, checksum) = (st.replica.epoch, st.replica.seq(), st.replica.checksum().short());
        // A hand-over keeps the standing of the claim it continues.
        let backed = st.replica.backed;
        self.push_event(Event::CzarChanged { shard, old: Some(self.id), new: to, epoch });
        self.broadcast(&Frame::Authority { shard, epoch, czar: to, seq, checksum, backed, start_known: true });
    }

    /// Considers `czar` holding `shard` from `epoch` on. The stronger claim wins:
    /// higher epoch, then the documented tie-break ([`claim_strength`]).
    #[allow(clippy::too_many_arguments)]
    fn offer_authority(
        &mut self,
        now: Instant,
        shard: ShardId,
        epoch: u32,
        czar: PeerId,
        backed: Option<bool>,
        start: Option<Start>,
        source: Option<PeerId>,
    ) -> Verdict {
        // `None`: a frame that implies a claim without stating its standing (a
        // delta or snapshot from a newer epoch). Most claims are backed, so it
        // is taken as backed, but it never triggers a re-assertion; the czar's
        // adverts that follow state the standing exactly.
        let explicit = backed.is_some();
        let backed = backed.unwrap_or(true);
        let newer = self.states.get(&shard).is_some_and(|st| epoch > st.replica.epoch);
        if newer && (self.awaits_own_merge(shard, epoch, czar) || self.waits_for_split_children(now, shard)) {
            return Verdict::Retired;
        }
        let (Some(info), Some(st)) = (self.shards.get(shard), self.states.get(&shard)) else {
            return Verdict::Unknown;
        };
        // The winner rule: the higher epoch, then a backed claim over a
        // provisional one, then claim strength. Epochs never go backwards.
        let current = (st.replica.epoch, st.replica.backed, st.replica.czar.map(|c| claim_strength(info, &c)));
        let offered = (epoch, backed, Some(claim_strength(info, &czar)));
        // The same czar in the same epoch is the same claim, whatever a frame
        // that does not carry the flag (a delta, a snapshot) implies.
        if offered == current || (epoch == st.replica.epoch && st.replica.czar == Some(czar)) {
            // Only the czar states its claim's standing with authority (a
            // third party may repeat an older statement); we take it from
            // another only in place of one we assumed. The czar itself knows
            // its standing.
            let assumed = st.assumes_standing(epoch, czar);
            if explicit && czar != self.id && (source == Some(czar) || assumed) {
                let st = self.states.get_mut(&shard).expect("checked");
                st.replica.backed = backed;
                st.standing_assumed = None;
            }
            // Our own epoch, stated from another starting state: a hand-over
            // to us that raced with a claim of our own. Its sender labels
            // another history with our epoch; as its ready czar we re-assert at
            // a higher one, so it resyncs forward rather than back.
            let st = &self.states[&shard];
            let other_start = start.is_some_and(|s| {
                s.trusted && (s.seq, s.checksum) != (st.replica.epoch_start_seq, st.replica.epoch_start_checksum)
            });
            if explicit && czar == self.id && other_start && st.is_ready_czar(self.id) {
                self.reassert(now, shard, epoch);
            }
            return Verdict::Same;
        }
        // A hand-over to us, as the ready czar of a backed claim, from the czar
        // we took the shard over from: it continues that czar's older claim
        // (its `Authority` left before our takeover and arrived after it, held
        // up at a jammed uplink), and its start is that czar's state, not ours.
        // Taken, it would cut our history back to that start, commits
        // included (isolate-and-stall, 32 peers, seed 328). We re-assert, so
        // whoever took it resyncs forward to us.
        let from_prev = source.is_some_and(|s| s != self.id && st.replica.prev_czar == Some(s));
        let our_state = start.is_some_and(|s| (s.seq, s.checksum) == (st.replica.seq(), st.replica.checksum().short()));
        if explicit
            && czar == self.id
            && epoch > st.replica.epoch
            && from_prev
            && !our_state
            && st.replica.backed
            && st.is_ready_czar(self.id)
        {
            if self.hears_majority() && !self.just_resumed(now) {
                self.reassert(now, shard, epoch);
            }
            return Verdict::Stale;
        }
        // A backed claim whose czar is alive in our view and whose standing
        // was stated to us (an `Authority`, an advert), or our own. "Alive" as
        // czar: a standing we only assumed (a snapshot's implied claim at our
        // join) for a czar that has since handed the shard on would otherwise
        // hold us on its epoch for good, refusing every later hand-over that
        // states its standing. A stated one counts without an advert: a czar
        // that re-asserted just before it stalled never advertised its new
        // epoch (isolate-and-stall, 32 peers, seed 395).
        let advertised = st.czar_advert.is_some_and(|(e, _, _, _)| e == st.replica.epoch);
        let stated = |c: PeerId| advertised || !st.assumes_standing(st.replica.epoch, c);
        // A claim our czar itself states (its hand-over) is its own word on
        // what follows its claim, whatever the standing.
        let live_backed = st.replica.backed
            && st.replica.czar.is_some_and(|c| {
                c == self.id || (c != czar && source != Some(c) && self.members.is_alive(&c) && stated(c))
            });
        // An implied claim never displaces a live backed czar, us included
        // (catching up or ready): its standing is unknown, and a provisional
        // one must meet the backed czar's re-assertion, not our history's
        // discard (partition-heal, 32 peers, seed 25; isolate-and-stall seed
        // 395, where followers took the cut-off side's provisional hand-over
        // from its snapshots and all ended waiting for a snapshot of its stale
        // state that nobody could serve). The claimant's adverts, which state
        // its standing, follow within a tick.
        if !explicit && epoch > st.replica.epoch && live_backed {
            return Verdict::Stale;
        }
        // A provisional claim (the minority side of a partition, made because
        // its own timeout removed the czar) never displaces a backed czar that
        // is alive in our view. If we are that czar, we re-assert at a higher
        // epoch so both sides of a healed partition end on the backed lineage,
        // and nothing committed on the majority side is undone.
        let displaces_live_backed = explicit && !backed && live_backed;
        if displaces_live_backed {
            if st.is_ready_czar(self.id) && self.hears_majority() && !self.just_resumed(now) {
                self.reassert(now, shard, epoch);
            }
            return Verdict::Stale;
        }
        // Two lineages at the same epoch (claims that raced, or the two halves
        // of a healed partition): nobody switches at an equal epoch, since
        // versions would go backwards. The stronger czar, told of the other
        // claim by its adverts' answers, re-asserts at a higher epoch and
        // everyone moves forward to it.
        if epoch == st.replica.epoch && st.replica.czar.is_some() {
            if st.is_ready_czar(self.id) && offered < current {
                self.reassert(now, shard, epoch);
            }
            return Verdict::Stale;
        }
        if offered < current {
            return Verdict::Stale;
        }
        let me = self.id;
        let st = self.states.get_mut(&shard).expect("checked");
        let old = st.replica.czar;
        st.replica.prev_czar = old;
        st.replica.epoch = epoch;
        st.replica.czar = Some(czar);
        st.replica.backed = backed;
        st.standing_assumed = (!explicit).then_some((epoch, czar));
        st.czar_since = now;
        let (seq, sum) = (st.replica.seq(), st.replica.checksum().short());
        // Without a stated start we only trust the old czar for what we already have.
        let (start_seq, start_sum) = start.map_or((seq, sum), |s| (s.seq, s.checksum));
        st.replica.epoch_start_seq = start_seq;
        st.replica.epoch_start_checksum = start_sum;
        st.replica.epoch_start_trusted = start.is_some_and(|s| s.trusted);
        let stale = st.replica.drop_early_past_start(epoch, start_seq) as u64;
        st.outgoing.clear();
        st.out_of_sync_since = None;
        st.czar_advert = None;
        // Prepared proposals handed to us in a recovery round are for a takeover
        // of ours; another's claim ends that (§6.10).
        if czar != me {
            st.critical.recovered.clear();
        }
        // Is our history the new czar's starting point, a prefix of it, or off it?
        let at_start = seq == start_seq && sum == start_sum;
        let behind = seq < start_seq;
        let off = start.is_some() && !at_start && !behind;
        // Our state is on the new epoch's history once it is the stated start
        // (a prefix gets there by repair); with no trusted start we cannot tell
        // yet (the czar's adverts, deltas or snapshot will say).
        st.replica.note_start_reached();
        st.want_snapshot = off;
        st.catch_up_to = if czar == me && !at_start { Some((start_seq, start_sum)) } else { None };
        let needs_repair = st.catch_up_to.is_some() || off || (start.is_some() && behind);
        self.stats.drop_n(DropReason::OffHistory, stale);
        self.push_event(Event::CzarChanged { shard, old, new: czar, epoch });
        if needs_repair {
            let from = if off { 0 } else { seq + 1 };
            self.request_repair(now, shard, from, source, true);
        }
        // Writes waiting for this shard's czar go to the new one now, not at
        // the next tick: it is the last leg of a failover.
        self.retry_pending(now, None);
        self.retry_critical(now, None);
        Verdict::Accepted
    }

    /// Called after our state of `shard` moved: a catching-up czar becomes
    /// ready once it holds exactly the agreed starting state, and resyncs by
    /// snapshot if it got there on a different history.
    fn check_catch_up(&mut self, now: Instant, shard: ShardId, after_snapshot: bool) {
        let st = self.states.get_mut(&shard).expect("known shard");
        let Some((target, sum)) = st.catch_up_to else { return };
        let seq = st.replica.seq();
        let at_target = seq == target && st.replica.checksum().short() == sum;
        if seq < target && !after_snapshot {
            return;
        }
        if at_target {
            st.catch_up_to = None;
            st.want_snapshot = false;
            let epoch = st.replica.epoch;
            st.replica.set_lineage(epoch);
        } else if after_snapshot {
            // Even a whole snapshot did not bring the agreed starting state (its
            // holders moved on): start from the freshest state we could get and
            // claim the shard again with it, so everyone resyncs to us.
            let (epoch, _) = self.give_up_start(shard);
            self.reassert(now, shard, epoch);
        } else if !st.want_snapshot {
            st.want_snapshot = true;
            let hint = st.replica.prev_czar;
            self.request_repair(now, shard, 0, hint, true);
            return;
        } else {
            return;
        }
        self.retry_pending(now, None);
    }

    /// Whether we have been catching up to `shard`'s starting state for
    /// `catch_up_timeout` without our state moving (no update applied, no
    /// snapshot arriving): its holders are gone, or never answer.
    fn catch_up_stuck(&mut self, now: Instant, shard: ShardId) -> bool {
        let st = self.states.get_mut(&shard).expect("known shard");
        if st.catch_up_to.is_none() {
            st.catch_up_still = None;
            return false;
        }
        let at = (st.replica.epoch, st.replica.seq());
        match st.catch_up_still {
            Some((was, since)) if was == at && st.assembly.is_none() => {
                now.saturating_duration_since(since) >= self.config.catch_up_timeout
            }
            _ => {
                st.catch_up_still = Some((at, now));
                false
            }
        }
    }

    /// Stops catching up to `shard`'s agreed start, which cannot be had; the
    /// caller claims the shard again from the state we hold. Returns our
    /// epoch and standing.
    fn give_up_start(&mut self, shard: ShardId) -> (u32, bool) {
        let st = self.states.get_mut(&shard).expect("known shard");
        st.catch_up_to = None;
        st.catch_up_still = None;
        st.want_snapshot = false;
        st.last_reassert = None;
        (st.replica.epoch, st.replica.backed)
    }

    /// Gives up catching up to a starting state nobody serves: as when even a
    /// snapshot did not bring it (`check_catch_up`), we claim the shard again
    /// from our own state, so everyone resyncs to us. Without this bound a
    /// czar whose start was held only by members that left waited for good,
    /// and so did every follower (isolate-and-stall, 32 peers, seed 51: a
    /// start at seq 1067, the most advanced live member at 996). Callers check
    /// that we hear a majority. A backed claim is re-asserted; a provisional
    /// one is claimed again, still provisional: giving up on its start gives
    /// it no standing it did not have.
    fn abandon_catch_up(&mut self, now: Instant, shard: ShardId) {
        let (epoch, backed) = self.give_up_start(shard);
        if backed {
            self.reassert(now, shard, epoch);
        } else {
            self.claim(shard);
        }
    }

    /// As a backed czar that learned of a provisional claim at `seen` or
    /// above: claims the shard again at a higher epoch, with our state.
    fn reassert(&mut self, now: Instant, shard: ShardId, seen: u32) {
        let st = self.states.get_mut(&shard).expect("known shard");
        let due = st.last_reassert.is_none_or(|t| now.saturating_duration_since(t) >= self.config.heartbeat_interval);
        let epoch = reassert_epoch(seen.max(st.replica.epoch), &self.id);
        if !due || epoch > MAX_EPOCH {
            return;
        }
        st.last_reassert = Some(now);
        st.replica.prev_czar = Some(self.id);
        st.replica.epoch = epoch;
        st.replica.set_lineage(epoch);
        st.replica.epoch_start_seq = st.replica.seq();
        st.replica.epoch_start_checksum = st.replica.checksum().short();
        st.replica.epoch_start_trusted = true;
        let (seq, checksum) = (st.replica.seq(), st.replica.checksum().short());
        self.flush_outgoing();
        self.push_event(Event::CzarChanged { shard, old: Some(self.id), new: self.id, epoch });
        self.broadcast(&Frame::Authority {
            shard,
            epoch,
            czar: self.id,
            seq,
            checksum,
            backed: true,
            start_known: true,
        });
    }

    /// Whether a majority of the configuration (ourselves included) was
    /// heard from within two idle heartbeat periods (at least four
    /// heartbeats): unlike [`Peer::hears_majority`], false for a process
    /// that was paused, whose suspicions have not caught up with the pause.
    fn heard_majority_lately(&self) -> bool {
        let now = self.clock;
        let n = self.members.alive_count();
        let window = (self.config.idle_heartbeat_period(n) * 2).max(self.config.heartbeat_interval * 4);
        self.majority_of_configuration(|m| now.saturating_duration_since(m.last_heard) <= window)
    }

    /// Whether `heard` holds for a majority of the configuration (live and
    /// soft-left members), counting ourselves as heard.
    fn majority_of_configuration(&self, heard: impl Fn(&crate::membership::Member) -> bool) -> bool {
        let (mut config, mut count) = (0usize, 0usize);
        for m in self.members.iter().filter(|m| m.is_alive() || m.soft_left) {
            config += 1;
            if m.id == self.id || heard(m) {
                count += 1;
            }
        }
        count >= crate::quorum::majority(config)
    }

    /// Whether a majority of the configuration (live and soft-left members,
    /// us included) is live and unsuspected to us. A re-assertion claims a
    /// majority's backing without asking for it: a czar cut off from the
    /// majority (isolated, paused) has no standing to make one, since that
    /// majority may have confirmed it gone and committed under another claim.
    /// Right after a heal it hears the others again one by one, and the
    /// tombstone that tells it it was confirmed gone (§6.6) comes with them.
    fn hears_majority(&self) -> bool {
        self.majority_of_configuration(crate::membership::Member::is_healthy)
    }

    fn send_authority_hint(&mut self, now: Instant, shard: ShardId, to: SocketAddr) {
        // At most one hint per shard and address per heartbeat: two peers that
        // each find the other stale must not bounce hints at network speed.
        let due = self
            .last_hint
            .get(&(shard, to))
            .is_none_or(|t| now.saturating_duration_since(*t) >= self.config.heartbeat_interval);
        if !due {
            return;
        }
        // A member a majority confirmed gone hears first that it is gone (the
        // refute hint), and of our claims only once it is back: a czar paused
        // past its confirmation must learn that its own claims lapsed before it
        // weighs them against the ones made without it.
        if self.members.iter().any(|m| m.addr == to && !m.is_alive() && !m.soft_left) {
            return;
        }
        self.last_hint.insert((shard, to), now);
        let Some(st) = self.states.get(&shard) else { return };
        let Some(czar) = st.replica.czar else { return };
        // A standing we only assumed is stated as provisional: stated as
        // backed, it would let a provisional claim displace a live backed czar
        // at whoever took our word for it, the czar itself included
        // (partition-heal, 32 peers, seed 308: the minority side's claim
        // reached the majority side's followers in deltas after the heal, and
        // their hints told the backed czar that claim was backed; it gave way,
        // and its commit made during the cut was lost).
        let assumed = st.assumes_standing(st.replica.epoch, czar);
        let frame = Frame::Authority {
            shard,
            epoch: st.replica.epoch,
            czar,
            seq: st.replica.epoch_start_seq,
            checksum: st.replica.epoch_start_checksum,
            backed: st.replica.backed && !assumed,
            start_known: st.replica.epoch_start_trusted,
        };
        self.queue_frame(to, &frame);
    }

    // ----- replication ----------------------------------------------------------

    /// `mask`: the bits of the short checksum the advert states (a piece's
    /// end states the low 32).
    fn handle_czar_advert(&mut self, now: Instant, sender: PeerId, advert: ShardVersion, mask: u64) {
        let shard = advert.shard;
        match self.offer_authority(now, shard, advert.version.epoch, sender, Some(advert.backed), None, Some(sender)) {
            Verdict::Unknown => {
                self.stats.drop(DropReason::UnknownShard);
                return;
            }
            Verdict::Stale => {
                self.stats.drop(DropReason::StaleEpoch);
                if let Some(addr) = self.members.get(&sender).map(|m| m.addr) {
                    self.send_authority_hint(now, shard, addr);
                }
                return;
            }
            Verdict::Retired => {
                self.stats.drop(DropReason::SplitPending);
                return;
            }
            Verdict::Same | Verdict::Accepted => {}
        }
        if sender == self.id {
            return;
        }
        let st = self.states.get_mut(&shard).expect("known shard");
        if let Some(load) = advert.load.filter(|_| st.replica.czar == Some(sender)) {
            st.czar_load = Some(load);
        }
        // Adverts can arrive out of order: keep the newest of this epoch.
        let stale = st.czar_advert.is_some_and(|(e, seq, _, _)| e == advert.version.epoch && seq > advert.version.seq);
        if !stale {
            st.czar_advert = Some((advert.version.epoch, advert.version.seq, advert.checksum & mask, mask));
        }
        self.check_sync(now, shard);
    }

    /// Compares our replica with the czar's last advert; asks for a repair if
    /// we have been out of step for longer than reordering explains.
    fn check_sync(&mut self, now: Instant, shard: ShardId) {
        if self.never_resync() {
            return;
        }
        let st = self.states.get_mut(&shard).expect("known shard");
        if st.replica.czar == Some(self.id) {
            st.out_of_sync_since = None;
            return;
        }
        let Some((advert_epoch, seq, checksum, mask)) = st.czar_advert else { return };
        // An advert of an epoch before ours says nothing of our czar's state:
        // compared with it, a czar that handed the shard on from the state
        // it wrote as czar (the start of the successor's epoch, which only
        // it holds) took its own writes for foreign ones, wanted a snapshot
        // and so stopped serving the start its successor was waiting for
        // (isolate-and-stall, 32 peers, seed 572).
        if advert_epoch < st.replica.epoch {
            st.czar_advert = None;
            return;
        }
        let mine = st.replica.seq();
        if mine == seq && st.replica.checksum().short() & mask == checksum && advert_epoch == st.replica.epoch {
            // Exactly the czar's state: on its epoch's history.
            st.replica.set_lineage(advert_epoch);
        }
        // Compare like with like: our checksum at the advertised seq, if we
        // have passed it and still remember it.
        let ours_there = st.replica.checksum_at(seq);
        // Ahead of the advert is in sync only if the czar wrote what we applied since.
        let czar = st.replica.czar;
        let foreign = mine > seq && czar.is_some_and(|c| st.replica.foreign_after(seq, c, 0));
        // Past the czar's state on an older lineage: its epoch's history past its
        // start holds only updates written in it (or later), so ours are not on
        // it, even when we no longer remember our checksum at the advert (a
        // snapshot of the losing side's state, installed past it).
        let older_lineage = mine > seq && st.replica.version().epoch < advert_epoch;
        let diverged = mine >= seq && (ours_there.is_some_and(|c| c & mask != checksum) || foreign || older_lineage);
        let behind = mine < seq;
        if !diverged && !behind && !st.want_snapshot && !st.replica.has_gap() {
            st.out_of_sync_since = None;
            return;
        }
        if diverged {
            st.want_snapshot = true;
        }
        let since = *st.out_of_sync_since.get_or_insert(now);
        let waited = now.saturating_duration_since(since);
        if waited < self.config.repair_delay && !st.replica.has_gap() && !st.want_snapshot {
            return;
        }
        let from = if st.want_snapshot { 0 } else { mine + 1 };
        self.request_repair(now, shard, from, None, false);
    }

    fn request_repair(&mut self, now: Instant, shard: ShardId, from_seq: u64, hint: Option<PeerId>, force: bool) {
        let st = self.states.get_mut(&shard).expect("known shard");
        let due = st.last_repair.is_none_or(|t| now.saturating_duration_since(t) >= self.config.repair_retry_interval);
        if !due && !force {
            return;
        }
        // History before this epoch may still be with the previous czar.
        let me = self.id;
        let usable = |p: &PeerId| *p != me && self.members.is_healthy(p);
        // A source that did not move us on since we last asked it may not hold
        // the history at all (it relayed the claim, say), or its answer (a
        // whole snapshot, over a slow uplink) is still on its way: ask another
        // this time, and the source again the time after.
        let mut fruitless = st.catch_up_to.is_some()
            && st
                .last_repair_asked
                .is_some_and(|(asked, seq)| seq == st.replica.seq() && Some(asked) == st.catch_up_source);
        // The member known to hold the start stays our source even while we
        // suspect it: a saturated uplink looks like silence, yet it answers.
        // A new one (a new takeover's most advanced voter) replaces it.
        let live = |p: &PeerId| *p != me && self.members.is_alive(p);
        if st.catch_up_to.is_some() {
            if let Some(h) = hint.filter(|h| live(h) && Some(*h) != st.catch_up_source) {
                st.catch_up_source = Some(h);
                fruitless = false;
            }
        }
        let hint = if fruitless { None } else { hint.filter(|h| usable(h)).or(st.catch_up_source.filter(live)) };
        // Followers repair from the czar they follow: it is the only one whose
        // updates they take. A czar catching up asks whoever holds its
        // agreed starting state.
        let target = if st.replica.czar == Some(me) {
            let asked_last = st.last_repair_asked.map(|(p, _)| p);
            let others: Vec<PeerId> = self.members.others().map(|m| m.id).filter(|p| usable(p)).collect();
            let fallback = st.replica.prev_czar.filter(|p| usable(p) && Some(*p) != asked_last).or_else(|| {
                let fresh: Vec<PeerId> = others.iter().copied().filter(|p| Some(*p) != asked_last).collect();
                (!fresh.is_empty()).then(|| fresh[self.rng.gen_range(0..fresh.len())])
            });
            hint.or(fallback)
        } else {
            // A follower asks its czar; a repeated ask right after one to the
            // czar goes to another member instead (anti-entropy: the czar's
            // uplink may be what loses the answers), unless we need the
            // state whole, which only the czar's snapshot gives us.
            let czar = st.replica.czar.filter(usable);
            let again = st
                .last_repair
                .is_some_and(|t| now.saturating_duration_since(t) <= self.config.repair_retry_interval * 2)
                && st.last_repair_asked.is_some_and(|(p, _)| Some(p) == czar);
            let helper = if again && !st.want_snapshot && from_seq > 0 {
                let others: Vec<PeerId> =
                    self.members.others().map(|m| m.id).filter(|p| usable(p) && Some(*p) != czar).collect();
                (!others.is_empty()).then(|| others[self.rng.gen_range(0..others.len())])
            } else {
                None
            };
            helper.or(czar).or(hint)
        };
        let Some(target) = target.filter(|t| *t != self.id) else { return };
        let Some(addr) = self.members.get(&target).filter(|m| m.is_alive()).map(|m| m.addr) else { return };
        st.last_repair = Some(now);
        st.last_repair_asked = Some((target, st.replica.seq()));
        self.stats.repairs_requested += 1;
        let checksum = if from_seq == 0 { 0 } else { st.replica.checksum_at(from_seq - 1).unwrap_or(0) };
        self.queue_frame(addr, &Frame::RepairReq { shard, from_seq, checksum });
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_delta(
        &mut self,
        now: Instant,
        sender: PeerId,
        shard: ShardId,
        proof: BatchProof,
        mut updates: Vec<Update>,
        paired: bool,
    ) {
        // A piece (`paired`) came from its author, whose pair MAC we checked:
        // it has no signature yet, and states half a base.
        let (epoch, first_seq) = (proof.epoch, proof.first_seq);
        let Some(st) = self.states.get(&shard) else {
            self.stats.drop(DropReason::UnknownShard);
            return;
        };
        if first_seq + updates.len() as u64 > wire::MAX_SEQ - SEQ_HEADROOM {
            self.stats.drop(DropReason::TooLong);
            return;
        }
        // Signed by someone who cannot have written it: no further work.
        let plausible_author = match epoch.cmp(&st.replica.epoch) {
            std::cmp::Ordering::Equal => st.replica.czar == Some(proof.author),
            // A newer epoch: an implicit claim, by its sender only.
            std::cmp::Ordering::Greater => proof.author == sender,
            // Older history, relayed by the czar we follow (or to a czar
            // catching up): signed by whoever held that epoch on its lineage.
            // Claims may have raced for that epoch, so we do not insist on
            // the one we happened to see; the signature is checked below.
            std::cmp::Ordering::Less => true,
        };
        if !plausible_author {
            self.stats.drop(DropReason::NotCzar);
            return;
        }
        let newer = epoch > st.replica.epoch;
        if newer {
            if !paired && !self.verify_run(shard, &proof, &updates) {
                self.stats.drop(DropReason::BadSignature);
                return;
            }
            // A delta from a newer epoch is an implicit claim by its sender.
            if self.offer_authority(now, shard, epoch, sender, None, None, Some(sender)) != Verdict::Accepted {
                self.stats.drop(DropReason::StaleEpoch);
                return;
            }
        }
        let st = self.states.get(&shard).expect("known shard");
        // Followers take updates from the czar they follow: it serves the
        // history before its epoch from its own log. Taking older epochs from
        // anyone else would mix two lineages whenever claims raced. A run the
        // czar signed in its own epoch is its lineage whoever relays it (a
        // member answering a repair while the czar's uplink is saturated).
        let relayed = epoch == st.replica.epoch
            && st.replica.czar == Some(proof.author)
            && sender != proof.author
            && self.members.is_alive(&sender);
        let from_czar = (st.replica.czar == Some(sender) && epoch <= st.replica.epoch) || relayed;
        // A czar catching up takes history from any member: the checksum at the
        // agreed starting point vouches for it (see `check_catch_up`).
        let for_catch_up = st.catch_up_to.is_some_and(|(target, _)| first_seq <= target) && epoch < st.replica.epoch;
        if !from_czar && !for_catch_up {
            if epoch < st.replica.epoch {
                self.stats.drop(DropReason::StaleEpoch);
                if let Some(addr) = self.members.get(&sender).map(|m| m.addr) {
                    self.send_authority_hint(now, shard, addr);
                }
            } else {
                self.stats.drop(DropReason::NotCzar);
            }
            return;
        }
        // Whoever relays it, the run must carry its author's signature.
        if !newer && !paired && !self.verify_run(shard, &proof, &updates) {
            self.stats.drop(DropReason::BadSignature);
            return;
        }
        if for_catch_up && !from_czar {
            let limit = st.catch_up_to.map_or(0, |(t, _)| t);
            let keep = limit.saturating_sub(first_seq - 1).min(updates.len() as u64) as usize;
            updates.truncate(keep);
            if updates.is_empty() {
                return;
            }
        }
        let st = self.states.get(&shard).expect("known shard");
        // Our state is off the czar's history: building on it only adds to the
        // mess. Wait for the snapshot; anything newer is repaired after it.
        if st.want_snapshot && st.catch_up_to.is_none() {
            return;
        }
        // A run of an older epoch is history from before our epoch's start.
        // A follower whose state is on its epoch's history (at or past the
        // start) takes nothing from one: up to its seq it holds that history
        // already, and past the start an epoch's history holds only updates
        // written in it or later. Such a run that does not match ours is
        // another lineage's (its czar sent it under a claim it has since
        // given up, and it was still on its way when we took the new claim),
        // not a sign that we are off: marking ourselves off would stop us
        // serving the start a czar catching up needs, while we wait for its
        // snapshot (isolate-and-stall, 32 peers, seeds 556 and 631).
        if epoch < st.replica.epoch
            && st.catch_up_to.is_none()
            && st.replica.on_current_lineage()
            && st.replica.seq() >= st.replica.epoch_start_seq
        {
            self.stats.drop(DropReason::StaleEpoch);
            return;
        }
        // The run builds on a state we can check: if ours there differs, we are
        // off the sender's history (a lost race between claims): resync.
        if st.replica.checksum_at(first_seq - 1).is_some_and(|ours| !proof.builds_on(ours)) {
            let st = self.states.get_mut(&shard).expect("known shard");
            if st.catch_up_to.is_none() {
                st.want_snapshot = true;
                self.stats.drop(DropReason::OffHistory);
                self.request_repair(now, shard, 0, Some(sender), false);
            }
            return;
        }
        #[cfg(feature = "faults")]
        if self.fault == Some(Fault::SkipDeltaSilently) && !self.fault_fired {
            self.fault_fired = true;
            // Deliberately broken: the first update becomes a no-op, once.
            let st = &self.states[&shard];
            let key = updates[0].key.clone();
            let op = match st.replica.get(&key) {
                Some(v) => Op::Put(v.to_vec()),
                None => Op::Delete,
            };
            updates[0] = Update { key, op };
        }
        let last_seq = first_seq + updates.len() as u64 - 1;
        let whole = last_seq == proof.last_seq();
        // The run's end, in the bits it states (a piece: the low 32).
        let (after, mask) = (proof.after, proof.checksum_mask());
        let st = self.states.get_mut(&shard).expect("known shard");
        let proof = Arc::new(proof);
        // A signed run may bring the signature of updates we hold from its
        // pieces: those it repeats (only then is it kept to compare).
        let signed = (!paired && first_seq <= st.replica.seq()).then(|| updates.clone());
        let outcome = st.replica.apply_remote(
            epoch,
            first_seq,
            updates,
            Some(Arc::clone(&proof)),
            self.config.log_capacity,
            self.config.max_early_updates,
        );
        if let Some(updates) = signed.filter(|_| outcome.duplicates > 0) {
            st.replica.adopt(&proof, &updates);
        }
        // A run signature that came early: its updates may all be here now.
        if let Some(early) = st.early_run_sig.filter(|e| st.replica.seq() >= e.first_seq + u64::from(e.count) - 1) {
            st.early_run_sig = None;
            self.handle_run_sig(shard, early, false);
        }
        let st = self.states.get_mut(&shard).expect("known shard");
        self.stats.drop_n(DropReason::Duplicate, outcome.duplicates as u64);
        self.stats.drop_n(DropReason::BufferFull, outcome.overflow as u64);
        self.stats.drop_n(DropReason::OffHistory, outcome.off_history as u64);
        let catching_up = st.catch_up_to.is_some();
        let gap = outcome.gap;
        let off_history = outcome.off_history > 0;
        // The run ends at the author's checksum, or we have diverged from it.
        let diverged = whole && st.replica.checksum_at(last_seq).is_some_and(|ours| ours & mask != after);
        st.replica.note_start_reached();
        self.stats.updates_applied += outcome.applied.len() as u64;
        for e in &outcome.applied {
            self.note_shard_update(shard, e.update.encoded_len());
        }
        if self.config.update_events {
            for e in outcome.applied {
                // The log holds every update resolved: never a patch or trend.
                let value = match e.update.op {
                    Op::Put(v) => Some(v),
                    Op::Delete | Op::Patch(_) | Op::Trend(_) => None,
                };
                // Every remotely applied update came in a signed run or a piece.
                let Some(author) = e.proof.as_ref().map(|p| p.author) else { continue };
                self.push_event(Event::Updated {
                    shard,
                    version: Version { epoch: e.epoch, seq: e.seq },
                    author,
                    key: e.update.key,
                    value,
                });
            }
        }
        if off_history {
            // Updates that do not continue our state (buffered from a lineage
            // we left, or a run whose earlier part is not what we applied): our
            // history and the sender's part ways here. Take the state whole.
            let st = self.states.get_mut(&shard).expect("known shard");
            st.want_snapshot = true;
            self.request_repair(now, shard, 0, Some(sender), true);
            return;
        }
        if diverged && !catching_up {
            self.stats.drop(DropReason::BadChecksum);
            let st = self.states.get_mut(&shard).expect("known shard");
            st.want_snapshot = true;
            self.request_repair(now, shard, 0, Some(sender), true);
            return;
        }
        if gap {
            let from = self.states[&shard].replica.seq() + 1;
            self.request_repair(now, shard, from, Some(sender), false);
        }
        if catching_up {
            self.check_catch_up(now, shard, false);
        } else {
            self.check_sync(now, shard);
        }
    }

    /// The signature of a run whose pieces we applied: checked against the
    /// updates as the pieces brought them, then kept as their proof, so we
    /// can pass the run on (repairs) and prove what we applied.
    /// `keep`: one that comes before the last of its updates (they are
    /// being repaired) is kept and tried again once we hold them.
    fn handle_run_sig(&mut self, shard: ShardId, early: EarlyRunSig, keep: bool) {
        let EarlyRunSig { author, epoch, first_seq, count, sig } = early;
        let Some(st) = self.states.get_mut(&shard) else {
            self.stats.drop(DropReason::UnknownShard);
            return;
        };
        let last = first_seq + u64::from(count) - 1;
        if keep && st.replica.seq() < last && st.replica.czar == Some(author) && st.replica.epoch == epoch {
            st.early_run_sig = Some(early);
            return;
        }
        // The run's checksums are ours there: the signature holds only if
        // they are the author's.
        let ends = st.replica.checksum_at(first_seq - 1).zip(st.replica.checksum_at(last));
        let Some((base, after)) = ends else {
            self.stats.drop(DropReason::UnmatchedRun);
            return;
        };
        let run = BatchProof { author, epoch, first_seq, count, base, after, sig };
        let Some(updates) = st.replica.pieces_of(&run) else {
            self.stats.drop(DropReason::UnmatchedRun);
            return;
        };
        if !self.verify_run(shard, &run, &updates) {
            self.stats.drop(DropReason::BadSignature);
            return;
        }
        let st = self.states.get_mut(&shard).expect("known shard");
        st.replica.attach_proof(&Arc::new(run));
    }

    /// Checks a run's signature by its author (see [`proof`]).
    fn verify_run(&self, shard: ShardId, proof: &BatchProof, updates: &[Update]) -> bool {
        #[cfg(feature = "faults")]
        if self.fault == Some(Fault::AcceptAnySignature) {
            return true;
        }
        let Some(key) = self.members.get(&proof.author).map(|m| m.public_key) else { return false };
        let message = proof.message(&self.session_tag, shard, updates);
        proof::verify(&key, &message, &proof.sig)
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_forward(
        &mut self,
        now: Instant,
        from: SocketAddr,
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
        if origin == self.id {
            // Our own write, passed back by the czar of the shard we first
            // sent it to, which had not applied it: the shard holding its key
            // is ours now.
            let leaf = self.pending.get(&write_id).map(|p| self.leaf_of(p.shard, &p.update.key));
            match leaf {
                Some(leaf) if self.states.get(&leaf).is_some_and(|l| l.is_ready_czar(self.id) && !l.writes_held()) => {
                    self.pending.get_mut(&write_id).expect("present").shard = leaf;
                    self.apply_own_pending(write_id);
                }
                _ => self.stats.drop(DropReason::Duplicate),
            }
            return;
        }
        if st.is_retired() {
            // We applied it as the shard's czar before the split or merge and
            // the writer missed our acknowledgement: it gets it again, so the
            // shard holding the key now does not apply it a second time.
            if let Some(version) = st.applied_forwards.get(&(origin, write_id)).copied() {
                self.send_forward_ack(origin, from, write_id, shard, version);
                return;
            }
            // The writer has not seen the split yet, or asks us first: the
            // shard holding the key now takes it.
            let leaf = self.leaf_of(shard, &update.key);
            let leaf_czar = self.states.get(&leaf).and_then(|l| l.replica.czar);
            if leaf_czar == Some(origin) && sender == origin {
                // The writer holds the key's shard now: it applies the write itself.
                self.queue_frame(from, &Frame::Forward { write_id, origin, shard: leaf, update });
            } else if leaf != shard {
                self.handle_forward(now, from, sender, write_id, origin, leaf, update);
            }
            return;
        }
        if st.is_ready_czar(self.id) && st.writes_held() {
            // Our split is being voted on: the write waits for it, then goes
            // to the child that holds its key.
            self.hold_forward(now, from, origin, write_id, shard, update);
            return;
        }
        if st.is_ready_czar(self.id) {
            self.apply_forward(now, shard, origin, write_id, update, from);
            return;
        }
        // The czar is suspected and we would take the shard over (or we are
        // taking it over): hold the write and apply it once we are ready, so
        // the new czar's first update does not wait for writers to learn of it.
        if sender == origin && self.is_heir(shard) {
            self.hold_forward(now, from, origin, write_id, shard, update);
            return;
        }
        self.relay_to_czar(shard, sender, origin, &Frame::Forward { write_id, origin, shard, update });
    }

    /// Keeps a forwarded write in `shard`'s `held_forwards` (once per write,
    /// up to `MAX_HELD_FORWARDS`) until `flush_held_forwards` sends it on.
    fn hold_forward(
        &mut self,
        now: Instant,
        from: SocketAddr,
        origin: PeerId,
        write_id: u64,
        shard: ShardId,
        update: Update,
    ) {
        let st = self.states.get_mut(&shard).expect("known shard");
        if st.held_forwards.iter().any(|h| h.origin == origin && h.write_id == write_id) {
            self.stats.drop(DropReason::Duplicate);
        } else if st.held_forwards.len() >= MAX_HELD_FORWARDS {
            self.stats.drop(DropReason::BufferFull);
        } else {
            st.held_forwards.push_back(HeldForward { origin, write_id, update, reply_to: from, at: now });
        }
    }

    /// Not (yet) the czar: relays a writer's frame once toward the czar we
    /// follow (never back, never twice: only frames straight from their
    /// writer); the writer retries anyway.
    fn relay_to_czar(&mut self, shard: ShardId, sender: PeerId, origin: PeerId, frame: &Frame) {
        let czar = self.states.get(&shard).and_then(|st| st.replica.czar);
        let target = czar
            .filter(|c| *c != self.id && *c != sender && sender == origin)
            .and_then(|c| self.members.get(&c).filter(|m| m.is_alive()).map(|m| m.addr));
        match target {
            Some(addr) => self.queue_frame(addr, frame),
            None => self.stats.drop(DropReason::ForwardRefused),
        }
    }

    /// As ready czar: applies a forwarded write once (a repeat is answered
    /// with the version it got) and acknowledges it to its writer.
    fn apply_forward(
        &mut self,
        now: Instant,
        shard: ShardId,
        origin: PeerId,
        write_id: u64,
        update: Update,
        from: SocketAddr,
    ) {
        let st = self.states.get(&shard).expect("known shard");
        let version = match st.applied_forwards.get(&(origin, write_id)) {
            Some(v) => *v,
            None => {
                let version = self.apply_as_czar_version(shard, update);
                let st = self.states.get_mut(&shard).expect("known shard");
                st.applied_forwards.insert((origin, write_id), version);
                st.applied_order.push_back((origin, write_id));
                while st.applied_order.len() > MAX_REMEMBERED_FORWARDS {
                    if let Some(old) = st.applied_order.pop_front() {
                        st.applied_forwards.remove(&old);
                    }
                }
                version
            }
        };
        // Batch the delta with others arriving soon; the ack waits for it.
        if self.deltas_held_until.is_none() && !self.config.delta_batch_delay.is_zero() {
            self.deltas_held_until = Some(now + self.config.delta_batch_delay);
        }
        self.send_forward_ack(origin, from, write_id, shard, version);
    }

    /// Acknowledges a forwarded write to its writer (at its member address,
    /// else where the frame came from); held with our deltas if they are.
    fn send_forward_ack(&mut self, origin: PeerId, from: SocketAddr, write_id: u64, shard: ShardId, version: Version) {
        let to = self.members.get(&origin).filter(|m| m.is_alive()).map(|m| m.addr).unwrap_or(from);
        let ack = Frame::ForwardAck { write_id, shard, version }.to_bytes();
        if self.deltas_held_until.is_some() {
            self.held_acks.push((to, ack));
        } else {
            self.queue(to, ack);
        }
    }

    /// The peer that takes `shard` over if its czar is gone: the first
    /// live, unsuspected peer in the shard's ranking other than the czar,
    /// while the czar is suspected or no longer live (`None` otherwise).
    /// Writers send their writes there meanwhile (§6.8).
    fn heir_of(&mut self, shard: ShardId) -> Option<PeerId> {
        let czar = self.states.get(&shard)?.replica.czar?;
        if self.members.is_healthy(&czar) {
            return None;
        }
        let tops: Vec<PeerId> = self.top_ranked(shard).to_vec();
        tops.into_iter().find(|p| *p != czar && self.members.is_healthy(p))
    }

    /// Whether we hold forwarded writes for `shard` to apply as its next
    /// czar: we are taking it over (catching up, or a round of ours claims
    /// it), or its czar is suspected and we are its heir.
    fn is_heir(&mut self, shard: ShardId) -> bool {
        let Some(st) = self.states.get(&shard) else { return false };
        if st.replica.czar == Some(self.id) || self.takeover_pending(shard) {
            return true;
        }
        self.heir_of(shard) == Some(self.id)
    }

    /// Applies the writes we held for shards we are now ready czar of; hands
    /// them to the czar if we are no longer its heir (it was heard again);
    /// drops those older than `forward_timeout` (their writers gave up).
    fn flush_held_forwards(&mut self, now: Instant) {
        let shards: Vec<ShardId> =
            self.states.iter().filter(|(_, st)| !st.held_forwards.is_empty()).map(|(s, _)| *s).collect();
        for shard in shards {
            let st = &self.states[&shard];
            if st.is_retired() {
                // Held while the shard split: each goes to the child holding its key.
                let held = std::mem::take(&mut self.states.get_mut(&shard).expect("listed").held_forwards);
                for h in held {
                    let leaf = self.leaf_of(shard, &h.update.key);
                    self.handle_forward(now, h.reply_to, h.origin, h.write_id, h.origin, leaf, h.update);
                }
                continue;
            }
            if st.is_ready_czar(self.id) && st.writes_held() {
                continue; // our split is being voted on
            }
            let ready = st.is_ready_czar(self.id);
            if !ready && self.is_heir(shard) {
                let timeout = self.config.forward_timeout;
                let st = self.states.get_mut(&shard).expect("listed");
                st.held_forwards.retain(|h| now.saturating_duration_since(h.at) < timeout);
                continue;
            }
            let held = std::mem::take(&mut self.states.get_mut(&shard).expect("listed").held_forwards);
            for h in held {
                if ready {
                    self.apply_forward(now, shard, h.origin, h.write_id, h.update, h.reply_to);
                } else {
                    let frame = Frame::Forward { write_id: h.write_id, origin: h.origin, shard, update: h.update };
                    self.relay_to_czar(shard, h.origin, h.origin, &frame);
                }
            }
            // The first update of a new czar ends its failover: it leaves now,
            // not after the batching delay.
            if ready {
                self.flush_outgoing();
            }
        }
    }

    fn handle_forward_ack(&mut self, write_id: u64, shard: ShardId, version: Version) {
        // The ack may name a child of the shard we sent to (it split
        // meanwhile), or the shard we first sent to (its czar had applied it).
        let ours = self.pending.get(&write_id).is_some_and(|p| {
            self.holds_key_later(p.shard, &p.update.key, shard) || p.via.is_some_and(|(s, _)| s == shard)
        });
        match self.pending.get(&write_id) {
            Some(p) if ours => {
                let waited = self.clock.saturating_duration_since(p.created);
                self.telemetry.forward_latency.record(waited);
                self.pending.remove(&write_id);
                self.push_event(Event::WriteApplied { write: WriteId(write_id), shard, version });
            }
            _ => self.stats.drop(DropReason::Duplicate),
        }
    }

    /// Sends (or re-sends) waiting writes to their czars; applies those that
    /// have become ours. `only` limits it to one write that was just made.
    fn retry_pending(&mut self, now: Instant, only: Option<u64>) {
        if self.phase != Phase::Joined {
            return;
        }
        if only.is_none() {
            self.flush_held_forwards(now);
        }
        let ids: Vec<u64> = match only {
            Some(id) => vec![id],
            None => self.pending.keys().copied().collect(),
        };
        for id in ids {
            let Some(p) = self.pending.get(&id) else { continue };
            let shard = p.shard;
            if now.saturating_duration_since(p.created) >= self.config.forward_timeout {
                self.pending.remove(&id);
                self.push_event(Event::WriteFailed { write: WriteId(id), shard, reason: WriteFailure::TimedOut });
                continue;
            }
            // First sent to a shard that split or merged since: its czar
            // answers if it applied the write and passes it on otherwise
            // (back to us if the shard holding the key now is ours).
            let alive = |c: &PeerId| *c != self.id && self.members.get(c).is_some_and(|m| m.is_alive());
            let (shard, via) = match p.via.filter(|(_, c)| alive(c)) {
                Some((first, czar)) => (first, Some(czar)),
                None => (shard, None),
            };
            let st = &self.states[&shard];
            let Some(czar) = via.or(st.replica.czar) else { continue };
            if via.is_none() && st.is_ready_czar(self.id) && st.writes_held() {
                continue; // our split is being voted on: the write follows it
            }
            if via.is_none() && st.is_ready_czar(self.id) {
                self.apply_own_pending(id);
                continue;
            }
            if czar == self.id {
                continue; // catching up as new czar: apply once ready
            }
            // While the czar is suspected, the write goes to the peer that
            // would take the shard over, which holds it and applies it as soon
            // as it is ready (if that is us, it waits here for the same).
            let target = match (via, self.heir_of(shard)) {
                (Some(czar), _) => czar,
                (None, Some(heir)) if heir == self.id => continue,
                (None, Some(heir)) => heir,
                (None, None) => czar,
            };
            let (due, retry) = match self.pending[&id].last_sent {
                None => (true, false),
                Some((_, to)) if to != target => (true, false),
                Some((t, _)) => (now.saturating_duration_since(t) >= self.config.forward_retry_interval, true),
            };
            let Some(addr) = self.members.get(&target).filter(|m| m.is_alive()).map(|m| m.addr) else { continue };
            if due && retry && !self.take_forward_retry(now) {
                continue; // the window is spent: it waits its turn, oldest first
            }
            if due {
                let p = &self.pending[&id];
                let first = p.last_sent.is_none();
                let frame = Frame::Forward { write_id: id, origin: self.id, shard, update: p.update.clone() };
                self.pending.get_mut(&id).expect("present").last_sent = Some((now, target));
                if first {
                    self.stats.writes_forwarded += 1;
                }
                self.queue_frame(addr, &frame);
            }
        }
    }

    /// Whether one more forwarded write may be sent again now: at most
    /// [`FORWARD_RETRY_WINDOW`] retries go per `forward_retry_interval`,
    /// whatever the number waiting. A czar catching up holds what it got
    /// without acknowledging it, and sending every waiting write again each
    /// interval would, from a writer with a narrow upload (a czar that stepped
    /// down), fill that upload with copies the czar already holds, and with
    /// it the repairs the czar is waiting for.
    fn take_forward_retry(&mut self, now: Instant) -> bool {
        let (start, used) = &mut self.forward_retries;
        if now.saturating_duration_since(*start) >= self.config.forward_retry_interval {
            *start = now;
            *used = 0;
        }
        if *used >= FORWARD_RETRY_WINDOW {
            return false;
        }
        *used += 1;
        true
    }

    /// Applies our waiting write `id` as the ready czar of its shard.
    fn apply_own_pending(&mut self, id: u64) {
        let p = self.pending.remove(&id).expect("present");
        let version = self.apply_as_czar_version(p.shard, p.update);
        self.push_event(Event::WriteApplied { write: WriteId(id), shard: p.shard, version });
    }

    fn handle_repair_request(&mut self, to: SocketAddr, asker: PeerId, shard: ShardId, from_seq: u64, checksum: u64) {
        let Some(st) = self.states.get(&shard) else {
            self.stats.drop(DropReason::UnknownShard);
            return;
        };
        // Stepped down (our uplink is narrow): every member behind on the
        // shards we handed over asks us at once, and answering each would keep
        // the uplink full (a majority would then count us gone). Their new
        // czar asks too; it gets the history once and serves the members. A
        // shard we still hold (no eligible peer to take it) we serve as ever.
        if self.stepped_down() && st.replica.czar != Some(self.id) && st.replica.czar != Some(asker) {
            self.stats.drop(DropReason::UplinkBusy);
            return;
        }
        // From inside our open run: the asker gets the rest of it as a piece
        // of its own. If that cannot be (the asker's state is not ours there,
        // or it gives no pair key), the run closes and goes signed.
        // (An asker off our history there gets a snapshot below.)
        let open = st.open_run.filter(|o| from_seq > 0 && from_seq <= o.last_seq);
        let inside = open.filter(|o| from_seq >= o.first_seq);
        if let Some(o) = inside.filter(|_| st.replica.checksum_at(from_seq - 1) == Some(checksum)) {
            if self.send_open_piece(asker, to, shard, o, from_seq) {
                return;
            }
            if let Some(sig) = self.close_run(shard) {
                self.broadcast(&sig);
            }
        }
        let st = &self.states[&shard];
        // History we hold only as pieces we cannot pass on: their author
        // will, while it is the czar and someone else asks. Once it is not
        // (it failed before signing them, and a new czar catches up to a
        // start past them), the asker gets our state whole below: nobody
        // can pass the pieces on, and a new czar that never reached its
        // start would give up on it and claim from an older state, losing
        // what was committed past it (czar-crash, 32 peers, seed 15, on
        // 0a86e94).
        let pieces_of = st.replica.entry_at(from_seq).and_then(|e| e.proof.as_ref()).filter(|p| !p.is_signed());
        let author_serves = pieces_of.is_some_and(|p| st.replica.czar == Some(p.author) && p.author != asker);
        if st.replica.czar != Some(self.id) && author_serves {
            return;
        }
        // The log continues the asker's state only if its history is a prefix
        // of ours: same checksum at the seq it has. Otherwise it gets our state whole.
        let prefix = from_seq > 0 && st.replica.checksum_at(from_seq - 1) == Some(checksum);
        // Off our history for sure only if we have passed their seq and remember it.
        let st_seq = st.replica.checksum_at(from_seq.saturating_sub(1)).map_or(0, |_| st.replica.seq() + 1);
        // A log that holds the seqs but not as signed runs yields no runs. Our
        // own updates still waiting in `outgoing` are on their way; any other
        // (an update of ours whose sending a claim we accepted cancelled: it
        // stays unsigned for good) cannot be resent, so the asker, behind us,
        // gets our state whole instead of nothing.
        let own_unsent = st.outgoing.first().is_some_and(|e| e.seq <= from_seq);
        // A run signed by a peer we no longer know (it left and its tombstone
        // expired, taking its key) cannot be checked by the asker either: it
        // would refuse it (`BadSignature`) at every ask, for good. Nothing
        // else serves that history (only the czar relays older epochs), so the
        // asker gets our state whole instead (grow-shrink, 24 peers, seed 1).
        let verifiable = |runs: &Vec<(Arc<BatchProof>, Vec<Update>)>| {
            runs.iter().all(|(proof, _)| self.members.get(&proof.author).is_some())
        };
        let servable =
            |runs: &Vec<_>| (!runs.is_empty() || from_seq > st.replica.seq() || own_unsent) && verifiable(runs);
        match st.replica.signed_runs_from(from_seq, MAX_REPAIR_UPDATES).filter(|runs| prefix && servable(runs)) {
            Some(runs) => {
                // Resent exactly as their author signed them, at most about
                // MAX_REPAIR_BYTES at a time: runs of large values go in
                // fragments, and a burst of many would only crowd the asker's
                // reassembly. It asks again for the rest.
                let mut sent = 0;
                let mut next = from_seq;
                for (proof, updates) in runs {
                    if sent >= MAX_REPAIR_BYTES {
                        break;
                    }
                    next = proof.last_seq() + 1;
                    let frame = proof.frame(shard, updates).to_bytes_from(&self.id);
                    sent += frame.len();
                    self.queue(to, frame);
                }
                // The signed runs end where our open run starts: it follows as a piece.
                if let Some(o) = open.filter(|o| o.first_seq == next && sent < MAX_REPAIR_BYTES) {
                    self.send_open_piece(asker, to, shard, o, next);
                }
            }
            // A member that is not the czar and is not past the asker has
            // nothing it lacks (a follower asking around for history).
            None if st.replica.czar != Some(self.id) && from_seq > 0 && st.replica.seq() < from_seq => {}
            // Asked for a snapshot, or off our history: either way their state goes.
            None => self.send_snapshot(to, shard, from_seq == 0 || !prefix && from_seq <= st_seq),
        }
    }

    /// Sends `asker` at `to` our open run `open` of `shard` from `from` on,
    /// as one piece for it. `false` if it cannot be (our log no longer holds
    /// the run as sent, or the asker gives no pair key).
    fn send_open_piece(&mut self, asker: PeerId, to: SocketAddr, shard: ShardId, open: OpenRun, from: u64) -> bool {
        let Some(key) = self.pair_key(&asker) else { return false };
        let st = &self.states[&shard];
        let Some(updates) = st.replica.own_unsigned(open.epoch, from, open.last_seq) else { return false };
        let Some(after) = st.replica.checksum_at(open.last_seq).map(|c| c as u32) else { return false };
        let Some(base) = st.replica.checksum_at(from - 1).map(|c| c as u32) else { return false };
        let mac = proof::piece_mac(&key, &self.id, &asker, shard, open.epoch, from, base, after, &updates);
        let frame = Frame::Piece { shard, epoch: open.epoch, first_seq: from, base, after, mac, updates };
        self.queue_frame(to, &frame);
        true
    }

    fn send_snapshot(&mut self, to: SocketAddr, shard: ShardId, resync: bool) {
        let st = &self.states[&shard];
        let Some(czar) = st.replica.czar else { return };
        // A snapshot is labelled with the epoch we follow: only a state on that
        // epoch's history may carry it. Behind the epoch's start (or catching
        // up to it as its czar) we would hand out an older state under a newer
        // label; the asker gets its state from someone else.
        let on_lineage = st.replica.on_current_lineage() && !st.want_snapshot;
        if st.replica.seq() < st.replica.epoch_start_seq || st.catch_up_to.is_some() || !on_lineage {
            return;
        }
        let version = st.replica.version();
        let checksum = st.replica.checksum().0;
        let mut chunks: Vec<Vec<Entry>> = vec![Vec::new()];
        let mut used = 0;
        for (k, v, written, before) in st.replica.entries_written() {
            let len = wire::varint_len(k.len() as u64)
                + k.len()
                + wire::varint_len(v.len() as u64)
                + v.len()
                + wire::varint_len(u64::from(written.epoch))
                + wire::varint_len(written.seq)
                + wire::varint_len(before.len() as u64)
                + before.len();
            let current = chunks.last().expect("non-empty");
            if used + len > MAX_FRAME_BYTES - SNAPSHOT_FRAME_OVERHEAD && !current.is_empty() {
                chunks.push(Vec::new());
                used = 0;
            }
            used += len;
            chunks.last_mut().expect("non-empty").push((k.to_vec(), v.to_vec(), written, before.to_vec()));
        }
        let Ok(count) = u16::try_from(chunks.len()) else { return };
        if count > MAX_SNAPSHOT_CHUNKS {
            return;
        }
        let digest = proof::snapshot_digest(st.replica.entries_written());
        let message = proof::snapshot_message(&self.session_tag, shard, version, &czar, &checksum, count, &digest);
        let sig = proof::sign(&self.keypair, &message);
        for (i, entries) in chunks.into_iter().enumerate() {
            let chunk = i as u16;
            let frame = Frame::Snapshot {
                shard,
                version,
                czar,
                checksum,
                chunk,
                chunks: count,
                entries,
                resync,
                signer: self.id,
                sig,
            };
            self.queue_frame(to, &frame);
        }
    }

    /// One chunk of a snapshot. `any_signer`: we are joining and take the
    /// state our welcomer signed; otherwise only the czar the snapshot names
    /// may sign it, but for a czar catching up or restarting (see below).
    fn handle_snapshot(
        &mut self,
        now: Instant,
        header: SnapshotHeader,
        chunk: u16,
        entries: Vec<Entry>,
        any_signer: bool,
    ) {
        let SnapshotHeader { shard, version, czar, checksum, chunks, resync, signer, sig } = header;
        if !self.states.contains_key(&shard) {
            self.stats.drop(DropReason::UnknownShard);
            return;
        }
        if chunks > MAX_SNAPSHOT_CHUNKS || version.seq > wire::MAX_SEQ - SEQ_HEADROOM {
            self.stats.drop(DropReason::TooLong);
            return;
        }
        let st = &self.states[&shard];
        let short = u64::from_le_bytes(checksum[..8].try_into().expect("8 bytes"));
        // Who may sign: the czar the snapshot names, always. Anyone else only
        // where the content is vouched for otherwise: while we are joining (our
        // welcomer), when it is exactly the starting state our catch-up agreed
        // on (seq and checksum), or, from our previous czar, the freshest state
        // of the lineage for a catch-up that could not get that (we then
        // re-assert with it). A snapshot naming us czar is taken only by a
        // blank replica (we restarted and forgot our own shard).
        let exact_target = st.catch_up_to.is_some_and(|(target, sum)| version.seq == target && short == sum);
        let catch_up_match = st.catch_up_to.is_some_and(|(target, _)| version.seq >= target)
            && (exact_target || signer == czar || Some(signer) == st.replica.prev_czar);
        let blank = st.replica.seq() == 0;
        let names_us = czar == self.id && st.replica.czar != Some(self.id);
        if signer != czar && !(any_signer || catch_up_match || (names_us && blank)) {
            self.stats.drop(DropReason::NotCzar);
            return;
        }
        // Nothing in the header is acted on before the whole snapshot is
        // verified; only a claim that cannot win is refused early.
        if !catch_up_match && version.epoch < st.replica.epoch {
            self.stats.drop(DropReason::StaleSnapshot);
            return;
        }
        let st = self.states.get_mut(&shard).expect("known shard");
        let fresh = match &st.assembly {
            Some(a) => {
                a.version != version
                    || a.checksum != checksum
                    || a.chunks.len() != chunks as usize
                    || a.signer != signer
                    || a.sig != sig
            }
            None => true,
        };
        if fresh {
            st.assembly = Some(Assembly {
                version,
                czar,
                checksum,
                signer,
                sig,
                chunks: vec![None; chunks as usize],
                received: 0,
                started: now,
            });
        }
        let a = st.assembly.as_mut().expect("just set");
        let slot = &mut a.chunks[chunk as usize];
        if slot.is_some() {
            self.stats.drop(DropReason::Duplicate);
            return;
        }
        *slot = Some(entries);
        a.received += 1;
        if a.received < a.chunks.len() {
            return;
        }
        let a = st.assembly.take().expect("complete");
        let all: Vec<Entry> = a.chunks.into_iter().flatten().flatten().collect();
        let sum = Replica::checksum_of(all.iter().map(|(k, v, _, _)| (k.as_slice(), v.as_slice())));
        if sum.0 != a.checksum {
            self.stats.drop(DropReason::BadSnapshot);
            return;
        }
        let digest =
            proof::snapshot_digest(all.iter().map(|(k, v, w, b)| (k.as_slice(), v.as_slice(), *w, b.as_slice())));
        let message =
            proof::snapshot_message(&self.session_tag, shard, a.version, &a.czar, &a.checksum, chunks, &digest);
        let key = self.members.get(&a.signer).map(|m| m.public_key);
        if !key.is_some_and(|key| proof::verify(&key, &message, &a.sig)) {
            self.stats.drop(DropReason::BadSignature);
            return;
        }
        debug_assert_eq!(a.czar, czar);
        // Verified: now the claim it implies, and whether we want it. A claim
        // naming us that we did not hold (a hand-over we missed while joining,
        // a restart) starts from the snapshot's state, which is on that
        // epoch's history (§6.7, only such a state is served): never from our
        // own, which may be behind it (we would act as czar from there and
        // write over seqs the epoch already holds).
        let names_us = names_us.then_some(Start { seq: version.seq, checksum: short, trusted: true });
        if !catch_up_match
            && matches!(
                self.offer_authority(now, shard, version.epoch, czar, None, names_us, None),
                Verdict::Stale | Verdict::Retired
            )
        {
            self.stats.drop(DropReason::StaleSnapshot);
            return;
        }
        let st = self.states.get_mut(&shard).expect("known shard");
        // We already hold exactly this state (a late answer to an old request):
        // installing it would only roll back what we applied since (unless what
        // we applied since was written by someone else than this snapshot's
        // czar — a lineage that lost a race at an equal epoch — or in an epoch
        // before the snapshot's: the same czar's updates from a claim it lost,
        // isolate-and-stall 32 peers seed 45 at 6 s).
        if !catch_up_match
            && st.replica.checksum_at(version.seq) == Some(short)
            && !st.replica.foreign_after(version.seq, czar, version.epoch)
        {
            st.want_snapshot = false;
            if st.replica.seq() == version.seq && st.replica.czar == Some(czar) && st.replica.epoch == version.epoch {
                st.replica.set_lineage(version.epoch);
            }
            self.stats.drop(DropReason::StaleSnapshot);
            return;
        }
        // Not ahead of us: only if we asked for our state whole (the unsigned
        // `resync` flag alone does not make us roll back).
        let current = st.replica.czar == Some(czar) && st.replica.epoch == version.epoch;
        let wanted = version.seq > st.replica.seq() || st.want_snapshot;
        if !catch_up_match && (!current || !wanted || st.is_ready_czar(self.id)) {
            self.stats.drop(DropReason::StaleSnapshot);
            return;
        }
        let ours = st.replica.version();
        let had_own_history = st.replica.seq() > 0 && (ours.seq > a.version.seq || st.want_snapshot || resync);
        st.replica.install(a.version, all);
        st.want_snapshot = false;
        st.out_of_sync_since = None;
        self.stats.snapshots_installed += 1;
        if had_own_history {
            self.push_event(Event::Diverged { shard, ours, adopted: a.version });
        }
        self.push_event(Event::ShardResynced { shard, version: a.version });
        if self.states[&shard].catch_up_to.is_some() {
            self.check_catch_up(now, shard, true);
        } else {
            self.retry_pending(now, None);
        }
    }

    // ----- periodic work -----------------------------------------------------------

    fn tick(&mut self, now: Instant) {
        let mut dropped = Vec::new();
        self.reassembly.expire(now, &mut dropped);
        for reason in dropped {
            self.stats.drop(reason);
        }
        match self.phase {
            Phase::Idle | Phase::Left => return,
            Phase::Joining { last_sent, .. } => {
                let due = last_sent.is_none_or(|t| now.saturating_duration_since(t) >= self.config.join_retry_interval);
                if due {
                    self.send_join(now);
                }
                return;
            }
            Phase::Joined => {}
        }
        // Remove the silent: czars after `peer_timeout`, idle members (which beat
        // less often) after their longer timeout.
        let deadline =
            Instant::from_micros(now.as_micros().saturating_sub(self.config.peer_timeout.as_micros() as u64));
        let idle_timeout = self.config.idle_peer_timeout(self.members.alive_count());
        let idle_deadline = Instant::from_micros(now.as_micros().saturating_sub(idle_timeout.as_micros() as u64));
        let czars = self.czars();
        for id in self.members.silent_since(deadline) {
            let m = self.members.get(&id);
            let idle = !m.is_some_and(|m| Self::held_as_czar(m, &czars));
            if idle && m.is_some_and(|m| m.last_heard >= idle_deadline) {
                continue;
            }
            if self.members.mark_left(&id, now, true) {
                self.push_event(Event::PeerLeft { peer: id, reason: LeaveReason::Timeout });
            }
        }
        let ttl = Instant::from_micros(now.as_micros().saturating_sub(self.config.tombstone_ttl.as_micros() as u64));
        self.members.purge_left_before(ttl);
        self.last_refute_hint.retain(|_, t| *t >= ttl);
        let hint_horizon = Instant::from_micros(now.as_micros().saturating_sub(HINT_MEMORY.as_micros() as u64));
        self.last_hint.retain(|_, t| *t >= hint_horizon);
        // Every tick, not only on change: catches what an earlier reconcile could
        // not do yet (a new czar still catching up, say).
        self.reconcile_authority(now);
        // Heartbeats go out with the next flush, after this tick's deltas, so
        // the versions they advertise include everything sent before them.
        self.heartbeat_due = true;
        self.ticks += 1;
        // Repairs, stale snapshots, waiting writes.
        let ids: Vec<ShardId> = self.states.keys().copied().collect();
        // Asked only when a shard is stuck: it walks every member.
        let mut may_reassert = None;
        for shard in ids {
            if self.catch_up_stuck(now, shard)
                && *may_reassert.get_or_insert_with(|| self.hears_majority() && !self.just_resumed(now))
            {
                self.abandon_catch_up(now, shard);
                continue;
            }
            let st = self.states.get_mut(&shard).expect("known");
            if st
                .assembly
                .as_ref()
                .is_some_and(|a| now.saturating_duration_since(a.started) >= self.config.snapshot_timeout)
            {
                st.assembly = None;
                self.stats.drop(DropReason::BadSnapshot);
            }
            if st.want_snapshot {
                let hint = st.replica.prev_czar;
                self.request_repair(now, shard, 0, hint, false);
            } else if let Some((target, _)) = st.catch_up_to {
                let from = st.replica.seq() + 1;
                if from <= target {
                    self.request_repair(now, shard, from, None, false);
                } else {
                    self.check_catch_up(now, shard, false);
                }
            } else {
                self.check_sync(now, shard);
            }
        }
        self.retry_pending(now, None);
        self.drive_takeovers(now);
        self.reaffirm_provisional_claims(now);
        self.drive_critical(now);
        self.drive_telemetry(now);
        self.step_down_if_uplink_queued(now);
        self.drive_splits(now);
        self.check_suspicions(now);
    }

    // ----- output ----------------------------------------------------------------

    fn push_event(&mut self, event: Event) {
        self.note_event(&event);
        if self.events.len() >= self.config.max_queued_events {
            self.stats.drop(DropReason::EventQueueFull);
            return;
        }
        self.events.push_back(event);
    }

    /// Queues an encoded frame for `to`; one too large for a datagram goes
    /// as fragments.
    fn queue(&mut self, to: SocketAddr, frame: Vec<u8>) {
        if frame.len() <= MAX_FRAME_BYTES {
            self.outbox.entry(to).or_default().push(Queued::Frame(frame));
            return;
        }
        let id = self.next_fragment_id;
        self.next_fragment_id = id.wrapping_add(1);
        let Some(pieces) = fragment::split(id, &frame) else {
            debug_assert!(false, "frame of {} bytes", frame.len());
            return;
        };
        self.stats.frames_fragmented += 1;
        self.outbox.entry(to).or_default().extend(pieces.into_iter().map(Queued::Frame));
    }

    fn queue_frame(&mut self, to: SocketAddr, frame: &Frame) {
        self.queue(to, frame.to_bytes_from(&self.id));
    }

    fn broadcast(&mut self, frame: &Frame) {
        self.broadcast_bytes(frame.to_bytes_from(&self.id));
    }

    fn broadcast_bytes(&mut self, bytes: Vec<u8>) {
        let addrs: Vec<SocketAddr> = self.members.others().map(|m| m.addr).collect();
        self.queue_to(&addrs, bytes);
    }

    fn queue_to(&mut self, addrs: &[SocketAddr], bytes: Vec<u8>) {
        for &addr in addrs {
            self.queue(addr, bytes.clone());
        }
    }

    /// Turns applied-but-unsent updates into frames for every member: pieces
    /// of each shard's open run (authenticated to each member by a pair MAC)
    /// or, with `run_sign_interval` zero or for a run too large for one
    /// frame, signed delta frames. Runs due to close are signed here, their
    /// signatures queued after the pieces.
    fn flush_outgoing(&mut self) {
        self.deltas_held_until = None;
        let now = self.clock;
        let pieces_on = !self.config.run_sign_interval.is_zero();
        let mut frames = Vec::new();
        let mut pieces: Vec<(ShardId, Run, Option<RunEnd>)> = Vec::new();
        let mut closed = Vec::new();
        let shards: Vec<ShardId> =
            self.states.iter().filter(|(_, st)| !st.outgoing.is_empty()).map(|(id, _)| *id).collect();
        for shard in shards {
            let st = self.states.get_mut(&shard).expect("listed");
            let entries = std::mem::take(&mut st.outgoing);
            let base = entries.first().and_then(|e| st.replica.checksum_at(e.seq - 1)).unwrap_or(0);
            let now_at = (st.replica.version(), st.replica.checksum().short());
            for run in runs_of(base, &entries) {
                let end = Version { epoch: run.epoch, seq: run.first_seq + run.updates.len() as u64 - 1 };
                // The run that brings members to our current state: the
                // heartbeat in its datagram may advertise the shard by run.
                let fresh = ((end, run.after) == now_at).then_some((shard, end, run.after));
                let bytes: usize = run.updates.iter().map(Update::encoded_len).sum();
                if pieces_on && bytes <= MAX_RUN_BYTES {
                    let st = self.states.get_mut(&shard).expect("listed");
                    let extends = st.open_run.is_some_and(|o| {
                        o.epoch == run.epoch && o.last_seq + 1 == run.first_seq && o.bytes + bytes <= MAX_RUN_BYTES
                    });
                    if !extends {
                        closed.extend(self.close_run(shard));
                        let st = self.states.get_mut(&shard).expect("listed");
                        st.open_run = Some(OpenRun {
                            epoch: run.epoch,
                            first_seq: run.first_seq,
                            last_seq: run.first_seq - 1,
                            base: run.base,
                            bytes: 0,
                            opened: now,
                        });
                    }
                    let st = self.states.get_mut(&shard).expect("listed");
                    let open = st.open_run.as_mut().expect("opened above");
                    open.last_seq = end.seq;
                    open.bytes += bytes;
                    pieces.push((shard, run, fresh));
                    continue;
                }
                closed.extend(self.close_run(shard));
                let st = self.states.get_mut(&shard).expect("listed");
                let proof = Arc::new(BatchProof::sign(
                    &self.keypair,
                    &self.session_tag,
                    shard,
                    run.epoch,
                    run.first_seq,
                    run.base,
                    run.after,
                    &run.updates,
                ));
                st.replica.attach_proof(&proof);
                frames.push((proof.frame(shard, run.updates), fresh));
            }
        }
        let with_pieces: Vec<ShardId> = pieces.iter().map(|p| p.0).collect();
        closed.extend(self.close_due_runs(now, &with_pieces));
        if pieces.is_empty() && frames.is_empty() && closed.is_empty() {
            self.queue_held_acks();
            return;
        }
        let members = self.update_recipients();
        let addrs: Vec<SocketAddr> = members.iter().map(|(_, addr)| *addr).collect();
        for (shard, run, fresh) in pieces {
            // Encoded once; each member gets its own MAC over it.
            let mut updates = Vec::new();
            wire::put_updates(&mut updates, &run.updates);
            // The piece states the low half of its base and end.
            let (epoch, first_seq, base, after) = (run.epoch, run.first_seq, run.base as u32, run.after as u32);
            for &(id, addr) in &members {
                // A member whose key gives no pair key gets the run by repair, signed.
                let Some(key) = self.pair_key(&id) else { continue };
                let mac = proof::piece_mac_encoded(&key, &self.id, &id, shard, epoch, first_seq, base, after, &updates);
                let mut bytes = Vec::with_capacity(PIECE_HEADER_BYTES + updates.len());
                wire::put_piece_encoded(&mut bytes, shard, epoch, first_seq, base, after, &mac, &updates);
                match fresh.filter(|_| bytes.len() <= MAX_FRAME_BYTES) {
                    Some(end) => self.outbox.entry(addr).or_default().push(Queued::Run(end, bytes)),
                    None => self.queue(addr, bytes),
                }
            }
            if let Some(end) = fresh {
                self.fresh_runs.retain(|f| f.0 != end.0);
                self.fresh_runs.push(end);
            }
        }
        for (frame, fresh) in frames {
            // A run too large for one frame travels in fragments: never by run.
            let bytes = frame.to_bytes_from(&self.id);
            match fresh.filter(|_| bytes.len() <= MAX_FRAME_BYTES) {
                Some(end) => {
                    for &addr in &addrs {
                        self.outbox.entry(addr).or_default().push(Queued::Run(end, bytes.clone()));
                    }
                    self.fresh_runs.retain(|f| f.0 != end.0);
                    self.fresh_runs.push(end);
                }
                None => self.queue_to(&addrs, bytes),
            }
        }
        for frame in closed {
            self.queue_to(&addrs, frame.to_bytes_from(&self.id));
        }
        self.queue_held_acks();
    }

    /// The acknowledgements of forwarded writes held with their deltas.
    fn queue_held_acks(&mut self) {
        for (to, ack) in std::mem::take(&mut self.held_acks) {
            self.queue(to, ack);
        }
    }

    /// Signs our open run of `shard`, if any, and keeps the signature with
    /// its updates: the [`Frame::RunSig`] to send every member. `None` if
    /// there is none, or our log no longer holds it as we sent it.
    fn close_run(&mut self, shard: ShardId) -> Option<Frame> {
        let st = self.states.get_mut(&shard)?;
        let open = st.open_run.take()?;
        if open.last_seq < open.first_seq {
            return None;
        }
        let updates = st.replica.own_unsigned(open.epoch, open.first_seq, open.last_seq)?;
        let after = st.replica.checksum_at(open.last_seq)?;
        let proof = Arc::new(BatchProof::sign(
            &self.keypair,
            &self.session_tag,
            shard,
            open.epoch,
            open.first_seq,
            open.base,
            after,
            &updates,
        ));
        st.replica.attach_proof(&proof);
        Some(Frame::RunSig { shard, epoch: open.epoch, first_seq: open.first_seq, count: proof.count, sig: proof.sig })
    }

    /// Closes every open run that has been open for `run_sign_interval` and
    /// gets a piece in this flush (`with_pieces`: its signature rides in the
    /// piece's datagram), or for a heartbeat interval more (the writes
    /// stopped), or whose epoch is no longer ours as ready czar.
    fn close_due_runs(&mut self, now: Instant, with_pieces: &[ShardId]) -> Vec<Frame> {
        let interval = self.config.run_sign_interval;
        let overdue = interval + self.config.heartbeat_interval;
        let me = self.id;
        let due: Vec<ShardId> = self
            .states
            .iter()
            .filter(|(id, st)| {
                st.open_run.is_some_and(|o| {
                    let age = now.saturating_duration_since(o.opened);
                    (age >= interval && with_pieces.contains(id))
                        || age >= overdue
                        || st.replica.epoch != o.epoch
                        || !st.is_ready_czar(me)
                })
            })
            .map(|(id, _)| *id)
            .collect();
        due.into_iter().filter_map(|shard| self.close_run(shard)).collect()
    }

    /// The key we share with member `id` (see `proof::pair_key`), computed
    /// once per member. `None` for a peer whose public key we do not know or
    /// that gives no Diffie-Hellman secret.
    /// Puts in a [`Frame::Piece`] from `sender` the whole id of its shard in
    /// place of the low 16 bits it states: the shard we know with them, or
    /// where several share them, the one whose id its MAC covers (other
    /// frames are left as they are). The error is the drop reason:
    /// `UnknownShard` if we know none, `BadSignature` if the MAC holds for
    /// none of several.
    fn resolve_piece_shard(&mut self, sender: PeerId, frame: &mut Frame) -> Result<(), DropReason> {
        let Frame::Piece { shard, epoch, first_seq, base, after, mac, updates } = frame else { return Ok(()) };
        let bits = *shard;
        let mut candidates = self.states.keys().copied().filter(|s| wire::piece_shard_bits(*s) == bits);
        let first = candidates.next().ok_or(DropReason::UnknownShard)?;
        let rest: Vec<ShardId> = candidates.take(MAX_PIECE_SHARD_CANDIDATES).collect();
        let found = if rest.is_empty() {
            Some(first)
        } else {
            let key = self.pair_key(&sender).ok_or(DropReason::BadSignature)?;
            let me = self.id;
            // One encoding for every candidate's MAC.
            let mut encoded = Vec::new();
            wire::put_updates(&mut encoded, updates);
            std::iter::once(first).chain(rest).find(|s| {
                proof::piece_mac_encoded(&key, &sender, &me, *s, *epoch, *first_seq, *base, *after, &encoded) == *mac
            })
        };
        *shard = found.ok_or(DropReason::BadSignature)?;
        Ok(())
    }

    fn pair_key(&mut self, id: &PeerId) -> Option<[u8; 32]> {
        if let Some(k) = self.pair_keys.get(id) {
            return *k;
        }
        let public_key = self.members.get(id)?.public_key;
        let key = self.keypair.agree(&public_key).map(|dh| proof::pair_key(&self.session_tag, &dh, &self.id, id));
        if self.pair_keys.len() >= MAX_PAIR_KEYS {
            let members = &self.members;
            self.pair_keys.retain(|id, _| members.is_alive(id));
        }
        self.pair_keys.insert(*id, key);
        key
    }

    /// Queues a heartbeat to every member, advertising the versions of the
    /// shards we hold, and probes one peer that left only by our timeout.
    fn queue_heartbeats(&mut self) {
        // About once a second each advert carries the shard's load (§6.17).
        let with_load = self.ticks % LOAD_ADVERT_TICKS == 0;
        let czar_of: Vec<ShardVersion> = self
            .states
            .iter()
            .filter(|(_, s)| s.is_ready_czar(self.id))
            .map(|(id, s)| ShardVersion {
                shard: *id,
                version: s.replica.version(),
                checksum: s.replica.checksum().short(),
                backed: s.replica.backed,
                load: with_load.then(|| s.own_load()),
                by_run: false,
                implied: false,
            })
            .collect();
        let digests = ViewDigests { members: self.members.digest(), shards: self.shards.digest() };
        let now = self.clock;
        let changed_at = match self.stated_digests {
            Some((d, at)) if d == digests => at,
            _ => {
                self.stated_digests = Some((digests, now));
                now
            }
        };
        let incarnation = self.members.myself().incarnation;
        // Split long advert lists so every heartbeat frame fits a datagram.
        // 22 adverts of at most 46 bytes each (a load summary included), plus
        // the frame's own fields, stay under MAX_FRAME_BYTES.
        const ADVERTS_PER_FRAME: usize = 22;
        const _: () = assert!(ADVERTS_PER_FRAME * 46 + 23 <= MAX_FRAME_BYTES);
        let beat = |digests: Option<ViewDigests>| -> Vec<Vec<u8>> {
            let mut frames: Vec<Vec<u8>> = czar_of
                .chunks(ADVERTS_PER_FRAME)
                .map(|part| Frame::Heartbeat { incarnation, digests, czar_of: part.to_vec() }.to_bytes())
                .collect();
            if frames.is_empty() {
                frames.push(Frame::Heartbeat { incarnation, digests, czar_of: Vec::new() }.to_bytes());
            }
            frames
        };
        // Adverts our fresh runs repeat go by run in a datagram that carries
        // the run (the packer checks): no version or checksum on the wire.
        // Not those with a load summary, nor when the adverts take several frames.
        let by_run: Vec<ShardVersion> = czar_of
            .iter()
            .map(|a| {
                let fresh = self.fresh_runs.contains(&(a.shard, a.version, a.checksum));
                let by_run = fresh && a.load.is_none() && czar_of.len() <= ADVERTS_PER_FRAME;
                if by_run {
                    ShardVersion { version: Version::default(), checksum: 0, by_run, ..*a }
                } else {
                    *a
                }
            })
            .collect();
        let runs: Vec<(ShardId, Version, u64)> = czar_of
            .iter()
            .zip(&by_run)
            .filter(|(_, b)| b.by_run)
            .map(|(a, _)| (a.shard, a.version, a.checksum))
            .collect();
        // In a datagram whose own runs (before the heartbeat) are of exactly
        // the shards advertised by run, those adverts leave out the shard too.
        let implied: Vec<ShardVersion> =
            by_run.iter().map(|a| if a.by_run { ShardVersion { implied: true, ..*a } } else { *a }).collect();
        let beat_by_run = |digests: Option<ViewDigests>| -> Option<Queued> {
            (!runs.is_empty()).then(|| Queued::Beat {
                implied: Frame::Heartbeat { incarnation, digests, czar_of: implied.clone() }.to_bytes(),
                by_run: Frame::Heartbeat { incarnation, digests, czar_of: by_run.clone() }.to_bytes(),
                whole: Frame::Heartbeat { incarnation, digests, czar_of: czar_of.clone() }.to_bytes(),
                runs: runs.clone(),
            })
        };
        let full = beat(Some(digests));
        let (full_by_run, short_by_run) = (beat_by_run(Some(digests)), beat_by_run(None));
        // A czar or top-ranked peer beats every member every tick; an idle peer
        // beats each member once per idle period, spread over the ticks.
        let every =
            if self.beats_at_full_rate() { 1 } else { self.config.idle_heartbeat_ticks(self.members.alive_count()) };
        // Every member gets our digests at least once per `sync_interval`
        // (each on its own tick), and every tick while they changed lately;
        // the heartbeats between are short, without them.
        let full_every = self.config.ticks_in(self.config.sync_interval);
        let changed_lately = now.saturating_duration_since(changed_at) < self.config.sync_interval;
        let short = (every == 1 && full_every > 1 && !changed_lately).then(|| beat(None));
        let tick = self.ticks;
        let beaten: Vec<(PeerId, SocketAddr, bool)> = self
            .members
            .others()
            .filter_map(|m| {
                let slot = tick.wrapping_add(beat_slot(&m.id));
                (slot % every == 0).then_some((m.id, m.addr, slot % full_every == 0))
            })
            .collect();
        for (id, addr, full_due) in beaten {
            let (frames, by_run) = match &short {
                Some(short) if !full_due => (short, &short_by_run),
                _ => (&full, &full_by_run),
            };
            match by_run {
                Some(beat) => self.outbox.entry(addr).or_default().push(beat.clone()),
                None => {
                    for f in frames {
                        self.queue(addr, f.clone());
                    }
                }
            }
            if let Some(ping) = self.take_ping(now, &id) {
                self.queue_frame(addr, &ping);
            }
        }
        // Probe one peer we count as gone, whoever decided it (our own timeout,
        // a majority, gossip): after a partition heals or a stalled process
        // resumes, this is how the sides find each other. Two cut-off peers that
        // each learned by gossip that the other left would otherwise never talk
        // again. A probed peer that counts us as gone tells us so, and we refute.
        let gone: Vec<SocketAddr> = self.members.iter().filter(|m| !m.is_alive()).map(|m| m.addr).collect();
        if !gone.is_empty() {
            let addr = gone[self.rng.gen_range(0..gone.len())];
            self.queue(addr, full[0].clone());
        }
    }

    /// Whether we heartbeat every member every tick: as czar of some shard, or
    /// as one of the `1 + backups` top-ranked live members of some shard (a czar
    /// or backup now, or soon), so that whoever a member may take for a czar
    /// beats at full rate. The ranking part is cached per member view and shard map.
    fn beats_at_full_rate(&mut self) -> bool {
        if self.states.values().any(|s| s.replica.czar == Some(self.id)) {
            return true;
        }
        let me = self.id;
        self.top_ranked_all().values().any(|top| top.contains(&me))
    }

    /// The `1 + backups` strongest live members for `shard` in our view, first
    /// the one that should be czar.
    fn top_ranked(&mut self, shard: ShardId) -> &[PeerId] {
        self.top_ranked_all().get(&shard).map_or(&[], Vec::as_slice)
    }

    /// [`Peer::top_ranked`] of every shard, cached per member view and shard
    /// map (asked for every tick and on every membership change).
    fn top_ranked_all(&mut self) -> &RankedTops {
        let key = (self.members.digest(), self.shards.digest());
        let take = 1 + self.config.backups;
        if self.ranked_key != Some(key) {
            // Eligible members first (§6.5); the others fill a shard's top
            // only when too few eligible members are live.
            let ineligible = self.ineligible();
            let live: Vec<PeerId> = self.members.alive().filter(|m| m.czar_eligible).map(|m| m.id).collect();
            let tops = self.ranked_cache.tops(&self.shards, &live, take);
            let short = !ineligible.is_empty() && tops.values().any(|top| top.len() < take);
            self.ranked_filled = short.then(|| {
                tops.iter()
                    .map(|(id, top)| {
                        let mut top = top.clone();
                        if let Some(info) = self.shards.get(*id).filter(|_| top.len() < take) {
                            top.extend(ranking(info, ineligible.iter(), take - top.len()));
                        }
                        (*id, top)
                    })
                    .collect()
            });
            self.ranked_key = Some(key);
        }
        self.ranked_filled.as_ref().unwrap_or_else(|| self.ranked_cache.current())
    }

    /// Live members that are not czar-eligible, sorted (§6.5).
    pub(super) fn ineligible(&self) -> Vec<PeerId> {
        self.members.ineligible_ids().copied().collect()
    }

    /// The members that are czar of some shard in our view, each with when we
    /// learned the latest of its claims. Those we have heard from since beat
    /// at full rate and are held to the short silence thresholds (see
    /// [`Peer::held_as_czar`]).
    fn czars(&self) -> BTreeMap<PeerId, Instant> {
        let mut czars = BTreeMap::new();
        for s in self.states.values() {
            if let Some(c) = s.replica.czar {
                let since = czars.entry(c).or_insert(s.czar_since);
                *since = (*since).max(s.czar_since);
            }
        }
        czars
    }

    /// Whether `m` is held to a czar's silence thresholds: it is czar of a
    /// shard in our view and we heard from it after we learned that. A peer
    /// named czar by someone else (a split record naming each child's czar, a
    /// hand-over) beat at the idle rate until it learned it too: at 1000
    /// members an idle peer beats each member every 3 s, so the child's heir
    /// found it "silent" at once, and a majority that had applied the split
    /// confirmed it gone before its first full-rate heartbeat arrived (256
    /// peers, `grow-shrink.toml --hot-by-hash`, seed 1: all 5 false evictions
    /// were czars of new children). Until we hear from it, it is watched as
    /// an idle member; once we do, as a czar.
    fn held_as_czar(m: &Member, czars: &BTreeMap<PeerId, Instant>) -> bool {
        czars.get(&m.id).is_some_and(|since| m.last_heard >= *since)
    }

    /// When `m` counts as silent, given the silence `allowed` of a czar: a czar
    /// after that; any other member (it beats once per idle period) one idle
    /// period later, and never within `peer_timeout` of our learning of it (it
    /// may still be joining, with its welcome or its lists lost, and beats
    /// nobody until it has them). Suspicion and silence votes both use it.
    fn silent_from(&self, m: &Member, czars: &BTreeMap<PeerId, Instant>, allowed: Duration) -> Instant {
        self.silent_from_with(m, czars, allowed, self.config.idle_grace(self.members.alive_count()))
    }

    /// [`Peer::silent_from`] with the idle grace of the current view already
    /// worked out (for a pass over every member).
    fn silent_from_with(
        &self,
        m: &Member,
        czars: &BTreeMap<PeerId, Instant>,
        allowed: Duration,
        idle_grace: Duration,
    ) -> Instant {
        if Self::held_as_czar(m, czars) {
            m.last_heard + allowed
        } else {
            (m.last_heard + allowed + idle_grace).max(m.known_since + self.config.peer_timeout)
        }
    }

    /// Packs queued frames into datagrams, one destination at a time.
    fn flush(&mut self) {
        // Held deltas leave when their time comes or with the tick's heartbeats.
        let held = self.deltas_held_until.is_some_and(|t| self.clock < t);
        let deltas_now = ((!held || self.heartbeat_due) && self.states.values().any(|s| !s.outgoing.is_empty()))
            || self.streams_dirty;
        // Deltas (or streams) go to every member now and a tick is due soon: run it now, so
        // its heartbeats share the deltas' datagrams instead of following in
        // datagrams of their own. The next tick waits a tenth longer, so a game
        // writing at the heartbeat rate keeps carrying them.
        let interval = self.config.heartbeat_interval;
        if deltas_now
            && self.phase == Phase::Joined
            && !self.heartbeat_due
            && self.next_tick.saturating_duration_since(self.clock) <= interval / 2
        {
            let now = self.clock;
            self.tick(now);
            self.next_tick = now + interval + interval / 10;
        }
        if !held || self.heartbeat_due {
            self.flush_outgoing();
        }
        let tick = std::mem::take(&mut self.heartbeat_due);
        if tick && self.phase == Phase::Joined {
            self.queue_heartbeats();
            self.queue_stream_acks();
        }
        // Streams after everything reliable: what they find of the budget is left over.
        if (std::mem::take(&mut self.streams_dirty) || tick) && self.phase == Phase::Joined {
            self.flush_streams();
        }
        let outbox = std::mem::take(&mut self.outbox);
        // Each flush starts with another destination: on an uplink that drops
        // what overflows its queue, no member is always last in line.
        let start = if outbox.is_empty() { 0 } else { (self.flushes % outbox.len() as u64) as usize };
        self.flushes += 1;
        let mut outbox: Vec<(SocketAddr, Vec<Queued>)> = outbox.into_iter().collect();
        outbox.rotate_left(start);
        for (to, frames) in outbox {
            let mut current: Vec<&[u8]> = Vec::new();
            // Our fresh runs in `current`: a heartbeat advertises their shards by run.
            let mut runs_here: Vec<(ShardId, Version, u64)> = Vec::new();
            // The shards of all our own runs in `current`, ascending, and
            // whether one of them is a piece of a shard whose low bits
            // another of ours shares (no implied advert then).
            let mut run_shards: std::collections::BTreeSet<ShardId> = std::collections::BTreeSet::new();
            let mut unclear = false;
            let mut len = HEADER_BYTES;
            for q in &frames {
                let f: &[u8] = match q {
                    Queued::Frame(f) | Queued::Run(_, f) => f,
                    Queued::Beat { implied, by_run, whole, runs } => {
                        let carried = runs.iter().all(|r| runs_here.contains(r));
                        let exact = !unclear
                            && run_shards.len() == runs.len()
                            && runs.iter().all(|r| run_shards.contains(&r.0));
                        if carried && exact && len + implied.len() <= MAX_PLAIN_DATAGRAM_BYTES {
                            implied
                        } else if carried && len + by_run.len() <= MAX_PLAIN_DATAGRAM_BYTES {
                            by_run
                        } else {
                            whole
                        }
                    }
                };
                if len + f.len() > MAX_PLAIN_DATAGRAM_BYTES && !current.is_empty() {
                    self.send_datagram(to, &current);
                    current.clear();
                    runs_here.clear();
                    run_shards.clear();
                    unclear = false;
                    len = HEADER_BYTES;
                }
                // A run of ours names its shard; only a frame queued whole
                // (a piece for one asker) is read for it.
                let own = match q {
                    Queued::Run(end, _) => {
                        runs_here.push(*end);
                        Some(OwnRun::Shard(end.0))
                    }
                    _ => own_run_shard(f),
                };
                match own {
                    Some(OwnRun::Shard(shard)) => {
                        run_shards.insert(shard);
                    }
                    Some(OwnRun::PieceBits(bits)) => {
                        // As the receiver will: the shard we know with those bits.
                        let mut known = self.states.keys().filter(|s| wire::piece_shard_bits(**s) == bits);
                        match (known.next(), known.next()) {
                            (Some(shard), None) => {
                                run_shards.insert(*shard);
                            }
                            _ => unclear = true,
                        }
                    }
                    None => {}
                }
                current.push(f);
                len += f.len();
            }
            if !current.is_empty() {
                self.send_datagram(to, &current);
            }
        }
        self.fresh_runs.clear();
    }

    /// Who gets our own updates as we write them: every live member, and
    /// members counted gone less than `peer_timeout` ago, except those that
    /// said goodbye or whose address a live member has now. A member whose
    /// uplink is full looks silent and is confirmed gone while it still
    /// hears us; it learns so and refutes through that same full uplink.
    /// Until its refutation arrives, it would get no updates at all, and
    /// every update to it would wait for the repairs after
    /// (`Event::SteppedDown`). A member that really failed costs us a
    /// `peer_timeout` of updates sent to nobody.
    fn update_recipients(&self) -> Vec<(PeerId, SocketAddr)> {
        let now = self.clock;
        let grace = self.config.peer_timeout;
        let mut to: Vec<(PeerId, SocketAddr)> = self.members.others().map(|m| (m.id, m.addr)).collect();
        let lately_gone: Vec<(PeerId, SocketAddr)> = self
            .members
            .iter()
            .filter(|m| !m.is_alive() && !m.said_goodbye)
            .filter(|m| m.left_at.is_some_and(|t| now.saturating_duration_since(t) < grace))
            .map(|m| (m.id, m.addr))
            .collect();
        if !lately_gone.is_empty() {
            // Not where a live member is now (a restart at the same address).
            let live: std::collections::BTreeSet<SocketAddr> = to.iter().map(|(_, addr)| *addr).collect();
            to.extend(lately_gone.into_iter().filter(|(_, addr)| !live.contains(addr)));
        }
        to
    }

    /// Seals one datagram of these encoded frames for `to`, paid for from its link's budget.
    fn send_datagram(&mut self, to: SocketAddr, frames: &[&[u8]]) {
        let payload = self.seal(to, &compress::compress_datagram(wire::encode_datagram(&self.id, frames)));
        self.spend_link_budget(to, payload.len());
        self.transmits.push_back(Transmit { destination: to, payload });
    }
}

/// A frame waiting in the outbox for its destination.
#[derive(Debug, Clone)]
enum Queued {
    /// Encoded, sent as it is.
    Frame(Vec<u8>),
    /// Our run that brings a shard to our current state (shard, version,
    /// short checksum): a heartbeat in the same datagram advertises the
    /// shard by run.
    Run((ShardId, Version, u64), Vec<u8>),
    /// A heartbeat in three encodings: `by_run` advertises the shards of
    /// `runs` by run, and goes only in a datagram that carries each of
    /// those runs; `implied` leaves their shard ids out too, and goes only
    /// where, moreover, our own runs before it are of those shards and no
    /// other; `whole` goes anywhere.
    Beat { implied: Vec<u8>, by_run: Vec<u8>, whole: Vec<u8>, runs: Vec<(ShardId, Version, u64)> },
}

/// The shard of an own run as its encoded frame names it.
enum OwnRun {
    /// An own `Delta`: the whole id.
    Shard(ShardId),
    /// A `Piece`: the id's low 16 bits.
    PieceBits(ShardId),
}

/// The shard of an encoded frame that is one of our own runs (an own
/// `Delta` or a `Piece`: both start with the shard id, a piece with its low
/// 16 bits), as the receiver counts them for implied adverts.
fn own_run_shard(frame: &[u8]) -> Option<OwnRun> {
    let kind = *frame.first()?;
    if kind == wire::OWN_DELTA_KIND {
        let id: [u8; 8] = frame.get(1..9)?.try_into().ok()?;
        Some(OwnRun::Shard(ShardId(u64::from_le_bytes(id))))
    } else if kind == FrameKind::Piece as u8 {
        let bits: [u8; 2] = frame.get(1..3)?.try_into().ok()?;
        Some(OwnRun::PieceBits(ShardId(u64::from(u16::from_le_bytes(bits)))))
    } else {
        None
    }
}

/// A write's key must not be empty nor longer than [`MAX_KEY_BYTES`].
fn check_key(key: &[u8]) -> Result<(), WriteError> {
    if key.is_empty() {
        return Err(WriteError::EmptyKey);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(WriteError::KeyTooLong(key.len()));
    }
    if key.starts_with(RESERVED_KEY_PREFIX) {
        return Err(WriteError::ReservedKey);
    }
    Ok(())
}

/// Which tick, modulo the idle period, an idle peer beats `id`: spreads the
/// idle heartbeats evenly over the period.
fn beat_slot(id: &PeerId) -> u64 {
    u64::from_le_bytes(id.0[8..16].try_into().expect("8 bytes"))
}

/// Where a claimed epoch's history starts, as a frame states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Start {
    /// The last sequence number of the history the epoch builds on.
    seq: u64,
    /// The short checksum of the state there.
    checksum: u64,
    /// Stated by the claimant (or the old czar handing over), not relayed.
    trusted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Accepted,
    Same,
    Stale,
    Unknown,
    /// A newer claim on a split parent that may be its children's merge,
    /// which we apply ourselves from them (`awaits_own_merge`,
    /// `waits_for_split_children`): not taken, nothing to answer.
    Retired,
}

/// One run of consecutive updates of one epoch, as one delta frame carries it.
struct Run {
    epoch: u32,
    first_seq: u64,
    base: u64,
    after: u64,
    updates: Vec<Update>,
}

/// Packs consecutive log entries into runs: one run per stretch of one epoch,
/// split so each fits in a datagram's delta frame.
/// `base` is the short checksum before the first entry; each later run builds
/// on the checksum after the entry before it.
fn runs_of(base: u64, entries: &[LogEntry]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut before = base;
    let mut used = 0;
    for e in entries {
        let len = e.wire_len();
        let fits = runs.last().is_some_and(|r| {
            r.epoch == e.epoch
                && r.first_seq + r.updates.len() as u64 == e.seq
                && used + len <= MAX_FRAME_BYTES - DELTA_FRAME_OVERHEAD
        });
        if !fits {
            runs.push(Run { epoch: e.epoch, first_seq: e.seq, base: before, after: before, updates: Vec::new() });
            used = 0;
        }
        let run = runs.last_mut().expect("just pushed");
        used += len;
        run.updates.push(e.wire_update());
        run.after = e.checksum;
        before = e.checksum;
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::{claimant_tag, epoch_round, reassert_epoch, round_epoch, unilateral_epoch, PeerId};

    #[test]
    fn claims_made_alone_rounds_and_reassertions_never_share_an_epoch() {
        let (a, b) = (PeerId([0x12; 16]), PeerId([0xfe; 16]));
        assert_ne!(claimant_tag(&a), claimant_tag(&b));
        for e in (0..1000u32).chain([40_000, 1 << 20, (1 << 20) + 4095]) {
            let r = epoch_round(e);
            for by in [&a, &b] {
                let (alone, round, again) = (unilateral_epoch(e, by), round_epoch(e, by), reassert_epoch(e, by));
                for (epoch, class) in [(alone, "alone"), (round, "round"), (again, "again")] {
                    assert!(epoch > e, "{class}: {e} -> {epoch}");
                    assert_eq!(epoch & 0xfff, claimant_tag(by), "{class}: names its claimant");
                }
                let (alone, round, again) = (epoch_round(alone), epoch_round(round), epoch_round(again));
                assert!(alone > r && alone <= r + 4 && alone % 4 == 1, "{e} -> {alone}");
                assert!(round > r && round <= r + 2 && round % 2 == 0, "{e} -> {round}");
                assert!(again > r && again <= r + 4 && again % 4 == 3, "{e} -> {again}");
            }
            // Two peers making the same kind of claim from the same epoch, or
            // from two epochs of one round, never land on one epoch.
            assert_ne!(reassert_epoch(e, &a), reassert_epoch(e | 0xfff, &b));
            assert_ne!(unilateral_epoch(e, &a), unilateral_epoch(e, &b));
        }
        assert_eq!(epoch_round(unilateral_epoch(0, &a)), 1, "a fresh shard's first claim");
        assert_eq!(reassert_epoch(u32::MAX, &a), u32::MAX, "saturates");
        assert_eq!(unilateral_epoch(u32::MAX, &a), u32::MAX, "saturates; callers refuse it past MAX_EPOCH");
    }
}
