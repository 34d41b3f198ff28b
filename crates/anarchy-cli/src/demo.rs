//! `anarchy demo`: N players in one process over real UDP on loopback.
//! Each moves its own avatar at a fixed rate and a random player changes the
//! shared `world` every few ticks; halfway through, the czar of `world` is
//! killed without a goodbye and the demo measures how long until every
//! surviving player applies an update from the new czar. It also measures
//! czar-write → remote-apply latency, waits for every replica to agree, and
//! reports. Exit code 0 only if they did.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anarchy::{Event, Session, SessionSecret, ShardId, Version, WriteOutcome};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::logging;
use crate::secret::SecretArgs;

/// How long the players get to find each other and settle their czars.
const SETUP_DEADLINE: Duration = Duration::from_secs(20);
/// How long replicas get to agree once writing stops.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(10);
/// How often waits re-check their condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The shared shard.
const WORLD: &str = "world";
/// Largest latency the histogram records (longer ones are clamped), in microseconds.
const MAX_LATENCY_MICROS: u64 = 60_000_000;

/// Arguments of `anarchy demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Players (each is a full peer with its own UDP socket).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(2..=256))]
    peers: u16,
    /// Seconds of play.
    #[arg(long, default_value_t = 10.0, value_parser = positive_f64)]
    seconds: f64,
    /// Avatar moves per second per player.
    #[arg(long, default_value_t = 20.0, value_parser = positive_f64)]
    rate: f64,
    /// Milliseconds between two writes to the shared world shard (a busy shard).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    world_every_ms: u64,
    /// Do not kill the world's czar halfway through.
    #[arg(long)]
    no_kill: bool,
    /// Seed for choosing who writes the world (the run itself is real-time, not replayable).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print exactly one JSON object instead of the human summary.
    #[arg(long)]
    json: bool,
    /// No live dashboard while playing (there is none anyway with --json or
    /// when stdout is not a terminal).
    #[arg(long)]
    no_tui: bool,
    /// Log filter (e.g. info, debug). Default: RUST_LOG, else warn.
    #[arg(long, value_name = "LEVEL")]
    log: Option<String>,
    #[command(flatten)]
    secret: SecretArgs,
}

impl DemoArgs {
    /// Whether to show the live dashboard of the players.
    fn tui(&self) -> bool {
        !self.json && !self.no_tui && std::io::IsTerminal::is_terminal(&std::io::stdout())
    }
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e6 => Ok(v),
        Ok(_) => Err("must be a positive number".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs `anarchy demo`.
pub fn run(args: DemoArgs) -> ExitCode {
    logging::init(args.log.as_deref(), "warn");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(play(&args)) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string(&report) {
                    Ok(line) => println!("{line}"),
                    Err(e) => eprintln!("error: {e}"),
                }
            } else {
                report.print_human();
            }
            if report.converged {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the demo prints.
#[derive(Debug, Serialize)]
struct Report {
    peers: usize,
    seconds: f64,
    rate_hz: f64,
    setup_ms: f64,
    updates_written: u64,
    updates_applied: u64,
    expected_applies: u64,
    writes_forwarded: u64,
    writes_failed: u64,
    write_errors: u64,
    propagation_ms: Propagation,
    datagrams_sent: u64,
    bytes_sent: u64,
    drops: u64,
    drops_by_reason: HashMap<&'static str, u64>,
    snapshots_installed: u64,
    repairs_requested: u64,
    converged: bool,
    converge_ms: Option<f64>,
    /// The killed czar of `world`, if one was killed.
    killed_czar: Option<String>,
    /// Kill → every survivor applied an update from the new czar (ms).
    failover_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Propagation {
    samples: u64,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Report {
    fn print_human(&self) {
        let p = &self.propagation_ms;
        println!("anarchy demo: {} peers over UDP loopback, {:.1} s at {} Hz", self.peers, self.seconds, self.rate_hz);
        println!("  setup (all joined, czars settled): {:.0} ms", self.setup_ms);
        println!(
            "  updates written (czar-authored):   {} ({} forwarded writes, {} failed, {} refused)",
            self.updates_written, self.writes_forwarded, self.writes_failed, self.write_errors
        );
        if self.killed_czar.is_some() {
            println!("  updates applied (remote):          {}", self.updates_applied);
        } else {
            println!(
                "  updates applied (remote):          {} (expected {})",
                self.updates_applied, self.expected_applies
            );
        }
        println!(
            "  propagation czar -> peer (ms):     p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  ({} samples)",
            p.p50, p.p90, p.p99, p.max, p.samples
        );
        println!(
            "  sent:                              {} datagrams, {} bytes ({:.1} KiB/s per peer)",
            self.datagrams_sent,
            self.bytes_sent,
            self.bytes_sent as f64 / 1024.0 / self.seconds / self.peers as f64
        );
        let mut reasons: Vec<_> = self.drops_by_reason.iter().collect();
        reasons.sort();
        println!("  drops:                             {} {:?}", self.drops, reasons);
        println!("  repairs / snapshots:               {} / {}", self.repairs_requested, self.snapshots_installed);
        match (&self.killed_czar, self.failover_ms) {
            (Some(czar), Some(ms)) => {
                println!(
                    "  failover (czar {czar} killed):    {ms:.0} ms until every survivor applied the new czar's update"
                )
            }
            (Some(czar), None) => println!("  failover (czar {czar} killed):    NOT COMPLETED"),
            _ => {}
        }
        match self.converge_ms {
            Some(ms) => println!("  converged:                         yes ({ms:.0} ms after the last write)"),
            None => println!("  converged:                         NO"),
        }
    }
}

/// Watches for the first update from a new czar of `world` after a kill.
#[derive(Default)]
struct FailoverWatch {
    /// The epoch of the killed czar.
    old_epoch: u32,
    /// When the czar was killed.
    killed_at: Option<Instant>,
    /// Each survivor's first update from a later epoch.
    seen: HashMap<anarchy::PeerId, Instant>,
}

/// Latency bookkeeping shared by every player's event task.
#[derive(Default)]
struct Latency {
    failover: FailoverWatch,
    /// (shard, version) → when the czar authored it, and remote applies seen before that was known.
    versions: HashMap<(ShardId, Version), Authorship>,
    histogram: Option<Histogram<u64>>,
    writes_failed: u64,
}

#[derive(Default)]
struct Authorship {
    at: Option<Instant>,
    early_applies: Vec<Instant>,
}

impl Latency {
    fn new() -> Self {
        Latency { histogram: Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3).ok(), ..Latency::default() }
    }

    /// The czar authored `version` of `shard` at `at` (the earliest report wins).
    fn authored(&mut self, shard: ShardId, version: Version, at: Instant) {
        let entry = self.versions.entry((shard, version)).or_default();
        if entry.at.is_some_and(|known| known <= at) {
            return;
        }
        entry.at = Some(at);
        let early = std::mem::take(&mut entry.early_applies);
        for applied in early {
            self.record(at, applied);
        }
    }

    /// A peer other than the czar applied `version` of `shard` at `at`.
    fn applied(&mut self, shard: ShardId, version: Version, at: Instant) {
        let entry = self.versions.entry((shard, version)).or_default();
        match entry.at {
            Some(written) => self.record(written, at),
            // The apply's event task ran before the czar's: settle it when the author is known.
            None => entry.early_applies.push(at),
        }
    }

    fn record(&mut self, written: Instant, applied: Instant) {
        let micros = applied.saturating_duration_since(written).as_micros();
        if let Some(h) = &mut self.histogram {
            h.saturating_record(u64::try_from(micros).unwrap_or(u64::MAX).clamp(1, MAX_LATENCY_MICROS));
        }
    }

    fn propagation(&self) -> Propagation {
        let ms = |micros: u64| micros as f64 / 1000.0;
        match &self.histogram {
            Some(h) if !h.is_empty() => Propagation {
                samples: h.len(),
                p50: ms(h.value_at_quantile(0.50)),
                p90: ms(h.value_at_quantile(0.90)),
                p99: ms(h.value_at_quantile(0.99)),
                max: ms(h.max()),
            },
            _ => Propagation { samples: 0, p50: 0.0, p90: 0.0, p99: 0.0, max: 0.0 },
        }
    }
}

async fn play(args: &DemoArgs) -> Result<Report, String> {
    let peers = usize::from(args.peers);
    let started = Instant::now();
    let secret = args.secret.resolve()?;
    let sessions = start_players(peers, &secret).await?;
    let _dashboard = args
        .tui()
        .then(|| crate::monitor::LiveView::start("demo", sessions.iter().map(|s| s.status_handle()).collect()));
    let latency = Arc::new(Mutex::new(Latency::new()));
    let mut listeners = Vec::new();
    for session in &sessions {
        listeners.push(tokio::spawn(listen(session.clone(), latency.clone())));
    }

    let ready = wait_for(SETUP_DEADLINE, || settled(&sessions)).await;
    let setup_ms = started.elapsed().as_secs_f64() * 1000.0;
    if !ready {
        let seen: Vec<usize> = sessions.iter().map(|s| s.live_member_count()).collect();
        shut_down(sessions, listeners).await;
        return Err(format!("players did not all find each other within {SETUP_DEADLINE:?} (live counts: {seen:?})"));
    }

    let mut sessions = sessions;
    let half = DemoArgs { seconds: args.seconds / 2.0, ..args.clone() };
    let mut write_errors = move_avatars(&half, &sessions, &latency, 0).await;
    let mut killed_czar = None;
    let mut dead_stats = Vec::new();
    if !args.no_kill && peers >= 3 {
        if let Some(victim) = sessions.iter().position(|s| s.czar_of(WORLD) == Some(s.id())) {
            let old_epoch = sessions[victim].shard_version(WORLD).map_or(0, |v| v.epoch);
            killed_czar = Some(sessions[victim].id());
            dead_stats.push(sessions[victim].stats());
            let listener = listeners.remove(victim);
            listener.abort();
            let _ = listener.await;
            let dead = sessions.remove(victim);
            {
                let mut l = latency.lock().unwrap_or_else(|p| p.into_inner());
                l.failover.old_epoch = old_epoch;
                l.failover.killed_at = Some(Instant::now());
            }
            match Arc::try_unwrap(dead) {
                Ok(dead) => dead.abort(),
                Err(_) => tracing::warn!("the killed czar's session is still shared; it leaves when dropped"),
            }
        }
    }
    let frames_done = (half.seconds * args.rate) as u64;
    write_errors += move_avatars(&half, &sessions, &latency, frames_done).await;

    let stopped = Instant::now();
    let shards = shard_names(peers);
    let converged = wait_for(CONVERGE_DEADLINE, || agree(&sessions, &shards)).await;
    let converge_ms = converged.then(|| stopped.elapsed().as_secs_f64() * 1000.0);

    let mut report = Report {
        peers,
        seconds: args.seconds,
        rate_hz: args.rate,
        setup_ms,
        updates_written: 0,
        updates_applied: 0,
        expected_applies: 0,
        writes_forwarded: 0,
        writes_failed: 0,
        write_errors,
        propagation_ms: Propagation { samples: 0, p50: 0.0, p90: 0.0, p99: 0.0, max: 0.0 },
        datagrams_sent: 0,
        bytes_sent: 0,
        drops: 0,
        drops_by_reason: HashMap::new(),
        snapshots_installed: 0,
        repairs_requested: 0,
        converged,
        converge_ms,
        killed_czar: None,
        failover_ms: None,
    };
    let live_stats: Vec<anarchy::Stats> = sessions.iter().map(|s| s.stats()).collect();
    for stats in live_stats.iter().chain(&dead_stats) {
        report.updates_written += stats.updates_written;
        report.updates_applied += stats.updates_applied;
        report.writes_forwarded += stats.writes_forwarded;
        report.datagrams_sent += stats.datagrams_out;
        report.bytes_sent += stats.bytes_out;
        report.drops += stats.total_drops();
        report.snapshots_installed += stats.snapshots_installed;
        report.repairs_requested += stats.repairs_requested;
        for (reason, n) in stats.drop_counts() {
            *report.drops_by_reason.entry(reason.name()).or_default() += n;
        }
    }
    // With every player alive to the end, each authored update reaches every other player.
    report.expected_applies = if killed_czar.is_none() { report.updates_written * (peers as u64 - 1) } else { 0 };
    {
        let latency = latency.lock().unwrap_or_else(|p| p.into_inner());
        report.propagation_ms = latency.propagation();
        report.writes_failed = latency.writes_failed;
        if let (Some(czar), Some(killed_at)) = (killed_czar, latency.failover.killed_at) {
            report.killed_czar = Some(czar.short());
            let all_seen = sessions.iter().all(|s| latency.failover.seen.contains_key(&s.id()));
            report.failover_ms = all_seen
                .then(|| latency.failover.seen.values().map(|t| t.duration_since(killed_at).as_secs_f64() * 1000.0))
                .and_then(|times| times.reduce(f64::max));
        }
    }
    shut_down(sessions, listeners).await;
    Ok(report)
}

fn shard_names(peers: usize) -> Vec<String> {
    std::iter::once(WORLD.to_owned()).chain((0..peers).map(|i| format!("avatar-{i}"))).collect()
}

/// Starts player 0 alone and the others joining through it.
async fn start_players(peers: usize, secret: &SessionSecret) -> Result<Vec<Arc<Session>>, String> {
    let mut sessions: Vec<Arc<Session>> = Vec::with_capacity(peers);
    for i in 0..peers {
        let mut builder = Session::builder()
            .bind("127.0.0.1:0".parse().expect("literal address"))
            .secret(secret.clone())
            .shard(WORLD)
            .own_shard(format!("avatar-{i}"));
        if let Some(first) = sessions.first() {
            builder = builder.join(first.local_addr());
        }
        match builder.start().await {
            Ok(session) => sessions.push(Arc::new(session)),
            Err(e) => {
                shut_down(sessions, Vec::new()).await;
                return Err(format!("player {i}: {e}"));
            }
        }
    }
    Ok(sessions)
}

/// Feeds one player's events into the latency bookkeeping until its session stops.
async fn listen(session: Arc<Session>, latency: Arc<Mutex<Latency>>) {
    let me = session.id();
    let world = ShardId::from_name(WORLD);
    while let Some(event) = session.next_event().await {
        let now = Instant::now();
        let mut latency = latency.lock().unwrap_or_else(|p| p.into_inner());
        if let Event::Authored { shard, version } | Event::Updated { shard, version, .. } = &event {
            let watch = &mut latency.failover;
            if *shard == world && watch.killed_at.is_some() && version.epoch > watch.old_epoch {
                watch.seen.entry(me).or_insert(now);
            }
        }
        match event {
            Event::Authored { shard, version } => latency.authored(shard, version, now),
            Event::Updated { shard, version, .. } => latency.applied(shard, version, now),
            Event::WriteFailed { .. } => latency.writes_failed += 1,
            _ => {}
        }
    }
}

/// Everyone sees everyone, knows every shard, and follows each avatar's own player.
/// (Checked before anyone is killed.)
fn settled(sessions: &[Arc<Session>]) -> bool {
    let peers = sessions.len();
    sessions.iter().all(|s| s.live_member_count() == peers && s.shards().len() == peers + 1)
        && (0..peers).all(|i| {
            let avatar = format!("avatar-{i}");
            sessions.iter().all(|s| s.czar_of(&avatar) == Some(sessions[i].id()))
        })
        && sessions.iter().all(|s| s.czar_of(WORLD).is_some() && s.czar_of(WORLD) == sessions[0].czar_of(WORLD))
}

/// Every replica of every shard holds the same version and checksum, and no write is in flight.
fn agree(sessions: &[Arc<Session>], shards: &[String]) -> bool {
    sessions.iter().all(|s| s.pending_writes() == 0)
        && shards.iter().all(|shard| {
            let first = (sessions[0].shard_version(shard), sessions[0].shard_checksum(shard));
            first.0.is_some() && sessions.iter().all(|s| (s.shard_version(shard), s.shard_checksum(shard)) == first)
        })
}

/// The play phase: every tick each player moves its avatar; every
/// `world_every_ms` a seeded-random player changes the world. Returns how many
/// writes were refused.
async fn move_avatars(args: &DemoArgs, sessions: &[Arc<Session>], latency: &Mutex<Latency>, first_frame: u64) -> u64 {
    let tick = Duration::from_secs_f64(1.0 / args.rate);
    let world_every = Duration::from_millis(args.world_every_ms);
    let play_for = Duration::from_secs_f64(args.seconds);
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let begin = tokio::time::Instant::now();
    let mut next_world = begin + world_every;
    let mut errors = 0u64;
    let mut frame = first_frame;
    loop {
        let now = ticker.tick().await;
        if now.duration_since(begin) >= play_for {
            break;
        }
        frame += 1;
        for session in sessions {
            // Each player's own avatar (survivors keep their original numbers).
            let avatar = session.shards().into_iter().find(|s| s.preferred == Some(session.id())).map(|s| s.name);
            let Some(avatar) = avatar else { continue };
            let i: usize = avatar.trim_start_matches("avatar-").parse().unwrap_or(0);
            let pos = position(i, frame, args.rate);
            let outcome = session.write(&avatar, b"pos", &pos);
            note_outcome(outcome, ShardId::from_name(&avatar), latency, &mut errors);
        }
        if now >= next_world {
            next_world += world_every;
            let who = rng.gen_range(0..sessions.len());
            let value = format!("player {who} rang the bell at frame {frame}");
            let outcome = sessions[who].write(WORLD, b"bell", value.as_bytes());
            note_outcome(outcome, ShardId::from_name(WORLD), latency, &mut errors);
        }
    }
    errors
}

fn note_outcome(
    outcome: Result<WriteOutcome, anarchy::SessionError>,
    shard: ShardId,
    latency: &Mutex<Latency>,
    errors: &mut u64,
) {
    match outcome {
        Ok(WriteOutcome::Applied(version)) => {
            latency.lock().unwrap_or_else(|p| p.into_inner()).authored(shard, version, Instant::now());
        }
        Ok(_) => {}
        Err(e) => {
            *errors += 1;
            tracing::warn!(error = %e, "write refused");
        }
    }
}

/// Player `i`'s avatar position at `frame`: a point walking round a circle,
/// as two little-endian f32s (8 bytes).
fn position(i: usize, frame: u64, rate: f64) -> [u8; 8] {
    let t = frame as f64 / rate;
    let angle = t + i as f64;
    let radius = 10.0 + i as f64;
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&((radius * angle.cos()) as f32).to_le_bytes());
    out[4..].copy_from_slice(&((radius * angle.sin()) as f32).to_le_bytes());
    out
}

async fn wait_for(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= give_up {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Stops the event listeners, then shuts every player down gracefully.
async fn shut_down(sessions: Vec<Arc<Session>>, listeners: Vec<tokio::task::JoinHandle<()>>) {
    for listener in listeners {
        listener.abort();
        // Awaiting the aborted task guarantees it dropped its handle on the session.
        let _ = listener.await;
    }
    for session in sessions {
        match Arc::try_unwrap(session) {
            Ok(session) => session.shutdown().await,
            // Unreachable once the listeners are gone; leaving still says goodbye.
            Err(shared) => {
                let _ = shared.leave().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_seen_before_their_authorship_are_settled_later() {
        let mut latency = Latency::new();
        let shard = ShardId::from_name(WORLD);
        let version = Version { epoch: 1, seq: 1 };
        let t0 = Instant::now();
        latency.applied(shard, version, t0 + Duration::from_millis(3));
        latency.authored(shard, version, t0);
        latency.applied(shard, version, t0 + Duration::from_millis(5));
        let p = latency.propagation();
        assert_eq!(p.samples, 2);
        assert!(p.max >= 4.9 && p.max <= 5.1, "{p:?}");
    }

    #[test]
    fn positions_move_every_frame() {
        assert_ne!(position(0, 1, 20.0), position(0, 2, 20.0));
    }
}
