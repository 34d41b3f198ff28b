//! # anarchy-sim
//!
//! A deterministic discrete-event simulator for Anarchy: hundreds of
//! `anarchy-proto` peers over a simulated network (latency, jitter, loss,
//! bursts, duplication, reordering, uplink caps, partitions), with crashes,
//! restarts, stalls, clock offsets and drift, a game-like workload with churn,
//! and invariant checkers run continuously. One seed gives one run, byte for
//! byte: a failure is replayed from its seed.
//!
//! ```
//! use anarchy_sim::{Sim, SimConfig};
//! let cfg = SimConfig { peers: 4, shards: 2, seconds: 2.0, ..SimConfig::default() };
//! let outcome = Sim::new(cfg).run(|_, _| {});
//! assert!(outcome.converged && outcome.findings.is_empty());
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
pub mod cli;
pub mod hostile;
pub mod net;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod workload;

pub use check::{Checker, Findings, Violation};
pub use net::{JitterDist, LinkParams};
pub use report::Report;
pub use scenario::Scenario;
pub use sim::{Outcome, Sim, SimConfig, World};
