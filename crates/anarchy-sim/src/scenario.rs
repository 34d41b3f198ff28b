//! Scenario files: a TOML fault schedule ("at t, partition these groups,
//! crash the czar of that shard, heal ...") plus optional run and network
//! defaults. Parsing only: it turns text into [`Scenario`] or an error that
//! says what is wrong and where; the simulator carries the actions out.
//!
//! ```toml
//! description = "partition and heal"
//! [run]                  # defaults; command-line flags override them
//! peers = 32
//! seconds = 20
//! [network]
//! latency_ms = 40
//! loss = 0.01
//! burst = { enter = 0.01, exit = 0.3, loss = 0.5 }   # Gilbert–Elliott
//! [[at]]
//! t = 5                  # simulated seconds
//! partition = [["0%..50%"], ["50%..100%"]]
//! [[at]]
//! t = 12
//! heal = true
//! ```
//!
//! One action per `[[at]]` entry: `partition = [[sel, ...], ...]` (peers not
//! listed join the first group), `split = K` (K contiguous groups),
//! `oneway = { from = [sel...], to = [sel...] }` (`to` stops hearing `from`),
//! `isolate = sel`, `heal = true`, `crash = sel`, `restart = sel` with
//! `state = "blank" | "kept"`, `pause = sel` with `for_ms = N`,
//! `leave = sel`, `join = sel` (slots not started yet, see `[run]
//! initial_peers`, or that left), or `network = { loss = 0.2, ... }`.
//! A peer selector `sel` is an index, `"a..b"`, `"a%..b%"`, `"czar:SHARD"`
//! (the czar most live peers follow, by shard name or number), `"random"` (a
//! random live peer) or `"crashed"` (the peer crashed last).

use serde::Deserialize;

use crate::net::{BurstLoss, LinkParams};

/// Which peers an action applies to; resolved when the action runs.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerSel {
    /// One slot.
    Index(usize),
    /// Slots `a..b`.
    Range(usize, usize),
    /// Slots from `a`% to `b`% of the peer count.
    Percent(f64, f64),
    /// The czar most live peers follow for the shard (name or number).
    CzarOf(String),
    /// A random live peer.
    Random,
    /// The peer crashed most recently.
    LastCrashed,
}

/// A scripted fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Peers in different groups stop hearing each other.
    Partition(Vec<Vec<PeerSel>>),
    /// K contiguous groups of slots.
    Split(usize),
    /// Datagrams from `from` to `to` are dropped (not the other way).
    OneWay {
        /// Senders cut off.
        from: Vec<PeerSel>,
        /// Receivers that stop hearing them.
        to: Vec<PeerSel>,
    },
    /// One peer alone.
    Isolate(PeerSel),
    /// Everyone hears everyone.
    Heal,
    /// The process stops; datagrams to it are lost.
    Crash(PeerSel),
    /// A crashed peer starts again with the same identity.
    Restart {
        /// Which.
        peer: PeerSel,
        /// Whether it keeps its memory (a stalled process) or starts blank.
        keep_state: bool,
    },
    /// The process stalls; datagrams wait for it.
    Pause {
        /// Which.
        peer: PeerSel,
        /// For how long.
        for_ms: u64,
    },
    /// A graceful leave.
    Leave(PeerSel),
    /// Slots that have not started yet (see `initial_peers`), or that left,
    /// start and join, 10 ms apart.
    Join(PeerSel),
    /// Changes link parameters from now on.
    Network(NetworkPatch),
}

/// An action at a simulated time.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduled {
    /// When, µs of simulated time.
    pub at_us: u64,
    /// What.
    pub action: Action,
}

/// Link parameters to change; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPatch {
    /// See [`LinkParams::latency_ms`].
    pub latency_ms: Option<f64>,
    /// See [`LinkParams::latency_spread`].
    pub latency_spread: Option<f64>,
    /// See [`LinkParams::jitter_ms`].
    pub jitter_ms: Option<f64>,
    /// See [`LinkParams::jitter_dist`]: `"exp"` or `"uniform"`.
    pub jitter_dist: Option<crate::net::JitterDist>,
    /// See [`LinkParams::loss`].
    pub loss: Option<f64>,
    /// See [`LinkParams::dup`].
    pub dup: Option<f64>,
    /// See [`LinkParams::reorder`].
    pub reorder: Option<f64>,
    /// See [`LinkParams::burst`].
    pub burst: Option<BurstLoss>,
    /// See [`LinkParams::uplink_kbps`].
    pub uplink_kbps: Option<u64>,
    /// See [`LinkParams::uplink_queue_ms`].
    pub uplink_queue_ms: Option<u64>,
}

impl NetworkPatch {
    /// Overwrites the fields this patch sets.
    pub fn apply_to(&self, p: &mut LinkParams) {
        if let Some(v) = self.latency_ms {
            p.latency_ms = v;
        }
        if let Some(v) = self.latency_spread {
            p.latency_spread = v;
        }
        if let Some(v) = self.jitter_ms {
            p.jitter_ms = v;
        }
        if let Some(v) = self.jitter_dist {
            p.jitter_dist = v;
        }
        if let Some(v) = self.loss {
            p.loss = v;
        }
        if let Some(v) = self.dup {
            p.dup = v;
        }
        if let Some(v) = self.reorder {
            p.reorder = v;
        }
        if let Some(v) = self.burst {
            p.burst = Some(v);
        }
        if let Some(v) = self.uplink_kbps {
            p.uplink_kbps = v;
        }
        if let Some(v) = self.uplink_queue_ms {
            p.uplink_queue_ms = v;
        }
    }

    fn validate(&self) -> Result<(), String> {
        for (name, v) in [("loss", self.loss), ("dup", self.dup), ("reorder", self.reorder)] {
            if let Some(v) = v {
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!("{name} = {v} is not a probability in [0, 1]"));
                }
            }
        }
        for (name, v) in [("latency_ms", self.latency_ms), ("jitter_ms", self.jitter_ms)] {
            if let Some(v) = v {
                if !(0.0..=60_000.0).contains(&v) {
                    return Err(format!("{name} = {v} is not in [0, 60000]"));
                }
            }
        }
        if let Some(v) = self.latency_spread {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("latency_spread = {v} is not in [0, 1]"));
            }
        }
        if let Some(b) = self.burst {
            for (name, v) in [("burst.enter", b.enter), ("burst.exit", b.exit), ("burst.loss", b.loss)] {
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!("{name} = {v} is not a probability in [0, 1]"));
                }
            }
        }
        Ok(())
    }
}

/// Run defaults a scenario may set (command-line flags win).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunDefaults {
    /// `--peers`.
    pub peers: Option<usize>,
    /// `--shards`.
    pub shards: Option<usize>,
    /// `--seconds`.
    pub seconds: Option<f64>,
    /// `--rate`.
    pub rate: Option<f64>,
    /// `--churn`.
    pub churn: Option<f64>,
    /// `--critical-rate`.
    pub critical_rate: Option<f64>,
    /// Probability a player's tick also writes a world key (default 0.02:
    /// with 32 players at 20 Hz, about 13 world writes a second).
    pub world_write_prob: Option<f64>,
    /// `--settle`.
    pub settle: Option<f64>,
    /// `--workload` (`game` or `standard`).
    pub workload: Option<String>,
    /// `--entities`.
    pub entities: Option<usize>,
    /// `--value-bytes`.
    pub value_bytes: Option<usize>,
    /// `--moving`.
    pub moving: Option<f64>,
    /// `--streams`.
    pub streams: Option<bool>,
    /// Slots that start at the beginning; the others wait for a `join`.
    pub initial_peers: Option<usize>,
    /// `--hot-rate`.
    pub hot_rate: Option<f64>,
    /// `--hot-move-secs`.
    pub hot_move_secs: Option<f64>,
    /// `--split-writes`.
    pub split_writes: Option<u32>,
    /// `--hot-by-hash`.
    pub hot_by_hash: Option<bool>,
}

/// A parsed scenario file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenario {
    /// What it exercises.
    pub description: String,
    /// Run defaults.
    pub run: RunDefaults,
    /// Network defaults.
    pub network: NetworkPatch,
    /// The schedule, in time order.
    pub schedule: Vec<Scheduled>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    description: Option<String>,
    run: Option<RunDefaults>,
    network: Option<NetworkPatch>,
    #[serde(default)]
    at: Vec<AtEntry>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SelValue {
    Int(i64),
    Str(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OneWaySpec {
    from: Vec<SelValue>,
    to: Vec<SelValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AtEntry {
    t: f64,
    partition: Option<Vec<Vec<SelValue>>>,
    split: Option<usize>,
    oneway: Option<OneWaySpec>,
    isolate: Option<SelValue>,
    heal: Option<bool>,
    crash: Option<SelValue>,
    restart: Option<SelValue>,
    state: Option<String>,
    pause: Option<SelValue>,
    for_ms: Option<u64>,
    leave: Option<SelValue>,
    join: Option<SelValue>,
    network: Option<NetworkPatch>,
}

fn parse_sel(v: &SelValue) -> Result<PeerSel, String> {
    let bad = |s: &str| {
        format!(
            "bad peer selector {s:?} (expected an index, \"a..b\", \"a%..b%\", \"czar:SHARD\", \"random\" or \"crashed\")"
        )
    };
    match v {
        SelValue::Int(i) => usize::try_from(*i).map(PeerSel::Index).map_err(|_| bad(&i.to_string())),
        SelValue::Str(s) => {
            let s = s.trim();
            if s == "random" {
                return Ok(PeerSel::Random);
            }
            if s == "crashed" {
                return Ok(PeerSel::LastCrashed);
            }
            if let Some(shard) = s.strip_prefix("czar:") {
                if shard.is_empty() {
                    return Err(bad(s));
                }
                return Ok(PeerSel::CzarOf(shard.to_string()));
            }
            if let Some((a, b)) = s.split_once("..") {
                if let (Some(a), Some(b)) = (a.strip_suffix('%'), b.strip_suffix('%')) {
                    let (a, b): (f64, f64) = (a.parse().map_err(|_| bad(s))?, b.parse().map_err(|_| bad(s))?);
                    if !(0.0..=100.0).contains(&a) || !(0.0..=100.0).contains(&b) || a >= b {
                        return Err(bad(s));
                    }
                    return Ok(PeerSel::Percent(a, b));
                }
                let (a, b): (usize, usize) = (a.parse().map_err(|_| bad(s))?, b.parse().map_err(|_| bad(s))?);
                if a >= b {
                    return Err(bad(s));
                }
                return Ok(PeerSel::Range(a, b));
            }
            s.parse::<usize>().map(PeerSel::Index).map_err(|_| bad(s))
        }
    }
}

fn parse_sels(v: &[SelValue]) -> Result<Vec<PeerSel>, String> {
    v.iter().map(parse_sel).collect()
}

impl AtEntry {
    fn action(&self) -> Result<Action, String> {
        let mut found: Vec<(&str, Result<Action, String>)> = Vec::new();
        if let Some(g) = &self.partition {
            let groups: Result<Vec<Vec<PeerSel>>, String> = g.iter().map(|g| parse_sels(g)).collect();
            found.push(("partition", groups.map(Action::Partition)));
        }
        if let Some(k) = self.split {
            found.push((
                "split",
                if k >= 2 { Ok(Action::Split(k)) } else { Err(format!("split = {k}: need at least 2 groups")) },
            ));
        }
        if let Some(o) = &self.oneway {
            let r = parse_sels(&o.from).and_then(|from| Ok(Action::OneWay { from, to: parse_sels(&o.to)? }));
            found.push(("oneway", r));
        }
        if let Some(s) = &self.isolate {
            found.push(("isolate", parse_sel(s).map(Action::Isolate)));
        }
        if let Some(h) = self.heal {
            found.push(("heal", if h { Ok(Action::Heal) } else { Err("heal = false does nothing".into()) }));
        }
        if let Some(s) = &self.crash {
            found.push(("crash", parse_sel(s).map(Action::Crash)));
        }
        if let Some(s) = &self.restart {
            let keep = match self.state.as_deref() {
                None | Some("blank") => Ok(false),
                Some("kept") => Ok(true),
                Some(other) => Err(format!("state = {other:?}: expected \"blank\" or \"kept\"")),
            };
            found
                .push(("restart", keep.and_then(|keep_state| Ok(Action::Restart { peer: parse_sel(s)?, keep_state }))));
        } else if self.state.is_some() {
            return Err("`state` only goes with `restart`".into());
        }
        if let Some(s) = &self.pause {
            let r = match self.for_ms {
                Some(ms) if ms > 0 => parse_sel(s).map(|peer| Action::Pause { peer, for_ms: ms }),
                _ => Err("`pause` needs `for_ms` > 0".into()),
            };
            found.push(("pause", r));
        } else if self.for_ms.is_some() {
            return Err("`for_ms` only goes with `pause`".into());
        }
        if let Some(s) = &self.leave {
            found.push(("leave", parse_sel(s).map(Action::Leave)));
        }
        if let Some(s) = &self.join {
            found.push(("join", parse_sel(s).map(Action::Join)));
        }
        if let Some(n) = &self.network {
            found.push(("network", n.validate().map(|_| Action::Network(n.clone()))));
        }
        match found.len() {
            0 => Err("no action (expected one of partition, split, oneway, isolate, heal, crash, restart, pause, leave, join, network)".into()),
            1 => found.pop().expect("one").1,
            _ => Err(format!(
                "more than one action ({}); use one [[at]] entry per action",
                found.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

impl Scenario {
    /// Parses scenario text; `origin` (a file name) prefixes error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, String> {
        let file: File = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        let network = file.network.unwrap_or_default();
        network.validate().map_err(|e| format!("{origin}: [network]: {e}"))?;
        let mut schedule = Vec::new();
        for (k, entry) in file.at.iter().enumerate() {
            let place = format!("{origin}: [[at]] entry {} (t = {})", k + 1, entry.t);
            if !(0.0..=86_400.0).contains(&entry.t) {
                return Err(format!("{place}: t must be in [0, 86400] seconds"));
            }
            let action = entry.action().map_err(|e| format!("{place}: {e}"))?;
            schedule.push(Scheduled { at_us: (entry.t * 1e6) as u64, action });
        }
        schedule.sort_by_key(|s| s.at_us);
        Ok(Scenario {
            description: file.description.unwrap_or_default(),
            run: file.run.unwrap_or_default(),
            network,
            schedule,
        })
    }

    /// Reads and parses a scenario file.
    pub fn load(path: &std::path::Path) -> Result<Scenario, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Scenario::parse(&text, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_action_kind() {
        let text = r#"
            description = "all"
            [run]
            peers = 8
            [network]
            loss = 0.1
            burst = { enter = 0.1, exit = 0.5, loss = 0.9 }
            [[at]]
            t = 1
            partition = [["0..4"], [4, 5, "75%..100%"]]
            [[at]]
            t = 2
            oneway = { from = [0], to = ["1..8"] }
            [[at]]
            t = 3
            crash = "czar:world"
            [[at]]
            t = 4
            restart = "crashed"
            state = "kept"
            [[at]]
            t = 0.5
            pause = "random"
            for_ms = 300
            [[at]]
            t = 5
            heal = true
        "#;
        let s = Scenario::parse(text, "x.toml").unwrap();
        assert_eq!(s.run.peers, Some(8));
        assert_eq!(s.schedule.len(), 6);
        assert_eq!(s.schedule[0].action, Action::Pause { peer: PeerSel::Random, for_ms: 300 });
        assert_eq!(s.schedule[4].action, Action::Restart { peer: PeerSel::LastCrashed, keep_state: true });
    }

    #[test]
    fn errors_say_which_entry_and_what() {
        let e = Scenario::parse("[[at]]\nt = 1\ncrash = \"czr:world\"\n", "s.toml").unwrap_err();
        assert!(e.contains("s.toml: [[at]] entry 1 (t = 1)") && e.contains("czr:world"), "{e}");
        let e = Scenario::parse("[[at]]\nt = 1\nheal = true\ncrash = 3\n", "s.toml").unwrap_err();
        assert!(e.contains("more than one action"), "{e}");
        let e = Scenario::parse("[[at]]\nt = 1\ncrsh = 3\n", "s.toml").unwrap_err();
        assert!(e.contains("crsh") && e.contains("line"), "{e}");
        let e = Scenario::parse("[network]\nloss = 2\n", "s.toml").unwrap_err();
        assert!(e.contains("[network]: loss"), "{e}");
    }
}
