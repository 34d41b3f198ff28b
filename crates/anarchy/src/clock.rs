//! Clock: maps the driver's monotonic wall clock onto the core's
//! [`anarchy_proto::Instant`] (microseconds since this session started).
//! The only place in the driver that turns one kind of time into the other.

use std::time::Duration;

use anarchy_proto::Instant;

/// A session's time origin.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    /// A clock whose zero is now.
    pub(crate) fn start() -> Self {
        Clock { origin: tokio::time::Instant::now() }
    }

    /// The current protocol instant.
    pub(crate) fn now(&self) -> Instant {
        let elapsed = self.origin.elapsed();
        Instant::from_micros(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
    }

    /// The tokio instant at which the protocol instant `at` falls.
    pub(crate) fn to_tokio(self, at: Instant) -> tokio::time::Instant {
        // Deadlines far in the future (or saturated) are clamped: a year is never reached.
        const FAR_FUTURE: Duration = Duration::from_secs(365 * 24 * 3600);
        let offset = Duration::from_micros(at.as_micros()).min(FAR_FUTURE);
        self.origin + offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_instants_map_back_onto_the_origin() {
        let clock = Clock::start();
        assert_eq!(clock.to_tokio(Instant::ZERO), clock.origin);
        assert_eq!(clock.to_tokio(Instant::from_millis(5)) - clock.origin, Duration::from_millis(5));
        assert!(clock.to_tokio(Instant::from_micros(u64::MAX)) > clock.origin);
        assert!(clock.now() >= Instant::ZERO);
    }
}
