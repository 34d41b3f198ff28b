//! Stats: counters the tools read. Every dropped datagram or frame is counted
//! under its cause, so nothing is rejected silently.

use crate::seal::SealError;
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
    /// A delta building on a state other than ours (we resync instead).
    OffHistory,
    /// A delta or snapshot whose signature does not verify.
    BadSignature,
    /// A delta that did not end at the checksum its author signed (we resync).
    BadChecksum,
    /// A datagram whose authentication tag failed: not sealed with this
    /// session's secret, forged or damaged. Dropped before any other work.
    BadTag,
    /// A datagram whose counter was already accepted, or is too far behind.
    Replay,
    /// A short-form datagram whose index names no sender we track (we gave
    /// it before a restart, or forgot the sender since): the sender is told
    /// and goes back to the long form.
    UnknownIndex,
    /// Over its source address's rate limit (checked before the tag).
    RateLimited,
    /// From a source address that sent too much invalid data and is ignored for a while.
    Blocked,
    /// A compressed frames region that is malformed or would decompress past
    /// its bound (a decompression bomb).
    BadCompression,
    /// A frame sent in fragments that was not complete in time (a piece was lost).
    FragmentExpired,
    /// A partial frame pushed out by newer ones (its sender's share or the
    /// byte budget of [`crate::fragment::Reassembly`] was full).
    FragmentOverflow,
    /// A stream frame patching a value we no longer hold as of its base: its
    /// other values are taken and the czar is asked for whole values.
    StreamBaseMissing,
    /// A write or critical proposal for a shard whose split is being voted
    /// on: the writer retries, and once the split is applied its write goes
    /// to the child that holds the key.
    SplitPending,
    /// A split record that does not decode, or a split past the deepest
    /// allowed: the parent stays whole here.
    BadSplit,
    /// A run signature ([`crate::wire::Frame::RunSig`]) for updates we do
    /// not hold as its author's pieces (lost, repaired as signed runs, or
    /// replaced since): nothing to attach it to.
    UnmatchedRun,
    /// A repair request from a peer that is not the shard's czar, to a peer
    /// that stepped down (`crate::Event::SteppedDown`) and no longer holds
    /// the shard: the new czar serves the history once it has caught up, so
    /// the narrow uplink carries it once.
    UplinkBusy,
}

impl DropReason {
    /// Every reason, for tables.
    pub const ALL: [DropReason; 38] = [
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
        DropReason::OffHistory,
        DropReason::BadSignature,
        DropReason::BadChecksum,
        DropReason::BadTag,
        DropReason::Replay,
        DropReason::UnknownIndex,
        DropReason::RateLimited,
        DropReason::Blocked,
        DropReason::BadCompression,
        DropReason::FragmentExpired,
        DropReason::FragmentOverflow,
        DropReason::StreamBaseMissing,
        DropReason::SplitPending,
        DropReason::BadSplit,
        DropReason::UnmatchedRun,
        DropReason::UplinkBusy,
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
            DropReason::OffHistory => "off_history",
            DropReason::BadSignature => "bad_signature",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::BadTag => "bad_tag",
            DropReason::Replay => "replay",
            DropReason::UnknownIndex => "unknown_index",
            DropReason::RateLimited => "rate_limited",
            DropReason::Blocked => "blocked",
            DropReason::BadCompression => "bad_compression",
            DropReason::FragmentExpired => "fragment_expired",
            DropReason::FragmentOverflow => "fragment_overflow",
            DropReason::StreamBaseMissing => "stream_base_missing",
            DropReason::SplitPending => "split_pending",
            DropReason::BadSplit => "bad_split",
            DropReason::UnmatchedRun => "unmatched_run",
            DropReason::UplinkBusy => "uplink_busy",
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
            DecodeError::BadCompression => DropReason::BadCompression,
            DecodeError::UnknownFrame(_) => DropReason::UnknownFrame,
            DecodeError::Empty => DropReason::Empty,
            DecodeError::BadVarint => DropReason::BadVarint,
            DecodeError::TooLong(_) => DropReason::TooLong,
            DecodeError::Invalid(_) => DropReason::Invalid,
        }
    }
}

impl From<SealError> for DropReason {
    fn from(e: SealError) -> Self {
        match e {
            SealError::Oversized => DropReason::Oversized,
            SealError::Truncated => DropReason::Truncated,
            SealError::BadMagic => DropReason::BadMagic,
            SealError::UnsupportedVersion(_) => DropReason::UnsupportedVersion,
            SealError::BadTag => DropReason::BadTag,
            SealError::Replay => DropReason::Replay,
            SealError::UnknownIndex(_) => DropReason::UnknownIndex,
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
    /// Shard splits applied here (§6.18).
    pub splits: u64,
    /// Shard merges applied here (§6.18).
    pub merges: u64,
    /// Frames too large for one datagram, sent as fragments (once per receiver).
    pub frames_fragmented: u64,
    /// Frames joined from fragments received.
    pub frames_joined: u64,
    /// Newer stream values taken from czars.
    pub stream_values_applied: u64,
    /// Partial stream lists sent: a link's budget had room for only some of
    /// a shard's changed stream keys ([`crate::wire::Frame::StreamPart`]).
    pub stream_parts_sent: u64,
    /// Stream values dropped because the czar we follow does not hold them
    /// (they came from a czar that lost the shard before they reached the
    /// new one).
    pub stream_values_dropped: u64,
    drops: Drops,
}

/// One counter per [`DropReason`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Drops([u64; DropReason::ALL.len()]);

impl Default for Drops {
    fn default() -> Self {
        Drops([0; DropReason::ALL.len()])
    }
}

impl Stats {
    /// Counts one drop.
    pub fn drop(&mut self, reason: DropReason) {
        self.drop_n(reason, 1);
    }

    /// Counts `n` drops for one reason.
    pub fn drop_n(&mut self, reason: DropReason, n: u64) {
        self.drops.0[reason as usize] += n;
    }

    /// Drops counted under `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops.0[reason as usize]
    }

    /// All drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.0.iter().sum()
    }

    /// Non-zero drop counters, by reason.
    pub fn drop_counts(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|r| (*r, self.drops.0[*r as usize])).filter(|(_, n)| *n > 0)
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

/// Upper bounds of the latency histogram buckets, in milliseconds.
pub const LATENCY_BUCKETS_MS: [u64; 14] = [1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 5000];

/// A small fixed-bucket latency histogram: cheap to update on hot paths and
/// to copy into a status snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Samples per bucket; the last slot counts samples above the last bound.
    pub buckets: [u64; LATENCY_BUCKETS_MS.len() + 1],
    /// Number of samples.
    pub count: u64,
    /// Sum of all samples, in microseconds.
    pub sum_micros: u64,
    /// Largest sample, in microseconds.
    pub max_micros: u64,
}

impl Histogram {
    /// Records one sample.
    pub fn record(&mut self, d: std::time::Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let ms = micros.div_ceil(1000);
        let slot = LATENCY_BUCKETS_MS.iter().position(|b| ms <= *b).unwrap_or(LATENCY_BUCKETS_MS.len());
        self.buckets[slot] += 1;
        self.count += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
        self.max_micros = self.max_micros.max(micros);
    }

    /// The upper bound (ms) of the bucket holding quantile `q` (0..=1); `None` if empty.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((self.count as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(LATENCY_BUCKETS_MS.get(i).copied().unwrap_or(self.max_micros.div_ceil(1000)));
            }
        }
        Some(self.max_micros.div_ceil(1000))
    }

    /// Mean in milliseconds; `None` if empty.
    pub fn mean_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_micros as f64 / self.count as f64 / 1000.0)
    }
}

#[cfg(test)]
mod histogram_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn quantiles_come_from_bucket_bounds() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        for ms in [1, 3, 3, 40, 900] {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.count, 5);
        assert_eq!(h.quantile_ms(0.5), Some(5));
        assert_eq!(h.quantile_ms(1.0), Some(1000));
        assert_eq!(h.max_micros, 900_000);
        h.record(Duration::from_secs(60));
        assert_eq!(h.quantile_ms(1.0), Some(60_000));
    }
}
