//! Config: every timing and size knob of the protocol, with documented defaults
//! tuned for games (50 ms heartbeats).

use std::time::Duration;

use crate::limits::LimitSettings;
use crate::seal::SessionSecret;

/// Protocol settings. Every peer in a session should use the same values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How often a czar sends a heartbeat to every other member, and how often
    /// every peer runs its periodic work. Default 50 ms.
    pub heartbeat_interval: Duration,
    /// How often a peer that is czar of no shard sends a heartbeat to each other
    /// member, in small sessions. Only a czar's silence must be noticed within a
    /// few heartbeats (it starts a takeover); other members are watched more
    /// loosely, which keeps heartbeat traffic from growing with the square of the
    /// session. Default 250 ms. Set it to `heartbeat_interval` to beat at full
    /// rate everywhere. See [`Config::idle_heartbeat_period`].
    pub idle_heartbeat_interval: Duration,
    /// In large sessions the idle period stretches so that a peer that is czar
    /// of nothing sends at most this many heartbeats per `heartbeat_interval`.
    /// Default 16 (at 50 ms: 320 heartbeats a second, whatever the session size).
    pub idle_heartbeat_fanout: usize,
    /// How long a czar holds the deltas of writes forwarded to it (and their
    /// acknowledgements), so that writes arriving close together share
    /// datagrams and one signature. A write of the czar's own game releases
    /// them at once, as does the next heartbeat. Zero sends each forwarded write
    /// at once. Default 10 ms.
    pub delta_batch_delay: Duration,
    /// A member silent for this long is suspected: the first backups of its
    /// shards start a recovery round. Default 60 ms (1.2 heartbeats;
    /// a suspicion alone evicts nobody).
    pub suspect_after: Duration,
    /// In a recovery round, a voter agrees that a peer is silent if it has not
    /// heard from it for this long. Default 75 ms.
    pub silent_vote_after: Duration,
    /// A recovery round that has not reached a majority is re-sent after this
    /// long. Default 100 ms.
    pub recovery_retry_interval: Duration,
    /// A recovery round that has not reached a majority is abandoned after this
    /// long (and counts against our local health). Default 600 ms.
    pub recovery_timeout: Duration,
    /// A member silent for this long is removed from our view even without a
    /// majority's confirmation: this is how the minority side of a partition
    /// goes on playing. Default 1 s (20 heartbeats).
    pub peer_timeout: Duration,
    /// A live czar hands a shard to a higher-ranked member only once that
    /// member has been in its view this long, so a burst of joins does not make
    /// shards flap between czars. Default 250 ms.
    pub handover_delay: Duration,
    /// Ranked backup czars per shard. Default 2.
    pub backups: usize,
    /// Whether this peer may carry a czar's or backup's duties. A czar sends
    /// every member a datagram every heartbeat, and so do the top-ranked
    /// backups: with 32 players that is over 60 KB/s of upload before any
    /// state. A game that knows a player's upload is small (a phone on a
    /// cellular link, a player who set a low upload rate) or that a peer only
    /// watches sets this to false: every peer then ranks it after all the
    /// members that are eligible (`docs/PROTOCOL.md` §6.5), so it is czar or
    /// backup of nothing while enough others are live (its preferred shards
    /// included), beats at the idle rate, and its writes are forwarded to
    /// their czars. Unlike the other settings it is this peer's own: it
    /// travels in its join and member record. Default true.
    pub czar_eligible: bool,
    /// Whether this peer gives up czar eligibility (as if `czar_eligible` were
    /// false) for the rest of the session when a majority counts it gone while
    /// it hears a majority: what it sends does not get through, most likely
    /// because its upload is full (a czar sends every member a datagram every
    /// heartbeat) or cut one way. Its shards then stay with eligible members,
    /// its writes go to them, and it sends a fraction of a czar's bytes. The
    /// game sees [`crate::Event::SteppedDown`]. Default true.
    pub step_down_when_evicted: bool,
    /// Whether a czar whose own uplink queues what it sends steps down before
    /// anyone counts it gone: its probes' round trips run far above the
    /// typical ones its members state, to most members at once
    /// (`anarchy_proto::uplink`). Every member's copy of its shards, and its
    /// own repair requests, wait in that queue. Like the step-down of an
    /// evicted czar it lasts the session, and the game sees
    /// [`crate::Event::SteppedDown`]. Default true.
    pub step_down_when_congested: bool,
    /// How often a joining peer re-sends its join. Default 250 ms.
    pub join_retry_interval: Duration,
    /// How often a forwarded write is re-sent until its czar acknowledges it. Default 200 ms.
    pub forward_retry_interval: Duration,
    /// A forwarded write not acknowledged within this time fails. Default 5 s.
    pub forward_timeout: Duration,
    /// How long a replica may stay behind its czar's advertised version before
    /// it asks for a repair (covers reordering). Default 50 ms.
    pub repair_delay: Duration,
    /// Minimum time between two repair requests for one shard. Default 150 ms.
    pub repair_retry_interval: Duration,
    /// Minimum time between two member-list sync requests. Default 250 ms.
    pub sync_interval: Duration,
    /// An incomplete snapshot is dropped after this long. Default 2 s.
    pub snapshot_timeout: Duration,
    /// A new czar catching up to its epoch's starting state that gets no
    /// nearer for this long (whoever held the start is gone) gives up on it
    /// and claims the shard again from its own state. Default 3 s.
    pub catch_up_timeout: Duration,
    /// A frame sent in fragments (a value too large for one datagram) that is
    /// not complete this long after its first piece is dropped; repair resends
    /// it. Default 2 s.
    pub fragment_timeout: Duration,
    /// Frames being joined from fragments per sender; a newer one pushes out
    /// the oldest. A snapshot of many large entries arrives as that many
    /// fragmented chunks at once, interleaved. Default 64.
    pub max_partial_frames_per_peer: usize,
    /// Bytes all frames being joined from fragments may hold together; the
    /// oldest go first. Default 8 MiB.
    pub max_fragment_bytes: usize,
    /// How long a left member is remembered so stale gossip cannot revive it. Default 30 s.
    pub tombstone_ttl: Duration,
    /// Updates kept per shard to repair others from. Default 1024.
    pub log_capacity: usize,
    /// How long a czar keeps a run open (PROTOCOL §6.7): its writes go to
    /// each member at once as *pieces*, authenticated to that member by an
    /// 8-byte pair MAC, and the run is signed once, when it closes (after
    /// this long, or sooner when it grows large or someone asks to be
    /// repaired from it). Longer saves bytes (one 64-byte signature per run
    /// instead of one per datagram) but leaves the newest updates without a
    /// signature that members can pass on for longer. Zero signs every
    /// flush's run at once, as a `Delta`. Default 500 ms.
    pub run_sign_interval: Duration,
    /// Out-of-order updates buffered per shard while a gap is repaired. Default 4096.
    pub max_early_updates: usize,
    /// Writes waiting for a czar's acknowledgement. Default 4096.
    pub max_pending_writes: usize,
    /// A critical update not decided within this time fails with
    /// `WriteFailure::TimedOut`. Default 2 s.
    pub critical_timeout: Duration,
    /// How often the czar re-sends a proposal to members that have not voted,
    /// and a writer re-sends a critical write to its czar. Default 100 ms.
    pub critical_retry_interval: Duration,
    /// How long a member keeps a proposal it accepted but never saw decided,
    /// for a new czar to finish. Default 10 s.
    pub prepared_ttl: Duration,
    /// Events kept for the game before new ones are dropped (and counted). Default 65536.
    pub max_queued_events: usize,
    /// Whether every applied update is reported as an [`crate::Event::Updated`]. Default true.
    pub update_events: bool,
    /// The session's secret: every datagram is sealed with keys derived from
    /// it, and a datagram sealed with another secret is dropped unread, so only
    /// holders of the secret can join or read the traffic. Default: the public
    /// open-session secret ([`SessionSecret::open`], passphrase
    /// `"anarchy open session"`), which admits anyone: set your own for a real game.
    pub session_secret: SessionSecret,
    /// Sustained datagrams per second one source address may send us; more
    /// are dropped unopened (`RateLimited`). Default 5000 (a 60 Hz game sends
    /// each peer well under 200).
    pub source_datagrams_per_sec: u32,
    /// Datagrams one source address may send in a burst above the sustained
    /// rate (a welcomer's lists and snapshots to a joiner come in one burst). Default 10000.
    pub source_burst_datagrams: u32,
    /// Invalid datagrams (bad tag, malformed after opening) after which a
    /// source address is blocked. Replays are not counted: networks duplicate.
    /// Bad tags from a live member's address are not counted either, since
    /// anyone can forge that source address. Default 32.
    pub source_max_strikes: u32,
    /// One strike is forgiven per this much time. Default 250 ms.
    pub source_strike_decay: Duration,
    /// How long a blocked source address is ignored (`Blocked`). Default 10 s.
    pub source_block_duration: Duration,
    /// Source addresses whose limits are tracked at most; the least recently
    /// seen are forgotten first. Default 4096.
    pub max_tracked_sources: usize,
    /// A shard whose czar applies more than this many updates per second (over
    /// the 1 s load window) for `split_after` splits in two by key hash.
    /// 0: never on this count. Default 1000. For balance, a czar that carries
    /// more than twice the mean czar's bytes per second splits its busiest
    /// shard too, if that is over a sixteenth of any of the three budgets
    /// (`docs/PROTOCOL.md` §6.18).
    pub split_writes_per_sec: u32,
    /// The same for bytes of key and value applied per second (what the
    /// czar's uplink multiplies by the session size). 0: never on this
    /// count. Default 64 KiB/s.
    pub split_bytes_per_sec: u32,
    /// The same for keys held, however quiet the shard: a shard's keys are
    /// what a joiner's snapshot and a resync carry whole. 0: never on this
    /// count. Default 65 536.
    pub split_keys: u32,
    /// How long a shard must stay over a split budget before it splits, and
    /// how long a split that failed waits before it is tried again. Default 2 s.
    pub split_after: Duration,
    /// The deepest split: a declared shard becomes at most `2^max_split_depth`
    /// shards (at most [`crate::shards::MAX_SPLIT_DEPTH`]). 0 turns splitting
    /// off. Default 6. Shards with a preferred czar never split.
    pub max_split_depth: u8,
    /// Two sibling shards (children of one split) whose load together stays
    /// under a quarter of a split budget for this long merge back into their
    /// parent, unless the merge would put the parent's czar over the
    /// balance share (`docs/PROTOCOL.md` §6.18). The gap
    /// between the two thresholds keeps a shard near the budget from
    /// flapping. Default 10 s.
    pub merge_after: Duration,
}

impl Config {
    /// How many ticks (`heartbeat_interval`s) apart a peer that is czar of no
    /// shard heartbeats one member, in a session of `members` live members:
    /// `max(idle_heartbeat_interval, heartbeat_interval × ⌈(members − 1) / idle_heartbeat_fanout⌉)`,
    /// in whole ticks, at least 1.
    pub fn idle_heartbeat_ticks(&self, members: usize) -> u64 {
        let by_fanout = members.saturating_sub(1).div_ceil(self.idle_heartbeat_fanout.max(1)) as u64;
        self.ticks_in(self.idle_heartbeat_interval).max(by_fanout)
    }

    /// How many ticks (`heartbeat_interval`s) `d` spans, rounded up, at least 1.
    pub fn ticks_in(&self, d: Duration) -> u64 {
        let ticks = d.as_micros().div_ceil(self.heartbeat_interval.as_micros().max(1));
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }

    /// The idle heartbeat period: [`Config::idle_heartbeat_ticks`] heartbeat intervals.
    pub fn idle_heartbeat_period(&self, members: usize) -> Duration {
        self.heartbeat_interval * self.idle_heartbeat_ticks(members).min(u32::MAX as u64) as u32
    }

    /// The extra silence allowed from a member that is czar of no shard before
    /// it is suspected or voted silent: one idle period (none when idle peers
    /// beat at full rate), so one missed idle heartbeat makes it a suspect, as
    /// one missed heartbeat does a czar.
    pub fn idle_grace(&self, members: usize) -> Duration {
        if self.idle_heartbeat_ticks(members) <= 1 {
            Duration::ZERO
        } else {
            self.idle_heartbeat_period(members)
        }
    }

    /// How long a member that is czar of no shard may stay silent before we drop
    /// it from our view on our own: `max(peer_timeout, 8 idle periods)`: eight
    /// idle heartbeats in a row must be lost, as twenty are for a czar.
    pub fn idle_peer_timeout(&self, members: usize) -> Duration {
        if self.idle_heartbeat_ticks(members) <= 1 {
            self.peer_timeout
        } else {
            self.peer_timeout.max(self.idle_heartbeat_period(members) * 8)
        }
    }

    /// The settings of [`crate::fragment::Reassembly`].
    pub fn reassembly_settings(&self) -> crate::fragment::ReassemblySettings {
        crate::fragment::ReassemblySettings {
            timeout: self.fragment_timeout,
            max_per_sender: self.max_partial_frames_per_peer,
            max_bytes: self.max_fragment_bytes,
        }
    }

    /// The abuse-limit settings, for [`crate::limits::SourceLimits`].
    pub fn limit_settings(&self) -> LimitSettings {
        LimitSettings {
            datagrams_per_sec: self.source_datagrams_per_sec,
            burst_datagrams: self.source_burst_datagrams,
            max_strikes: self.source_max_strikes,
            strike_decay: self.source_strike_decay,
            block_duration: self.source_block_duration,
            max_tracked_sources: self.max_tracked_sources,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat_interval: Duration::from_millis(50),
            idle_heartbeat_interval: Duration::from_millis(250),
            idle_heartbeat_fanout: 16,
            delta_batch_delay: Duration::from_millis(10),
            suspect_after: Duration::from_millis(60),
            silent_vote_after: Duration::from_millis(75),
            recovery_retry_interval: Duration::from_millis(100),
            recovery_timeout: Duration::from_millis(600),
            peer_timeout: Duration::from_secs(1),
            handover_delay: Duration::from_millis(250),
            backups: 2,
            czar_eligible: true,
            step_down_when_evicted: true,
            step_down_when_congested: true,
            join_retry_interval: Duration::from_millis(250),
            forward_retry_interval: Duration::from_millis(200),
            forward_timeout: Duration::from_secs(5),
            repair_delay: Duration::from_millis(50),
            repair_retry_interval: Duration::from_millis(150),
            sync_interval: Duration::from_millis(250),
            snapshot_timeout: Duration::from_secs(2),
            catch_up_timeout: Duration::from_secs(3),
            fragment_timeout: Duration::from_secs(2),
            max_partial_frames_per_peer: 64,
            max_fragment_bytes: 8 << 20,
            tombstone_ttl: Duration::from_secs(30),
            log_capacity: 1024,
            run_sign_interval: Duration::from_millis(500),
            max_early_updates: 4096,
            max_pending_writes: 4096,
            critical_timeout: Duration::from_secs(2),
            critical_retry_interval: Duration::from_millis(100),
            prepared_ttl: Duration::from_secs(10),
            max_queued_events: 65536,
            update_events: true,
            session_secret: SessionSecret::open(),
            source_datagrams_per_sec: 5000,
            source_burst_datagrams: 10_000,
            source_max_strikes: 32,
            source_strike_decay: Duration::from_millis(250),
            source_block_duration: Duration::from_secs(10),
            max_tracked_sources: 4096,
            split_writes_per_sec: 1000,
            split_bytes_per_sec: 64 << 10,
            split_keys: 1 << 16,
            split_after: Duration::from_secs(2),
            max_split_depth: 6,
            merge_after: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_period_is_the_interval_in_small_sessions_and_stretches_in_large_ones() {
        let c = Config::default();
        assert_eq!(c.idle_heartbeat_ticks(2), 5);
        assert_eq!(c.idle_heartbeat_period(8), Duration::from_millis(250));
        assert_eq!(c.idle_heartbeat_ticks(81), 5);
        // 255 others, at most 16 per tick: 16 ticks.
        assert_eq!(c.idle_heartbeat_ticks(256), 16);
        assert_eq!(c.idle_heartbeat_period(256), Duration::from_millis(800));
        assert_eq!(c.idle_heartbeat_ticks(1000), 63);
        assert_eq!(c.idle_grace(256), Duration::from_millis(800));
        assert_eq!(c.idle_peer_timeout(8), Duration::from_secs(2));
        assert_eq!(c.idle_peer_timeout(256), Duration::from_millis(6400));
    }

    #[test]
    fn full_rate_idle_heartbeats_add_no_grace() {
        let c = Config {
            idle_heartbeat_interval: Duration::from_millis(50),
            idle_heartbeat_fanout: 1 << 20,
            ..Config::default()
        };
        assert_eq!(c.idle_heartbeat_ticks(500), 1);
        assert_eq!(c.idle_grace(500), Duration::ZERO);
        assert_eq!(c.idle_peer_timeout(500), c.peer_timeout);
        // Degenerate settings neither divide by zero nor panic.
        let z = Config { heartbeat_interval: Duration::ZERO, idle_heartbeat_fanout: 0, ..Config::default() };
        assert!(z.idle_heartbeat_ticks(10) >= 1);
    }
}
