//! Events: what the core tells the game. Drained with `Peer::poll_event`.

use std::net::SocketAddr;

use crate::identity::PeerId;
use crate::membership::LeaveReason;
use crate::replica::Version;
use crate::shards::ShardId;

/// A write's id, returned when the write went to another peer's czar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteId(pub u64);

/// Why a forwarded write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteFailure {
    /// No czar acknowledged it within the forward timeout.
    TimedOut,
    /// This peer left the session first.
    Left,
}

/// Something the game may want to react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// We are in the session.
    Joined {
        /// Live members we know of, ourselves included.
        members: usize,
    },
    /// A peer joined (or came back).
    PeerJoined {
        /// Who.
        peer: PeerId,
        /// Where it is.
        addr: SocketAddr,
    },
    /// A peer went silent past the suspicion threshold. It is not evicted
    /// unless a majority confirms; a [`Event::PeerLeft`] follows if so.
    PeerSuspected {
        /// Who.
        peer: PeerId,
    },
    /// A peer left.
    PeerLeft {
        /// Who.
        peer: PeerId,
        /// How we learned it.
        reason: LeaveReason,
    },
    /// A shard became known.
    ShardDeclared {
        /// Its id.
        shard: ShardId,
        /// Its name.
        name: String,
    },
    /// A shard split in two by key hash (§6.18 of the protocol): `parent`
    /// takes no more writes, and each key now lives in the child whose
    /// `key_bit` at the parent's depth matches (`Peer::shard_of` tells which).
    /// The children are announced with `ShardDeclared` and `CzarChanged` first.
    ShardSplit {
        /// The shard that split.
        parent: ShardId,
        /// Its children: the keys whose bit is 0, then those whose bit is 1.
        children: [ShardId; 2],
    },
    /// Two sibling shards merged back into the shard they split from:
    /// `parent` holds their keys again and takes their writes. Its new czar
    /// is announced with `CzarChanged` first.
    ShardMerged {
        /// The two children, bit 0 then bit 1.
        children: [ShardId; 2],
        /// The shard they came from.
        parent: ShardId,
    },
    /// A shard's czar changed.
    CzarChanged {
        /// Which shard.
        shard: ShardId,
        /// The previous czar, if any.
        old: Option<PeerId>,
        /// The new czar.
        new: PeerId,
        /// The new epoch.
        epoch: u32,
    },
    /// An update from another peer's czarship was applied here.
    Updated {
        /// Which shard.
        shard: ShardId,
        /// The version it produced.
        version: Version,
        /// The czar that wrote the update and signed the run it came in
        /// (checked before it was applied).
        author: PeerId,
        /// The key.
        key: Vec<u8>,
        /// The new value, `None` if deleted.
        value: Option<Vec<u8>>,
    },
    /// A stream key's newer value arrived from the shard's czar (see
    /// [`crate::Peer::write_stream`]). Emitted only when
    /// [`crate::Config::update_events`] is on.
    Streamed {
        /// Which shard.
        shard: ShardId,
        /// The czar that wrote and signed it.
        author: PeerId,
        /// The key.
        key: Vec<u8>,
        /// The newest value.
        value: Vec<u8>,
    },
    /// As czar, we applied an update (our own write or a forwarded one) at
    /// `version`. Emitted only when [`crate::Config::update_events`] is on.
    Authored {
        /// Which shard.
        shard: ShardId,
        /// The version it produced.
        version: Version,
    },
    /// A write we forwarded was applied by the czar.
    WriteApplied {
        /// The id `write` returned.
        write: WriteId,
        /// Which shard.
        shard: ShardId,
        /// The version it got.
        version: Version,
    },
    /// A write we forwarded was not applied.
    WriteFailed {
        /// The id `write` returned.
        write: WriteId,
        /// Which shard.
        shard: ShardId,
        /// Why.
        reason: WriteFailure,
    },
    /// Our copy of a shard held updates the winning czar's history does not
    /// (we were on the losing side of a split, or a fenced czar): they were
    /// discarded and the winner's state adopted. Followed by `ShardResynced`.
    Diverged {
        /// Which shard.
        shard: ShardId,
        /// Our version before the resync.
        ours: Version,
        /// The version adopted.
        adopted: Version,
    },
    /// A critical update committed: a majority of members accepted it. Seen
    /// by every member; never lost after this.
    Committed {
        /// Our id for it, if we wrote it.
        write: Option<WriteId>,
        /// Who wrote it.
        origin: PeerId,
        /// Which shard.
        shard: ShardId,
        /// The version it was applied at.
        version: Version,
    },
    /// A critical update we wrote was rejected by the members' validators.
    Rejected {
        /// The id `write_critical` returned.
        write: WriteId,
        /// Which shard.
        shard: ShardId,
        /// The reason a validator gave.
        reason: String,
    },
    /// A shard's state was replaced by a snapshot (late join, or divergence repaired).
    ShardResynced {
        /// Which shard.
        shard: ShardId,
        /// The version installed.
        version: Version,
    },
    /// A source address kept sending invalid data (datagrams that failed the
    /// session's tag, or authenticated but malformed ones) and is ignored for
    /// `duration`: its datagrams are dropped unopened (`DropReason::Blocked`).
    SourceBlocked {
        /// The address.
        addr: SocketAddr,
        /// How long it is ignored.
        duration: std::time::Duration,
    },
    /// What we send does not get out in time although we hear the session
    /// (our upload is full, or cut one way): we stop being czar-eligible for
    /// the rest of the session, so our shards go to eligible members and our
    /// writes are forwarded to them (`Config::step_down_when_evicted`,
    /// `Config::step_down_when_congested`, `docs/PROTOCOL.md` §6.5).
    SteppedDown {
        /// Our incarnation in the record that announces it.
        incarnation: u32,
        /// What showed it.
        reason: StepDownReason,
    },
}

/// Why we stepped down ([`Event::SteppedDown`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDownReason {
    /// A majority counted us gone while we heard a majority.
    Evicted,
    /// As a czar, our probes' round trips ran far above the members' typical
    /// ones, to most members at once, for a while (`crate::uplink`).
    UplinkQueued {
        /// The median of how far above, in milliseconds.
        queued_ms: u32,
    },
}
