//! Stats: counters the tools read. Every dropped datagram or frame is counted
//! under its cause, so nothing is rejected silently.

use crate::wire::DecodeError;

/// Why a datagram or frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Larger than the protocol maximum.
    Oversized,
    /// Cut short.
    Truncated,
    /// Not our magic bytes.
    BadMagic,
    /// Another protocol version.
    UnsupportedVersion,
    /// Unknown header flags.
    UnknownFlags,
    /// Unknown frame type.
    UnknownFrame,
    /// A header with no frames.
    Empty,
    /// Malformed varint.
    BadVarint,
    /// A length above its bound.
    TooLong,
    /// A field outside its domain.
    Invalid,
    /// From a peer we do not know (and not a join).
    UnknownSender,
    /// A sender whose id does not match its public key.
    IdMismatch,
    /// For a shard we have not declared.
    UnknownShard,
    /// From an epoch older than the one we follow.
    StaleEpoch,
    /// An update from a peer that is not the shard's czar.
    NotCzar,
    /// Already applied.
    Duplicate,
    /// The early-arrival buffer was full.
    BufferFull,
    /// A snapshot whose checksum did not match its content.
    BadSnapshot,
    /// A snapshot we had no use for (older than our state).
    StaleSnapshot,
    /// Arrived after we left the session.
    NotInSession,
    /// A forwarded write we cannot apply or relay now (the writer retries).
    ForwardRefused,
    /// The event queue was full.
    EventQueueFull,
}

impl DropReason {
    /// Every reason, for tables.
    pub const ALL: [DropReason; 22] = [
        DropReason::Oversized,
        DropReason::Truncated,
        DropReason::BadMagic,
        DropReason::UnsupportedVersion,
        DropReason::UnknownFlags,
        DropReason::UnknownFrame,
        DropReason::Empty,
        DropReason::BadVarint,
        DropReason::TooLong,
        DropReason::Invalid,
        DropReason::UnknownSender,
        DropReason::IdMismatch,
        DropReason::UnknownShard,
        DropReason::StaleEpoch,
        DropReason::NotCzar,
        DropReason::Duplicate,
        DropReason::BufferFull,
        DropReason::BadSnapshot,
        DropReason::StaleSnapshot,
        DropReason::NotInSession,
        DropReason::ForwardRefused,
        DropReason::EventQueueFull,
    ];

    /// A stable snake_case name for metrics.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Oversized => "oversized",
            DropReason::Truncated => "truncated",
            DropReason::BadMagic => "bad_magic",
            DropReason::UnsupportedVersion => "unsupported_version",
            DropReason::UnknownFlags => "unknown_flags",
            DropReason::UnknownFrame => "unknown_frame",
            DropReason::Empty => "empty",
            DropReason::BadVarint => "bad_varint",
            DropReason::TooLong => "too_long",
            DropReason::Invalid => "invalid",
            DropReason::UnknownSender => "unknown_sender",
            DropReason::IdMismatch => "id_mismatch",
            DropReason::UnknownShard => "unknown_shard",
            DropReason::StaleEpoch => "stale_epoch",
            DropReason::NotCzar => "not_czar",
            DropReason::Duplicate => "duplicate",
            DropReason::BufferFull => "buffer_full",
            DropReason::BadSnapshot => "bad_snapshot",
            DropReason::StaleSnapshot => "stale_snapshot",
            DropReason::NotInSession => "not_in_session",
            DropReason::ForwardRefused => "forward_refused",
            DropReason::EventQueueFull => "event_queue_full",
        }
    }
}

impl From<DecodeError> for DropReason {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Oversized => DropReason::Oversized,
            DecodeError::Truncated => DropReason::Truncated,
            DecodeError::BadMagic => DropReason::BadMagic,
            DecodeError::UnsupportedVersion(_) => DropReason::UnsupportedVersion,
            DecodeError::UnknownFlags(_) => DropReason::UnknownFlags,
            DecodeError::UnknownFrame(_) => DropReason::UnknownFrame,
            DecodeError::Empty => DropReason::Empty,
            DecodeError::BadVarint => DropReason::BadVarint,
            DecodeError::TooLong(_) => DropReason::TooLong,
            DecodeError::Invalid(_) => DropReason::Invalid,
        }
    }
}

/// A peer's counters. Monotonic; read them with `Peer::stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received (valid or not).
    pub datagrams_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Updates this peer applied as czar (its own and forwarded writes).
    pub updates_written: u64,
    /// Updates applied from other czars.
    pub updates_applied: u64,
    /// Snapshots installed.
    pub snapshots_installed: u64,
    /// Repair requests sent.
    pub repairs_requested: u64,
    /// Writes forwarded to a czar (first sends, not retries).
    pub writes_forwarded: u64,
    /// Critical updates seen committed.
    pub critical_committed: u64,
    drops: [u64; DropReason::ALL.len()],
}

impl Stats {
    /// Counts one drop.
    pub fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    /// Drops counted under `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Non-zero drop counters, by reason.
    pub fn drop_counts(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.drops[*r as usize])).filter(|(_, n)| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_their_own_slot() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let mut s = Stats::default();
        s.drop(DropReason::Duplicate);
        s.drop(DropReason::from(DecodeError::BadMagic));
        assert_eq!(s.drops(DropReason::Duplicate), 1);
        assert_eq!(s.total_drops(), 2);
        assert_eq!(s.drop_counts().count(), 2);
    }
}
