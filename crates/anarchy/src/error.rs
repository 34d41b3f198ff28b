//! Errors: one [`SessionError`] for everything the public API can refuse,
//! with a variant per cause so callers can act on it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anarchy_proto::{ShardError, WriteError, MAX_KEY_BYTES, MAX_STREAM_VALUE_BYTES, MAX_VALUE_BYTES};

/// Why a [`crate::Session`] call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The UDP socket could not be bound.
    #[error("could not bind a UDP socket to {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: io::Error,
    },
    /// Another socket operation failed (e.g. reading the bound address).
    #[error("socket error: {0}")]
    Io(#[from] io::Error),
    /// A shard name the core refuses (empty or too long).
    #[error("invalid shard name {name:?}: {reason}")]
    BadShardName {
        /// The name given.
        name: String,
        /// Why it was refused.
        reason: ShardError,
    },
    /// The shard was never declared (by us or any peer we heard from).
    #[error("shard {0:?} is not declared")]
    UnknownShard(String),
    /// Keys must not be empty.
    #[error("key is empty")]
    EmptyKey,
    /// The key is longer than the protocol allows.
    #[error("key of {0} bytes exceeds the {MAX_KEY_BYTES}-byte limit")]
    KeyTooLong(usize),
    /// The value is larger than the protocol allows.
    #[error("value of {0} bytes exceeds the {MAX_VALUE_BYTES}-byte limit")]
    ValueTooLarge(usize),
    /// A stream value is larger than the protocol allows.
    #[error("stream value of {0} bytes exceeds the {MAX_STREAM_VALUE_BYTES}-byte limit")]
    StreamValueTooLarge(usize),
    /// Only a shard's czar writes its stream keys, and this peer is not it.
    #[error("this peer is not the czar of shard {0:?}: only the czar writes its stream keys")]
    NotCzar(String),
    /// The shard's stream keys and values would pass their 16 KiB limit.
    #[error("the stream keys of shard {0:?} would pass 16 KiB")]
    StreamsFull(String),
    /// Keys starting with bytes `FF FF` belong to the protocol (its split records).
    #[error("keys starting with bytes FF FF are reserved for the protocol")]
    ReservedKey,
    /// This peer has left the session.
    #[error("this peer is not in the session (it has left)")]
    NotInSession,
    /// Too many forwarded writes are still waiting for their czars.
    #[error("too many writes ({0}) are waiting for their czars")]
    TooManyPending(usize),
    /// A wait did not see its condition in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The session's driver task has stopped.
    #[error("the session has shut down")]
    ShutDown,
}

impl SessionError {
    /// Maps a core write error, naming the shard by the game's name.
    pub(crate) fn from_write(err: WriteError, shard: &str) -> Self {
        match err {
            WriteError::UnknownShard(_) => SessionError::UnknownShard(shard.to_owned()),
            WriteError::EmptyKey => SessionError::EmptyKey,
            WriteError::KeyTooLong(n) => SessionError::KeyTooLong(n),
            WriteError::ValueTooLarge(n) => SessionError::ValueTooLarge(n),
            WriteError::NotInSession => SessionError::NotInSession,
            WriteError::TooManyPending(n) => SessionError::TooManyPending(n),
            WriteError::StreamValueTooLarge(n) => SessionError::StreamValueTooLarge(n),
            WriteError::NotCzar(_) => SessionError::NotCzar(shard.to_owned()),
            WriteError::StreamsFull(_) => SessionError::StreamsFull(shard.to_owned()),
            WriteError::ReservedKey => SessionError::ReservedKey,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anarchy_proto::ShardId;

    #[test]
    fn write_errors_name_the_shard_and_the_limit() {
        let e = SessionError::from_write(WriteError::UnknownShard(ShardId::from_name("x")), "x");
        assert_eq!(e.to_string(), "shard \"x\" is not declared");
        let e = SessionError::from_write(WriteError::KeyTooLong(70), "x");
        assert_eq!(e.to_string(), format!("key of 70 bytes exceeds the {MAX_KEY_BYTES}-byte limit"));
    }
}
