//! The discrete-event loop: simulated time, the event queue, the peers and
//! their clocks, the workload and scheduled faults. Everything is driven from
//! one seed; nothing here sleeps or reads the wall clock (the caller may time
//! the run from outside).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use anarchy_proto::wire::Op;
use anarchy_proto::{
    Config, DropReason, Event, Instant, Keypair, LeaveReason, Peer, PeerId, ShardId, Version, WriteError, WriteOutcome,
    DEFAULT_STREAM_PRIORITY,
};
use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::check::{registry, Checker, Findings};
use crate::hostile::Attacker;
use crate::net::{hash_bytes, mix64, Fate, LinkParams, Network};
use crate::scenario::{Action, PeerSel, Scheduled};
use crate::workload::{Avatar, EntityWorkload, NEAR_ENTITIES, NEAR_PRIORITY};

/// Stream writes are remembered this long (µs) to time their arrival.
const STREAM_MEMORY_US: u64 = 10_000_000;

/// Port every simulated peer listens on.
const SIM_PORT: u16 = 7000;
/// Keys in the shared world shard the workload writes to.
const WORLD_KEYS: u64 = 64;
/// The hot spot moves over this many equal parts of the key space.
const HOT_REGIONS: usize = 8;
/// Hot-spot keys per player per part of the key space.
const HOT_KEYS_PER_REGION: usize = 4;

/// Slot `i`'s hot-spot keys, per region. By default a region is a part of
/// the game's map: keys `c{region}-{i}-{n}`, which the key hash spreads over
/// every shard of the family, as a crowd in one place of the map would be.
/// With `by_hash` a region is a part of the *hash* space (`h{i}-{n}` keys
/// whose hash's top three bits are the region): the worst case for splitting
/// by hash, where one path of splits carries the load and its siblings idle.
fn hot_keys_of(i: usize, by_hash: bool) -> Vec<Vec<Vec<u8>>> {
    if !by_hash {
        return (0..HOT_REGIONS)
            .map(|r| (0..HOT_KEYS_PER_REGION).map(|n| format!("c{r}-{i}-{n}").into_bytes()).collect())
            .collect();
    }
    let mut regions = vec![Vec::new(); HOT_REGIONS];
    let mut n = 0u64;
    while regions.iter().any(|r| r.len() < HOT_KEYS_PER_REGION) {
        let key = format!("h{i}-{n}").into_bytes();
        let r = (anarchy_proto::shards::key_hash(&key) >> 61) as usize;
        if regions[r].len() < HOT_KEYS_PER_REGION {
            regions[r].push(key);
        }
        n += 1;
    }
    regions
}
/// Keys one burst writes at once.
const BURST_KEYS: usize = 10;
/// Score keys (`score-0` ...) in the world shard that critical writes go to.
pub const CRITICAL_KEYS: u64 = 16;
/// Key prefix of the critical writes.
pub const CRITICAL_PREFIX: &[u8] = b"score-";
/// Share of critical writes the workload marks as cheats (the validator rejects them).
const CHEAT_SHARE: f64 = 0.1;

/// Everything a run needs besides its checkers.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The run seed: the same seed gives the same run, byte for byte.
    pub seed: u64,
    /// Peer slots (each a player; churn makes some leave and come back).
    pub peers: usize,
    /// Shards: `world` plus `shards - 1` avatar shards the players' avatars hash into.
    pub shards: usize,
    /// Simulated seconds of workload and faults.
    pub seconds: f64,
    /// Longest settle after writes stop and the network heals (the convergence bound).
    pub settle_seconds: f64,
    /// Avatar writes per player per second.
    pub rate_hz: f64,
    /// Leaves and (re)joins per simulated minute.
    pub churn_per_min: f64,
    /// Probability a player's tick also writes a world key.
    pub world_write_prob: f64,
    /// Probability a player's tick is a burst of [`BURST_KEYS`] avatar keys.
    pub burst_prob: f64,
    /// Critical writes (`score-K` in the world shard) per simulated second,
    /// across the whole session; each by a random live player. 0: none.
    pub critical_rate_hz: f64,
    /// The network at the start.
    pub link: LinkParams,
    /// Largest per-peer clock offset (drawn uniformly in [0, this]).
    pub clock_offset_ms: f64,
    /// Largest per-peer clock drift magnitude, in parts per million.
    pub clock_drift_ppm: f64,
    /// See the `one-czar-per-epoch` checker.
    pub czar_grace_ms: u64,
    /// How often checkers' `on_step` runs and convergence is tried while settling.
    pub check_interval_ms: u64,
    /// Scripted faults.
    pub schedule: Vec<Scheduled>,
    /// The protocol settings every peer uses (`update_events` is forced on).
    pub proto: Config,
    /// Hostile members (the last `byzantine` slots; see [`crate::hostile`]).
    pub byzantine: usize,
    /// How often each hostile member attacks, simulated ms.
    pub attack_interval_ms: u64,
    /// `Some`: the entity workload instead of the game-like one. Each player
    /// is the preferred czar of its own avatar shard and writes every entity
    /// each tick (no world keys, no bursts); `shards` should be `peers + 1`.
    pub entities: Option<EntityWorkload>,
    /// Bandwidth is measured from this many simulated seconds after the last
    /// peer started until writes stop (joins and catch-up excluded).
    pub warmup_seconds: f64,
    /// One peer slot whose uplink is capped at this many kbit/s (the others
    /// keep `link.uplink_kbps`); its propagation is reported apart.
    pub capped_peer: Option<(usize, u64)>,
    /// Slots whose game sets `Config::czar_eligible` to false (a player it
    /// knows to have a small upload): ranked after every other member.
    pub not_czar: Vec<usize>,
    /// Entity workload: entity values are written as stream keys
    /// (`Peer::write_stream`: newest value only, budgeted per link) instead
    /// of reliable updates.
    pub streams: bool,
    /// Slots that start at the beginning; the rest wait for a scenario's
    /// `join`. `None`: all of them.
    pub initial_peers: Option<usize>,
    /// World writes per player per second into a *hot spot*: the keys of one
    /// of eight regions, moving to the next region every `hot_move_secs`
    /// (drives shard splits and merges; see `hot_keys_of`). 0: none.
    pub hot_rate_hz: f64,
    /// How long the hot spot stays in one region.
    pub hot_move_secs: f64,
    /// The hot spot's regions are eighths of the key *hash* space instead of
    /// places on the game's map (see `hot_keys_of`).
    pub hot_by_hash: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            peers: 16,
            shards: 8,
            seconds: 10.0,
            settle_seconds: 5.0,
            rate_hz: 20.0,
            churn_per_min: 0.0,
            world_write_prob: 0.02,
            burst_prob: 0.002,
            critical_rate_hz: 2.0,
            link: LinkParams::default(),
            clock_offset_ms: 5000.0,
            clock_drift_ppm: 100.0,
            czar_grace_ms: 1000,
            check_interval_ms: 100,
            schedule: Vec::new(),
            proto: Config::default(),
            byzantine: 0,
            attack_interval_ms: 20,
            entities: None,
            warmup_seconds: 1.0,
            capped_peer: None,
            not_czar: Vec::new(),
            streams: false,
            initial_peers: None,
            hot_rate_hz: 0.0,
            hot_move_secs: 10.0,
            hot_by_hash: false,
        }
    }
}

/// A peer's local clock: `offset + global × (1 + drift)`.
#[derive(Debug, Clone, Copy)]
struct Clock {
    offset_us: u64,
    drift: f64,
}

impl Clock {
    fn local(&self, global_us: u64) -> Instant {
        let skew = (global_us as f64 * self.drift) as i64;
        Instant::from_micros(self.offset_us + (global_us as i64 + skew).max(0) as u64)
    }

    /// The first global instant at or after which the local clock reads `deadline`.
    fn global(&self, deadline: Instant, now_us: u64) -> u64 {
        let local = deadline.as_micros();
        if local <= self.local(now_us).as_micros() {
            return now_us;
        }
        let mut g = ((local - self.offset_us) as f64 / (1.0 + self.drift)) as u64;
        g = g.max(now_us);
        while self.local(g) < deadline {
            g += 1;
        }
        g
    }
}

/// What a peer slot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// Not started yet.
    Waiting,
    /// Running.
    Up,
    /// Stalled until the given time; inputs wait.
    Paused(u64),
    /// Crashed: inputs are lost.
    Crashed,
    /// Left gracefully (churn).
    Left,
}

/// One peer slot: a fixed address and identity, and the process running there.
pub struct Slot {
    peer: Option<Peer>,
    /// What the slot is doing.
    pub state: SlotState,
    clock: Clock,
    key_seed: u64,
    /// Bumped on every blank (re)start: a new process history.
    life: u32,
    /// Bumped on every crash/restart: stale timers are ignored.
    gen: u32,
    timer_at: u64,
    /// Last time this peer's ability to exchange datagrams changed.
    last_change_us: u64,
    writes: u64,
    /// The attacks of a hostile member.
    hostile: Option<Attacker>,
}

/// One update a czar authored, as the ledger remembers it.
#[derive(Debug, Clone, Copy)]
pub struct AuthoredRecord {
    /// Peer slot that authored it.
    pub author: usize,
    /// Simulated time, µs.
    pub at_us: u64,
    /// Fingerprint of (key, value), if the author's log still had it.
    pub content: Option<u64>,
}

/// A critical update (a `score-` key of the world shard) a czar authored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriticalRecord {
    /// The key.
    pub key: Vec<u8>,
    /// Fingerprint of (key, value).
    pub content: u64,
    /// The writer's slot, decoded from the value (the workload writes it there).
    pub origin: usize,
}

/// A commit as first seen at some peer (`Event::Committed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitRecord {
    /// The writer's slot.
    pub origin: usize,
    /// Simulated µs it was first seen.
    pub at_us: u64,
}

/// A crash of a czar, waiting for every live peer to move past its epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failover {
    crashed: usize,
    shard: ShardId,
    epoch: u32,
    at_us: u64,
    done_us: Option<u64>,
}

/// Critical-write counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CriticalTotals {
    /// `write_critical` calls that returned an id.
    pub proposed: u64,
    /// `write_critical` calls refused outright (not in session, too many pending).
    pub refused: u64,
    /// Distinct critical updates some peer saw `Committed`.
    pub committed: u64,
    /// `Rejected` events (the validator refused a cheat).
    pub rejected: u64,
    /// `WriteFailed` events about critical writes.
    pub failed: u64,
}

/// One event as checkers see it.
#[derive(Debug)]
pub struct PeerEvent<'a> {
    /// The peer slot that emitted it.
    pub peer: usize,
    /// Simulated time, µs.
    pub at_us: u64,
    /// The event.
    pub event: &'a Event,
    /// For `Updated`: fingerprint of (key, value); otherwise 0.
    pub content: u64,
}

/// The simulated world as checkers see it: peers, network, ledger.
pub struct World {
    cfg: SimConfig,
    now_us: u64,
    slots: Vec<Slot>,
    /// The network.
    pub net: Network,
    ids: HashMap<PeerId, usize>,
    shard_ids: Vec<ShardId>,
    shard_names: HashMap<ShardId, String>,
    ledger: HashMap<(ShardId, u32, u64), Vec<AuthoredRecord>>,
    propagation: Histogram<u64>,
    /// Propagation of updates the capped peer authored, and of updates it applied.
    capped_propagation: (Histogram<u64>, Histogram<u64>),
    /// The same, for updates applied in the steady window only.
    capped_steady: (Histogram<u64>, Histogram<u64>),
    updates_written: u64,
    updates_applied: u64,
    /// (shard, epoch, seq) → critical updates authored there.
    critical_ledger: HashMap<(ShardId, u32, u64), Vec<CriticalRecord>>,
    /// (shard, content fingerprint) → versions a czar authored that content at.
    content_versions: HashMap<(ShardId, u64), Vec<Version>>,
    /// (shard, version) → first sighting of a commit there.
    commits: BTreeMap<(ShardId, Version), CommitRecord>,
    /// (slot, life, write id) of every critical write proposed.
    critical_ids: HashMap<(usize, u32, u64), ()>,
    critical: CriticalTotals,
    failovers: Vec<Failover>,
    /// (slot, shard) → highest epoch of an update the slot's current process applied or authored.
    max_epoch: HashMap<(usize, ShardId), u32>,
    false_evictions: u64,
    false_eviction_notes: Vec<String>,
    step_down_notes: Vec<String>,
    step_downs: u64,
    /// Stream writes: (shard, content fingerprint) → (when, author slot,
    /// near the player), with their order for forgetting them after
    /// `STREAM_MEMORY_US`.
    stream_writes: HashMap<(ShardId, u64), (u64, usize, bool)>,
    /// Stream values the capped peer wrote, near entities then far ones.
    capped_streams: [StreamClass; 2],
    stream_order: std::collections::VecDeque<(u64, (ShardId, u64))>,
    /// Entity workload: each slot's entities.
    avatars: Vec<Avatar>,
    /// Entity workload: slot `i` is the preferred czar of `shard_ids[1 + i]`.
    preferred: Vec<PeerId>,
    /// Hot-spot keys per slot, per eighth of the key space.
    hot_keys: Vec<Vec<Vec<Vec<u8>>>>,
    /// Most splits and merges any one peer process applied.
    splits: u64,
    merges: u64,
    /// (simulated s, shards holding keys in the view of the first live peer).
    shards_over_time: Vec<(f64, usize)>,
    /// Shard made by a split → the declared shard it comes from.
    roots: HashMap<ShardId, ShardId>,
}

impl World {
    /// Simulated time now, µs.
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// The run's settings.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// See the `one-czar-per-epoch` checker.
    pub fn czar_grace_us(&self) -> u64 {
        self.cfg.czar_grace_ms * 1000
    }

    /// The slot's process life (bumped by blank restarts).
    pub fn life(&self, peer: usize) -> u32 {
        self.slots[peer].life
    }

    /// Slot index of a peer id.
    pub fn index_of(&self, id: &PeerId) -> Option<usize> {
        self.ids.get(id).copied()
    }

    /// The declared shard `shard` comes from by splits (itself if declared).
    pub fn root_of(&self, shard: ShardId) -> ShardId {
        self.roots.get(&shard).copied().unwrap_or(shard)
    }

    /// The shard called `name`: declared, or made by a split (`world/0/1`).
    pub fn shard_by_name(&self, name: &str) -> ShardId {
        let derived = self.shard_names.iter().find(|(_, n)| n.as_str() == name).map(|(id, _)| *id);
        derived.unwrap_or_else(|| ShardId::from_name(name))
    }

    /// A shard's name.
    pub fn shard_name(&self, shard: ShardId) -> &str {
        self.shard_names.get(&shard).map(String::as_str).unwrap_or("?")
    }

    /// Every shard the workload declares, in declaration order.
    pub fn shard_ids(&self) -> &[ShardId] {
        &self.shard_ids
    }

    /// What was authored at exactly this shard and version.
    pub fn authored(&self, shard: ShardId, version: Version) -> &[AuthoredRecord] {
        self.ledger.get(&(shard, version.epoch, version.seq)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Peers whose process is running (up or paused), with their index.
    pub fn running_peers(&self) -> impl Iterator<Item = (usize, &Peer)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.state, SlotState::Up | SlotState::Paused(_)))
            .filter_map(|(i, s)| s.peer.as_ref().map(|p| (i, p)))
    }

    /// Live peers: up and joined.
    pub fn live_peers(&self) -> impl Iterator<Item = (usize, &Peer)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == SlotState::Up)
            .filter_map(|(i, s)| s.peer.as_ref().filter(|p| p.is_joined()).map(|p| (i, p)))
    }

    /// The peer in slot `i`, if a process runs there.
    pub fn peer(&self, i: usize) -> Option<&Peer> {
        self.slots.get(i)?.peer.as_ref()
    }

    /// Whether `a` and `b` have been running and connected both ways since `since_us`.
    pub fn heard_each_other_since(&self, a: usize, b: usize, since_us: u64) -> bool {
        let ok = |i: usize| self.slots[i].state == SlotState::Up && self.slots[i].last_change_us <= since_us;
        ok(a) && ok(b) && self.net.partition.mutual(a, b)
    }

    /// The czar most live peers follow for the shard named (or numbered) `shard`.
    pub fn czar_index(&self, shard: ShardId) -> Option<usize> {
        let mut votes: std::collections::BTreeMap<usize, usize> = Default::default();
        for (_, p) in self.live_peers() {
            if let Some(c) = p.czar_of(shard).and_then(|c| self.index_of(&c)) {
                *votes.entry(c).or_default() += 1;
            }
        }
        votes.into_iter().max_by_key(|(i, n)| (*n, std::cmp::Reverse(*i))).map(|(i, _)| i)
    }

    /// `None` when the live peers agree on every shard; otherwise a
    /// description of the first disagreement. A shard that some live peer
    /// holds live (not split, not merged back) must be held live by every
    /// live peer at the same version and checksum. A shard no live peer
    /// holds live is history: the peers that know it must hold the same
    /// final state, but a peer may not know it at all (a joiner after a merge
    /// learns the parent's state, which has no split record, and never hears
    /// of the children).
    pub fn divergence(&self) -> Option<String> {
        let live: Vec<(usize, &Peer)> = self.live_peers().collect();
        let held = |v: Option<Version>, retired: bool| match v {
            Some(v) if retired => format!("{v} (retired)"),
            Some(v) => v.to_string(),
            None => "-".into(),
        };
        for &shard in &self.shard_ids {
            let holders: Vec<(usize, &Peer)> =
                live.iter().copied().filter(|(_, p)| p.version_of(shard).is_some()).collect();
            let live_here = holders.iter().find(|(_, p)| !p.is_retired(shard));
            let (first, reference) = match (live_here, holders.first()) {
                (Some(&h), _) | (None, Some(&h)) => h,
                (None, None) => continue,
            };
            // Held live somewhere: every live peer must hold it live; else
            // the peers that still keep the history must agree on it.
            let compared = if live_here.is_some() { &live } else { &holders };
            let want = (reference.version_of(shard), reference.checksum_of(shard), reference.is_retired(shard));
            let mut differ = Vec::new();
            for &(i, p) in compared.iter().filter(|(i, _)| *i != first) {
                let got = (p.version_of(shard), p.checksum_of(shard), p.is_retired(shard));
                if got != want {
                    differ.push((i, got.0, got.2));
                }
            }
            // Stream keys: every peer holds what the czar it follows holds.
            if differ.is_empty() && self.cfg.streams {
                let czar = reference.czar_of(shard).and_then(|c| self.index_of(&c));
                let czar_digest = czar.and_then(|c| self.slots[c].peer.as_ref()).and_then(|p| p.stream_digest(shard));
                for &(i, p) in &live {
                    if czar_digest.is_some() && p.stream_digest(shard) != czar_digest {
                        let follows = p.czar_of(shard).and_then(|c| self.index_of(&c));
                        return Some(format!(
                            "p{i} (following {} at epoch {}) holds other stream values of {} than p{}, the czar most follow",
                            follows.map_or("none".into(), |c| format!("p{c}")),
                            p.version_of(shard).map_or(0, |v| v.epoch),
                            self.shard_name(shard),
                            czar.unwrap_or(usize::MAX)
                        ));
                    }
                }
            }
            if !differ.is_empty() {
                let shown: Vec<String> =
                    differ.iter().take(6).map(|&(i, v, retired)| format!("p{i} at {}", held(v, retired))).collect();
                return Some(format!(
                    "{} of {} live peers differ from p{first} (at {}, czar {}) on {}: {}{}",
                    differ.len(),
                    compared.len(),
                    held(want.0, want.2),
                    reference
                        .czar_of(shard)
                        .and_then(|c| self.index_of(&c))
                        .map(|c| format!("p{c}"))
                        .unwrap_or("none".into()),
                    self.shard_name(shard),
                    shown.join(", "),
                    if differ.len() > 6 { ", ..." } else { "" }
                ));
            }
        }
        None
    }

    /// Critical updates authored at exactly this shard and version.
    pub fn critical_authored(&self, shard: ShardId, version: Version) -> &[CriticalRecord] {
        self.critical_ledger.get(&(shard, version.epoch, version.seq)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The versions at which some czar authored this (key, value) content in `shard`.
    pub fn content_versions(&self, shard: ShardId, content: u64) -> &[Version] {
        self.content_versions.get(&(self.root_of(shard), content)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every commit seen so far: (shard, version) → first sighting.
    pub fn commits(&self) -> &BTreeMap<(ShardId, Version), CommitRecord> {
        &self.commits
    }

    /// Whether `i` is running and hears (both ways) a majority of the running peers.
    pub fn in_majority(&self, i: usize) -> bool {
        if !matches!(self.slots.get(i).map(|s| s.state), Some(SlotState::Up | SlotState::Paused(_))) {
            return false;
        }
        if self.net.partition.is_healed() {
            return true;
        }
        let running: Vec<usize> = self.running_peers().map(|(j, _)| j).collect();
        let heard = running.iter().filter(|&&j| j == i || self.net.partition.mutual(i, j)).count();
        heard * 2 > running.len()
    }

    /// Simulated µs since the slot's ability to exchange datagrams last changed.
    pub fn stable_for_us(&self, i: usize) -> u64 {
        self.now_us.saturating_sub(self.slots[i].last_change_us)
    }

    /// Marks failovers done once every live peer applied or authored an update
    /// of the shard in an epoch above the dead czar's.
    fn check_failovers(&mut self) {
        let now = self.now_us;
        let mut done = Vec::new();
        for (k, f) in self.failovers.iter().enumerate() {
            if f.done_us.is_some() {
                continue;
            }
            let mut any = false;
            let all = self.live_peers().all(|(i, _)| {
                any = true;
                self.max_epoch.get(&(i, f.shard)).is_some_and(|e| *e > f.epoch)
            });
            if all && any {
                done.push(k);
            }
        }
        for k in done {
            self.failovers[k].done_us = Some(now);
        }
    }

    fn mark_change(&mut self, peers: impl IntoIterator<Item = usize>) {
        let now = self.now_us;
        for p in peers {
            self.slots[p].last_change_us = now;
        }
    }
}

#[derive(Debug)]
enum Job {
    Deliver { from: u32, to: u32, bytes: Vec<u8> },
    Timer { peer: u32, gen: u32 },
    Tick { peer: u32, gen: u32 },
    Start { peer: u32 },
    Resume { peer: u32 },
    Script(usize),
    Churn,
    Critical,
    Step,
    Attack { peer: u32 },
}

#[derive(Debug)]
struct Item {
    at: u64,
    seq: u64,
    job: Job,
}

impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Item {
    fn cmp(&self, o: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest first.
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// One class of stream values the capped peer wrote (near or far entities).
#[derive(Debug, Clone)]
pub struct StreamClass {
    /// Values written, times the peers that should take them.
    pub written: u64,
    /// Values taken by other peers (a superseded value may never be).
    pub delivered: u64,
    /// Write → take latency of the values taken, µs of simulated time.
    pub propagation_us: Histogram<u64>,
}

impl StreamClass {
    fn new() -> Self {
        StreamClass {
            written: 0,
            delivered: 0,
            propagation_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
        }
    }
}

/// Counters the report reads.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Datagrams handed to the network.
    pub datagrams_sent: u64,
    /// Bytes handed to the network.
    pub bytes_sent: u64,
    /// Datagrams delivered.
    pub datagrams_delivered: u64,
    /// Datagrams dropped by partitions.
    pub dropped_partition: u64,
    /// Datagrams lost randomly or in bursts.
    pub dropped_loss: u64,
    /// Datagrams dropped at full uplinks or at crashed peers.
    pub dropped_other: u64,
    /// Of those, dropped at a full uplink queue.
    pub dropped_queue_full: u64,
    /// Writes the game refused (e.g. too many pending).
    pub writes_refused: u64,
    /// Peer-events processed.
    pub events: u64,
    /// Bytes handed to the network inside the measurement window.
    pub window_bytes_sent: u64,
    /// Inside the measurement window: key and value bytes of every write that
    /// changed a value, times the live peers other than the writer.
    pub payload_bytes: u64,
    /// Digest of every delivery (time, destination, bytes): equal digests, equal runs.
    pub trace_digest: u64,
    /// Datagrams hostile members crafted (also counted in `datagrams_sent`).
    pub attack_datagrams: u64,
}

/// What a finished run found.
#[derive(Debug)]
pub struct Outcome {
    /// Simulated seconds run (workload plus settle).
    pub sim_seconds: f64,
    /// Whether every live peer agreed at the end.
    pub converged: bool,
    /// Simulated ms from the end of writes to convergence, if it converged.
    pub converged_after_ms: Option<f64>,
    /// Violations found.
    pub findings: Findings,
    /// Updates czars authored.
    pub updates_written: u64,
    /// Updates peers applied from other czars.
    pub updates_applied: u64,
    /// Czar write → apply latency, µs of simulated time.
    pub propagation_us: Histogram<u64>,
    /// The same, for updates the capped peer authored and for updates it applied.
    pub capped_propagation_us: (Histogram<u64>, Histogram<u64>),
    /// The same, for updates applied in the steady window only (after the
    /// warm-up: what the protocol settled to, its adaptation left out).
    pub capped_steady_propagation_us: (Histogram<u64>, Histogram<u64>),
    /// Stream values the capped peer wrote, near entities then far ones.
    pub capped_streams: [StreamClass; 2],
    /// Counters.
    pub totals: Totals,
    /// Peers live at the end.
    pub live_peers: usize,
    /// Per crash of a czar: simulated µs until every live peer applied or
    /// authored an update of its shard in a higher epoch (finished ones only).
    pub failover_us: Vec<u64>,
    /// Czar crashes whose failover had not finished by the end.
    pub failovers_unfinished: u64,
    /// Failovers as (crashed slot, shard name, dead epoch, crash ms, done ms).
    pub failover_notes: Vec<String>,
    /// Evictions (`PeerLeft` by timeout or confirmation) of a peer that was up
    /// and connected both ways to the evicting peer for the whole peer timeout.
    pub false_evictions: u64,
    /// The first few false evictions.
    pub false_eviction_notes: Vec<String>,
    /// Peers that gave up czar eligibility (`Event::SteppedDown`): when, who,
    /// why (the first few).
    pub step_down_notes: Vec<String>,
    /// How many peers stepped down.
    pub step_downs: u64,
    /// Critical-write counters.
    pub critical: CriticalTotals,
    /// Drops counted by the honest peers running at the end, by reason.
    pub honest_drops: BTreeMap<DropReason, u64>,
    /// Simulated seconds of the bandwidth measurement window.
    pub window_seconds: f64,
    /// Busiest czar's load over the mean czar's, sampled every check step of
    /// the measurement window while every live shard's czar had held it for
    /// `LOAD_SETTLE_US` (its load is a full window of that czar's).
    pub czar_load_samples: Vec<f64>,
    /// The same, every sample of the window.
    pub czar_load_samples_all: Vec<f64>,
    /// Most splits one peer process applied.
    pub splits: u64,
    /// Most merges one peer process applied.
    pub merges: u64,
    /// (simulated s, shards holding keys), once a second.
    pub shards_over_time: Vec<(f64, usize)>,
}

/// A czar's load figure is a full window of its own once it has held the
/// shard this long (a 1 s load window, aligned to its status windows, plus
/// the window itself): load samples count as settled from then on.
const LOAD_SETTLE_US: u64 = 2_000_000;

/// A running simulation.
pub struct Sim {
    world: World,
    checkers: Vec<Box<dyn Checker>>,
    findings: Findings,
    queue: BinaryHeap<Item>,
    seq: u64,
    net_rng: ChaCha8Rng,
    rng: ChaCha8Rng,
    /// The critical workload's own stream, so it leaves the rest of the workload as it was.
    crit_rng: ChaCha8Rng,
    /// The hostile members' own stream, likewise.
    hostile_rng: ChaCha8Rng,
    events: Vec<Event>,
    totals: Totals,
    writes_stopped: bool,
    /// Busiest czar's load over the mean czar's, sampled each step of the
    /// window: settled samples (see `Outcome::czar_load_samples`), all samples.
    czar_load_samples: Vec<f64>,
    czar_load_samples_all: Vec<f64>,
    /// Per shard, its czar's slot and since when (simulated µs) it was seen
    /// as czar, noted every check step.
    czar_tenure: BTreeMap<ShardId, (usize, u64)>,
    end_us: u64,
    last_crashed: Option<usize>,
    /// Shards whose events are printed to stderr (`ANARCHY_SIM_TRACE=name,name`), for debugging.
    trace: Vec<String>,
    /// The entity workload's own stream, so the other streams stay as they were.
    work_rng: ChaCha8Rng,
    /// Start of the bandwidth measurement window, simulated µs.
    window_from_us: u64,
}

fn addr_of(i: usize) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8), SIM_PORT))
}

fn index_of_addr(addr: &SocketAddr) -> Option<usize> {
    match addr {
        SocketAddr::V4(a) if a.port() == SIM_PORT => {
            let o = a.ip().octets();
            (o[0] == 10).then(|| (o[1] as usize) << 16 | (o[2] as usize) << 8 | o[3] as usize)
        }
        _ => None,
    }
}

/// The shard names a run declares: `world`, then `avatars-1` ...
pub fn shard_names(shards: usize) -> Vec<String> {
    (0..shards.max(1)).map(|i| if i == 0 { "world".to_string() } else { format!("avatars-{i}") }).collect()
}

impl Sim {
    /// A simulation with the standard checkers.
    pub fn new(cfg: SimConfig) -> Self {
        Self::with_checkers(cfg, registry())
    }

    /// A simulation with these checkers.
    pub fn with_checkers(mut cfg: SimConfig, checkers: Vec<Box<dyn Checker>>) -> Self {
        cfg.proto.update_events = true;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let n = cfg.peers.max(1);
        let mut slots = Vec::with_capacity(n);
        let mut ids = HashMap::new();
        for i in 0..n {
            let offset_us = (rng.gen::<f64>() * cfg.clock_offset_ms * 1000.0) as u64;
            let drift = (rng.gen::<f64>() * 2.0 - 1.0) * cfg.clock_drift_ppm * 1e-6;
            let key_seed = mix64(cfg.seed ^ mix64(i as u64 + 1));
            ids.insert(Keypair::from_seed(key_seed).peer_id(), i);
            slots.push(Slot {
                peer: None,
                state: SlotState::Waiting,
                clock: Clock { offset_us, drift },
                key_seed,
                life: 0,
                gen: 0,
                timer_at: u64::MAX,
                last_change_us: 0,
                writes: 0,
                hostile: (i >= n.saturating_sub(cfg.byzantine)).then(|| {
                    let boot = mix64(key_seed ^ 0xb007) as u32;
                    Attacker::new(Keypair::from_seed(key_seed), cfg.proto.session_secret.clone(), boot, i)
                }),
            });
        }
        let names = shard_names(cfg.shards);
        let shard_ids: Vec<ShardId> = names.iter().map(|n| ShardId::from_name(n)).collect();
        let shard_names = shard_ids.iter().copied().zip(names).collect();
        let mut net = Network::new(n, cfg.link.clone(), mix64(cfg.seed ^ 0x006e_6574_776f_726b));
        net.capped = cfg.capped_peer;
        let end_us = (cfg.seconds * 1e6) as u64;
        let net_rng = ChaCha8Rng::seed_from_u64(mix64(cfg.seed ^ 0x5eed));
        let crit_rng = ChaCha8Rng::seed_from_u64(mix64(cfg.seed ^ 0x00c2_1714_ca15));
        let cfg_seed = cfg.seed;
        let schedule = cfg.schedule.clone();
        let churn = cfg.churn_per_min;
        let mut work_rng = ChaCha8Rng::seed_from_u64(mix64(cfg.seed ^ 0x0e47_1717));
        let avatars = match cfg.entities {
            Some(w) => (0..n).map(|_| w.avatar(&mut work_rng)).collect(),
            None => Vec::new(),
        };
        let preferred = slots.iter().map(|s| Keypair::from_seed(s.key_seed).peer_id()).collect();
        let hot_keys =
            if cfg.hot_rate_hz > 0.0 { (0..n).map(|i| hot_keys_of(i, cfg.hot_by_hash)).collect() } else { Vec::new() };
        // Staggered joins: the whole session forms within a few seconds.
        let spread_us = (n as u64 * 10_000).min(3_000_000);
        let window_from_us = (spread_us + (cfg.warmup_seconds * 1e6) as u64).min(end_us / 2);
        let world = World {
            cfg,
            now_us: 0,
            slots,
            net,
            ids,
            shard_ids,
            shard_names,
            ledger: HashMap::new(),
            propagation: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            capped_propagation: (
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            ),
            capped_steady: (
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            ),
            updates_written: 0,
            updates_applied: 0,
            critical_ledger: HashMap::new(),
            content_versions: HashMap::new(),
            commits: BTreeMap::new(),
            critical_ids: HashMap::new(),
            stream_writes: HashMap::new(),
            capped_streams: [StreamClass::new(), StreamClass::new()],
            stream_order: std::collections::VecDeque::new(),
            critical: CriticalTotals::default(),
            failovers: Vec::new(),
            max_epoch: HashMap::new(),
            false_evictions: 0,
            false_eviction_notes: Vec::new(),
            step_down_notes: Vec::new(),
            step_downs: 0,
            avatars,
            preferred,
            hot_keys,
            splits: 0,
            merges: 0,
            shards_over_time: Vec::new(),
            roots: HashMap::new(),
        };
        let mut sim = Sim {
            world,
            checkers,
            findings: Findings::default(),
            queue: BinaryHeap::new(),
            seq: 0,
            net_rng,
            rng,
            crit_rng,
            hostile_rng: ChaCha8Rng::seed_from_u64(mix64(cfg_seed ^ 0x0b12_a471)),
            events: Vec::new(),
            totals: Totals::default(),
            writes_stopped: false,
            czar_load_samples: Vec::new(),
            czar_load_samples_all: Vec::new(),
            czar_tenure: BTreeMap::new(),
            end_us,
            last_crashed: None,
            trace: std::env::var("ANARCHY_SIM_TRACE")
                .map(|names| names.split(',').filter(|n| !n.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default(),
            work_rng,
            window_from_us,
        };
        let initial = sim.world.cfg.initial_peers.unwrap_or(n).min(n);
        for i in 0..initial {
            let at = if i == 0 { 0 } else { spread_us * i as u64 / n as u64 };
            sim.push(at, Job::Start { peer: i as u32 });
        }
        for (k, s) in schedule.iter().enumerate() {
            sim.push(s.at_us, Job::Script(k));
        }
        if churn > 0.0 {
            let first = sim.churn_gap();
            sim.push(spread_us + first, Job::Churn);
        }
        if sim.world.cfg.critical_rate_hz > 0.0 {
            let first = sim.critical_gap();
            sim.push(spread_us + first, Job::Critical);
        }
        sim.push(sim.world.cfg.check_interval_ms * 1000, Job::Step);
        for i in 0..n {
            if sim.world.slots[i].hostile.is_some() {
                sim.push(spread_us + 1_000_000 + i as u64, Job::Attack { peer: i as u32 });
            }
        }
        sim
    }

    /// The world, for inspection.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The peer in slot `i`, to poke at (e.g. inject a fault).
    pub fn peer_mut(&mut self, i: usize) -> Option<&mut Peer> {
        self.world.slots.get_mut(i)?.peer.as_mut()
    }

    /// Violations so far.
    pub fn findings(&self) -> &Findings {
        &self.findings
    }

    fn push(&mut self, at: u64, job: Job) {
        self.seq += 1;
        self.queue.push(Item { at, seq: self.seq, job });
    }

    fn critical_gap(&mut self) -> u64 {
        let per_us = self.world.cfg.critical_rate_hz / 1e6;
        let u: f64 = self.crit_rng.gen::<f64>().max(1e-12);
        ((-u.ln() / per_us) as u64).max(1)
    }

    /// One critical write: a random live player sets a random score key.
    fn critical_write(&mut self) {
        let live: Vec<usize> = self.world.live_peers().map(|(i, _)| i).collect();
        if live.is_empty() {
            return;
        }
        let i = live[self.crit_rng.gen_range(0..live.len())];
        let k = self.crit_rng.gen_range(0..CRITICAL_KEYS);
        let cheat = self.crit_rng.gen::<f64>() < CHEAT_SHARE;
        let now = self.world.now_us;
        let world_shard = self.world.shard_ids[0];
        let n = self.world.critical.proposed + self.world.critical.refused;
        let mut key = CRITICAL_PREFIX.to_vec();
        key.extend_from_slice(k.to_string().as_bytes());
        let value = critical_value(n, now, i, cheat);
        let life = self.world.slots[i].life;
        let slot = &mut self.world.slots[i];
        let local = slot.clock.local(now);
        let Some(peer) = slot.peer.as_mut() else { return };
        match peer.write_critical(local, world_shard, &key, Some(&value)) {
            Ok(id) => {
                self.world.critical.proposed += 1;
                self.world.critical_ids.insert((i, life, id.0), ());
            }
            Err(_) => self.world.critical.refused += 1,
        }
        self.after_input(i);
    }

    fn churn_gap(&mut self) -> u64 {
        let per_us = self.world.cfg.churn_per_min / 60e6;
        let u: f64 = self.rng.gen::<f64>().max(1e-12);
        (-u.ln() / per_us) as u64
    }

    /// Runs until `until_us` of simulated time (or the queue empties).
    pub fn run_until(&mut self, until_us: u64) {
        while let Some(top) = self.queue.peek() {
            if top.at > until_us {
                break;
            }
            let item = self.queue.pop().expect("peeked");
            self.world.now_us = item.at;
            self.dispatch(item);
        }
        self.world.now_us = self.world.now_us.max(until_us);
    }

    /// Runs the workload phase, then heals and settles; calls `progress`
    /// with (simulated µs done, simulated µs planned) every check step.
    pub fn run(mut self, mut progress: impl FnMut(u64, u64)) -> Outcome {
        let settle_us = (self.world.cfg.settle_seconds * 1e6) as u64;
        let step = self.world.cfg.check_interval_ms.max(1) * 1000;
        let planned = self.end_us + settle_us;
        let mut t = 0;
        while t < self.end_us {
            t = (t + step).min(self.end_us);
            self.run_until(t);
            progress(t, planned);
        }
        self.end_writes();
        let mut converged_after = None;
        while t < planned {
            t = (t + step).min(planned);
            self.run_until(t);
            progress(t, planned);
            if self.world.divergence().is_none() {
                converged_after = Some((t - self.end_us) as f64 / 1000.0);
                break;
            }
        }
        self.finish(converged_after)
    }

    /// Stops writes and churn, heals every partition and resumes paused peers.
    pub fn end_writes(&mut self) {
        self.writes_stopped = true;
        let touched = self.world.net.partition.heal();
        self.world.mark_change(touched);
        for i in 0..self.world.slots.len() {
            if let SlotState::Paused(_) = self.world.slots[i].state {
                self.resume(i);
            }
        }
    }

    fn finish(mut self, converged_after_ms: Option<f64>) -> Outcome {
        for c in self.checkers.iter_mut() {
            c.at_end(&self.world, &mut self.findings);
        }
        let w = &self.world;
        for shard in self.trace.iter().map(|name| w.shard_by_name(name)) {
            // Debugging aid: every peer's view of the traced shards and its drops.
            for i in 0..w.slots.len() {
                if let Some(p) = w.peer(i) {
                    let st = p.stats();
                    eprintln!("end p{i}: {} {}", w.shard_name(shard), p.debug_shard(shard));
                    eprintln!(
                        "end p{i}: czar {:?} version {:?} repairs {} snapshots {} drops {:?}",
                        p.czar_of(shard),
                        p.version_of(shard),
                        st.repairs_requested,
                        st.snapshots_installed,
                        st.drop_counts().map(|(r, n)| (r.name(), n)).collect::<Vec<_>>()
                    );
                }
            }
        }
        let mut critical = w.critical;
        let mut committed: std::collections::BTreeSet<u64> = Default::default();
        for (&(shard, version), _) in w.commits.iter() {
            match w.critical_authored(shard, version).first() {
                Some(rec) => committed.insert(rec.content),
                None => committed.insert(mix64(version.seq ^ u64::from(version.epoch) << 48 ^ 0xc0)),
            };
        }
        critical.committed = committed.len() as u64;
        let failover_us = w.failovers.iter().filter_map(|f| f.done_us.map(|d| d - f.at_us)).collect();
        let failover_notes = w
            .failovers
            .iter()
            .map(|f| {
                format!(
                    "p{} czar of {} at epoch {} crashed at {:.0} ms: {}",
                    f.crashed,
                    w.shard_name(f.shard),
                    anarchy_proto::epoch_label(f.epoch),
                    f.at_us as f64 / 1000.0,
                    f.done_us.map_or("not finished".to_string(), |d| format!(
                        "failed over in {:.0} ms",
                        (d - f.at_us) as f64 / 1000.0
                    ))
                )
            })
            .collect();
        let mut honest_drops: BTreeMap<DropReason, u64> = BTreeMap::new();
        for (i, p) in w.running_peers() {
            if w.slots[i].hostile.is_none() {
                for (reason, n) in p.stats().drop_counts() {
                    *honest_drops.entry(reason).or_default() += n;
                }
            }
        }
        Outcome {
            czar_load_samples: self.czar_load_samples.clone(),
            czar_load_samples_all: self.czar_load_samples_all.clone(),
            splits: w.splits,
            merges: w.merges,
            shards_over_time: w.shards_over_time.clone(),
            honest_drops,
            failover_us,
            failovers_unfinished: w.failovers.iter().filter(|f| f.done_us.is_none()).count() as u64,
            failover_notes,
            false_evictions: w.false_evictions,
            false_eviction_notes: w.false_eviction_notes.clone(),
            step_down_notes: w.step_down_notes.clone(),
            step_downs: w.step_downs,
            critical,
            window_seconds: self.end_us.saturating_sub(self.window_from_us) as f64 / 1e6,
            sim_seconds: w.now_us as f64 / 1e6,
            converged: w.divergence().is_none(),
            converged_after_ms,
            findings: self.findings,
            updates_written: w.updates_written,
            updates_applied: w.updates_applied,
            propagation_us: w.propagation.clone(),
            capped_propagation_us: w.capped_propagation.clone(),
            capped_steady_propagation_us: w.capped_steady.clone(),
            capped_streams: w.capped_streams.clone(),
            totals: self.totals,
            live_peers: w.live_peers().count(),
        }
    }

    fn dispatch(&mut self, item: Item) {
        let now = item.at;
        match item.job {
            Job::Deliver { from, to, bytes } => {
                let to = to as usize;
                match self.world.slots[to].state {
                    SlotState::Up => {}
                    SlotState::Paused(until) => {
                        // A stalled process: the datagram waits in its socket buffer.
                        self.push(until, Job::Deliver { from, to: to as u32, bytes });
                        return;
                    }
                    _ => {
                        self.totals.dropped_other += 1;
                        return;
                    }
                }
                self.totals.datagrams_delivered += 1;
                self.totals.trace_digest =
                    mix64(self.totals.trace_digest ^ hash_bytes(now ^ (to as u64) << 48, &bytes));
                // Its sender as it was when it sent it (a short-form datagram
                // does not name it), for the hostile peer's captures.
                let sender = self.world.slots[from as usize].peer.as_ref().map(|p| (p.id(), p.boot()));
                let slot = &mut self.world.slots[to];
                let local = slot.clock.local(now);
                if let (Some(a), Some(sender)) = (slot.hostile.as_mut(), sender) {
                    a.capture(from as usize, sender, &bytes);
                }
                if let Some(p) = slot.peer.as_mut() {
                    p.handle_datagram(local, addr_of(from as usize), &bytes);
                }
                self.after_input(to);
            }
            Job::Timer { peer, gen } => {
                let i = peer as usize;
                let slot = &mut self.world.slots[i];
                if slot.gen != gen || slot.timer_at != now {
                    return;
                }
                match slot.state {
                    SlotState::Up => {}
                    SlotState::Paused(until) => {
                        slot.timer_at = until;
                        self.push(until, Job::Timer { peer, gen });
                        return;
                    }
                    _ => return,
                }
                slot.timer_at = u64::MAX;
                let local = slot.clock.local(now);
                if let Some(p) = slot.peer.as_mut() {
                    p.handle_timeout(local);
                }
                self.after_input(i);
            }
            Job::Tick { peer, gen } => self.player_tick(peer as usize, gen),
            Job::Start { peer } => self.start(peer as usize, false),
            Job::Resume { peer } => {
                if self.world.slots[peer as usize].state == SlotState::Paused(now) {
                    self.resume(peer as usize);
                }
            }
            Job::Script(k) => {
                let action = self.world.cfg.schedule[k].action.clone();
                self.apply(&action);
            }
            Job::Churn => {
                if !self.writes_stopped {
                    self.churn();
                    let gap = self.churn_gap();
                    self.push(now + gap.max(1), Job::Churn);
                }
            }
            Job::Critical => {
                if !self.writes_stopped {
                    self.critical_write();
                    let gap = self.critical_gap();
                    self.push(now + gap, Job::Critical);
                }
            }
            Job::Attack { peer } => {
                if !self.writes_stopped {
                    self.attack(peer as usize);
                    self.push(now + self.world.cfg.attack_interval_ms.max(1) * 1000, Job::Attack { peer });
                }
            }
            Job::Step => {
                self.world.check_failovers();
                let step_us = self.world.cfg.check_interval_ms.max(1) * 1000;
                if now % 1_000_000 < step_us {
                    let count = self.world.live_peers().next().map(|(_, p)| p.live_shards().count());
                    if let Some(count) = count {
                        self.world.shards_over_time.push((now as f64 / 1e6, count));
                    }
                }
                self.track_czar_tenure();
                if !self.writes_stopped && now >= self.window_from_us {
                    self.sample_czar_load();
                }
                for c in self.checkers.iter_mut() {
                    c.on_step(&self.world, &mut self.findings);
                }
                self.push(now + self.world.cfg.check_interval_ms.max(1) * 1000, Job::Step);
            }
        }
    }

    /// Starts (or blank-restarts) the process in slot `i` and joins it.
    fn start(&mut self, i: usize, rejoin: bool) {
        let now = self.world.now_us;
        let bootstraps: Vec<SocketAddr> = {
            let up: Vec<usize> = self.world.live_peers().map(|(j, _)| j).filter(|j| *j != i).collect();
            if up.is_empty() {
                Vec::new()
            } else {
                let mut b = vec![addr_of(up[0])];
                let r = up[self.rng.gen_range(0..up.len())];
                if r != up[0] {
                    b.push(addr_of(r));
                }
                b
            }
        };
        if i != 0 && bootstraps.is_empty() && !rejoin {
            // Nobody to join yet (peer 0 must be stalled): try again shortly.
            self.push(now + 100_000, Job::Start { peer: i as u32 });
            return;
        }
        let names = shard_names(self.world.cfg.shards);
        self.world.max_epoch.retain(|(j, _), _| *j != i);
        let slot = &mut self.world.slots[i];
        slot.life += 1;
        slot.gen += 1;
        slot.timer_at = u64::MAX;
        slot.state = SlotState::Up;
        slot.last_change_us = now;
        let local = slot.clock.local(now);
        let peer_seed = mix64(slot.key_seed ^ u64::from(slot.life));
        let mut proto = self.world.cfg.proto.clone();
        // The game knows this player's upload is small (`--not-czar`).
        proto.czar_eligible &= !self.world.cfg.not_czar.contains(&i);
        let mut peer = Peer::new(proto, Keypair::from_seed(slot.key_seed), addr_of(i), peer_seed, local);
        let entities = self.world.cfg.entities.is_some();
        for (k, name) in names.iter().enumerate() {
            // Entity workload: every player is the czar of its own avatar shard.
            let preferred = if entities && k > 0 { self.world.preferred.get(k - 1).copied() } else { None };
            peer.declare_shard(local, name, preferred).expect("valid shard name");
        }
        peer.set_validator(Box::new(validate_critical));
        peer.join(local, &bootstraps);
        slot.peer = Some(peer);
        let gen = slot.gen;
        self.after_input(i);
        if self.world.cfg.rate_hz > 0.0 {
            let first = self.rng.gen_range(0..self.tick_interval_us());
            self.push(now + first, Job::Tick { peer: i as u32, gen });
        }
    }

    fn tick_interval_us(&self) -> u64 {
        ((1e6 / self.world.cfg.rate_hz) as u64).max(1)
    }

    /// One frame of one player: its avatar, sometimes a world key, sometimes a burst.
    fn player_tick(&mut self, i: usize, gen: u32) {
        if self.world.slots[i].gen != gen || self.writes_stopped {
            return;
        }
        let now = self.world.now_us;
        let interval = self.tick_interval_us();
        let next = now + interval - interval / 10 + self.rng.gen_range(0..interval / 5 + 1);
        match self.world.slots[i].state {
            SlotState::Up => {}
            SlotState::Paused(_) => {
                self.push(next, Job::Tick { peer: i as u32, gen });
                return;
            }
            _ => return,
        }
        self.push(next, Job::Tick { peer: i as u32, gen });
        let joined = self.world.slots[i].peer.as_ref().is_some_and(Peer::is_joined);
        if !joined {
            return;
        }
        let shards = self.world.cfg.shards;
        let avatar = self.world.shard_ids[if shards > 1 { 1 + i % (shards - 1) } else { 0 }];
        let in_window = now >= self.window_from_us;
        let receivers = self.world.live_peers().count().saturating_sub(1) as u64;
        if let Some(w) = self.world.cfg.entities {
            let writes = w.tick(&mut self.world.avatars[i], &mut self.work_rng);
            let slot = &mut self.world.slots[i];
            slot.writes += 1;
            let local = slot.clock.local(now);
            let peer = slot.peer.as_mut().expect("joined implies a process");
            // A game streams the shards it is czar of; a player that is not
            // (one that may not be czar, say) writes its avatar as updates.
            let czar = peer.czar_of(avatar) == Some(peer.id());
            let streams = self.world.cfg.streams && czar;
            // The capped peer's writes that go through another czar, timed
            // from the write (the czar's apply is when the ledger starts).
            let time_forwards = !czar && self.world.cfg.capped_peer.is_some_and(|(c, _)| c == i);
            let mut forwarded = Vec::new();
            let mut streamed = Vec::new();
            for (e, (key, value)) in writes.into_iter().enumerate() {
                let near = e < NEAR_ENTITIES;
                let changed = if streams {
                    let before = peer.stream_value(avatar, &key).map(<[u8]>::to_vec);
                    let priority = if near { NEAR_PRIORITY } else { DEFAULT_STREAM_PRIORITY };
                    peer.write_stream_with_priority(local, avatar, &key, &value, priority)
                        .map(|()| before.as_deref() != Some(&value[..]))
                } else {
                    peer.write(local, avatar, &key, &value).map(|o| !matches!(o, WriteOutcome::Unchanged(_)))
                };
                match changed {
                    Ok(false) => {}
                    Ok(true) => {
                        if streams {
                            streamed.push((fingerprint(&key, Some(&value)), near));
                        } else if time_forwards {
                            forwarded.push(fingerprint(&key, Some(&value)));
                        }
                        if in_window {
                            self.totals.payload_bytes += (key.len() + value.len()) as u64 * receivers;
                        }
                    }
                    // A stream write before our avatar's claim reached us, say.
                    Err(_) => self.totals.writes_refused += 1,
                }
            }
            self.note_stream_writes(i, avatar, streamed, receivers);
            self.note_forwarded_writes(i, avatar, forwarded);
            self.after_input(i);
            return;
        }
        let world_shard = self.world.shard_ids[0];
        let world_write = self.rng.gen::<f64>() < self.world.cfg.world_write_prob;
        let burst = self.rng.gen::<f64>() < self.world.cfg.burst_prob;
        let world_key = self.rng.gen_range(0..WORLD_KEYS);
        let slot = &mut self.world.slots[i];
        slot.writes += 1;
        let n = slot.writes;
        let local = slot.clock.local(now);
        let peer = slot.peer.as_mut().expect("joined implies a process");
        let mut value = [0u8; 24];
        value[..8].copy_from_slice(&n.to_le_bytes());
        value[8..16].copy_from_slice(&now.to_le_bytes());
        value[16..].copy_from_slice(&(i as u64).to_le_bytes());
        let key = format!("p{i}");
        let (mut refused, mut payload) = (0, 0);
        let mut tally = |outcome: Result<WriteOutcome, WriteError>, len: usize, unchanged_refused: bool| match outcome {
            Ok(WriteOutcome::Unchanged(_)) => refused += u64::from(unchanged_refused),
            Ok(_) => payload += len as u64,
            Err(_) => refused += 1,
        };
        tally(peer.write(local, avatar, key.as_bytes(), &value), key.len() + value.len(), false);
        if world_write {
            let k = format!("w{world_key}");
            tally(peer.write(local, world_shard, k.as_bytes(), &value), k.len() + value.len(), false);
        }
        if burst {
            for b in 0..BURST_KEYS {
                let k = format!("p{i}/b{b}");
                tally(peer.write(local, avatar, k.as_bytes(), &value), k.len() + value.len(), true);
            }
        }
        // The hot spot: this many writes this tick (the fraction by chance).
        // (No draw without a hot spot: every other run keeps its random stream.)
        let hot = self.world.cfg.hot_rate_hz / self.world.cfg.rate_hz.max(1e-9);
        let hot_writes =
            if hot > 0.0 { hot.floor() as usize + usize::from(self.rng.gen::<f64>() < hot.fract()) } else { 0 };
        if hot_writes > 0 {
            let region = ((now as f64 / 1e6 / self.world.cfg.hot_move_secs.max(1e-3)) as usize) % HOT_REGIONS;
            let keys = &self.world.hot_keys[i][region];
            for _ in 0..hot_writes {
                let k = &keys[self.rng.gen_range(0..keys.len())];
                tally(peer.write(local, world_shard, k, &value), k.len() + value.len(), false);
            }
        }
        self.totals.writes_refused += refused;
        if in_window {
            self.totals.payload_bytes += payload * receivers;
        }
        self.after_input(i);
    }

    /// Drains a peer's transmits and events after an input; reschedules its timer.
    fn after_input(&mut self, i: usize) {
        let now = self.world.now_us;
        let n = self.world.slots.len();
        let slot = &mut self.world.slots[i];
        let Some(peer) = slot.peer.as_mut() else { return };
        let mut out = Vec::new();
        while let Some(t) = peer.poll_transmit() {
            out.push(t);
        }
        let mut events = std::mem::take(&mut self.events);
        while let Some(e) = peer.poll_event() {
            events.push(e);
        }
        let timer = peer.poll_timeout().map(|deadline| slot.clock.global(deadline, now));
        for t in out {
            match index_of_addr(&t.destination).filter(|to| *to < n) {
                Some(to) => self.send(i, to, t.payload),
                None => {
                    self.totals.datagrams_sent += 1;
                    self.totals.bytes_sent += t.payload.len() as u64;
                    self.totals.dropped_other += 1;
                }
            }
        }
        let slot = &mut self.world.slots[i];
        if let Some(g) = timer.filter(|g| *g != slot.timer_at) {
            slot.timer_at = g;
            let gen = slot.gen;
            self.seq += 1;
            self.queue.push(Item { at: g, seq: self.seq, job: Job::Timer { peer: i as u32, gen } });
        }
        for e in events.drain(..) {
            self.totals.events += 1;
            let content = self.record(i, &e);
            let ev = PeerEvent { peer: i, at_us: now, event: &e, content };
            for c in self.checkers.iter_mut() {
                c.on_event(&self.world, &ev, &mut self.findings);
            }
        }
        self.events = events;
    }

    /// Hands a datagram from slot `from` to the network, towards slot `to`.
    fn send(&mut self, from: usize, to: usize, payload: Vec<u8>) {
        let now = self.world.now_us;
        self.totals.datagrams_sent += 1;
        self.totals.bytes_sent += payload.len() as u64;
        if now >= self.window_from_us && !self.writes_stopped {
            self.totals.window_bytes_sent += payload.len() as u64;
        }
        match self.world.net.route(&mut self.net_rng, now, from, to, payload.len()) {
            Fate::Once(d) => {
                self.seq += 1;
                let job = Job::Deliver { from: from as u32, to: to as u32, bytes: payload };
                self.queue.push(Item { at: now + d, seq: self.seq, job });
            }
            Fate::Twice(d1, d2) => {
                self.seq += 1;
                let job = Job::Deliver { from: from as u32, to: to as u32, bytes: payload.clone() };
                self.queue.push(Item { at: now + d1, seq: self.seq, job });
                self.seq += 1;
                let job = Job::Deliver { from: from as u32, to: to as u32, bytes: payload };
                self.queue.push(Item { at: now + d2, seq: self.seq, job });
            }
            Fate::Partitioned => self.totals.dropped_partition += 1,
            Fate::Lost => self.totals.dropped_loss += 1,
            Fate::QueueFull => {
                self.totals.dropped_other += 1;
                self.totals.dropped_queue_full += 1;
            }
        }
    }

    /// One attack by the hostile member in slot `i` on a random honest peer.
    fn attack(&mut self, i: usize) {
        if self.world.slots[i].state != SlotState::Up {
            return;
        }
        let honest: Vec<usize> =
            self.world.live_peers().map(|(j, _)| j).filter(|j| self.world.slots[*j].hostile.is_none()).collect();
        if honest.is_empty() {
            return;
        }
        let target = honest[self.hostile_rng.gen_range(0..honest.len())];
        let World { slots, ids, .. } = &mut self.world;
        let slot = &mut slots[i];
        let (Some(own), Some(attacker)) = (slot.peer.as_ref(), slot.hostile.as_mut()) else { return };
        let crafted = attacker.attack(&mut self.hostile_rng, own, target, |id| ids.get(id).copied());
        self.totals.attack_datagrams += crafted.len() as u64;
        for c in crafted {
            self.send(c.from, target, c.bytes);
        }
    }

    /// Notes, per live shard, its current czar's slot and since when that
    /// czar has held it (no entry while no czar is agreed on, or while the
    /// czar holds the shard retired: a merged child that a later split makes
    /// anew starts a new tenure, even with its old czar).
    fn track_czar_tenure(&mut self) {
        let w = &self.world;
        for &shard in &w.shard_ids {
            let czar = w.czar_index(shard);
            let held = czar.filter(|&c| w.slots[c].peer.as_ref().is_some_and(|p| !p.is_retired(shard)));
            let Some(c) = held else {
                self.czar_tenure.remove(&shard);
                continue;
            };
            let tenure = self.czar_tenure.entry(shard).or_insert((c, w.now_us));
            if tenure.0 != c {
                *tenure = (c, w.now_us);
            }
        }
    }

    /// One sample of the busiest czar's load over the mean czar's: per live
    /// peer, the bytes per second of the shards it is czar of (as it measures
    /// them), over the peers that are czar of anything. Reads the czars
    /// `track_czar_tenure` found in the same step.
    fn sample_czar_load(&mut self) {
        let w = &self.world;
        let now = w.now_us;
        let mut per_czar: BTreeMap<usize, u64> = BTreeMap::new();
        let mut settled = true;
        for &shard in &w.shard_ids {
            let Some(&(c, since)) = self.czar_tenure.get(&shard) else { continue };
            // Tenure is kept only while the czar holds the shard live.
            let Some(p) = w.slots[c].peer.as_ref() else { continue };
            settled &= now - since >= LOAD_SETTLE_US;
            let load = p.shard_load(shard).map_or(0, |l| u64::from(l.bytes_per_sec));
            *per_czar.entry(c).or_default() += load;
        }
        let total: u64 = per_czar.values().sum();
        if per_czar.is_empty() || total == 0 {
            return;
        }
        let mean = total as f64 / per_czar.len() as f64;
        let max = per_czar.values().copied().max().unwrap_or(0) as f64;
        self.czar_load_samples_all.push(max / mean);
        if settled {
            self.czar_load_samples.push(max / mean);
        }
    }

    /// Remembers when slot `i` streamed these contents of `shard`, to time
    /// their arrival (`Event::Streamed`).
    /// Remembers when the capped peer wrote these contents of `shard` through
    /// another czar, to time them from the write (`Event::Updated`).
    fn note_forwarded_writes(&mut self, i: usize, shard: ShardId, fingerprints: Vec<u64>) {
        let now = self.world.now_us;
        for fp in fingerprints {
            self.world.stream_writes.insert((shard, fp), (now, i, false));
            self.world.stream_order.push_back((now, (shard, fp)));
        }
    }

    fn note_stream_writes(&mut self, i: usize, shard: ShardId, fingerprints: Vec<(u64, bool)>, receivers: u64) {
        let world = &mut self.world;
        let now = world.now_us;
        let capped = world.cfg.capped_peer.is_some_and(|(c, _)| c == i);
        for (fp, near) in fingerprints {
            world.updates_written += 1;
            if capped {
                world.capped_streams[usize::from(!near)].written += receivers;
            }
            world.stream_writes.insert((shard, fp), (now, i, near));
            world.stream_order.push_back((now, (shard, fp)));
        }
        while world.stream_order.front().is_some_and(|(t, _)| now - t > STREAM_MEMORY_US) {
            let (t, k) = world.stream_order.pop_front().expect("non-empty");
            if world.stream_writes.get(&k).is_some_and(|(at, _, _)| *at == t) {
                world.stream_writes.remove(&k);
            }
        }
    }

    /// One write's propagation from `author` to slot `i`, in µs.
    fn record_propagation(&mut self, i: usize, author: usize, took: u64) {
        let _ = self.world.propagation.record(took);
        if let Some((capped, _)) = self.world.cfg.capped_peer {
            if author == capped {
                self.record_capped(true, took);
            }
            if i == capped {
                self.record_capped(false, took);
            }
        }
    }

    /// One propagation from (`by_capped`) or to the capped peer, in µs: over
    /// the whole run, and over the steady window once it is open.
    fn record_capped(&mut self, by_capped: bool, took: u64) {
        let steady = self.world.now_us >= self.window_from_us;
        let w = &mut self.world;
        let (all, window) = if by_capped {
            (&mut w.capped_propagation.0, &mut w.capped_steady.0)
        } else {
            (&mut w.capped_propagation.1, &mut w.capped_steady.1)
        };
        let _ = all.record(took);
        if steady {
            let _ = window.record(took);
        }
    }

    /// World bookkeeping for one event: the ledger, propagation times. Returns
    /// the content fingerprint of an `Updated`.
    fn record(&mut self, i: usize, e: &Event) -> u64 {
        let now = self.world.now_us;
        if !self.trace.is_empty() {
            let shard = match e {
                Event::CzarChanged { shard, .. }
                | Event::Authored { shard, .. }
                | Event::ShardResynced { shard, .. }
                | Event::Updated { shard, .. } => Some(*shard),
                _ => None,
            };
            if shard.is_none_or(|s| self.trace.iter().any(|name| self.world.shard_by_name(name) == s)) {
                eprintln!("{:>10.3} ms p{i}: {e:?}", now as f64 / 1000.0);
            }
        }
        match e {
            Event::ShardSplit { children, parent } | Event::ShardMerged { children, parent } => {
                let w = &mut self.world;
                let root = w.root_of(*parent);
                for child in children {
                    w.roots.insert(*child, root);
                }
                if let Some(p) = w.slots[i].peer.as_ref() {
                    w.splits = w.splits.max(p.stats().splits);
                    w.merges = w.merges.max(p.stats().merges);
                    for child in children {
                        if !w.shard_ids.contains(child) {
                            w.shard_ids.push(*child);
                            let name = p.shard(*child).map_or_else(|| child.to_string(), |info| info.name.clone());
                            w.shard_names.insert(*child, name);
                        }
                    }
                }
                0
            }
            Event::Authored { shard, version } => {
                self.world.updates_written += 1;
                self.note_epoch(i, *shard, version.epoch);
                let entry = self.world.slots[i]
                    .peer
                    .as_ref()
                    .and_then(|p| p.replica(*shard))
                    .and_then(|r| r.log_from(version.seq, 1))
                    .and_then(|mut v| v.pop())
                    .filter(|entry| entry.seq == version.seq && entry.epoch == version.epoch);
                let content = entry.as_ref().map(|entry| {
                    // The log holds every update resolved: never a patch or trend.
                    let value = match &entry.update.op {
                        Op::Put(v) => Some(v.as_slice()),
                        Op::Delete | Op::Patch(_) | Op::Trend(_) => None,
                    };
                    let fp = fingerprint(&entry.update.key, value);
                    if entry.update.key.starts_with(CRITICAL_PREFIX) {
                        let origin = value.and_then(critical_origin).unwrap_or(usize::MAX);
                        let rec = CriticalRecord { key: entry.update.key.clone(), content: fp, origin };
                        let recs = self.world.critical_ledger.entry((*shard, version.epoch, version.seq)).or_default();
                        if !recs.contains(&rec) {
                            recs.push(rec);
                        }
                        let root = self.world.root_of(*shard);
                        let vs = self.world.content_versions.entry((root, fp)).or_default();
                        if !vs.contains(version) {
                            vs.push(*version);
                        }
                    }
                    fp
                });
                self.world.ledger.entry((*shard, version.epoch, version.seq)).or_default().push(AuthoredRecord {
                    author: i,
                    at_us: now,
                    content,
                });
                0
            }
            Event::Updated { shard, version, key, value, .. } => {
                self.world.updates_applied += 1;
                self.note_epoch(i, *shard, version.epoch);
                let content = fingerprint(key, value.as_deref());
                if let Some(rec) = self.world.ledger.get(&(*shard, version.epoch, version.seq)).and_then(|r| r.first())
                {
                    let (author, took) = (rec.author, now.saturating_sub(rec.at_us).max(1));
                    self.record_propagation(i, author, took);
                }
                if let (Some((capped, _)), Some(&(at, writer, _))) =
                    (self.world.cfg.capped_peer, self.world.stream_writes.get(&(*shard, content)))
                {
                    // The capped peer's write, forwarded: from its write to here.
                    if writer == capped && i != capped {
                        self.record_capped(true, now.saturating_sub(at).max(1));
                    }
                }
                content
            }
            Event::Streamed { shard, key, value, .. } => {
                self.world.updates_applied += 1;
                if let Some(&(at, author, near)) =
                    self.world.stream_writes.get(&(*shard, fingerprint(key, Some(value))))
                {
                    let took = now.saturating_sub(at).max(1);
                    self.record_propagation(i, author, took);
                    if self.world.cfg.capped_peer.is_some_and(|(c, _)| c == author) {
                        let class = &mut self.world.capped_streams[usize::from(!near)];
                        class.delivered += 1;
                        let _ = class.propagation_us.record(took);
                    }
                }
                0
            }
            Event::Committed { origin, shard, version, .. } => {
                let origin = self.world.index_of(origin).unwrap_or(usize::MAX);
                self.world.commits.entry((*shard, *version)).or_insert(CommitRecord { origin, at_us: now });
                0
            }
            Event::Rejected { .. } => {
                self.world.critical.rejected += 1;
                0
            }
            Event::WriteFailed { write, .. } => {
                if self.world.critical_ids.contains_key(&(i, self.world.slots[i].life, write.0)) {
                    self.world.critical.failed += 1;
                }
                0
            }
            Event::SteppedDown { reason, .. } => {
                self.world.step_downs += 1;
                if self.world.step_down_notes.len() < 20 {
                    self.world.step_down_notes.push(format!("{:.3} ms: p{i} ({reason:?})", now as f64 / 1000.0));
                }
                0
            }
            Event::PeerLeft { peer, reason: reason @ (LeaveReason::Confirmed | LeaveReason::Timeout) } => {
                let timeout = self.world.cfg.proto.peer_timeout.as_micros() as u64;
                if let Some(j) = self.world.index_of(peer) {
                    if self.world.heard_each_other_since(i, j, now.saturating_sub(timeout)) {
                        self.world.false_evictions += 1;
                        if self.world.false_eviction_notes.len() < 20 {
                            self.world
                                .false_eviction_notes
                                .push(format!("{:.3} ms: p{i} evicted p{j} ({reason:?})", now as f64 / 1000.0));
                        }
                    }
                }
                0
            }
            _ => 0,
        }
    }

    /// Notes that slot `i` applied or authored an update of `shard` in `epoch`;
    /// completes failovers this finishes.
    fn note_epoch(&mut self, i: usize, shard: ShardId, epoch: u32) {
        let e = self.world.max_epoch.entry((i, shard)).or_insert(0);
        let before = *e;
        *e = before.max(epoch);
        let crossed = self
            .world
            .failovers
            .iter()
            .any(|f| f.done_us.is_none() && f.shard == shard && before <= f.epoch && epoch > f.epoch);
        if crossed {
            self.world.check_failovers();
        }
    }

    fn resolve(&mut self, sel: &PeerSel) -> Vec<usize> {
        let n = self.world.slots.len();
        match sel {
            PeerSel::Index(i) => vec![*i % n],
            PeerSel::Range(a, b) => (*a..(*b).min(n)).collect(),
            PeerSel::Percent(a, b) => {
                let lo = (a / 100.0 * n as f64).round() as usize;
                let hi = (b / 100.0 * n as f64).round() as usize;
                (lo..hi.min(n)).collect()
            }
            PeerSel::CzarOf(name) => {
                let names = shard_names(self.world.cfg.shards);
                let idx = names.iter().position(|s| s == name).or_else(|| name.parse::<usize>().ok());
                let shard = idx.and_then(|k| self.world.shard_ids.get(k).copied());
                shard.and_then(|s| self.world.czar_index(s)).into_iter().collect()
            }
            PeerSel::Random => {
                let live: Vec<usize> = self.world.live_peers().map(|(i, _)| i).collect();
                if live.is_empty() {
                    Vec::new()
                } else {
                    vec![live[self.rng.gen_range(0..live.len())]]
                }
            }
            PeerSel::LastCrashed => self.last_crashed.into_iter().collect(),
        }
    }

    fn resolve_all(&mut self, sels: &[PeerSel]) -> Vec<usize> {
        let mut out = Vec::new();
        for s in sels {
            for p in self.resolve(s) {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Applies one scripted action now.
    pub fn apply(&mut self, action: &Action) {
        let now = self.world.now_us;
        match action {
            Action::Partition(groups) => {
                let groups: Vec<Vec<usize>> = groups.iter().map(|g| self.resolve_all(g)).collect();
                let touched = self.world.net.partition.split(&groups);
                self.world.mark_change(touched);
            }
            Action::Split(k) => {
                let n = self.world.slots.len();
                let k = (*k).max(1);
                let groups: Vec<Vec<usize>> = (0..k).map(|g| (g * n / k..(g + 1) * n / k).collect()).collect();
                let touched = self.world.net.partition.split(&groups);
                self.world.mark_change(touched);
            }
            Action::OneWay { from, to } => {
                let (f, t) = (self.resolve_all(from), self.resolve_all(to));
                let touched = self.world.net.partition.block_one_way(&f, &t);
                self.world.mark_change(touched);
            }
            Action::Isolate(sel) => {
                for p in self.resolve(sel) {
                    let touched = self.world.net.partition.isolate(p);
                    self.world.mark_change(touched);
                }
            }
            Action::Heal => {
                let touched = self.world.net.partition.heal();
                self.world.mark_change(touched);
            }
            Action::Crash(sel) => {
                for p in self.resolve(sel) {
                    if matches!(self.world.slots[p].state, SlotState::Up | SlotState::Paused(_)) {
                        self.note_czar_crash(p);
                        let slot = &mut self.world.slots[p];
                        slot.state = SlotState::Crashed;
                        slot.gen += 1;
                        slot.timer_at = u64::MAX;
                        slot.last_change_us = now;
                        self.last_crashed = Some(p);
                    }
                }
            }
            Action::Restart { peer, keep_state } => {
                for p in self.resolve(peer) {
                    if self.world.slots[p].state != SlotState::Crashed {
                        continue;
                    }
                    if *keep_state && self.world.slots[p].peer.is_some() {
                        let slot = &mut self.world.slots[p];
                        slot.state = SlotState::Up;
                        slot.last_change_us = now;
                        let gen = slot.gen;
                        let local = slot.clock.local(now);
                        if let Some(peer) = slot.peer.as_mut() {
                            peer.handle_timeout(local);
                        }
                        self.after_input(p);
                        if self.world.cfg.rate_hz > 0.0 {
                            self.push(now + 1, Job::Tick { peer: p as u32, gen });
                        }
                    } else {
                        self.start(p, true);
                    }
                }
            }
            Action::Pause { peer, for_ms } => {
                for p in self.resolve(peer) {
                    if self.world.slots[p].state == SlotState::Up {
                        let until = now + for_ms * 1000;
                        self.world.slots[p].state = SlotState::Paused(until);
                        self.world.slots[p].last_change_us = now;
                        self.push(until, Job::Resume { peer: p as u32 });
                    }
                }
            }
            Action::Leave(sel) => {
                for p in self.resolve(sel) {
                    self.leave(p);
                }
            }
            Action::Join(sel) => {
                // Slots that never started or left: 10 ms apart, as at the start.
                let mut k = 0;
                for p in self.resolve(sel) {
                    if matches!(self.world.slots[p].state, SlotState::Waiting | SlotState::Left) {
                        self.push(now + k * 10_000, Job::Start { peer: p as u32 });
                        k += 1;
                    }
                }
            }
            Action::Network(patch) => {
                let mut params = self.world.net.params.clone();
                patch.apply_to(&mut params);
                self.world.net.params = params;
            }
        }
    }

    /// Before `p` crashes: a failover to time for every shard whose czar it is
    /// (the czar most live peers follow), past the epoch `p` holds.
    fn note_czar_crash(&mut self, p: usize) {
        let now = self.world.now_us;
        let w = &self.world;
        let Some(peer) = w.slots[p].peer.as_ref() else { return };
        let found: Vec<Failover> = w
            .shard_ids
            .iter()
            .filter(|&&shard| w.czar_index(shard) == Some(p))
            .map(|&shard| {
                let epoch = peer.version_of(shard).map_or(0, |v| v.epoch);
                Failover { crashed: p, shard, epoch, at_us: now, done_us: None }
            })
            .collect();
        self.world.failovers.extend(found);
    }

    fn resume(&mut self, p: usize) {
        let now = self.world.now_us;
        let slot = &mut self.world.slots[p];
        if let SlotState::Paused(_) = slot.state {
            slot.state = SlotState::Up;
            slot.last_change_us = now;
            let local = slot.clock.local(now);
            if let Some(peer) = slot.peer.as_mut() {
                peer.handle_timeout(local);
            }
            self.after_input(p);
        }
    }

    fn leave(&mut self, p: usize) {
        if self.world.slots[p].state != SlotState::Up {
            return;
        }
        let now = self.world.now_us;
        let slot = &mut self.world.slots[p];
        let local = slot.clock.local(now);
        if let Some(peer) = slot.peer.as_mut() {
            peer.leave(local);
        }
        self.after_input(p);
        let slot = &mut self.world.slots[p];
        slot.state = SlotState::Left;
        slot.gen += 1;
        slot.timer_at = u64::MAX;
        slot.last_change_us = now;
    }

    fn churn(&mut self) {
        let live: Vec<usize> = self.world.live_peers().map(|(i, _)| i).collect();
        let gone: Vec<usize> = (0..self.world.slots.len())
            .filter(|i| matches!(self.world.slots[*i].state, SlotState::Left | SlotState::Crashed))
            .collect();
        let n = self.world.slots.len();
        let leave = !gone.is_empty() && self.rng.gen_bool(0.5) || gone.is_empty();
        if leave && live.len() > n / 2 + 1 {
            let p = live[self.rng.gen_range(0..live.len())];
            self.leave(p);
        } else if !gone.is_empty() {
            let p = gone[self.rng.gen_range(0..gone.len())];
            self.start(p, true);
        }
    }
}

/// The value of the workload's `n`th critical write, by slot `origin` at `now_us`.
fn critical_value(n: u64, now_us: u64, origin: usize, cheat: bool) -> [u8; 25] {
    let mut v = [0u8; 25];
    v[..8].copy_from_slice(&n.to_le_bytes());
    v[8..16].copy_from_slice(&now_us.to_le_bytes());
    v[16..24].copy_from_slice(&(origin as u64).to_le_bytes());
    v[24] = u8::from(!cheat);
    v
}

/// The writer's slot, from a critical value.
fn critical_origin(value: &[u8]) -> Option<usize> {
    let b: [u8; 8] = value.get(16..24)?.try_into().ok()?;
    Some(u64::from_le_bytes(b) as usize)
}

/// The game rule every simulated peer runs on critical updates: cheats
/// (values whose last byte is 0) are refused.
fn validate_critical(p: &anarchy_proto::Proposal<'_>) -> Result<(), String> {
    match p.value {
        Some(v) if v.len() == 25 && v[24] == 0 => Err("cheat".into()),
        _ => Ok(()),
    }
}

/// Fingerprint of one (key, value) pair.
pub fn fingerprint(key: &[u8], value: Option<&[u8]>) -> u64 {
    let k = hash_bytes(0x006b_6579, key);
    match value {
        Some(v) => hash_bytes(k, v),
        None => mix64(k ^ 0xde1e7e),
    }
}
