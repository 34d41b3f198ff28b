//! # anarchy-proto
//!
//! The sans-IO protocol core of Anarchy: serverless game-state sync where each
//! shard of the state has one czar (the only peer that changes it) and ranked
//! backups. This crate owns the whole protocol and no IO: no sockets, threads,
//! clocks or entropy of its own. Time, datagrams and commands go in;
//! datagrams, events and a next deadline come out.
//!
//! ```
//! use anarchy_proto::{Config, Instant, Keypair, Peer, ShardId};
//!
//! let now = Instant::ZERO;
//! let addr = "127.0.0.1:7000".parse().unwrap();
//! let mut peer = Peer::new(Config::default(), Keypair::from_seed(1), addr, 42, now);
//! let world = peer.declare_shard(now, "world", None).unwrap();
//! peer.join(now, &[]); // a session of one: we are czar of everything
//! peer.write(now, world, b"door", b"open").unwrap();
//! assert_eq!(peer.get(world, b"door"), Some(&b"open"[..]));
//! while let Some(_transmit) = peer.poll_transmit() { /* send it */ }
//! while let Some(_event) = peer.poll_event() { /* react */ }
//! let _deadline = peer.poll_timeout(); // call handle_timeout then
//! # let _ = ShardId::from_name("world");
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod compress;
pub mod config;
pub mod event;
pub mod fragment;
pub mod identity;
pub mod limits;
pub mod membership;
pub mod peer;
pub mod proof;
pub mod quorum;
pub mod replica;
pub mod seal;
pub mod shards;
pub mod stats;
pub mod stream;
pub mod time;
pub mod trend;
pub mod uplink;
pub mod wire;

pub use config::Config;
pub use event::{Event, StepDownReason, WriteFailure, WriteId};
pub use identity::{Keypair, PeerId, PublicKey};
pub use membership::{LeaveReason, Member};
#[cfg(feature = "faults")]
pub use peer::Fault;
pub use peer::{
    epoch_label, LatencyView, MemberView, Peer, PeerStatus, Proposal, ShardView, Transmit, Validator, WriteError,
    WriteOutcome, RESERVED_KEY_PREFIX,
};
pub use replica::{Checksum, Replica, Version};
pub use seal::{SealError, SessionSecret, SEAL_OVERHEAD_BYTES};
pub use shards::{ShardError, ShardId, ShardInfo, SplitFrom};
pub use stats::{DropReason, Histogram, Stats};
pub use stream::DEFAULT_STREAM_PRIORITY;
pub use time::Instant;
pub use wire::{
    MemberStatus, MAX_DATAGRAM_BYTES, MAX_KEY_BYTES, MAX_STREAM_VALUE_BYTES, MAX_VALUE_BYTES, PROTOCOL_VERSION,
};
