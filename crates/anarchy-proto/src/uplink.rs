//! Our own uplink: whether it is what queues our datagrams.
//!
//! Owns [`UplinkWatch`], fed by the round-trip probes (`docs/PROTOCOL.md`
//! §6.14). Each answered probe gives our round trip to one member and that
//! member's *typical* round trip, the median over its own links, which it
//! states in its `Pong`. When our round trips run far above what the members
//! see on their other links, to most members at once, the queue is on our
//! side: our uplink is full (or our process is slow). A czar in that state
//! holds back every member's copy of its shards and its own repair requests,
//! so it steps down (§6.5). Pure: time comes in as an [`Instant`]; nothing
//! here sends or decides anything about shards.

use std::collections::VecDeque;
use std::time::Duration;

use crate::identity::PeerId;
use crate::time::Instant;

/// A round trip this far above the member's typical one counts as queued.
/// Above the queueing a link's budget backs off at (80 ms, `stream`): a czar
/// steps down only for more than its streams would absorb.
pub const QUEUED: Duration = Duration::from_millis(100);
/// Samples older than this say nothing of the uplink now.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Fewest samples in the window before the watch judges at all: one slow
/// member (or a hostile one that delays its pongs) is never enough.
pub const MIN_SAMPLES: usize = 5;
/// The watch judges on this many of the latest samples at most: a queue
/// that builds up is seen as soon as the latest probes show it, whatever
/// the probes before it showed.
pub const JUDGED: usize = 8;
/// Most samples kept (bounds the watch whatever the probe rate).
const MAX_SAMPLES: usize = 32;

/// Whether our own uplink queues our datagrams, from probe round trips
/// compared with the round trips the probed members see elsewhere.
#[derive(Debug, Clone, Default)]
pub struct UplinkWatch {
    /// (when, the member probed, how far the round trip ran above its
    /// typical one), oldest first, all within [`WINDOW`].
    samples: VecDeque<(Instant, PeerId, Duration)>,
    /// Since when every judgement found the uplink queued.
    queued_since: Option<Instant>,
}

impl UplinkWatch {
    /// An answered probe: our round trip `rtt` to a member whose own links
    /// typically take `typical`. A member that has measured nothing yet
    /// states no typical round trip; its probe is not a sample. Returns
    /// whether the uplink looks queued but the watch cannot tell yet: this
    /// round trip and another member's among the latest [`JUDGED`] were
    /// queued (one slow member alone is its own link's doing), and the
    /// watch does not judge the uplink queued. The prober then probes
    /// sooner.
    pub fn on_probe(&mut self, now: Instant, member: PeerId, rtt: Duration, typical: Option<Duration>) -> bool {
        let Some(typical) = typical else { return false };
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        let excess = rtt.saturating_sub(typical);
        self.samples.push_back((now, member, excess));
        self.judge(now);
        let another = self.samples.iter().rev().take(JUDGED).any(|(_, m, e)| *m != member && *e >= QUEUED);
        excess >= QUEUED && another && self.queued_since.is_none()
    }

    /// How long the uplink has been queued without a break, as of `now`;
    /// `None` when it is not, or when too few recent samples say so.
    pub fn queued_for(&mut self, now: Instant) -> Option<Duration> {
        self.judge(now);
        self.queued_since.map(|t| now.saturating_duration_since(t))
    }

    /// The median excess over the samples judged, once there are enough.
    pub fn median_excess(&self) -> Option<Duration> {
        if self.samples.len() < MIN_SAMPLES {
            return None;
        }
        let mut excess: Vec<Duration> = self.samples.iter().rev().take(JUDGED).map(|(_, _, e)| *e).collect();
        excess.sort_unstable();
        Some(excess[excess.len() / 2])
    }

    /// Forgets old samples and judges the latest [`JUDGED`]: queued when at
    /// least three in four ran [`QUEUED`] above the members' typical round
    /// trips.
    fn judge(&mut self, now: Instant) {
        while self.samples.front().is_some_and(|(at, _, _)| now.saturating_duration_since(*at) > WINDOW) {
            self.samples.pop_front();
        }
        let judged = self.samples.len().min(JUDGED);
        let queued = self.samples.iter().rev().take(judged).filter(|(_, _, e)| *e >= QUEUED).count();
        if judged >= MIN_SAMPLES && queued * 4 >= judged * 3 {
            self.queued_since.get_or_insert(now);
        } else {
            self.queued_since = None;
        }
    }
}

/// The median of some round trips: what a member states as its typical one.
pub fn typical_rtt(rtts: impl IntoIterator<Item = Duration>) -> Option<Duration> {
    let mut all: Vec<Duration> = rtts.into_iter().collect();
    if all.is_empty() {
        return None;
    }
    let mid = all.len() / 2;
    let (_, median, _) = all.select_nth_unstable(mid);
    Some(*median)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn at(n: u64) -> Instant {
        Instant::from_micros(n * 1000)
    }

    fn member(i: u64) -> PeerId {
        crate::identity::Keypair::from_seed(i).peer_id()
    }

    #[test]
    fn round_trips_far_above_the_members_typical_ones_mean_our_uplink_queues() {
        let mut w = UplinkWatch::default();
        for i in 0..4 {
            w.on_probe(at(10 * i), member(i), ms(260), Some(ms(40)));
        }
        assert_eq!(w.queued_for(at(40)), None, "four samples are too few to judge");
        w.on_probe(at(50), member(5), ms(250), Some(ms(40)));
        assert_eq!(w.queued_for(at(50)), Some(Duration::ZERO), "queued from now on");
        w.on_probe(at(120), member(6), ms(240), Some(ms(30)));
        assert_eq!(w.queued_for(at(150)), Some(ms(100)));
        assert!(w.median_excess().is_some_and(|e| e >= ms(200)));
    }

    #[test]
    fn a_queue_that_builds_up_is_seen_whatever_the_probes_before_it_showed() {
        let mut w = UplinkWatch::default();
        for i in 0..30 {
            w.on_probe(at(i), member(i % 7), ms(50), Some(ms(40)));
        }
        for i in 0..5 {
            w.on_probe(at(100 + 10 * i), member(i), ms(250), Some(ms(40)));
        }
        assert_eq!(w.queued_for(at(140)), None, "five of the latest eight are not three in four");
        w.on_probe(at(150), member(9), ms(250), Some(ms(40)));
        assert_eq!(w.queued_for(at(150)), Some(Duration::ZERO));
    }

    #[test]
    fn a_few_slow_members_and_jitter_are_not_a_full_uplink() {
        let mut w = UplinkWatch::default();
        for i in 0..20u64 {
            // One member in three answers 150 ms late (its own uplink, say).
            let rtt = if i % 3 == 0 { ms(190) } else { ms(45 + i % 7) };
            w.on_probe(at(30 * i), member(i % 5), rtt, Some(ms(40)));
            assert_eq!(w.queued_for(at(30 * i)), None);
        }
    }

    #[test]
    fn the_watch_asks_for_more_probes_only_when_two_members_answer_late() {
        let mut w = UplinkWatch::default();
        assert!(!w.on_probe(at(0), member(1), ms(300), Some(ms(40))));
        assert!(!w.on_probe(at(10), member(1), ms(300), Some(ms(40))), "one slow member is its own link");
        assert!(!w.on_probe(at(20), member(2), ms(60), Some(ms(40))));
        assert!(w.on_probe(at(30), member(3), ms(300), Some(ms(40))), "a second member answers late");
    }

    #[test]
    fn members_that_measured_nothing_and_old_samples_do_not_count() {
        let mut w = UplinkWatch::default();
        for i in 0..10 {
            w.on_probe(at(10 * i), member(i), ms(400), None);
        }
        assert_eq!(w.median_excess(), None);
        for i in 0..6 {
            w.on_probe(at(10 * i), member(i), ms(400), Some(ms(40)));
        }
        assert!(w.queued_for(at(60)).is_some());
        // A second later every sample is stale: nothing says the uplink is queued now.
        assert_eq!(w.queued_for(at(1_100)), None);
    }

    #[test]
    fn the_watch_keeps_a_bounded_number_of_samples() {
        let mut w = UplinkWatch::default();
        for i in 0..1000 {
            w.on_probe(at(i), member(i % 7), ms(50), Some(ms(40)));
        }
        assert_eq!(w.samples.len(), MAX_SAMPLES);
    }

    #[test]
    fn the_typical_round_trip_is_the_median() {
        assert_eq!(typical_rtt([]), None);
        assert_eq!(typical_rtt([ms(30), ms(300), ms(40)]), Some(ms(40)));
        assert_eq!(typical_rtt([ms(10), ms(20), ms(30), ms(40)]), Some(ms(30)));
    }
}
