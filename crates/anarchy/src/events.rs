//! Events: the game's side of the driver's event channel, as an async
//! [`futures_core::Stream`]. Owns no state beyond a handle on the session's
//! shared receiver; every event is delivered to exactly one reader.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anarchy_proto::Event;

use crate::driver::Shared;

/// A stream of a session's [`Event`]s (from [`crate::Session::events`]).
///
/// All streams and [`crate::Session::next_event`] / [`crate::Session::poll_events`]
/// draw from one queue: each event goes to whichever reader takes it first.
/// The stream ends once the session has shut down and its queue is empty.
pub struct EventStream {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl futures_core::Stream for EventStream {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.shared.event_receiver().poll_recv(cx)
    }
}
