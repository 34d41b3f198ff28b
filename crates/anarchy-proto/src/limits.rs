//! Limits: what one source address can make us do before we know who it is.
//!
//! Owns a token bucket per source address on incoming datagrams (checked
//! before the seal is opened, so a flood costs a table lookup, not
//! cryptography), the strikes an address earns by sending invalid data, and
//! the block that follows too many. Every table is bounded. Pure: time comes in
//! as an [`Instant`]; this module never reads a clock or sends anything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::stats::DropReason;
use crate::time::Instant;

/// One token, in the micro-tokens the buckets count (integer arithmetic only,
/// so runs replay byte for byte).
const TOKEN: u64 = 1_000_000;

/// The knobs of [`SourceLimits`] (copied from [`crate::Config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// Sustained datagrams per second one source address may send us.
    pub datagrams_per_sec: u32,
    /// Datagrams one source address may send in a burst above the sustained rate.
    pub burst_datagrams: u32,
    /// Invalid datagrams (bad tag, malformed) that block a source address.
    pub max_strikes: u32,
    /// One strike is forgiven per this much time without invalid data.
    pub strike_decay: Duration,
    /// How long a blocked source address is ignored.
    pub block_duration: Duration,
    /// Source addresses tracked at most; the least recently seen go first.
    pub max_tracked_sources: usize,
}

#[derive(Debug, Clone)]
struct Source {
    tokens: u64,
    refilled_at: Instant,
    strikes: u32,
    struck_at: Instant,
    blocked_until: Option<Instant>,
    last_seen: Instant,
}

/// Rate limits, strikes and blocks per source address.
#[derive(Debug, Clone)]
pub struct SourceLimits {
    settings: LimitSettings,
    sources: BTreeMap<SocketAddr, Source>,
}

impl SourceLimits {
    /// Empty tables with these settings.
    pub fn new(settings: LimitSettings) -> Self {
        assert!(settings.max_tracked_sources > 0, "at least one source must be trackable");
        SourceLimits { settings, sources: BTreeMap::new() }
    }

    /// Source addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// Whether `from` is blocked at `now`.
    pub fn is_blocked(&self, now: Instant, from: SocketAddr) -> bool {
        self.sources.get(&from).and_then(|s| s.blocked_until).is_some_and(|until| now < until)
    }

    /// Takes one datagram's token from `from`'s bucket. `Err` says why the
    /// datagram must be dropped unopened: `Blocked` or `RateLimited`.
    pub fn admit(&mut self, now: Instant, from: SocketAddr) -> Result<(), DropReason> {
        let settings = self.settings;
        let source = self.entry(now, from);
        source.last_seen = source.last_seen.max(now);
        match source.blocked_until {
            Some(until) if now < until => return Err(DropReason::Blocked),
            Some(_) => {
                source.blocked_until = None;
                source.strikes = 0;
            }
            None => {}
        }
        let elapsed = now.saturating_duration_since(source.refilled_at).as_micros();
        let elapsed = u64::try_from(elapsed).unwrap_or(u64::MAX);
        let capacity = u64::from(settings.burst_datagrams.max(1)) * TOKEN;
        source.tokens = source.tokens.saturating_add(elapsed.saturating_mul(u64::from(settings.datagrams_per_sec)));
        source.tokens = source.tokens.min(capacity);
        source.refilled_at = source.refilled_at.max(now);
        if source.tokens < TOKEN {
            return Err(DropReason::RateLimited);
        }
        source.tokens -= TOKEN;
        Ok(())
    }

    /// Counts one invalid datagram from `from`. Returns `true` when this
    /// strike blocks the address (for [`LimitSettings::block_duration`]).
    pub fn strike(&mut self, now: Instant, from: SocketAddr) -> bool {
        let settings = self.settings;
        let source = self.entry(now, from);
        if source.blocked_until.is_some_and(|until| now < until) {
            return false;
        }
        let decay = settings.strike_decay.as_micros().max(1);
        let forgiven = now.saturating_duration_since(source.struck_at).as_micros() / decay;
        let forgiven = u32::try_from(forgiven).unwrap_or(u32::MAX);
        source.strikes = source.strikes.saturating_sub(forgiven);
        source.struck_at = now;
        source.strikes += 1;
        if source.strikes < settings.max_strikes.max(1) {
            return false;
        }
        source.strikes = 0;
        source.blocked_until = Some(now + settings.block_duration);
        true
    }

    /// `from`'s entry, made (and room made for it) if it has none.
    fn entry(&mut self, now: Instant, from: SocketAddr) -> &mut Source {
        // The table is rarely full: test that first, and look `from` up once.
        if self.sources.len() >= self.settings.max_tracked_sources && !self.sources.contains_key(&from) {
            self.evict(now);
        }
        let burst = u64::from(self.settings.burst_datagrams.max(1)) * TOKEN;
        let source = self.sources.entry(from).or_insert(Source {
            tokens: burst,
            refilled_at: now,
            strikes: 0,
            struck_at: now,
            blocked_until: None,
            last_seen: now,
        });
        debug_assert!(self.settings.max_tracked_sources > 0);
        source
    }

    /// Forgets the least recently seen quarter of the table, unblocked
    /// sources first: one pass makes room for many newcomers, so a spray of
    /// new (possibly spoofed) addresses costs amortised O(log n) per datagram.
    fn evict(&mut self, now: Instant) {
        let mut order: Vec<(bool, Instant, SocketAddr)> = self
            .sources
            .iter()
            .map(|(addr, s)| (s.blocked_until.is_some_and(|u| now < u), s.last_seen, *addr))
            .collect();
        order.sort_unstable();
        let n = (self.settings.max_tracked_sources / 4).max(1);
        for (_, _, addr) in order.into_iter().take(n) {
            self.sources.remove(&addr);
        }
        debug_assert!(self.sources.len() < self.settings.max_tracked_sources);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LimitSettings {
        LimitSettings {
            datagrams_per_sec: 100,
            burst_datagrams: 10,
            max_strikes: 3,
            strike_decay: Duration::from_millis(100),
            block_duration: Duration::from_secs(1),
            max_tracked_sources: 8,
        }
    }

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], i))
    }

    #[test]
    fn a_burst_above_the_bucket_is_rate_limited_and_refills_with_time() {
        let mut l = SourceLimits::new(settings());
        let t = Instant::from_millis(1000);
        for _ in 0..10 {
            assert_eq!(l.admit(t, addr(1)), Ok(()));
        }
        assert_eq!(l.admit(t, addr(1)), Err(DropReason::RateLimited));
        assert_eq!(l.admit(t, addr(2)), Ok(()), "other sources have their own bucket");
        // 100 per second: one token per 10 ms.
        assert_eq!(l.admit(t + Duration::from_millis(9), addr(1)), Err(DropReason::RateLimited));
        assert_eq!(l.admit(t + Duration::from_millis(10), addr(1)), Ok(()));
        let later = t + Duration::from_secs(60);
        for _ in 0..10 {
            assert_eq!(l.admit(later, addr(1)), Ok(()), "refilled up to the burst, no further");
        }
        assert_eq!(l.admit(later, addr(1)), Err(DropReason::RateLimited));
    }

    #[test]
    fn strikes_block_a_source_for_a_while_and_decay_when_it_behaves() {
        let mut l = SourceLimits::new(settings());
        let t = Instant::from_millis(1000);
        assert!(!l.strike(t, addr(1)));
        assert!(!l.strike(t, addr(1)));
        // Two strikes forgiven after 200 ms of good behaviour.
        let t = t + Duration::from_millis(200);
        assert!(!l.strike(t, addr(1)));
        assert!(!l.strike(t, addr(1)));
        assert!(l.strike(t, addr(1)), "third strike in a row blocks");
        assert_eq!(l.admit(t, addr(1)), Err(DropReason::Blocked));
        assert!(l.is_blocked(t, addr(1)));
        assert!(!l.strike(t, addr(1)), "already blocked: no second report");
        let after = t + Duration::from_secs(1);
        assert_eq!(l.admit(after, addr(1)), Ok(()), "the block ends");
        assert!(!l.strike(after, addr(1)), "and the strikes start over");
    }

    #[test]
    fn the_source_table_is_bounded_and_keeps_blocked_sources_longest() {
        let mut l = SourceLimits::new(settings());
        let t = Instant::from_millis(1000);
        for _ in 0..3 {
            l.strike(t, addr(0));
        }
        for i in 1..100 {
            let _ = l.admit(t + Duration::from_millis(u64::from(i)), addr(i));
            assert!(l.tracked() <= 8);
        }
        assert!(l.is_blocked(t, addr(0)), "the blocked source survived the spray");
    }
}
