//! The simulated network: per-link latency, jitter, loss (independent and
//! bursty), duplication, reordering, an optional per-peer uplink cap with a
//! queue, and partitions. It decides *when* (or whether) a datagram arrives;
//! it never looks inside one and never reads a clock.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

/// Gilbert–Elliott bursty loss: each directed link is in a good or a bad
/// state; it moves good → bad with `enter` and bad → good with `exit` per
/// datagram, and in the bad state drops with probability `loss`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurstLoss {
    /// Probability per datagram of entering the bad state.
    pub enter: f64,
    /// Probability per datagram of leaving the bad state.
    pub exit: f64,
    /// Loss probability while in the bad state.
    pub loss: f64,
}

/// How the jitter added to each datagram's delay is distributed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JitterDist {
    /// Exponential with mean `jitter_ms`, capped at 10×: always late, with a
    /// long tail (one-way delay averages base + jitter).
    #[default]
    Exp,
    /// Uniform in ±`jitter_ms` around the base: "40 ms ± 10 ms" (never below 0).
    Uniform,
}

impl std::fmt::Display for JitterDist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JitterDist::Exp => "exp",
            JitterDist::Uniform => "uniform",
        })
    }
}

impl std::str::FromStr for JitterDist {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exp" => Ok(JitterDist::Exp),
            "uniform" => Ok(JitterDist::Uniform),
            other => Err(format!("unknown jitter distribution {other:?} (expected exp or uniform)")),
        }
    }
}

/// Link parameters, the same for every link (each link still gets its own
/// base latency around `latency_ms` and its own burst state).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkParams {
    /// Mean one-way base latency. Each directed link's base is drawn once in
    /// [1 − spread, 1 + spread] × this from the run seed.
    pub latency_ms: f64,
    /// How far links' base latencies spread around `latency_ms`, as a
    /// fraction of it (0: every link has the same base). Default 0.5.
    pub latency_spread: f64,
    /// Jitter per datagram: the exponential mean, or the uniform half-width.
    pub jitter_ms: f64,
    /// How the jitter is distributed. Default exponential.
    pub jitter_dist: JitterDist,
    /// Independent loss probability per datagram.
    pub loss: f64,
    /// Optional bursty loss on top of `loss`.
    pub burst: Option<BurstLoss>,
    /// Probability a datagram is delivered twice (independent delays).
    pub dup: f64,
    /// Probability a datagram is held back by up to two base latencies extra.
    pub reorder: f64,
    /// Per-peer uplink cap in kilobits per second (0 = unlimited).
    pub uplink_kbps: u64,
    /// Longest queue on a capped uplink; datagrams that would wait longer are dropped.
    pub uplink_queue_ms: u64,
}

impl Default for LinkParams {
    fn default() -> Self {
        LinkParams {
            latency_ms: 20.0,
            latency_spread: 0.5,
            jitter_ms: 5.0,
            jitter_dist: JitterDist::Exp,
            loss: 0.0,
            burst: None,
            dup: 0.0,
            reorder: 0.0,
            uplink_kbps: 0,
            uplink_queue_ms: 200,
        }
    }
}

/// Why a datagram did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Delivered once after this many microseconds.
    Once(u64),
    /// Delivered twice, after these delays.
    Twice(u64, u64),
    /// Dropped by a partition.
    Partitioned,
    /// Dropped by random or bursty loss.
    Lost,
    /// Dropped at a full uplink queue.
    QueueFull,
}

/// Who can hear whom. Peers in different groups cannot talk at all; a
/// one-way block drops datagrams from its `from` set to its `to` set only.
#[derive(Debug, Clone, Default)]
pub struct Partition {
    group: Vec<u16>,
    blocks: Vec<(Vec<bool>, Vec<bool>)>,
}

impl Partition {
    /// Everyone hears everyone, for `n` peers.
    pub fn connected(n: usize) -> Self {
        Partition { group: vec![0; n], blocks: Vec::new() }
    }

    /// Whether a datagram from `from` reaches `to`.
    #[inline]
    pub fn allows(&self, from: usize, to: usize) -> bool {
        self.group[from] == self.group[to] && !self.blocks.iter().any(|(f, t)| f[from] && t[to])
    }

    /// Whether `a` and `b` hear each other both ways.
    pub fn mutual(&self, a: usize, b: usize) -> bool {
        self.allows(a, b) && self.allows(b, a)
    }

    /// Whether any partition or block is in force.
    pub fn is_healed(&self) -> bool {
        self.blocks.is_empty() && self.group.iter().all(|g| *g == 0)
    }

    /// Puts peers in the given groups (peers not listed keep group 0);
    /// returns the peers whose connectivity may have changed.
    pub fn split(&mut self, groups: &[Vec<usize>]) -> Vec<usize> {
        let old = self.group.clone();
        self.group.iter_mut().for_each(|g| *g = 0);
        for (i, members) in groups.iter().enumerate() {
            for &p in members {
                self.group[p] = i as u16 + 1;
            }
        }
        // Group 1 and unlisted peers (0) are the same side: the first listed group.
        for g in self.group.iter_mut() {
            if *g == 1 {
                *g = 0;
            }
        }
        (0..self.group.len()).filter(|p| old[*p] != self.group[*p]).collect()
    }

    /// Puts one peer alone in its own group.
    pub fn isolate(&mut self, peer: usize) -> Vec<usize> {
        self.group[peer] = u16::MAX;
        vec![peer]
    }

    /// Drops everything from `from` to `to` (but not back).
    pub fn block_one_way(&mut self, from: &[usize], to: &[usize]) -> Vec<usize> {
        let n = self.group.len();
        let mut f = vec![false; n];
        let mut t = vec![false; n];
        from.iter().for_each(|p| f[*p] = true);
        to.iter().for_each(|p| t[*p] = true);
        self.blocks.push((f, t));
        from.iter().chain(to).copied().collect()
    }

    /// Everyone hears everyone again; returns the peers that were cut off in any way.
    pub fn heal(&mut self) -> Vec<usize> {
        let n = self.group.len();
        let touched: Vec<usize> =
            (0..n).filter(|p| self.group[*p] != 0 || self.blocks.iter().any(|(f, t)| f[*p] || t[*p])).collect();
        self.group.iter_mut().for_each(|g| *g = 0);
        self.blocks.clear();
        touched
    }
}

/// The network: link parameters, per-link burst state, uplink queues and the partition.
#[derive(Debug)]
pub struct Network {
    /// Parameters in force (scenarios may change them mid-run).
    pub params: LinkParams,
    /// Who hears whom.
    pub partition: Partition,
    n: usize,
    link_salt: u64,
    burst_bad: Vec<bool>,
    uplink_free_at: Vec<u64>,
    /// One peer whose uplink is capped at this many kbit/s whatever `params`
    /// says (its queue bound is `params.uplink_queue_ms`).
    pub capped: Option<(usize, u64)>,
}

impl Network {
    /// A fully connected network of `n` peers; `link_salt` varies per-link base latencies by seed.
    pub fn new(n: usize, params: LinkParams, link_salt: u64) -> Self {
        Network {
            params,
            partition: Partition::connected(n),
            n,
            link_salt,
            burst_bad: Vec::new(),
            uplink_free_at: vec![0; n],
            capped: None,
        }
    }

    /// Base one-way latency of the directed link, in microseconds: a fixed
    /// per-link factor in [0.5, 1.5) times the mean.
    #[inline]
    pub fn base_latency_us(&self, from: usize, to: usize) -> u64 {
        let h = mix64(self.link_salt ^ ((from as u64) << 32 | to as u64));
        let spread = self.params.latency_spread;
        let factor = 1.0 - spread + 2.0 * spread * ((h >> 11) as f64 / (1u64 << 53) as f64);
        (self.params.latency_ms * 1000.0 * factor) as u64
    }

    /// Decides the fate of one datagram of `len` bytes sent at `now_us`.
    pub fn route(&mut self, rng: &mut ChaCha8Rng, now_us: u64, from: usize, to: usize, len: usize) -> Fate {
        if !self.partition.allows(from, to) {
            return Fate::Partitioned;
        }
        let p = &self.params;
        if p.loss > 0.0 && rng.gen::<f64>() < p.loss {
            return Fate::Lost;
        }
        if let Some(b) = p.burst {
            if self.burst_bad.is_empty() {
                self.burst_bad = vec![false; self.n * self.n];
            }
            let state = &mut self.burst_bad[from * self.n + to];
            let flip = if *state { b.exit } else { b.enter };
            if rng.gen::<f64>() < flip {
                *state = !*state;
            }
            if *state && rng.gen::<f64>() < b.loss {
                return Fate::Lost;
            }
        }
        let mut queue_us = 0;
        let uplink_kbps = match self.capped {
            Some((peer, kbps)) if peer == from => kbps,
            _ => p.uplink_kbps,
        };
        if uplink_kbps > 0 {
            let free = self.uplink_free_at[from].max(now_us);
            let wait = free - now_us;
            if wait > p.uplink_queue_ms * 1000 {
                return Fate::QueueFull;
            }
            let tx_us = (len as u64 * 8 * 1000).div_ceil(uplink_kbps);
            self.uplink_free_at[from] = free + tx_us;
            queue_us = wait + tx_us;
        }
        let base = self.base_latency_us(from, to) + queue_us;
        let first = self.delay(rng, base);
        if p.dup > 0.0 && rng.gen::<f64>() < p.dup {
            let second = self.delay(rng, base);
            return Fate::Twice(first, second);
        }
        Fate::Once(first)
    }

    /// `base` plus this datagram's jitter and reordering delay, µs.
    fn delay(&self, rng: &mut ChaCha8Rng, base: u64) -> u64 {
        let p = &self.params;
        let mut extra = 0.0;
        if p.jitter_ms > 0.0 {
            let u: f64 = rng.gen::<f64>().max(1e-12);
            extra += match p.jitter_dist {
                JitterDist::Exp => (-u.ln() * p.jitter_ms).min(10.0 * p.jitter_ms) * 1000.0,
                JitterDist::Uniform => (2.0 * u - 1.0) * p.jitter_ms * 1000.0,
            };
        }
        if p.reorder > 0.0 && rng.gen::<f64>() < p.reorder {
            extra += rng.gen::<f64>() * 2.0 * p.latency_ms.max(1.0) * 1000.0;
        }
        (base as f64 + extra).max(0.0) as u64
    }
}

/// SplitMix64 finalizer: a fast, well-mixed hash of one word.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A fast, deterministic, non-cryptographic hash of a byte string (for
/// traces and content fingerprints, never for security).
#[inline]
pub fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h = mix64(h ^ u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    mix64(h ^ u64::from_le_bytes(tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn one_way_block_drops_only_one_direction() {
        let mut p = Partition::connected(4);
        p.block_one_way(&[0], &[1]);
        assert!(!p.allows(0, 1));
        assert!(p.allows(1, 0));
        assert!(!p.mutual(0, 1));
        assert!(p.mutual(2, 3));
        p.heal();
        assert!(p.mutual(0, 1));
    }

    #[test]
    fn split_separates_groups_and_unlisted_peers_join_the_first() {
        let mut p = Partition::connected(5);
        p.split(&[vec![0, 1], vec![2, 3]]);
        assert!(p.mutual(0, 4));
        assert!(!p.allows(0, 2));
        assert!(p.mutual(2, 3));
        assert!(!p.is_healed());
    }

    #[test]
    fn capped_uplink_queues_then_drops() {
        let params = LinkParams { uplink_kbps: 8, uplink_queue_ms: 1000, jitter_ms: 0.0, ..LinkParams::default() };
        let mut net = Network::new(2, params, 1);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // 1000 bytes at 8 kbit/s is one second each.
        assert!(matches!(net.route(&mut rng, 0, 0, 1, 1000), Fate::Once(_)));
        assert!(matches!(net.route(&mut rng, 0, 0, 1, 1000), Fate::Once(_)));
        assert_eq!(net.route(&mut rng, 0, 0, 1, 1000), Fate::QueueFull);
    }

    #[test]
    fn uniform_jitter_without_spread_keeps_every_delay_within_its_band() {
        let params = LinkParams {
            latency_ms: 40.0,
            latency_spread: 0.0,
            jitter_ms: 10.0,
            jitter_dist: JitterDist::Uniform,
            ..LinkParams::default()
        };
        let mut net = Network::new(8, params, 7);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut delays = Vec::new();
        for i in 0..4000usize {
            match net.route(&mut rng, 0, i % 8, (i + 1) % 8, 100) {
                Fate::Once(us) => delays.push(us),
                other => panic!("unexpected fate {other:?}"),
            }
        }
        assert!(delays.iter().all(|d| (30_000..=50_000).contains(d)), "a delay left 40 ± 10 ms");
        let mean = delays.iter().sum::<u64>() as f64 / delays.len() as f64;
        assert!((mean - 40_000.0).abs() < 1_000.0, "mean {mean} µs");
        // Both halves of the band are used.
        assert!(delays.iter().any(|d| *d < 32_000) && delays.iter().any(|d| *d > 48_000));
    }

    #[test]
    fn the_default_link_model_spreads_bases_and_adds_late_jitter() {
        let params = LinkParams { latency_ms: 40.0, jitter_ms: 10.0, ..LinkParams::default() };
        let net = Network::new(16, params, 7);
        let bases: Vec<u64> = (0..16).map(|to| net.base_latency_us(0, to)).collect();
        assert!(bases.iter().all(|b| (20_000..=60_000).contains(b)));
        assert!(bases.iter().max().unwrap() - bases.iter().min().unwrap() > 10_000, "bases spread: {bases:?}");
        assert_eq!("uniform".parse::<JitterDist>(), Ok(JitterDist::Uniform));
        assert!("gauss".parse::<JitterDist>().is_err());
    }
}
