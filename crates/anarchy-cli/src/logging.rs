//! Logging: installs the `tracing` subscriber (to stderr, so stdout stays
//! machine-readable). An explicit level wins over `RUST_LOG`, which wins
//! over the subcommand's default.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `level` is a filter such as `info` or
/// `anarchy=debug`; a bad filter falls back to `default` with a warning.
pub fn init(level: Option<&str>, default: &str) {
    let from_env = std::env::var("RUST_LOG").ok();
    let wanted = level.map(str::to_owned).or(from_env).unwrap_or_else(|| default.to_owned());
    let (filter, bad) = match EnvFilter::try_new(&wanted) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new(default), Some(e)),
    };
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    if let Some(e) = bad {
        tracing::warn!(filter = %wanted, error = %e, "bad log filter; using {default}");
    }
}
