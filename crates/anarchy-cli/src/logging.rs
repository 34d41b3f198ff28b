//! Logging: installs the `tracing` subscriber (to stderr, so stdout stays
//! machine-readable). An explicit level wins over `RUST_LOG`, which wins
//! over the subcommand's default. While a dashboard owns the terminal, log
//! lines are held back and printed to stderr once it is restored, so they
//! never corrupt the screen.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// Bytes of log output held while a dashboard is on screen; older lines are
/// dropped past this (a log storm must not grow memory without bound).
const MAX_HELD_LOG_BYTES: usize = 1 << 20;

static HOLDING: AtomicBool = AtomicBool::new(false);
static HELD: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Installs the global subscriber. `level` is a filter such as `info` or
/// `anarchy=debug`; a bad filter falls back to `default` with a warning.
pub fn init(level: Option<&str>, default: &str) {
    let from_env = std::env::var("RUST_LOG").ok();
    let wanted = level.map(str::to_owned).or(from_env).unwrap_or_else(|| default.to_owned());
    let (filter, bad) = match EnvFilter::try_new(&wanted) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new(default), Some(e)),
    };
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| LogWriter).try_init();
    if let Some(e) = bad {
        tracing::warn!(filter = %wanted, error = %e, "bad log filter; using {default}");
    }
}

/// Holds log output back (`true`, while a dashboard is on screen) or writes
/// what was held to stderr and goes back to writing directly (`false`).
pub fn hold_stderr(hold: bool) {
    HOLDING.store(hold, Ordering::Release);
    if !hold {
        let held = std::mem::take(&mut *HELD.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = std::io::stderr().write_all(&held);
    }
}

/// Writes to stderr, or to the held buffer while a dashboard is on screen.
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !HOLDING.load(Ordering::Acquire) {
            return std::io::stderr().write(buf);
        }
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        if held.len() + buf.len() > MAX_HELD_LOG_BYTES {
            let excess = (held.len() + buf.len()).saturating_sub(MAX_HELD_LOG_BYTES).min(held.len());
            held.drain(..excess);
        }
        held.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
