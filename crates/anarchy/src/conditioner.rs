//! Network conditioner: makes a session's own outgoing traffic suffer
//! latency, jitter, loss and duplication, so a bad network can be tried on
//! one machine. Owns the spec parser, the seeded per-datagram decisions and
//! the delay line that sends datagrams when they are due. A development
//! tool: it never touches incoming traffic or the protocol.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Datagrams held in the delay line at once; beyond it they are dropped, as
/// a router's full queue would.
pub const MAX_DELAYED_DATAGRAMS: usize = 65_536;
/// Largest latency or jitter a spec may ask for.
pub const MAX_DELAY: Duration = Duration::from_secs(10);

/// What to do to outgoing datagrams. Parse one from a spec such as
/// `"latency=40ms,jitter=10ms,loss=2%,dup=1%,seed=7"` (every field optional).
///
/// Each datagram is lost with probability `loss`; a kept one is sent twice
/// with probability `duplicate`; every copy leaves after `latency` plus a
/// uniform offset in `[-jitter, +jitter]` (never below zero), so jitter can
/// reorder datagrams, as on a real network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conditioner {
    /// Mean one-way delay added.
    pub latency: Duration,
    /// Largest deviation from `latency`, either way.
    pub jitter: Duration,
    /// Probability (0..=1) that a datagram is dropped.
    pub loss: f64,
    /// Probability (0..=1) that a kept datagram is sent twice.
    pub duplicate: f64,
    /// Seed of the decisions: the same seed and traffic give the same fates.
    pub seed: u64,
}

impl Default for Conditioner {
    /// A conditioner that changes nothing (seed 0).
    fn default() -> Self {
        Conditioner { latency: Duration::ZERO, jitter: Duration::ZERO, loss: 0.0, duplicate: 0.0, seed: 0 }
    }
}

/// Why a conditioner spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionerError {
    /// A part without `=`.
    #[error("`{0}` is not `name=value` (expected e.g. latency=40ms,jitter=10ms,loss=2%,dup=1%)")]
    NotAPair(String),
    /// A name that is not latency, jitter, loss, dup or seed.
    #[error("unknown setting `{0}` (known: latency, jitter, loss, dup, seed)")]
    UnknownSetting(String),
    /// A bad duration.
    #[error("`{name}={value}`: expected a duration such as 40ms, 1.5s or 500us, at most 10s")]
    BadDuration {
        /// The setting.
        name: String,
        /// What was given.
        value: String,
    },
    /// A bad probability.
    #[error("`{name}={value}`: expected a percentage such as 2% or a fraction such as 0.02, between 0 and 100%")]
    BadProbability {
        /// The setting.
        name: String,
        /// What was given.
        value: String,
    },
    /// A bad seed.
    #[error("`seed={0}`: expected an unsigned integer")]
    BadSeed(String),
    /// A setting given twice.
    #[error("`{0}` is given twice")]
    Repeated(String),
}

impl FromStr for Conditioner {
    type Err = ConditionerError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut c = Conditioner::default();
        let mut seen: Vec<&str> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').ok_or_else(|| ConditionerError::NotAPair(part.to_owned()))?;
            let (name, value) = (name.trim(), value.trim());
            let canonical = match name {
                "latency" | "delay" => "latency",
                "jitter" => "jitter",
                "loss" => "loss",
                "dup" | "duplicate" => "dup",
                "seed" => "seed",
                other => return Err(ConditionerError::UnknownSetting(other.to_owned())),
            };
            if seen.contains(&canonical) {
                return Err(ConditionerError::Repeated(canonical.to_owned()));
            }
            seen.push(canonical);
            let bad_duration = || ConditionerError::BadDuration { name: name.to_owned(), value: value.to_owned() };
            let bad_probability =
                || ConditionerError::BadProbability { name: name.to_owned(), value: value.to_owned() };
            match canonical {
                "latency" => c.latency = parse_duration(value).ok_or_else(bad_duration)?,
                "jitter" => c.jitter = parse_duration(value).ok_or_else(bad_duration)?,
                "loss" => c.loss = parse_probability(value).ok_or_else(bad_probability)?,
                "dup" => c.duplicate = parse_probability(value).ok_or_else(bad_probability)?,
                _ => c.seed = value.parse().map_err(|_| ConditionerError::BadSeed(value.to_owned()))?,
            }
        }
        Ok(c)
    }
}

impl fmt::Display for Conditioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "latency={}us,jitter={}us,loss={}%,dup={}%,seed={}",
            self.latency.as_micros(),
            self.jitter.as_micros(),
            self.loss * 100.0,
            self.duplicate * 100.0,
            self.seed
        )
    }
}

/// `40ms`, `1.5s`, `500us`, `0`; at most [`MAX_DELAY`].
fn parse_duration(s: &str) -> Option<Duration> {
    let (number, unit_secs) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("us").or_else(|| s.strip_suffix("µs")) {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if s == "0" {
        ("0", 0.0)
    } else {
        return None;
    };
    let value: f64 = number.trim().parse().ok()?;
    let secs = value * unit_secs;
    (secs.is_finite() && secs >= 0.0 && secs <= MAX_DELAY.as_secs_f64()).then(|| Duration::from_secs_f64(secs))
}

/// `2%` or `0.02`, within 0..=1.
fn parse_probability(s: &str) -> Option<f64> {
    let p = match s.strip_suffix('%') {
        Some(n) => n.trim().parse::<f64>().ok()? / 100.0,
        None => s.parse::<f64>().ok()?,
    };
    (p.is_finite() && (0.0..=1.0).contains(&p)).then_some(p)
}

/// The per-datagram decisions of a [`Conditioner`], from its seed. No clock,
/// no IO: the same seed gives the same fates.
#[derive(Debug, Clone)]
pub struct Fates {
    conditioner: Conditioner,
    rng: ChaCha8Rng,
}

impl Fates {
    /// Decisions for `conditioner`, seeded with its seed.
    pub fn new(conditioner: Conditioner) -> Self {
        Fates { conditioner, rng: ChaCha8Rng::seed_from_u64(conditioner.seed) }
    }

    /// The delays after which copies of the next datagram leave: none if it
    /// is lost, two if it is duplicated.
    pub fn decide(&mut self) -> Vec<Duration> {
        let c = self.conditioner;
        if c.loss > 0.0 && self.rng.gen_bool(c.loss) {
            return Vec::new();
        }
        let copies = if c.duplicate > 0.0 && self.rng.gen_bool(c.duplicate) { 2 } else { 1 };
        (0..copies).map(|_| self.delay()).collect()
    }

    fn delay(&mut self) -> Duration {
        let c = self.conditioner;
        if c.jitter.is_zero() {
            return c.latency;
        }
        let jitter = c.jitter.as_secs_f64();
        let offset = self.rng.gen_range(-jitter..=jitter);
        Duration::from_secs_f64((c.latency.as_secs_f64() + offset).max(0.0))
    }
}

/// One datagram waiting in the delay line.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: Instant,
    /// Breaks ties in send order, so equal delays keep their order.
    order: u64,
    to: SocketAddr,
    payload: Vec<u8>,
}

/// The sending side of a conditioned socket: decides each datagram's fate
/// and hands delayed copies to a task that sends them when due.
#[derive(Debug)]
pub struct ConditionedSender {
    fates: Fates,
    socket: std::sync::Arc<UdpSocket>,
    delayed: mpsc::UnboundedSender<Due>,
    order: u64,
}

impl ConditionedSender {
    /// Starts the delay line for datagrams sent from `socket`, on the current
    /// tokio runtime. The line stops once this sender is dropped and every
    /// delayed datagram has left.
    pub fn start(conditioner: Conditioner, socket: std::sync::Arc<UdpSocket>) -> Self {
        let (delayed, queue) = mpsc::unbounded_channel();
        tokio::spawn(delay_line(socket.clone(), queue));
        ConditionedSender { fates: Fates::new(conditioner), socket, delayed, order: 0 }
    }

    /// Sends `payload` to `to`, subject to the conditioner. Copies with no
    /// delay leave now; the others leave from the delay line.
    pub async fn send_to(&mut self, payload: &[u8], to: SocketAddr) {
        let now = Instant::now();
        for delay in self.fates.decide() {
            if delay.is_zero() {
                if let Err(e) = self.socket.send_to(payload, to).await {
                    tracing::debug!(error = %e, %to, "udp send failed");
                }
                continue;
            }
            self.order += 1;
            let due = Due { at: now + delay, order: self.order, to, payload: payload.to_vec() };
            // The delay line only stops after this sender is dropped.
            let _ = self.delayed.send(due);
        }
    }
}

/// Splits `socket` into the driver's receiving socket and a conditioned
/// sender over a second handle to the same OS socket.
pub(crate) fn attach(conditioner: Conditioner, socket: UdpSocket) -> std::io::Result<(UdpSocket, ConditionedSender)> {
    let std_socket = socket.into_std()?;
    let sending = UdpSocket::from_std(std_socket.try_clone()?)?;
    let receiving = UdpSocket::from_std(std_socket)?;
    Ok((receiving, ConditionedSender::start(conditioner, std::sync::Arc::new(sending))))
}

/// Sends each queued datagram when it is due, earliest first.
async fn delay_line(socket: std::sync::Arc<UdpSocket>, mut queue: mpsc::UnboundedReceiver<Due>) {
    let mut waiting: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
    let mut open = true;
    loop {
        if !open && waiting.is_empty() {
            return;
        }
        let next_at = waiting.peek().map(|Reverse(d)| d.at);
        tokio::select! {
            received = queue.recv(), if open => match received {
                Some(due) if waiting.len() < MAX_DELAYED_DATAGRAMS => waiting.push(Reverse(due)),
                Some(due) => tracing::debug!(to = %due.to, "conditioner delay line full; datagram dropped"),
                None => open = false,
            },
            () = sleep_until(next_at) => {
                let now = Instant::now();
                while waiting.peek().is_some_and(|Reverse(d)| d.at <= now) {
                    let Some(Reverse(due)) = waiting.pop() else { break };
                    if let Err(e) = socket.send_to(&due.payload, due.to).await {
                        tracing::debug!(error = %e, to = %due.to, "udp send failed");
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_spec_parses() {
        let c: Conditioner = "latency=40ms, jitter=10ms,loss=2%,dup=1%,seed=9".parse().unwrap();
        assert_eq!(c.latency, Duration::from_millis(40));
        assert_eq!(c.jitter, Duration::from_millis(10));
        assert!((c.loss - 0.02).abs() < 1e-12);
        assert!((c.duplicate - 0.01).abs() < 1e-12);
        assert_eq!(c.seed, 9);
        let c: Conditioner = "delay=1.5s,loss=0.25,jitter=500us".parse().unwrap();
        assert_eq!(c.latency, Duration::from_millis(1500));
        assert_eq!(c.jitter, Duration::from_micros(500));
        assert!((c.loss - 0.25).abs() < 1e-12);
        assert_eq!("".parse::<Conditioner>().unwrap(), Conditioner::default());
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let err = |s: &str| s.parse::<Conditioner>().unwrap_err();
        assert!(matches!(err("latency"), ConditionerError::NotAPair(_)));
        assert!(matches!(err("lag=4ms"), ConditionerError::UnknownSetting(n) if n == "lag"));
        assert!(matches!(err("latency=40"), ConditionerError::BadDuration { .. }));
        assert!(matches!(err("latency=11s"), ConditionerError::BadDuration { .. }));
        assert!(matches!(err("loss=120%"), ConditionerError::BadProbability { .. }));
        assert!(matches!(err("dup=-1%"), ConditionerError::BadProbability { .. }));
        assert!(matches!(err("seed=x"), ConditionerError::BadSeed(_)));
        assert!(matches!(err("loss=1%,loss=2%"), ConditionerError::Repeated(_)));
        assert!(err("latency=40").to_string().contains("40ms"), "the message shows a valid example");
    }

    #[test]
    fn fates_follow_the_asked_rates_and_bounds() {
        let c: Conditioner = "latency=40ms,jitter=10ms,loss=2%,dup=1%,seed=3".parse().unwrap();
        let mut fates = Fates::new(c);
        let (mut lost, mut dup, mut sum, mut copies) = (0, 0, Duration::ZERO, 0u32);
        let n = 100_000;
        for _ in 0..n {
            let f = fates.decide();
            match f.len() {
                0 => lost += 1,
                2 => dup += 1,
                _ => {}
            }
            for d in f {
                assert!(d >= Duration::from_millis(30) && d <= Duration::from_millis(50), "{d:?}");
                sum += d;
                copies += 1;
            }
        }
        let loss = f64::from(lost) / f64::from(n);
        let dup = f64::from(dup) / f64::from(n);
        assert!((loss - 0.02).abs() < 0.003, "loss {loss}");
        assert!((dup - 0.01).abs() < 0.003, "dup {dup}");
        let mean = sum / copies;
        assert!(mean > Duration::from_micros(39_500) && mean < Duration::from_micros(40_500), "{mean:?}");
        let mut again = Fates::new(c);
        let mut first = Fates::new(c);
        assert!((0..1000).all(|_| again.decide() == first.decide()), "same seed, same fates");
    }
}
