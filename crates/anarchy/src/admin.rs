//! Admin endpoint: a small HTTP/1.1 server on a local address that serves
//! `GET /status` (the [`StatusReport`] as JSON) and `GET /metrics`
//! (Prometheus text format). Read-only: it takes snapshots and never changes
//! the session. Refuses non-loopback addresses unless exposure is explicit.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::session::Session;
use crate::status::StatusHandle;
use anarchy_proto::stats::LATENCY_BUCKETS_MS;
use anarchy_proto::{DropReason, LatencyView, PeerStatus};

/// Connections served at once; more wait for a slot (a scraper and a
/// dashboard or two is the expected load).
const MAX_ADMIN_CONNECTIONS: usize = 16;
/// A client must send its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Who may reach the admin endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminExposure {
    /// Only loopback addresses (`127.0.0.0/8`, `::1`) may be bound. The default.
    LoopbackOnly,
    /// Any address may be bound: the status then reaches whoever can reach it.
    Public,
}

impl Session {
    /// Serves `/status` and `/metrics` for this session on `addr` (port 0
    /// picks a free port; see [`AdminServer::local_addr`]). With
    /// [`AdminExposure::LoopbackOnly`] a non-loopback `addr` is refused with
    /// [`io::ErrorKind::PermissionDenied`]. The server stops when the
    /// returned value is dropped.
    pub async fn serve_admin(&self, addr: SocketAddr, exposure: AdminExposure) -> io::Result<AdminServer> {
        AdminServer::start(self.status_handle(), addr, exposure).await
    }
}

/// A running admin endpoint. Dropping it stops the server.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// Binds `addr` and serves snapshots from `source` on the current tokio
    /// runtime. See [`Session::serve_admin`].
    pub async fn start(source: StatusHandle, addr: SocketAddr, exposure: AdminExposure) -> io::Result<AdminServer> {
        if exposure == AdminExposure::LoopbackOnly && !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "refusing to serve the admin endpoint on non-loopback address {addr} (exposure is loopback only)"
                ),
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        tracing::info!(%local_addr, "admin endpoint serving /status and /metrics");
        let task = tokio::spawn(accept_loop(listener, source));
        Ok(AdminServer { local_addr, task })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, source: StatusHandle) {
    let slots = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(error = %e, "admin accept failed");
                continue;
            }
        };
        let source = source.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let source = source.clone();
                async move { Ok::<_, Infallible>(respond(&source, &req)) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, %from, "admin connection ended with an error");
            }
            drop(permit);
        });
    }
}

fn respond(source: &StatusHandle, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n".into());
    }
    match req.uri().path() {
        "/status" => match serde_json::to_vec(&source.report()) {
            Ok(body) => with_type(Response::new(Full::new(Bytes::from(body))), "application/json"),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the status: {e}\n")),
        },
        "/metrics" => match metrics_text(&source.status()) {
            Ok(body) => with_type(
                Response::new(Full::new(Bytes::from(body))),
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            ),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the metrics: {e}\n")),
        },
        "/" => text(StatusCode::OK, "anarchy admin endpoint: GET /status (JSON), GET /metrics (Prometheus)\n".into()),
        _ => text(StatusCode::NOT_FOUND, "not found; try /status or /metrics\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = with_type(Response::new(Full::new(Bytes::from(body))), "text/plain; charset=utf-8");
    *response.status_mut() = status;
    response
}

fn with_type(mut response: Response<Full<Bytes>>, content_type: &'static str) -> Response<Full<Bytes>> {
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Renders a snapshot in the Prometheus text format (version 0.0.4).
pub fn metrics_text(status: &PeerStatus) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("anarchy");
    registry.register_collector(Box::new(Snapshot(status.clone())));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// One snapshot, encoded at scrape time as constant metrics: the core owns
/// the counters, so they are read, never incremented here.
#[derive(Debug)]
struct Snapshot(PeerStatus);

/// A metric value with a fixed type, for [`Snapshot`].
#[derive(Debug)]
enum Value {
    Counter(u64),
    Gauge(f64),
}

impl EncodeMetric for Value {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Value::Counter(v) => encoder.encode_counter::<NoLabelSet, _, u64>(v, None),
            Value::Gauge(v) => encoder.encode_gauge(v),
        }
    }

    fn metric_type(&self) -> MetricType {
        match self {
            Value::Counter(_) => MetricType::Counter,
            Value::Gauge(_) => MetricType::Gauge,
        }
    }
}

impl Snapshot {
    fn one(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: Value) -> Result<(), std::fmt::Error> {
        let metric = encoder.encode_descriptor(name, help, None, value.metric_type())?;
        value.encode(metric)
    }

    fn family<'v>(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'v str, Value)>,
    ) -> Result<(), std::fmt::Error> {
        let mut values = values.into_iter().peekable();
        let Some((_, first)) = values.peek() else { return Ok(()) };
        let mut metric = encoder.encode_descriptor(name, help, None, first.metric_type())?;
        for (label_value, value) in values {
            let labels = [(label, label_value)];
            value.encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn histogram(encoder: &mut DescriptorEncoder, name: &str, help: &str, view: &LatencyView) -> std::fmt::Result {
        let h = &view.histogram;
        let mut cumulative = 0;
        let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(h.buckets.len());
        for (i, n) in h.buckets.iter().enumerate() {
            cumulative += n;
            let upper = LATENCY_BUCKETS_MS.get(i).map_or(f64::INFINITY, |ms| *ms as f64 / 1000.0);
            buckets.push((upper, cumulative));
        }
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        metric.encode_histogram::<NoLabelSet>(h.sum_micros as f64 / 1e6, h.count, &buckets, None)
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let st = &s.stats;
        let e = &mut encoder;
        let counters = [
            ("datagrams_in", "Datagrams received (valid or not)", st.datagrams_in),
            ("received_bytes", "Bytes received", st.bytes_in),
            ("datagrams_out", "Datagrams sent", st.datagrams_out),
            ("sent_bytes", "Bytes sent", st.bytes_out),
            ("updates_written", "Updates applied as czar (own and forwarded writes)", st.updates_written),
            ("updates_applied", "Updates applied from other czars", st.updates_applied),
            ("snapshots_installed", "Shard snapshots installed", st.snapshots_installed),
            ("repairs_requested", "Repair requests sent", st.repairs_requested),
            ("writes_forwarded", "Writes forwarded to a czar", st.writes_forwarded),
            ("critical_committed", "Critical updates seen committed", st.critical_committed),
        ];
        for (name, help, v) in counters {
            Self::one(e, name, help, Value::Counter(v))?;
        }
        Self::family(
            e,
            "drops",
            "Datagrams or frames dropped, by cause",
            "reason",
            DropReason::ALL.iter().map(|r| (r.name(), Value::Counter(st.drops(*r)))),
        )?;

        Self::one(e, "joined", "1 while in the session", Value::Gauge(f64::from(u8::from(s.joined))))?;
        Self::one(e, "incarnation", "Our incarnation number", Value::Gauge(f64::from(s.incarnation)))?;
        Self::one(e, "local_health", "Local-health penalty (0 is healthy)", Value::Gauge(f64::from(s.local_health)))?;
        let states = ["alive", "suspected", "left", "unreachable"];
        let counts: Vec<(&str, Value)> = states
            .iter()
            .map(|state| (*state, Value::Gauge(s.members.iter().filter(|m| m.state == *state).count() as f64)))
            .collect();
        Self::family(e, "members", "Member records by state, ourselves included", "state", counts)?;
        Self::one(e, "shards", "Declared shards", Value::Gauge(s.shards.len() as f64))?;
        let mine = s.shards.iter().filter(|sh| sh.czar == Some(s.id)).count();
        Self::one(e, "shards_owned", "Shards this peer is czar of", Value::Gauge(mine as f64))?;

        let names: Vec<&str> = s.shards.iter().map(|sh| sh.name.as_str()).collect();
        let per_shard = |f: &dyn Fn(&anarchy_proto::ShardView) -> f64| -> Vec<(&str, Value)> {
            names.iter().zip(&s.shards).map(|(n, sh)| (*n, Value::Gauge(f(sh)))).collect()
        };
        Self::family(
            e,
            "shard_epoch",
            "Authority epoch of our version",
            "shard",
            per_shard(&|sh| f64::from(sh.version.epoch)),
        )?;
        Self::family(
            e,
            "shard_seq",
            "Sequence number of our version",
            "shard",
            per_shard(&|sh| sh.version.seq as f64),
        )?;
        Self::family(
            e,
            "shard_size_bytes",
            "Bytes of keys and values",
            "shard",
            per_shard(&|sh| sh.size_bytes as f64),
        )?;
        Self::family(
            e,
            "shard_updates_per_second",
            "Updates applied per second",
            "shard",
            per_shard(&|sh| sh.updates_per_sec),
        )?;

        let shorts: Vec<String> = s.members.iter().filter(|m| m.id != s.id).map(|m| m.id.short()).collect();
        let others = || s.members.iter().filter(|m| m.id != s.id).zip(shorts.iter());
        Self::family(
            e,
            "member_rtt_seconds",
            "Smoothed round-trip time to a member",
            "peer",
            others().filter_map(|(m, id)| m.rtt_ms.map(|rtt| (id.as_str(), Value::Gauge(rtt / 1000.0)))),
        )?;
        Self::family(
            e,
            "member_loss_ratio",
            "Smoothed share of unanswered probes to a member",
            "peer",
            others().filter_map(|(m, id)| m.loss.map(|loss| (id.as_str(), Value::Gauge(loss)))),
        )?;

        Self::histogram(e, "write_apply_seconds", "Forwarded write to applied by its czar", &s.forward_latency)?;
        Self::histogram(e, "commit_seconds", "Critical write to committed", &s.commit_latency)?;
        Self::histogram(e, "rtt_seconds", "Probe round-trip times", &s.rtt)?;
        Ok(())
    }
}
