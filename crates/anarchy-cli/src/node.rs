//! `anarchy node`: runs one peer on a real socket until Ctrl-C, logging every
//! event and a periodic status line, then leaves the session gracefully.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anarchy::{AdminExposure, Event, Session};

use crate::keygen::load_keypair;
use crate::logging;
use crate::secret::SecretArgs;

/// How often the node logs a status line.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// Arguments of `anarchy node`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Local UDP address to bind, e.g. 0.0.0.0:7000.
    #[arg(long, value_name = "ADDR")]
    bind: SocketAddr,
    /// Address other members should use for this node (default: the bound
    /// address, with 0.0.0.0 replaced by 127.0.0.1).
    #[arg(long, value_name = "ADDR")]
    advertise: Option<SocketAddr>,
    /// A member to join through (repeatable). Without any, a new session starts.
    #[arg(long, value_name = "ADDR")]
    join: Vec<SocketAddr>,
    /// A shard to declare (repeatable).
    #[arg(long, value_name = "NAME")]
    shard: Vec<String>,
    /// Identity: 64 hex digits, or a file written by `anarchy keygen`. Default: a fresh one.
    #[arg(long, value_name = "FILE|HEX")]
    key: Option<String>,
    /// Log filter (e.g. info, debug, anarchy=trace). Default: RUST_LOG, else info.
    #[arg(long, value_name = "LEVEL")]
    log: Option<String>,
    /// Serve GET /status (JSON) and GET /metrics (Prometheus) on this TCP
    /// address, e.g. 127.0.0.1:9000. Off by default; loopback only unless
    /// --admin-public is given.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Allow --admin on a non-loopback address (anyone who can reach it sees the status).
    #[arg(long, requires = "admin")]
    admin_public: bool,
    /// Impair this node's outgoing traffic to try a bad network, e.g.
    /// "latency=40ms,jitter=10ms,loss=2%,dup=1%[,seed=N]".
    #[arg(long, value_name = "SPEC")]
    conditioner: Option<anarchy::Conditioner>,
    #[command(flatten)]
    secret: SecretArgs,
}

/// Runs `anarchy node`.
pub fn run(args: NodeArgs) -> ExitCode {
    logging::init(args.log.as_deref(), "info");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(args))
}

async fn serve(args: NodeArgs) -> ExitCode {
    let secret = match args.secret.resolve() {
        Ok(secret) => secret,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if secret.is_open() {
        tracing::warn!(
            "no session secret given: the session is open to anyone (--secret, --passphrase or ANARCHY_SECRET)"
        );
    }
    let fingerprint = secret.fingerprint();
    let mut builder = Session::builder().bind(args.bind).secret(secret);
    if let Some(key) = &args.key {
        match load_keypair(key) {
            Ok(keypair) => builder = builder.keypair(keypair),
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(addr) = args.advertise {
        builder = builder.advertise(addr);
    }
    for addr in &args.join {
        builder = builder.join(*addr);
    }
    for name in &args.shard {
        builder = builder.shard(name.clone());
    }
    if let Some(conditioner) = args.conditioner {
        tracing::warn!(%conditioner, "network conditioner on: outgoing traffic is impaired on purpose");
        builder = builder.conditioner(conditioner);
    }
    let session = match builder.start().await {
        Ok(session) => session,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let exposure = if args.admin_public { AdminExposure::Public } else { AdminExposure::LoopbackOnly };
    let _admin = match args.admin {
        Some(addr) => match session.serve_admin(addr, exposure).await {
            Ok(admin) => {
                tracing::info!(admin = %admin.local_addr(), "admin endpoint: GET /status, GET /metrics");
                Some(admin)
            }
            Err(e) => {
                tracing::error!("cannot serve the admin endpoint on {addr}: {e}");
                session.shutdown().await;
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    tracing::info!(
        peer = %session.id(),
        bound = %session.local_addr(),
        advertised = %session.advertised_addr(),
        joining = ?args.join,
        secret = %fingerprint,
        "node started; Ctrl-C to leave"
    );

    let mut status = tokio::time::interval(STATUS_INTERVAL);
    status.tick().await;
    loop {
        tokio::select! {
            signal = tokio::signal::ctrl_c() => {
                if let Err(e) = signal {
                    tracing::error!(error = %e, "cannot listen for Ctrl-C; leaving");
                }
                break;
            }
            event = session.next_event() => match event {
                Some(event) => log_event(&session, &event),
                None => break,
            },
            _ = status.tick() => log_status(&session),
        }
    }
    tracing::info!("leaving the session");
    session.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

fn log_event(session: &Session, event: &Event) {
    match event {
        Event::Joined { members } => tracing::info!(members, "joined the session"),
        Event::PeerJoined { peer, addr } => tracing::info!(%peer, %addr, "peer joined"),
        Event::PeerLeft { peer, reason } => tracing::info!(%peer, ?reason, "peer left"),
        Event::ShardDeclared { shard, name } => tracing::info!(%shard, name, "shard declared"),
        Event::CzarChanged { shard, old, new, epoch } => {
            let mine = *new == session.id();
            tracing::info!(%shard, old = ?old, %new, epoch, mine, "czar changed");
        }
        Event::Updated { shard, version, key, value, .. } => tracing::debug!(
            %shard, %version, key = %String::from_utf8_lossy(key),
            bytes = value.as_ref().map_or(0, Vec::len), deleted = value.is_none(), "update applied"
        ),
        Event::Authored { shard, version } => tracing::debug!(%shard, %version, "update authored"),
        Event::WriteApplied { write, shard, version } => {
            tracing::debug!(write = write.0, %shard, %version, "forwarded write applied")
        }
        Event::WriteFailed { write, shard, reason } => {
            tracing::warn!(write = write.0, %shard, ?reason, "forwarded write failed")
        }
        Event::ShardResynced { shard, version } => tracing::info!(%shard, %version, "shard resynced"),
        Event::SteppedDown { incarnation, reason } => {
            tracing::warn!(incarnation, ?reason, "our upload does not get out in time: no longer czar-eligible")
        }
        Event::ShardSplit { parent, children } => {
            tracing::info!(%parent, child0 = %children[0], child1 = %children[1], "shard split")
        }
        Event::ShardMerged { children, parent } => {
            tracing::info!(%parent, child0 = %children[0], child1 = %children[1], "shards merged")
        }
        #[allow(unreachable_patterns)] // the core may grow events; log them rather than fail to build
        other => tracing::info!(event = ?other, "event"),
    }
}

fn log_status(session: &Session) {
    let stats = session.stats();
    tracing::info!(
        joined = session.is_joined(),
        live_members = session.live_member_count(),
        shards = session.shards().len(),
        datagrams_in = stats.datagrams_in,
        datagrams_out = stats.datagrams_out,
        drops = stats.total_drops(),
        "status"
    );
}
