//! Driver: the one task that owns a session's UDP socket and moves the core.
//!
//! It feeds the core datagrams, deadlines and commands, and after every input
//! drains `poll_transmit` (to the socket) and `poll_event` (to the game's
//! channel). It never makes a protocol decision and never holds the peer lock
//! across an `.await`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use anarchy_proto::{Event, Peer, Transmit};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::clock::Clock;

/// Bytes read per datagram. Larger than the protocol maximum (1200) on
/// purpose: an oversized datagram reaches the core whole enough to be counted
/// as oversized instead of being silently truncated into something plausible.
pub(crate) const RECV_BUFFER_BYTES: usize = 2048;

/// Datagrams handled per wake-up before transmits are flushed, so a flood of
/// input cannot delay our own output indefinitely.
const MAX_DATAGRAMS_PER_WAKE: usize = 64;

/// State shared between the driver task and every `Session` handle.
pub(crate) struct Shared {
    /// The core. Locked for short, non-async critical sections only.
    peer: Mutex<Peer>,
    /// This session's time origin.
    pub(crate) clock: Clock,
    /// Wakes the driver after a command changed the core, so output leaves now.
    pub(crate) wake: Notify,
    /// Events for the game.
    pub(crate) events: Mutex<mpsc::UnboundedReceiver<Event>>,
    /// Set once the driver task has stopped.
    pub(crate) stopped: AtomicBool,
    /// Critical writes whose handles wait for a decision.
    pub(crate) critical_waiters: Mutex<crate::critical::Waiters>,
}

impl Shared {
    pub(crate) fn new(peer: Peer, clock: Clock, events: mpsc::UnboundedReceiver<Event>) -> Self {
        Shared {
            peer: Mutex::new(peer),
            clock,
            wake: Notify::new(),
            events: Mutex::new(events),
            stopped: AtomicBool::new(false),
            critical_waiters: Mutex::new(crate::critical::Waiters::default()),
        }
    }

    /// Locks the core. A poisoned lock (a panic elsewhere while holding it)
    /// still yields the peer: its state is whatever the core left, and the
    /// core never leaves itself half-updated across a returned call.
    pub(crate) fn peer(&self) -> MutexGuard<'_, Peer> {
        self.peer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks the event receiver (see [`Shared::peer`] on poisoning).
    pub(crate) fn event_receiver(&self) -> MutexGuard<'_, mpsc::UnboundedReceiver<Event>> {
        self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

/// What the session handle asks of the driver beyond a plain wake-up.
#[derive(Debug)]
pub(crate) enum Command {
    /// Leave gracefully, flush, reply, keep running.
    Leave(oneshot::Sender<()>),
    /// Leave gracefully if still in, flush, reply, stop.
    Shutdown(oneshot::Sender<()>),
}

/// Membership state published after every drain, for waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Status {
    /// In the session.
    pub(crate) joined: bool,
    /// Live members, ourselves included.
    pub(crate) live_members: usize,
}

/// The driver task's state.
pub(crate) struct Driver {
    pub(crate) shared: Arc<Shared>,
    pub(crate) socket: UdpSocket,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    pub(crate) commands: mpsc::UnboundedReceiver<Command>,
    pub(crate) status: watch::Sender<Status>,
    /// Impairs our outgoing datagrams, when configured (a development tool).
    pub(crate) conditioner: Option<crate::conditioner::ConditionedSender>,
}

impl Driver {
    /// Runs until shut down (by command or by every session handle dropping).
    pub(crate) async fn run(mut self) {
        let mut buf = vec![0u8; RECV_BUFFER_BYTES];
        let mut outgoing: Vec<Transmit> = Vec::new();
        loop {
            self.flush(&mut outgoing).await;
            let deadline = self.shared.peer().poll_timeout().map(|at| self.shared.clock.to_tokio(at));
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Leave(reply)) => {
                        self.leave(&mut outgoing).await;
                        let _ = reply.send(());
                    }
                    Some(Command::Shutdown(reply)) => {
                        self.leave(&mut outgoing).await;
                        self.stop();
                        let _ = reply.send(());
                        return;
                    }
                    None => {
                        // Every handle is gone: say goodbye rather than vanish.
                        self.leave(&mut outgoing).await;
                        self.stop();
                        return;
                    }
                },
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.receive(&mut buf, len, from),
                    // ICMP errors (e.g. a departed peer's port) surface here; they say nothing
                    // the protocol does not learn from silence, so they are not fatal.
                    Err(e) => tracing::trace!(error = %e, "udp receive error"),
                },
                () = self.shared.wake.notified() => {}
                () = sleep_until(deadline) => {
                    let mut peer = self.shared.peer();
                    let now = self.shared.clock.now();
                    peer.handle_timeout(now);
                }
            }
        }
    }

    /// Hands one received datagram, then any others already queued, to the core.
    fn receive(&self, buf: &mut [u8], len: usize, from: SocketAddr) {
        let mut peer = self.shared.peer();
        let now = self.shared.clock.now();
        peer.handle_datagram(now, from, &buf[..len]);
        for _ in 1..MAX_DATAGRAMS_PER_WAKE {
            match self.socket.try_recv_from(buf) {
                Ok((len, from)) => {
                    let now = self.shared.clock.now();
                    peer.handle_datagram(now, from, &buf[..len]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => tracing::trace!(error = %e, "udp receive error"),
            }
        }
    }

    /// Leaves the session (if in it) and sends the announcement.
    async fn leave(&mut self, outgoing: &mut Vec<Transmit>) {
        {
            let mut peer = self.shared.peer();
            if !peer.has_left() {
                let now = self.shared.clock.now();
                peer.leave(now);
            }
        }
        self.flush(outgoing).await;
    }

    fn stop(&self) {
        self.shared.stopped.store(true, Ordering::Release);
        self.status.send_if_modified(|s| {
            let changed = s.joined;
            s.joined = false;
            changed
        });
    }

    /// Drains the core's transmits and events, then sends the transmits.
    async fn flush(&mut self, outgoing: &mut Vec<Transmit>) {
        {
            let mut peer = self.shared.peer();
            while let Some(t) = peer.poll_transmit() {
                outgoing.push(t);
            }
            while let Some(event) = peer.poll_event() {
                crate::critical::resolve(&self.shared, &event);
                // The receiver lives in `Shared`, which outlives this task: cannot fail.
                let _ = self.events.send(event);
            }
            let status = Status { joined: peer.is_joined(), live_members: peer.live_members().count() };
            self.status.send_if_modified(|s| {
                let changed = *s != status;
                *s = status;
                changed
            });
        }
        for t in outgoing.drain(..) {
            if let Some(conditioner) = &mut self.conditioner {
                conditioner.send_to(&t.payload, t.destination).await;
                continue;
            }
            if let Err(e) = self.socket.send_to(&t.payload, t.destination).await {
                tracing::debug!(error = %e, to = %t.destination, "udp send failed");
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
