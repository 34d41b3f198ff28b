//! Session: the handle a game holds. Reads go straight to the core under a
//! short lock; commands lock, call the core, then wake the driver so the
//! resulting datagrams leave at once. Never blocks on the network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anarchy_proto::{Checksum, Event, Instant, Peer, PeerId, ShardId, ShardInfo, Stats, Version, WriteOutcome};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::builder::SessionBuilder;
use crate::driver::{Command, Shared, Status};
use crate::error::SessionError;
use crate::events::EventStream;

/// One member of the session as this peer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its id.
    pub id: PeerId,
    /// The address it is reached at.
    pub addr: SocketAddr,
    /// `false` once it left or was timed out (a tombstone kept for a while).
    pub alive: bool,
}

/// A running peer: one UDP socket, one protocol core, one driver task.
///
/// Every method takes `&self`, so a session can be shared (e.g. in an `Arc`)
/// between a game loop and async tasks. Dropping the session makes its driver
/// announce a graceful leave and stop; [`Session::shutdown`] does the same and
/// waits for it.
pub struct Session {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<Status>,
    task: JoinHandle<()>,
    id: PeerId,
    local_addr: SocketAddr,
    advertised_addr: SocketAddr,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &self.id).field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

/// Writes made inside one [`Session::batch`]: applied under one lock and
/// flushed together, so they leave as one batch (one datagram per
/// destination when they fit).
pub struct Batch<'a> {
    peer: &'a mut Peer,
    now: Instant,
}

impl Batch<'_> {
    /// Sets `key` in `shard` to `value`. See [`Session::write`].
    pub fn write(&mut self, shard: &str, key: &[u8], value: &[u8]) -> Result<WriteOutcome, SessionError> {
        let id = declared(self.peer, shard)?;
        self.peer.write(self.now, id, key, value).map_err(|e| SessionError::from_write(e, shard))
    }

    /// Removes `key` from `shard`. See [`Session::delete`].
    pub fn delete(&mut self, shard: &str, key: &[u8]) -> Result<WriteOutcome, SessionError> {
        let id = declared(self.peer, shard)?;
        self.peer.delete(self.now, id, key).map_err(|e| SessionError::from_write(e, shard))
    }

    /// Sets a stream key of a shard this peer is czar of. See [`Session::write_stream`].
    pub fn write_stream(&mut self, shard: &str, key: &[u8], value: &[u8]) -> Result<(), SessionError> {
        let id = declared(self.peer, shard)?;
        self.peer.write_stream(self.now, id, key, value).map_err(|e| SessionError::from_write(e, shard))
    }

    /// A stream key with its priority. See [`Session::write_stream_with_priority`].
    pub fn write_stream_with_priority(
        &mut self,
        shard: &str,
        key: &[u8],
        value: &[u8],
        priority: u8,
    ) -> Result<(), SessionError> {
        let id = declared(self.peer, shard)?;
        self.peer
            .write_stream_with_priority(self.now, id, key, value, priority)
            .map_err(|e| SessionError::from_write(e, shard))
    }
}

/// The id of `shard`, if this peer knows it.
fn declared(peer: &Peer, shard: &str) -> Result<ShardId, SessionError> {
    let id = ShardId::from_name(shard);
    match peer.shard(id) {
        Some(_) => Ok(id),
        None => Err(SessionError::UnknownShard(shard.to_owned())),
    }
}

impl Session {
    /// Starts configuring a session.
    pub fn builder() -> SessionBuilder {
        SessionBuilder::default()
    }

    pub(crate) fn new(
        shared: Arc<Shared>,
        commands: mpsc::UnboundedSender<Command>,
        status: watch::Receiver<Status>,
        task: JoinHandle<()>,
        id: PeerId,
        local_addr: SocketAddr,
        advertised_addr: SocketAddr,
    ) -> Self {
        Session { shared, commands, status, task, id, local_addr, advertised_addr }
    }

    /// The state shared with the driver task (for sibling modules).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    // ----- identity ------------------------------------------------------------

    /// Our peer id.
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// The address the UDP socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address other members are told to send to.
    pub fn advertised_addr(&self) -> SocketAddr {
        self.advertised_addr
    }

    // ----- commands --------------------------------------------------------------

    /// Sets `key` in `shard` to `value`. As czar the write applies now
    /// ([`WriteOutcome::Applied`]); otherwise it is forwarded to the czar and
    /// an [`Event::WriteApplied`] or [`Event::WriteFailed`] follows.
    pub fn write(&self, shard: &str, key: &[u8], value: &[u8]) -> Result<WriteOutcome, SessionError> {
        self.batch(|b| b.write(shard, key, value))
    }

    /// Removes `key` from `shard` (same outcomes as [`Session::write`]).
    pub fn delete(&self, shard: &str, key: &[u8]) -> Result<WriteOutcome, SessionError> {
        self.batch(|b| b.delete(shard, key))
    }

    /// Sets a *stream* key of `shard`, which this peer must be czar of (its
    /// avatar, say): fast-changing state where only the newest value matters.
    /// Lost or superseded values are never resent, the newest is; on a slow
    /// link stream values go less often while reliable and critical updates
    /// keep their pace. Stream keys live beside the shard's versioned keys;
    /// read them with [`Session::stream_value`]. Values up to
    /// [`crate::MAX_STREAM_VALUE_BYTES`] bytes.
    pub fn write_stream(&self, shard: &str, key: &[u8], value: &[u8]) -> Result<(), SessionError> {
        self.batch(|b| b.write_stream(shard, key, value))
    }

    /// [`Session::write_stream`] with the key's priority (default
    /// [`crate::DEFAULT_STREAM_PRIORITY`], 15; higher matters more).
    /// When a member's link has room for only some of the changed stream
    /// keys, a priority accumulator picks which go: higher goes more often,
    /// and a key that waits gains until it goes, so none starves; every
    /// changed key still reaches each member at least every 500 ms. A game
    /// might give the entities near a player a higher priority than the
    /// scenery far away. The priority stays with the key until a write gives
    /// another.
    pub fn write_stream_with_priority(
        &self,
        shard: &str,
        key: &[u8],
        value: &[u8],
        priority: u8,
    ) -> Result<(), SessionError> {
        self.batch(|b| b.write_stream_with_priority(shard, key, value, priority))
    }

    /// The newest value of stream key `key` of `shard` this peer holds.
    pub fn stream_value(&self, shard: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.shared.peer().stream_value(ShardId::from_name(shard), key).map(<[u8]>::to_vec)
    }

    /// Runs `writes` under one lock and then wakes the driver once: everything
    /// written inside leaves together. Use it for a game frame's writes.
    /// Keep the closure short; the driver waits for it.
    pub fn batch<R>(&self, writes: impl FnOnce(&mut Batch<'_>) -> Result<R, SessionError>) -> Result<R, SessionError> {
        if self.shared.is_stopped() {
            return Err(SessionError::ShutDown);
        }
        let result = {
            let mut peer = self.shared.peer();
            let now = self.shared.clock.now();
            writes(&mut Batch { peer: &mut peer, now })
        };
        self.shared.wake.notify_one();
        result
    }

    /// Declares a shard (idempotent); the declaration spreads to every member.
    /// With `preferred`, that peer is czar whenever it is live.
    pub fn declare_shard(&self, name: &str, preferred: Option<PeerId>) -> Result<ShardId, SessionError> {
        if self.shared.is_stopped() {
            return Err(SessionError::ShutDown);
        }
        let result = {
            let mut peer = self.shared.peer();
            let now = self.shared.clock.now();
            peer.declare_shard(now, name, preferred)
        };
        self.shared.wake.notify_one();
        result.map_err(|reason| SessionError::BadShardName { name: name.to_owned(), reason })
    }

    /// Leaves the session gracefully: our shards are handed to their next
    /// czars and the leave is announced. Returns once that has been sent.
    /// Reads keep working; writes fail with [`SessionError::NotInSession`].
    pub async fn leave(&self) -> Result<(), SessionError> {
        let (reply, done) = oneshot::channel();
        self.commands.send(Command::Leave(reply)).map_err(|_| SessionError::ShutDown)?;
        done.await.map_err(|_| SessionError::ShutDown)
    }

    /// Leaves gracefully (if still in), flushes, and stops the driver task,
    /// waiting for it to finish.
    pub async fn shutdown(self) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Shutdown(reply)).is_ok() {
            let _ = done.await;
        }
        let _ = self.task.await;
    }

    /// Stops the driver at once, announcing nothing: to the others this peer
    /// simply goes silent, as if it crashed. For failure tests.
    pub fn abort(self) {
        self.task.abort();
        self.shared.stopped.store(true, std::sync::atomic::Ordering::Release);
    }

    // ----- reads -----------------------------------------------------------------

    /// A key's value in `shard`, if set (and the shard known).
    pub fn get(&self, shard: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.shared.peer().get(ShardId::from_name(shard), key).map(<[u8]>::to_vec)
    }

    /// Which shard holds `key` of the declared shard `shard` now: the shard
    /// itself, or, once it split under load, the child that holds the key
    /// (children are named `shard/0`, `shard/1`, `shard/0/1`, ...). Reads and
    /// writes through the declared name always reach it; this tells the game
    /// where the key lives (whose czar applies it). `None` for an unknown shard.
    pub fn shard_of(&self, shard: &str, key: &[u8]) -> Option<ShardInfo> {
        let peer = self.shared.peer();
        let id = peer.shard_of(ShardId::from_name(shard), key)?;
        peer.shard(id).cloned()
    }

    /// The czar this peer follows for `shard`.
    pub fn czar_of(&self, shard: &str) -> Option<PeerId> {
        let peer = self.shared.peer();
        peer.czar_of(shard_id(&peer, shard))
    }

    /// The ranked backups of `shard` in our live view, strongest first.
    pub fn backups_of(&self, shard: &str) -> Vec<PeerId> {
        let peer = self.shared.peer();
        peer.backups_of(shard_id(&peer, shard))
    }

    /// `shard`'s content checksum here.
    pub fn shard_checksum(&self, shard: &str) -> Option<Checksum> {
        let peer = self.shared.peer();
        peer.checksum_of(shard_id(&peer, shard))
    }

    /// `shard`'s version here.
    pub fn shard_version(&self, shard: &str) -> Option<Version> {
        let peer = self.shared.peer();
        peer.version_of(shard_id(&peer, shard))
    }

    /// Every shard declared in the session that this peer knows, in id order.
    pub fn shards(&self) -> Vec<ShardInfo> {
        self.shared.peer().shards().cloned().collect()
    }

    /// Every member record we hold (departed ones included, with `alive == false`), in id order.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.shared.peer().members().map(|m| MemberInfo { id: m.id, addr: m.addr, alive: m.is_alive() }).collect()
    }

    /// Live members, ourselves included.
    pub fn live_member_count(&self) -> usize {
        self.shared.peer().live_members().count()
    }

    /// Whether we are in the session (admitted and not left).
    pub fn is_joined(&self) -> bool {
        self.shared.peer().is_joined()
    }

    /// Forwarded writes still waiting for their czars.
    pub fn pending_writes(&self) -> usize {
        self.shared.peer().pending_writes()
    }

    /// The core's counters (datagrams, bytes, updates, drops by reason).
    pub fn stats(&self) -> Stats {
        self.shared.peer().stats().clone()
    }

    // ----- events ----------------------------------------------------------------

    /// The next event; `None` once the session has shut down and every event
    /// was taken.
    pub async fn next_event(&self) -> Option<Event> {
        std::future::poll_fn(|cx| self.shared.event_receiver().poll_recv(cx)).await
    }

    /// Every event queued right now, without waiting (for game loops that
    /// are not async).
    pub fn poll_events(&self) -> Vec<Event> {
        let mut receiver = self.shared.event_receiver();
        let mut events = Vec::new();
        while let Ok(event) = receiver.try_recv() {
            events.push(event);
        }
        events
    }

    /// The events as a [`futures_core::Stream`].
    pub fn events(&self) -> EventStream {
        EventStream { shared: self.shared.clone() }
    }

    // ----- waits -----------------------------------------------------------------

    /// Waits until we are admitted to the session.
    pub async fn wait_joined(&self, timeout: Duration) -> Result<(), SessionError> {
        self.wait_status(timeout, |s| s.joined).await
    }

    /// Waits until we are in the session and see at least `count` live
    /// members (ourselves included).
    pub async fn wait_for_members(&self, count: usize, timeout: Duration) -> Result<(), SessionError> {
        self.wait_status(timeout, |s| s.joined && s.live_members >= count).await
    }

    async fn wait_status(&self, timeout: Duration, condition: impl Fn(&Status) -> bool) -> Result<(), SessionError> {
        let mut status = self.status.clone();
        let outcome = tokio::time::timeout(timeout, status.wait_for(|s| condition(s))).await.map(|r| r.is_ok());
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err(SessionError::ShutDown),
            Err(_) => Err(SessionError::Timeout(timeout)),
        }
    }
}

/// The id of the shard named `name`: a declared shard, or a child a split
/// made (`world/0`, ...), which is not derived from its name.
fn shard_id(peer: &Peer, name: &str) -> ShardId {
    peer.shards().find(|s| s.name == name).map_or_else(|| ShardId::from_name(name), |s| s.id)
}
