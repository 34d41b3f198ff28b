//! An in-memory network of core peers driven by a virtual clock, for tests that
//! read like stories: no sockets, no sleeping, every datagram under our control.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::SocketAddr;
use std::time::Duration;

use anarchy_proto::seal::{open_datagram, open_datagram_as, reseal_like, seal_datagram, SealError};
use anarchy_proto::wire::{Datagram, Frame};
use anarchy_proto::{Config, Event, Instant, Keypair, Peer, PeerId, SessionSecret, ShardId, Transmit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Decides which datagrams the network loses.
pub type DropFilter = Box<dyn FnMut(&InFlight) -> bool>;

/// Decides which frames of a datagram the network strips out (return true to
/// drop the frame); the rest arrive as one datagram.
pub type FrameFilter = Box<dyn FnMut(&InFlight, &Frame) -> bool>;

/// A datagram on its way.
#[derive(Debug, Clone)]
pub struct InFlight {
    pub at: Instant,
    pub from: usize,
    pub to: usize,
    pub payload: Vec<u8>,
}

/// Several peers joined by a perfect (or deliberately lossy) network.
pub struct Net {
    pub now: Instant,
    pub peers: Vec<Peer>,
    pub addrs: Vec<SocketAddr>,
    pub up: Vec<bool>,
    pub latency: Duration,
    /// Each datagram's latency is `latency ± jitter`, drawn from a seeded RNG.
    pub jitter: Duration,
    pub rng: ChaCha8Rng,
    /// In flight, by (arrival time, send order).
    pub queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    pub flights: BTreeMap<usize, InFlight>,
    sent: u64,
    pub events: Vec<Vec<Event>>,
    /// Every datagram ever sent, in order: (time, from, to, bytes).
    pub log: Vec<(Instant, usize, usize, Vec<u8>)>,
    /// Return true to drop a datagram.
    pub drop_filter: Option<DropFilter>,
    /// Strips single frames out of datagrams (applied after `drop_filter`).
    pub frame_filter: Option<FrameFilter>,
    pub dropped: usize,
    pub config: Config,
    /// One link (from, to) that carries at most this many bytes per second:
    /// datagrams queue for it, and one that would wait over 250 ms is dropped.
    pub link_cap: Option<(usize, usize, u64)>,
    /// When the capped link is free again.
    cap_free: Instant,
}

/// Opens and decodes a datagram the peers sent (all tests use the default,
/// open session secret unless they say otherwise).
/// A short-form datagram names its sender only by the receiver's index: it
/// is opened as each peer any test network made (see [`SENDERS`]) in turn.
/// The pair key peers `a` and `b` of a [`Net`] with the default session
/// secret share (pieces' and stream frames' MACs).
#[allow(dead_code)]
pub fn pair_key(net: &Net, a: usize, b: usize) -> [u8; 32] {
    let tag = anarchy_proto::proof::session_tag(&Config::default().session_secret);
    let (ka, kb) = (Keypair::from_seed(a as u64 + 100), Keypair::from_seed(b as u64 + 100));
    let shared = ka.agree(&kb.public_key()).expect("test keys agree");
    assert_eq!(kb.agree(&ka.public_key()), Some(shared));
    anarchy_proto::proof::pair_key(&tag, &shared, &net.id(a), &net.id(b))
}

pub fn decode(payload: &[u8]) -> Option<Datagram> {
    let secret = SessionSecret::default();
    let plain = match open_datagram(&secret, payload) {
        Ok((_, plain)) => plain,
        Err(SealError::UnknownIndex(_)) => SENDERS.with(|s| {
            s.borrow().iter().find_map(|(id, boot)| open_datagram_as(&secret, payload, id, *boot).ok().map(|(_, p)| p))
        })?,
        Err(_) => return None,
    };
    anarchy_proto::compress::decode_received(&plain).ok()
}

thread_local! {
    /// Every (id, boot) of a peer a test network on this thread made, for [`decode`].
    static SENDERS: std::cell::RefCell<Vec<(PeerId, u32)>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn register(peer: &Peer) {
    SENDERS.with(|s| s.borrow_mut().push((peer.id(), peer.boot())));
}

/// The boot under which [`seal`] forges datagrams: unlike any peer's.
pub const TEST_BOOT: u32 = 0x7e57_b007;

thread_local! {
    static NEXT_COUNTER: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Seals a plain datagram (`wire::encode_frames`) with the default secret,
/// as a member of the session would: tests inject hand-made datagrams this
/// way. Each call takes the next counter of the calling test's thread, so no
/// two are replays of each other.
pub fn seal(plain: &[u8]) -> Vec<u8> {
    seal_with_secret(&SessionSecret::default(), plain)
}

/// [`seal`] with another secret (an outsider's).
pub fn seal_with_secret(secret: &SessionSecret, plain: &[u8]) -> Vec<u8> {
    let counter = NEXT_COUNTER.with(|c| {
        let n = c.get();
        c.set(n + 1);
        n
    });
    seal_datagram(secret, TEST_BOOT, counter, plain)
}

pub fn addr(i: usize) -> SocketAddr {
    format!("10.0.{}.{}:7000", i / 256, i % 256).parse().unwrap()
}

impl Net {
    pub fn new(config: Config) -> Self {
        Net {
            now: Instant::from_millis(1_000),
            peers: Vec::new(),
            addrs: Vec::new(),
            up: Vec::new(),
            latency: Duration::from_millis(5),
            jitter: Duration::ZERO,
            rng: ChaCha8Rng::seed_from_u64(7),
            queue: BinaryHeap::new(),
            flights: BTreeMap::new(),
            sent: 0,
            events: Vec::new(),
            log: Vec::new(),
            drop_filter: None,
            frame_filter: None,
            dropped: 0,
            link_cap: None,
            cap_free: Instant::ZERO,
            config,
        }
    }

    /// `n` peers with `config`, every link `latency` one way (not started).
    pub fn of(n: usize, config: Config, latency: Duration) -> Net {
        let mut net = Net::new(config);
        net.latency = latency;
        for _ in 0..n {
            net.add();
        }
        net
    }

    /// `n` peers with default settings in one session that declares one shard
    /// `name` (preferred czar: peer `czar`), a second after they started.
    pub fn session_with_shard(n: usize, name: &str, czar: Option<usize>) -> (Net, ShardId) {
        let mut net = Net::new(Config::default());
        for _ in 0..n {
            net.add();
        }
        let shard = net.declare_everywhere(name, czar);
        net.start_all();
        net.run_for(Duration::from_secs(1));
        (net, shard)
    }

    /// Adds a peer (not yet joined) with a deterministic identity.
    pub fn add(&mut self) -> usize {
        self.add_with(self.config.clone())
    }

    /// Adds a peer with its own settings (another session secret, say).
    pub fn add_with(&mut self, config: Config) -> usize {
        let i = self.peers.len();
        let kp = Keypair::from_seed(i as u64 + 100);
        self.peers.push(Peer::new(config, kp, addr(i), i as u64, self.now));
        register(&self.peers[i]);
        self.addrs.push(addr(i));
        self.up.push(true);
        self.events.push(Vec::new());
        i
    }

    pub fn id(&self, i: usize) -> PeerId {
        self.peers[i].id()
    }

    pub fn index_of(&self, id: PeerId) -> usize {
        self.peers.iter().position(|p| p.id() == id).expect("known peer")
    }

    /// Declares `name` on every peer (and the ones added later must do it too).
    pub fn declare_everywhere(&mut self, name: &str, preferred: Option<usize>) -> ShardId {
        let pref = preferred.map(|p| self.id(p));
        let now = self.now;
        let mut id = None;
        for p in &mut self.peers {
            id = Some(p.declare_shard(now, name, pref).unwrap());
        }
        self.drain_all();
        id.unwrap()
    }

    /// Peer 0 starts the session; everyone else joins through it.
    pub fn start_all(&mut self) {
        let now = self.now;
        let boot = addr(0);
        for (i, p) in self.peers.iter_mut().enumerate() {
            if i == 0 {
                p.join(now, &[]);
            } else {
                p.join(now, &[boot]);
            }
        }
        self.drain_all();
    }

    pub fn drain(&mut self, i: usize) {
        while let Some(Transmit { destination, payload }) = self.peers[i].poll_transmit() {
            assert!(payload.len() <= anarchy_proto::MAX_DATAGRAM_BYTES);
            let Some(to) = self.addrs.iter().position(|a| *a == destination) else { continue };
            self.log.push((self.now, i, to, payload.clone()));
            let mut delay = self.latency;
            if !self.jitter.is_zero() {
                let j = self.jitter.as_micros() as i64;
                let offset = self.rng.gen_range(-j..=j);
                delay = Duration::from_micros((delay.as_micros() as i64 + offset).max(0) as u64);
            }
            let mut queued_too_long = false;
            if let Some((a, b, rate)) = self.link_cap.filter(|(a, b, _)| *a == i && *b == to) {
                debug_assert!(a == i && b == to);
                let start = self.cap_free.max(self.now);
                if start.saturating_duration_since(self.now) > Duration::from_millis(250) {
                    queued_too_long = true;
                } else {
                    let send_time = Duration::from_micros(payload.len() as u64 * 1_000_000 / rate.max(1));
                    self.cap_free = start + send_time;
                    delay += self.cap_free.saturating_duration_since(self.now);
                }
            }
            let mut d = InFlight { at: self.now + delay, from: i, to, payload };
            let mut drop = queued_too_long
                || match self.drop_filter.as_mut() {
                    Some(f) => f(&d),
                    None => false,
                };
            if let (false, Some(f)) = (drop, self.frame_filter.as_mut()) {
                let secret = &self.config.session_secret;
                let sender = &self.peers[d.from];
                if let Ok((header, plain)) = open_datagram_as(secret, &d.payload, &sender.id(), sender.boot()) {
                    let dg = anarchy_proto::compress::decode_received(&plain).expect("peers send valid datagrams");
                    let kept: Vec<Vec<u8>> = dg.frames.iter().filter(|fr| !f(&d, fr)).map(|fr| fr.to_bytes()).collect();
                    if kept.len() < dg.frames.len() {
                        let refs: Vec<&[u8]> = kept.iter().map(Vec::as_slice).collect();
                        let plain = anarchy_proto::wire::encode_datagram(&dg.sender, &refs);
                        // The network re-seals what it kept under the original
                        // nonce: only the test network holds the secret and does this.
                        d.payload = reseal_like(secret, &d.payload, &header, &plain);
                        drop = kept.is_empty();
                    }
                }
            }
            if drop {
                self.dropped += 1;
            } else {
                self.sent += 1;
                let key = self.sent as usize;
                self.queue.push(Reverse((d.at, self.sent, key)));
                self.flights.insert(key, d);
            }
        }
        while let Some(e) = self.peers[i].poll_event() {
            self.events[i].push(e);
        }
    }

    pub fn drain_all(&mut self) {
        for i in 0..self.peers.len() {
            self.drain(i);
        }
    }

    /// Advances virtual time by `d`, delivering datagrams and firing timers in order.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next_msg = self.queue.peek().map(|Reverse((at, _, _))| *at);
            let next_timer =
                (0..self.peers.len()).filter(|i| self.up[*i]).filter_map(|i| self.peers[i].poll_timeout()).min();
            let next = match (next_msg, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            if next > end {
                break;
            }
            self.now = next.max(self.now);
            // Deliver every datagram due now, in send order.
            let mut due = Vec::new();
            while let Some(Reverse((at, _, key))) = self.queue.peek().copied() {
                if at > self.now {
                    break;
                }
                self.queue.pop();
                due.push(self.flights.remove(&key).expect("in flight"));
            }
            for m in due {
                if !self.up[m.to] {
                    continue;
                }
                let from = self.addrs[m.from];
                self.peers[m.to].handle_datagram(self.now, from, &m.payload);
                self.drain(m.to);
            }
            for i in 0..self.peers.len() {
                if self.up[i] && self.peers[i].poll_timeout().is_some_and(|t| t <= self.now) {
                    self.peers[i].handle_timeout(self.now);
                    self.drain(i);
                }
            }
        }
        self.now = end;
    }

    /// Runs in 1 ms steps until `done` holds; false if `limit` passed first.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let end = self.now + limit;
        while !done(self) {
            if self.now >= end {
                return false;
            }
            self.run_for(Duration::from_millis(1));
        }
        true
    }

    /// Stops a peer without a word (its datagrams in flight still arrive).
    pub fn crash(&mut self, i: usize) {
        self.up[i] = false;
    }

    /// Restarts a crashed peer blank: same identity and address, no state,
    /// not joined (declare its shards and join it again). Datagrams still in
    /// flight to the old process are lost with it.
    pub fn restart_blank(&mut self, i: usize) {
        let stale: Vec<usize> = self.flights.iter().filter(|(_, d)| d.to == i).map(|(k, _)| *k).collect();
        for k in stale {
            self.flights.remove(&k);
        }
        self.queue.retain(|Reverse((_, _, k))| self.flights.contains_key(k));
        let kp = Keypair::from_seed(i as u64 + 100);
        self.peers[i] = Peer::new(self.config.clone(), kp, addr(i), i as u64 + 1000, self.now);
        register(&self.peers[i]);
        self.up[i] = true;
        self.events[i].clear();
    }

    pub fn live(&self) -> Vec<usize> {
        (0..self.peers.len()).filter(|i| self.up[*i] && !self.peers[*i].has_left()).collect()
    }

    /// Whether every live peer holds the same version and checksum of `shard`.
    /// Each peer's view of `shard` and its recent non-update events, for
    /// assertion messages: what a failing multi-peer test needs to be read.
    pub fn describe(&self, shard: ShardId) -> String {
        let mut out = String::new();
        for (i, p) in self.peers.iter().enumerate() {
            let st = p.stats();
            let events: Vec<&Event> = self.events[i]
                .iter()
                .filter(|e| !matches!(e, Event::Updated { .. } | Event::Authored { .. } | Event::WriteApplied { .. }))
                .rev()
                .take(10)
                .collect();
            out += &format!(
                "\npeer {i} {:?}: czar {:?} v {:?} sum {:?}; repairs {} snapshots {} drops {:?}\n   events {events:?}",
                p.id(),
                p.czar_of(shard),
                p.version_of(shard),
                p.checksum_of(shard).map(|c| c.short()),
                st.repairs_requested,
                st.snapshots_installed,
                st.drop_counts().collect::<Vec<_>>()
            );
        }
        out
    }

    pub fn converged(&self, shard: ShardId) -> bool {
        let live = self.live();
        let first = &self.peers[live[0]];
        live.iter().all(|i| {
            let p = &self.peers[*i];
            p.version_of(shard) == first.version_of(shard) && p.checksum_of(shard) == first.checksum_of(shard)
        })
    }

    /// The czars the live peers follow for `shard`.
    pub fn czars(&self, shard: ShardId) -> BTreeSet<Option<PeerId>> {
        self.live().iter().map(|i| self.peers[*i].czar_of(shard)).collect()
    }

    /// The frames `from` sent `to`, in order, in the datagrams logged from
    /// index `start` on (datagrams that do not open are skipped).
    pub fn frames_sent(&self, start: usize, from: usize, to: usize) -> Vec<Frame> {
        self.log[start..]
            .iter()
            .filter(|(_, f, t, _)| *f == from && *t == to)
            .filter_map(|(_, _, _, payload)| decode(payload))
            .flat_map(|d| d.frames)
            .collect()
    }

    /// Live member counts per live peer.
    pub fn member_counts(&self) -> BTreeMap<usize, usize> {
        self.live().iter().map(|i| (*i, self.peers[*i].live_members().count())).collect()
    }
}
