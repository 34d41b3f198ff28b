//! Helpers shared by the real-UDP tests: every wait polls a condition against
//! a generous deadline; no fixed sleeps.

#![allow(dead_code)]

use std::time::Duration;

/// How often waits re-check their condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Generous: loaded CI machines stall.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `condition` until it holds, panicking with `what` after [`DEADLINE`].
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let give_up = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(tokio::time::Instant::now() < give_up, "timed out waiting until {what}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
