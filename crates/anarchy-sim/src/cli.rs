//! `anarchy sim`: the command-line surface of the simulator. It resolves
//! flags over scenario defaults over built-in defaults, runs one seed or a
//! sweep, prints a report and returns the exit code (0 pass, 1 fail, 2 bad
//! arguments or scenario). The `anarchy` binary only forwards to [`run`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant as WallInstant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::report::Report;
use crate::scenario::Scenario;
use crate::sim::{Sim, SimConfig};

/// Flags of `anarchy sim`. Unset flags take the scenario's `[run]` and
/// `[network]` values, then the built-in defaults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SimArgs {
    /// Peer slots (players).
    #[arg(long, value_name = "N")]
    pub peers: Option<usize>,
    /// Shards: `world` plus S-1 avatar shards.
    #[arg(long, value_name = "S")]
    pub shards: Option<usize>,
    /// Simulated seconds of workload and faults (a settle period follows).
    #[arg(long, value_name = "T")]
    pub seconds: Option<f64>,
    /// Longest settle after writes stop, in simulated seconds (the convergence bound).
    #[arg(long, value_name = "T")]
    pub settle: Option<f64>,
    /// The run seed.
    #[arg(long, value_name = "X")]
    pub seed: Option<u64>,
    /// Sweep seeds A..B (half-open) or A..=B, reporting each failing seed.
    #[arg(long, value_name = "A..B", conflicts_with = "seed")]
    pub seeds: Option<String>,
    /// Mean one-way latency, ms.
    #[arg(long, value_name = "L")]
    pub latency_ms: Option<f64>,
    /// Jitter per datagram, ms: the mean of an exponential delay, or with
    /// `--jitter-dist uniform` the half-width of a uniform one (L ± J).
    #[arg(long, value_name = "J")]
    pub jitter_ms: Option<f64>,
    /// Jitter distribution: `exp` (default; always late, long tail) or
    /// `uniform` (symmetric around the base latency).
    #[arg(long, value_name = "DIST")]
    pub jitter_dist: Option<crate::net::JitterDist>,
    /// How far links' base latencies spread around the mean, as a fraction
    /// (default 0.5: each link's base is drawn in [0.5, 1.5] × L; 0: all equal).
    #[arg(long, value_name = "F")]
    pub latency_spread: Option<f64>,
    /// Independent loss probability per datagram.
    #[arg(long, value_name = "P")]
    pub loss: Option<f64>,
    /// Duplication probability per datagram.
    #[arg(long, value_name = "P")]
    pub dup: Option<f64>,
    /// Probability a datagram is held back and overtaken.
    #[arg(long, value_name = "P")]
    pub reorder: Option<f64>,
    /// Per-peer uplink cap, kbit/s (0 = none).
    #[arg(long, value_name = "KBPS")]
    pub uplink_kbps: Option<u64>,
    /// Avatar writes per player per second.
    #[arg(long, value_name = "HZ")]
    pub rate: Option<f64>,
    /// Leaves and rejoins per simulated minute.
    #[arg(long, value_name = "PER_MIN")]
    pub churn: Option<f64>,
    /// Critical writes per simulated second across the session (0: none).
    #[arg(long, value_name = "HZ")]
    pub critical_rate: Option<f64>,
    /// Seconds after the last peer started before the steady window of the
    /// bandwidth and capped-peer figures opens (default 1; the window opens
    /// by half the run at the latest).
    #[arg(long, value_name = "SECS")]
    pub warmup: Option<f64>,
    /// Largest per-peer clock offset, ms.
    #[arg(long, value_name = "MS")]
    pub clock_offset_ms: Option<f64>,
    /// Largest per-peer clock drift, parts per million.
    #[arg(long, value_name = "PPM")]
    pub drift_ppm: Option<f64>,
    /// Protocol setting `idle_heartbeat_interval`, ms: how often a peer that
    /// ranks for no shard heartbeats each member (50 = full rate everywhere).
    #[arg(long, value_name = "MS")]
    pub idle_heartbeat_ms: Option<u64>,
    /// Protocol setting `delta_batch_delay`, ms: how long a czar holds the
    /// deltas of forwarded writes to batch them (0 = send each at once).
    #[arg(long, value_name = "MS")]
    pub batch_delay_ms: Option<u64>,
    /// Hostile members among the peers (the last K slots): they forge, replay,
    /// impersonate, send garbage and flood (see `anarchy_sim::hostile`).
    #[arg(long, value_name = "K")]
    pub byzantine: Option<usize>,
    /// What players write: `game` (one avatar key per tick, some world keys,
    /// bursts, critical writes) or `standard` (the bandwidth workload: 32
    /// players, each the czar of its own avatar shard of 16 entities of 12
    /// quantized bytes, about half moving, 20 Hz, 1% loss; flags still override).
    #[arg(long, value_name = "NAME")]
    pub workload: Option<String>,
    /// Entity workload: entities per player.
    #[arg(long, value_name = "N")]
    pub entities: Option<usize>,
    /// Entity workload: bytes per entity value.
    #[arg(long, value_name = "B")]
    pub value_bytes: Option<usize>,
    /// Entity workload: share of entities moving at any time.
    #[arg(long, value_name = "P")]
    pub moving: Option<f64>,
    /// Entity workload: write entity values as stream keys (newest value only,
    /// budgeted per link) instead of reliable updates.
    #[arg(long)]
    pub streams: bool,
    /// World writes per player per second into a hot spot of the key space
    /// that moves every `--hot-move-secs` (drives shard splits and merges).
    #[arg(long, value_name = "HZ")]
    pub hot_rate: Option<f64>,
    /// How long the hot spot stays in one region.
    #[arg(long, value_name = "SECS")]
    pub hot_move_secs: Option<f64>,
    /// Hot-spot regions are eighths of the key-hash space (the worst case for
    /// splitting by hash) instead of places on the game's map.
    #[arg(long)]
    pub hot_by_hash: bool,
    /// Protocol setting: updates per second over which a shard splits (0: never).
    #[arg(long, value_name = "N")]
    pub split_writes: Option<u32>,
    /// Cap one peer's uplink: `N:KBPS` (e.g. `3:256`); its propagation is reported apart.
    #[arg(long, value_name = "N:KBPS")]
    pub cap_peer: Option<String>,
    /// Peer slots whose game sets `Config::czar_eligible` to false, comma
    /// separated (e.g. `--cap-peer 5:256 --not-czar 5`): ranked after every
    /// other member, so they are czar and backup of nothing.
    #[arg(long, value_name = "N,N...")]
    pub not_czar: Option<String>,
    /// A TOML fault schedule (see the `scenarios/` folder).
    #[arg(long, value_name = "FILE.toml")]
    pub scenario: Option<PathBuf>,
    /// Print one JSON object per run instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Worker threads for a sweep (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// A fully resolved run plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The run settings (its seed is the first seed).
    pub config: SimConfig,
    /// Seeds to run.
    pub seeds: Vec<u64>,
    /// The scenario path, as given.
    pub scenario: Option<String>,
}

fn parse_seeds(s: &str) -> Result<Vec<u64>, String> {
    let bad = || format!("--seeds {s:?}: expected A..B or A..=B with A < B");
    let (a, b, inclusive) = if let Some((a, b)) = s.split_once("..=") {
        (a, b, true)
    } else if let Some((a, b)) = s.split_once("..") {
        (a, b, false)
    } else {
        return Err(bad());
    };
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    let end = if inclusive { b.checked_add(1).ok_or_else(bad)? } else { b };
    if a >= end {
        return Err(bad());
    }
    Ok((a..end).collect())
}

fn probability(name: &str, v: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("--{name} {v}: expected a probability in [0, 1]"))
    }
}

impl SimArgs {
    /// Resolves flags, scenario and defaults into a plan, or says what is wrong.
    pub fn plan(&self) -> Result<Plan, String> {
        let scenario = match &self.scenario {
            Some(p) => Some(Scenario::load(p)?),
            None => None,
        };
        let mut cfg = SimConfig::default();
        let workload = self
            .workload
            .clone()
            .or_else(|| scenario.as_ref().and_then(|sc| sc.run.workload.clone()))
            .unwrap_or_else(|| "game".into());
        match workload.as_str() {
            "game" => {}
            "standard" => {
                cfg.peers = 32;
                cfg.rate_hz = 20.0;
                cfg.link.loss = 0.01;
                cfg.critical_rate_hz = 0.0;
                cfg.world_write_prob = 0.0;
                cfg.burst_prob = 0.0;
                cfg.entities = Some(crate::workload::STANDARD);
            }
            other => return Err(format!("--workload {other:?}: expected game or standard")),
        }
        if let Some(sc) = &scenario {
            let r = &sc.run;
            cfg.peers = r.peers.unwrap_or(cfg.peers);
            cfg.shards = r.shards.unwrap_or(cfg.shards);
            cfg.seconds = r.seconds.unwrap_or(cfg.seconds);
            cfg.rate_hz = r.rate.unwrap_or(cfg.rate_hz);
            cfg.churn_per_min = r.churn.unwrap_or(cfg.churn_per_min);
            cfg.critical_rate_hz = r.critical_rate.unwrap_or(cfg.critical_rate_hz);
            cfg.world_write_prob = r.world_write_prob.unwrap_or(cfg.world_write_prob);
            if !(0.0..=1.0).contains(&cfg.world_write_prob) {
                return Err(format!("world_write_prob = {}: expected a probability in [0, 1]", cfg.world_write_prob));
            }
            cfg.settle_seconds = r.settle.unwrap_or(cfg.settle_seconds);
            sc.network.apply_to(&mut cfg.link);
            cfg.schedule = sc.schedule.clone();
        }
        cfg.peers = self.peers.unwrap_or(cfg.peers);
        cfg.shards = self.shards.unwrap_or(cfg.shards);
        cfg.seconds = self.seconds.unwrap_or(cfg.seconds);
        cfg.settle_seconds = self.settle.unwrap_or(cfg.settle_seconds);
        cfg.rate_hz = self.rate.unwrap_or(cfg.rate_hz);
        cfg.churn_per_min = self.churn.unwrap_or(cfg.churn_per_min);
        cfg.critical_rate_hz = self.critical_rate.unwrap_or(cfg.critical_rate_hz);
        cfg.warmup_seconds = self.warmup.unwrap_or(cfg.warmup_seconds);
        cfg.link.latency_ms = self.latency_ms.unwrap_or(cfg.link.latency_ms);
        cfg.link.jitter_ms = self.jitter_ms.unwrap_or(cfg.link.jitter_ms);
        cfg.link.jitter_dist = self.jitter_dist.unwrap_or(cfg.link.jitter_dist);
        cfg.link.latency_spread = self.latency_spread.unwrap_or(cfg.link.latency_spread);
        if !(0.0..=1.0).contains(&cfg.link.latency_spread) {
            return Err(format!("--latency-spread {}: expected a fraction in [0, 1]", cfg.link.latency_spread));
        }
        cfg.link.loss = probability("loss", self.loss.unwrap_or(cfg.link.loss))?;
        cfg.link.dup = probability("dup", self.dup.unwrap_or(cfg.link.dup))?;
        cfg.link.reorder = probability("reorder", self.reorder.unwrap_or(cfg.link.reorder))?;
        cfg.link.uplink_kbps = self.uplink_kbps.unwrap_or(cfg.link.uplink_kbps);
        cfg.clock_offset_ms = self.clock_offset_ms.unwrap_or(cfg.clock_offset_ms);
        cfg.clock_drift_ppm = self.drift_ppm.unwrap_or(cfg.clock_drift_ppm);
        cfg.byzantine = self.byzantine.unwrap_or(cfg.byzantine);
        if let Some(ms) = self.idle_heartbeat_ms {
            if ms == 0 || ms > 60_000 {
                return Err(format!("--idle-heartbeat-ms {ms}: expected 1 to 60000"));
            }
            cfg.proto.idle_heartbeat_interval = std::time::Duration::from_millis(ms);
        }
        if let Some(ms) = self.batch_delay_ms {
            if ms > 1000 {
                return Err(format!("--batch-delay-ms {ms}: expected 0 to 1000"));
            }
            cfg.proto.delta_batch_delay = std::time::Duration::from_millis(ms);
        }
        let run = scenario.as_ref().map(|sc| sc.run.clone()).unwrap_or_default();
        let entities = self.entities.or(run.entities);
        let value_bytes = self.value_bytes.or(run.value_bytes);
        let moving = self.moving.or(run.moving);
        if entities.is_some() || value_bytes.is_some() || moving.is_some() {
            let base = cfg.entities.get_or_insert(crate::workload::STANDARD);
            base.entities = entities.unwrap_or(base.entities);
            base.value_bytes = value_bytes.unwrap_or(base.value_bytes);
            base.moving = probability("moving", moving.unwrap_or(base.moving))?;
        }
        cfg.streams = self.streams || run.streams.unwrap_or(false);
        if cfg.streams && cfg.entities.is_none() {
            return Err("--streams: only the entity workload writes stream keys (add --workload standard)".into());
        }
        cfg.hot_rate_hz = self.hot_rate.or(run.hot_rate).unwrap_or(cfg.hot_rate_hz);
        if !(0.0..=10_000.0).contains(&cfg.hot_rate_hz) {
            return Err(format!("--hot-rate {}: expected 0 to 10000", cfg.hot_rate_hz));
        }
        cfg.hot_move_secs = self.hot_move_secs.or(run.hot_move_secs).unwrap_or(cfg.hot_move_secs);
        if !(cfg.hot_move_secs > 0.0 && cfg.hot_move_secs.is_finite()) {
            return Err(format!("--hot-move-secs {}: expected a positive number", cfg.hot_move_secs));
        }
        if cfg.hot_rate_hz > 0.0 && cfg.entities.is_some() {
            return Err("--hot-rate: only the game workload writes the hot spot (drop --workload standard)".into());
        }
        if let Some(n) = self.split_writes.or(run.split_writes) {
            cfg.proto.split_writes_per_sec = n;
        }
        cfg.initial_peers = run.initial_peers;
        cfg.hot_by_hash = self.hot_by_hash || run.hot_by_hash.unwrap_or(false);
        if let Some(spec) = &self.cap_peer {
            let bad = || format!("--cap-peer {spec:?}: expected N:KBPS with N a peer slot and KBPS > 0");
            let (n, kbps) = spec.split_once(':').ok_or_else(bad)?;
            let n: usize = n.trim().parse().map_err(|_| bad())?;
            let kbps: u64 = kbps.trim().parse().map_err(|_| bad())?;
            if n >= cfg.peers || kbps == 0 {
                return Err(bad());
            }
            cfg.capped_peer = Some((n, kbps));
        }
        if let Some(list) = &self.not_czar {
            for part in list.split(',') {
                let n: usize = part.trim().parse().ok().filter(|n| *n < cfg.peers).ok_or_else(|| {
                    format!("--not-czar {list:?}: expected peer slots below {}, comma separated", cfg.peers)
                })?;
                cfg.not_czar.push(n);
            }
        }
        if let Some(w) = cfg.entities {
            if w.entities == 0 || w.entities > 4096 {
                return Err(format!("--entities {}: expected 1 to 4096", w.entities));
            }
            if w.value_bytes == 0 || w.value_bytes > anarchy_proto::wire::MAX_VALUE_BYTES {
                return Err(format!(
                    "--value-bytes {}: expected 1 to {}",
                    w.value_bytes,
                    anarchy_proto::wire::MAX_VALUE_BYTES
                ));
            }
            // One avatar shard per player unless told otherwise.
            if self.shards.is_none() && run.shards.is_none() {
                cfg.shards = cfg.peers + 1;
            }
        }
        if cfg.peers == 0 || cfg.peers > 1 << 20 {
            return Err(format!("--peers {}: expected 1 to {}", cfg.peers, 1 << 20));
        }
        if cfg.byzantine >= cfg.peers.max(1) {
            return Err(format!(
                "--byzantine {}: expected fewer hostile members than peers ({})",
                cfg.byzantine, cfg.peers
            ));
        }
        if cfg.shards == 0 || cfg.shards > 4096 {
            return Err(format!("--shards {}: expected 1 to 4096", cfg.shards));
        }
        let finite = |name: &str, v: f64, max: f64| {
            if v.is_finite() && (0.0..=max).contains(&v) {
                Ok(())
            } else {
                Err(format!("--{name} {v}: expected 0 to {max}"))
            }
        };
        finite("seconds", cfg.seconds, 86_400.0)?;
        if cfg.seconds <= 0.0 {
            return Err("--seconds must be more than 0".into());
        }
        finite("settle", cfg.settle_seconds, 3600.0)?;
        finite("rate", cfg.rate_hz, 1000.0)?;
        finite("churn", cfg.churn_per_min, 100_000.0)?;
        finite("critical-rate", cfg.critical_rate_hz, 10_000.0)?;
        finite("warmup", cfg.warmup_seconds, 86_400.0)?;
        finite("latency-ms", cfg.link.latency_ms, 60_000.0)?;
        finite("jitter-ms", cfg.link.jitter_ms, 60_000.0)?;
        finite("clock-offset-ms", cfg.clock_offset_ms, 86_400_000.0)?;
        finite("drift-ppm", cfg.clock_drift_ppm, 100_000.0)?;
        let seeds = match (&self.seeds, self.seed) {
            (Some(s), _) => parse_seeds(s)?,
            (None, Some(x)) => vec![x],
            (None, None) => vec![cfg.seed],
        };
        cfg.seed = seeds[0];
        Ok(Plan { config: cfg, seeds, scenario: self.scenario.as_ref().map(|p| p.display().to_string()) })
    }

    /// The `anarchy sim` command line that reruns exactly `seed`.
    pub fn command_for(&self, seed: u64) -> String {
        let mut c = String::from("anarchy sim");
        let mut add = |flag: &str, v: Option<String>| {
            if let Some(v) = v {
                c += &format!(" --{flag} {v}");
            }
        };
        add("scenario", self.scenario.as_ref().map(|p| p.display().to_string()));
        add("peers", self.peers.map(|v| v.to_string()));
        add("shards", self.shards.map(|v| v.to_string()));
        add("seconds", self.seconds.map(|v| v.to_string()));
        add("settle", self.settle.map(|v| v.to_string()));
        add("latency-ms", self.latency_ms.map(|v| v.to_string()));
        add("jitter-ms", self.jitter_ms.map(|v| v.to_string()));
        add("jitter-dist", self.jitter_dist.map(|v| format!("{v}")));
        add("latency-spread", self.latency_spread.map(|v| v.to_string()));
        add("loss", self.loss.map(|v| v.to_string()));
        add("dup", self.dup.map(|v| v.to_string()));
        add("reorder", self.reorder.map(|v| v.to_string()));
        add("uplink-kbps", self.uplink_kbps.map(|v| v.to_string()));
        add("rate", self.rate.map(|v| v.to_string()));
        add("churn", self.churn.map(|v| v.to_string()));
        add("critical-rate", self.critical_rate.map(|v| v.to_string()));
        add("warmup", self.warmup.map(|v| v.to_string()));
        add("clock-offset-ms", self.clock_offset_ms.map(|v| v.to_string()));
        add("drift-ppm", self.drift_ppm.map(|v| v.to_string()));
        add("idle-heartbeat-ms", self.idle_heartbeat_ms.map(|v| v.to_string()));
        add("batch-delay-ms", self.batch_delay_ms.map(|v| v.to_string()));
        add("byzantine", self.byzantine.map(|v| v.to_string()));
        add("workload", self.workload.clone());
        add("entities", self.entities.map(|v| v.to_string()));
        add("value-bytes", self.value_bytes.map(|v| v.to_string()));
        add("moving", self.moving.map(|v| v.to_string()));
        add("cap-peer", self.cap_peer.clone());
        add("not-czar", self.not_czar.clone());
        add("hot-rate", self.hot_rate.map(|v| v.to_string()));
        add("hot-move-secs", self.hot_move_secs.map(|v| v.to_string()));
        add("split-writes", self.split_writes.map(|v| v.to_string()));
        add("seed", Some(seed.to_string()));
        if self.streams {
            c += " --streams";
        }
        if self.hot_by_hash {
            c += " --hot-by-hash";
        }
        c
    }
}

/// Runs one seed of a plan; `progress` shows a bar when given.
pub fn run_one(args: &SimArgs, plan: &Plan, seed: u64, progress: Option<&ProgressBar>) -> Report {
    let cfg = SimConfig { seed, ..plan.config.clone() };
    let started = WallInstant::now();
    let outcome = Sim::new(cfg.clone()).run(|done, planned| {
        if let Some(bar) = progress {
            bar.set_length(planned / 1000);
            bar.set_position(done / 1000);
        }
    });
    let wall = started.elapsed().as_secs_f64();
    Report::new(&cfg, plan.scenario.clone(), &outcome, wall, args.command_for(seed))
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// Runs `anarchy sim`; returns the process exit code.
pub fn run(args: SimArgs) -> i32 {
    let plan = match args.plan() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("anarchy sim: {e}");
            return 2;
        }
    };
    let show_progress = !args.json && std::io::stderr().is_terminal();
    if plan.seeds.len() == 1 {
        let progress =
            show_progress.then(|| bar(0, "{spinner} simulated {pos}/{len} ms [{bar:40}] {elapsed_precise} eta {eta}"));
        let report = run_one(&args, &plan, plan.seeds[0], progress.as_ref());
        if let Some(b) = progress {
            b.finish_and_clear();
        }
        if args.json {
            println!("{}", report.to_json());
        } else {
            print!("{}", report.human());
        }
        return if report.passed() { 0 } else { 1 };
    }
    // A sweep: seeds spread over worker threads, reports printed in seed order.
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
        .clamp(1, plan.seeds.len());
    let progress =
        show_progress.then(|| bar(plan.seeds.len() as u64, "seeds {pos}/{len} [{bar:40}] {elapsed_precise} {msg}"));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Report>>> = Mutex::new(vec![None; plan.seeds.len()]);
    let failed = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&seed) = plan.seeds.get(k) else { break };
                let report = run_one(&args, &plan, seed, None);
                if !report.passed() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(b) = &progress {
                    b.inc(1);
                    b.set_message(format!("{} failed", failed.load(Ordering::Relaxed)));
                }
                results.lock().expect("no panics while holding it")[k] = Some(report);
            });
        }
    });
    if let Some(b) = progress {
        b.finish_and_clear();
    }
    let reports: Vec<Report> = results.into_inner().expect("threads done").into_iter().flatten().collect();
    let failing: Vec<&Report> = reports.iter().filter(|r| !r.passed()).collect();
    if args.json {
        for r in &reports {
            println!("{}", r.to_json());
        }
    } else {
        for r in &failing {
            print!("{}", r.human());
        }
        let wall: f64 = reports.iter().map(|r| r.wall_seconds).sum();
        let pooled = crate::report::Failover::from_samples(
            reports.iter().flat_map(|r| r.failover_ms.samples.iter().copied()).collect(),
            reports.iter().map(|r| r.failover_ms.unfinished).sum(),
        );
        println!(
            "failover over all seeds: {} timed, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms, {} unfinished",
            pooled.count, pooled.p50, pooled.p99, pooled.max, pooled.unfinished
        );
        let sum = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();
        println!(
            "critical over all seeds: {} proposed, {} committed, {} rejected, {} timed out, {} lost after commit; false evictions: {}; stepped down: {}",
            sum(|r| r.critical.proposed),
            sum(|r| r.critical.committed),
            sum(|r| r.critical.rejected),
            sum(|r| r.critical.failed),
            sum(|r| r.critical.lost_after_commit),
            sum(|r| r.false_evictions),
            sum(|r| r.step_downs)
        );
        let mut by_invariant: std::collections::BTreeMap<&str, (u64, Vec<u64>)> = Default::default();
        for r in &reports {
            for (name, n) in &r.violation_counts {
                let e = by_invariant.entry(name).or_default();
                e.0 += n;
                e.1.push(r.seed);
            }
            if !r.converged && !r.violation_counts.contains_key("convergence") {
                by_invariant.entry("not converged").or_default().1.push(r.seed);
            }
        }
        for (name, (n, seeds)) in &by_invariant {
            println!("  {name}: {n} violations, seeds {seeds:?}");
        }
        println!(
            "sweep: {} seeds, {} passed, {} failed ({:.1} s of runs)",
            reports.len(),
            reports.len() - failing.len(),
            failing.len(),
            wall
        );
        for r in &failing {
            println!("  failing seed {}: {}", r.seed, r.command);
        }
    }
    if failing.is_empty() {
        0
    } else {
        1
    }
}
