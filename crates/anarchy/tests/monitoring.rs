//! The monitoring surface over real sockets on loopback: `/status` serves the
//! snapshot as JSON, `/metrics` is valid Prometheus text whose counters move
//! with traffic, the admin endpoint refuses public addresses unless asked,
//! and the network conditioner does what its spec says.
//! Every wait polls a condition against a generous deadline; no fixed sleeps.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anarchy::{AdminExposure, ConditionedSender, Conditioner, Fates, Session, StatusReport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How often waits re-check their condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Generous: loaded CI machines stall.
const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `condition` until it holds, panicking with `what` after [`DEADLINE`].
async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let give_up = tokio::time::Instant::now() + DEADLINE;
    while !condition().await {
        assert!(tokio::time::Instant::now() < give_up, "timed out waiting until {what}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A plain HTTP/1.1 GET: (status code, content type, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type:").map(|v| v.trim().to_owned()))
        .unwrap_or_default();
    (code, content_type, body.to_owned())
}

async fn start(i: u64, bootstrap: Option<SocketAddr>, conditioner: Option<Conditioner>) -> Session {
    let mut builder =
        Session::builder().bind("127.0.0.1:0".parse().unwrap()).seed(i).shard("world").own_shard(format!("avatar-{i}"));
    if let Some(addr) = bootstrap {
        builder = builder.join(addr);
    }
    if let Some(c) = conditioner {
        builder = builder.conditioner(c);
    }
    builder.start().await.expect("session starts")
}

/// Parses Prometheus text format 0.0.4 strictly enough to catch malformed
/// output: every sample is `name{labels} value`, every family has one
/// well-formed HELP and TYPE before its samples. Returns samples by
/// `name{labels}`.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let is_name = |s: &str| {
        !s.is_empty()
            && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, tail) = (parts.next().unwrap(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(is_name(name), "bad metric name in {line:?}");
            match kind {
                "HELP" => assert!(helps.insert(name.into(), tail.into()).is_none(), "second HELP: {line:?}"),
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&tail),
                        "bad TYPE: {line:?}"
                    );
                    assert!(types.insert(name.into(), tail.into()).is_none(), "second TYPE: {line:?}");
                }
                _ => panic!("unexpected comment {line:?}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let name = match series.split_once('{') {
            Some((name, labels)) => {
                let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                for pair in labels.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                    assert!(is_name(k), "bad label name in {line:?}");
                    assert!(v.len() >= 2 && v.starts_with('"') && v.ends_with('"'), "unquoted label in {line:?}");
                }
                name
            }
            None => series,
        };
        assert!(is_name(name), "bad sample name in {line:?}");
        let family = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|f| types.contains_key(*f)))
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line:?}");
        assert!(helps.contains_key(family), "sample without HELP: {line:?}");
        assert!(samples.insert(series.to_owned(), value).is_none(), "duplicate series {series}");
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_is_json_and_metrics_are_prometheus_text_that_moves_with_traffic() {
    let a = start(1, None, None).await;
    let b = start(2, Some(a.local_addr()), None).await;
    a.wait_for_members(2, DEADLINE).await.unwrap();
    b.wait_for_members(2, DEADLINE).await.unwrap();
    wait_until("a knows b's shard", || async { a.shards().iter().any(|s| s.name == "avatar-2") }).await;
    let admin = a.serve_admin("127.0.0.1:0".parse().unwrap(), AdminExposure::LoopbackOnly).await.unwrap();
    let addr = admin.local_addr();

    let (code, content_type, body) = get(addr, "/status").await;
    assert_eq!(code, 200);
    assert_eq!(content_type, "application/json");
    let status: StatusReport = serde_json::from_str(&body).expect("the status parses");
    assert_eq!(status.id, a.id().to_string());
    assert!(status.joined);
    assert_eq!(status.members.len(), 2, "{status:?}");
    assert!(status.members.iter().any(|m| m.is_self));
    let names: Vec<&str> = status.shards.iter().map(|s| s.name.as_str()).collect();
    for shard in ["world", "avatar-1", "avatar-2"] {
        assert!(names.contains(&shard), "{names:?}");
    }
    assert!(status.drops.contains_key("stale_epoch"), "every drop cause is listed");

    let (code, content_type, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let before = parse_prometheus(&body);
    for series in [
        "anarchy_datagrams_in_total",
        "anarchy_sent_bytes_total",
        "anarchy_updates_written_total",
        "anarchy_drops_total{reason=\"duplicate\"}",
        "anarchy_members{state=\"alive\"}",
        "anarchy_write_apply_seconds_count",
        "anarchy_rtt_seconds_bucket{le=\"+Inf\"}",
    ] {
        assert!(before.contains_key(series), "{series} missing from\n{body}");
    }
    assert_eq!(before["anarchy_members{state=\"alive\"}"], 2.0);

    for i in 0..20u8 {
        a.write("avatar-1", b"pos", &[i]).unwrap();
    }
    b.write("avatar-2", b"pos", b"x").unwrap();
    wait_until("a has applied b's write", || async { a.get("avatar-2", b"pos").is_some() }).await;
    let after = parse_prometheus(&get(addr, "/metrics").await.2);
    for counter in ["anarchy_updates_written_total", "anarchy_updates_applied_total", "anarchy_sent_bytes_total"] {
        assert!(after[counter] > before[counter], "{counter}: {} then {}", before[counter], after[counter]);
    }

    let (code, _, _) = get(addr, "/nope").await;
    assert_eq!(code, 404);
    drop(admin);
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn admin_endpoint_refuses_a_public_address_unless_asked() {
    let a = start(3, None, None).await;
    let err = a.serve_admin("0.0.0.0:0".parse().unwrap(), AdminExposure::LoopbackOnly).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("0.0.0.0"), "{err}");
    let public = a.serve_admin("0.0.0.0:0".parse().unwrap(), AdminExposure::Public).await.unwrap();
    assert!(public.local_addr().ip().is_unspecified());
    drop(public);
    a.shutdown().await;
}

/// The conditioner's decisions, 20 000 of them from a fixed seed: the loss,
/// duplication and delays match the spec. (Counted at the decision, not at a
/// receiving socket, whose kernel buffer may drop bursts on a loaded machine.)
#[test]
fn conditioner_decisions_match_the_spec() {
    const DATAGRAMS: usize = 20_000;
    let spec: Conditioner = "latency=30ms,jitter=10ms,loss=5%,dup=2%,seed=42".parse().unwrap();
    let mut fates = Fates::new(spec);
    let decisions: Vec<Vec<Duration>> = (0..DATAGRAMS).map(|_| fates.decide()).collect();
    let lost = decisions.iter().filter(|d| d.is_empty()).count();
    let dup = decisions.iter().filter(|d| d.len() > 1).count();
    let loss = lost as f64 / DATAGRAMS as f64;
    let dup = dup as f64 / (DATAGRAMS - lost) as f64;
    assert!((0.045..=0.055).contains(&loss), "loss {loss:.4}");
    assert!((0.015..=0.025).contains(&dup), "duplication {dup:.4}");
    let delays: Vec<Duration> = decisions.into_iter().flatten().collect();
    let min = *delays.iter().min().unwrap();
    let max = *delays.iter().max().unwrap();
    let mean = delays.iter().sum::<Duration>() / delays.len() as u32;
    eprintln!("conditioner decisions: loss {loss:.4}, duplication {dup:.4}, delay {min:?}..{max:?}, mean {mean:?}");
    assert!(min >= Duration::from_millis(20) && max <= Duration::from_millis(40), "delays {min:?}..{max:?}");
    assert!(mean >= Duration::from_millis(29) && mean <= Duration::from_millis(31), "mean delay {mean:?}");
}

/// Datagrams through a conditioned socket on loopback arrive late by the
/// configured latency, some reordered by the jitter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditioned_datagrams_arrive_late_and_reordered() {
    const DATAGRAMS: u32 = 300;
    let spec: Conditioner = "latency=30ms,jitter=10ms,loss=5%,dup=2%,seed=42".parse().unwrap();
    let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = receiver.local_addr().unwrap();
    let sender = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let mut conditioned = ConditionedSender::start(spec, sender);

    let collect = tokio::spawn(async move {
        let mut arrivals: Vec<(u32, tokio::time::Instant)> = Vec::new();
        let mut buf = [0u8; 64];
        // Stops once nothing has arrived for a while after the sender finished.
        while let Ok(Ok(len)) = tokio::time::timeout(Duration::from_secs(2), receiver.recv(&mut buf)).await {
            assert_eq!(len, 4);
            arrivals.push((u32::from_le_bytes(buf[..4].try_into().unwrap()), tokio::time::Instant::now()));
        }
        arrivals
    });
    let mut sent_at = Vec::with_capacity(DATAGRAMS as usize);
    for seq in 0..DATAGRAMS {
        sent_at.push(tokio::time::Instant::now());
        conditioned.send_to(&seq.to_le_bytes(), to).await;
        if seq % 10 == 9 {
            // Pace the sends so a loaded machine's receive buffer never overflows.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    drop(conditioned);
    let arrivals = collect.await.unwrap();
    let mut distinct: Vec<u32> = arrivals.iter().map(|(seq, _)| *seq).collect();
    distinct.sort_unstable();
    distinct.dedup();
    // The seeded decisions lose about 5%; a loaded machine may lose a few more.
    assert!(distinct.len() as f64 >= f64::from(DATAGRAMS) * 0.8, "only {} of {DATAGRAMS} arrived", distinct.len());
    let delays: Vec<Duration> = arrivals.iter().map(|(seq, at)| *at - sent_at[*seq as usize]).collect();
    let min = delays.iter().min().unwrap();
    // Nothing arrives before latency - jitter.
    assert!(*min >= Duration::from_millis(20), "min delay {min:?}");
    let reordered = arrivals.windows(2).filter(|w| w[1].0 < w[0].0).count();
    let mean = delays.iter().sum::<Duration>() / delays.len() as u32;
    eprintln!(
        "loopback: {} of {DATAGRAMS} arrived ({} copies), delay min {min:?} mean {mean:?}, {reordered} reordered",
        distinct.len(),
        arrivals.len()
    );
    assert!(reordered > 0, "20 ms of jitter reorders some datagrams");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conditioned_session_measures_the_added_latency() {
    let slow: Conditioner = "latency=40ms,seed=1".parse().unwrap();
    let a = start(4, None, Some(slow)).await;
    let b = start(5, Some(a.local_addr()), None).await;
    a.wait_for_members(2, DEADLINE).await.unwrap();
    b.wait_for_members(2, DEADLINE).await.unwrap();
    // a's pings wait 40 ms on the way out: its RTT to b is at least that.
    wait_until("a measured its RTT to b", || async {
        a.status().members.iter().any(|m| m.id == b.id() && m.rtt_ms.is_some())
    })
    .await;
    let rtt = a.status().members.iter().find(|m| m.id == b.id()).unwrap().rtt_ms.unwrap();
    assert!(rtt >= 40.0, "rtt {rtt} ms");
    b.shutdown().await;
    a.shutdown().await;
}
