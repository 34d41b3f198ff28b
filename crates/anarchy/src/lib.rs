//! # anarchy
//!
//! The library a game links: a tokio UDP driver around the sans-IO core
//! ([`anarchy_proto`]) and the public [`Session`] API. This crate owns sockets,
//! the wall clock, entropy for identities and the task that moves datagrams;
//! every protocol decision stays in the core.
//!
//! ```no_run
//! # async fn demo() -> Result<(), anarchy::SessionError> {
//! let session = anarchy::Session::builder()
//!     .bind("0.0.0.0:7000".parse().unwrap())
//!     .join("192.0.2.10:7000".parse().unwrap())
//!     .own_shard("avatar-1")
//!     .shard("world")
//!     .start()
//!     .await?;
//! session.wait_joined(std::time::Duration::from_secs(5)).await?;
//! session.write("avatar-1", b"pos", b"10,20")?;
//! while let Some(event) = session.next_event().await {
//!     println!("{event:?}");
//! }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admin;
mod builder;
mod clock;
mod conditioner;
mod critical;
mod driver;
mod error;
mod events;
mod session;
mod status;

pub use admin::{metrics_text, AdminExposure, AdminServer};
pub use builder::SessionBuilder;
pub use conditioner::{ConditionedSender, Conditioner, ConditionerError, Fates};
pub use critical::{CriticalHandle, CriticalOutcome};
pub use error::SessionError;
pub use events::EventStream;
pub use session::{Batch, MemberInfo, Session};
pub use status::{
    Bucket, Counters, EventReport, LatencyReport, LatencyReports, MemberReport, ShardReport, StatusHandle, StatusReport,
};

/// The protocol core, for types not re-exported here.
pub use anarchy_proto as proto;
pub use anarchy_proto::{
    Checksum, Config, DropReason, Event, Keypair, LeaveReason, PeerId, Proposal, SessionSecret, ShardId, ShardInfo,
    Stats, Version, WriteFailure, WriteId, WriteOutcome, DEFAULT_STREAM_PRIORITY, MAX_DATAGRAM_BYTES, MAX_KEY_BYTES,
    MAX_STREAM_VALUE_BYTES, MAX_VALUE_BYTES,
};

/// The README's code, compiled as a doctest so the quickstart stays true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
