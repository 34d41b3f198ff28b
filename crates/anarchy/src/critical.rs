//! Critical writes from the game's side: `Session::write_critical` returns a
//! [`CriticalHandle`] that resolves once the core reports the decision, and
//! `Session::set_validator` installs the game's rule every member runs.

use std::collections::BTreeMap;

use anarchy_proto::{Event, Proposal, Version, WriteFailure, WriteId};
use tokio::sync::oneshot;

use crate::driver::Shared;
use crate::error::SessionError;
use crate::session::Session;

/// How a critical write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CriticalOutcome {
    /// A majority accepted it; applied at this version and never lost after.
    Committed(Version),
    /// The members' validators rejected it, with this reason.
    Rejected(String),
    /// No decision in time (e.g. no majority reachable).
    TimedOut,
    /// We left the session, or it shut down, before a decision.
    Abandoned,
}

/// Handles waiting for decisions, by write id.
#[derive(Debug, Default)]
pub(crate) struct Waiters(BTreeMap<WriteId, oneshot::Sender<CriticalOutcome>>);

/// Completes the handle an event decides, if any (called by the driver for
/// every event before it goes to the game).
pub(crate) fn resolve(shared: &Shared, event: &Event) {
    let (write, outcome) = match event {
        Event::Committed { write: Some(w), version, .. } => (*w, CriticalOutcome::Committed(*version)),
        Event::Rejected { write, reason, .. } => (*write, CriticalOutcome::Rejected(reason.clone())),
        Event::WriteFailed { write, reason: WriteFailure::TimedOut, .. } => (*write, CriticalOutcome::TimedOut),
        Event::WriteFailed { write, reason: WriteFailure::Left, .. } => (*write, CriticalOutcome::Abandoned),
        _ => return,
    };
    let mut waiters = shared.critical_waiters.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(tx) = waiters.0.remove(&write) {
        let _ = tx.send(outcome);
    }
}

/// A critical write in flight. The decision also reaches every member as an
/// [`Event::Committed`] (and the writer as `Rejected` / `WriteFailed`).
#[derive(Debug)]
pub struct CriticalHandle {
    id: WriteId,
    decided: oneshot::Receiver<CriticalOutcome>,
}

impl CriticalHandle {
    /// The write's id, as events name it.
    pub fn id(&self) -> WriteId {
        self.id
    }

    /// Waits for the decision.
    pub async fn outcome(self) -> CriticalOutcome {
        self.decided.await.unwrap_or(CriticalOutcome::Abandoned)
    }

    /// The decision if it is in, without waiting.
    pub fn try_outcome(&mut self) -> Option<CriticalOutcome> {
        match self.decided.try_recv() {
            Ok(o) => Some(o),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(CriticalOutcome::Abandoned),
        }
    }
}

impl Session {
    /// Proposes a critical update (a kill, a trade, a score): it is applied
    /// only when a majority of the session accepts it, after every member ran
    /// its validator, and is never lost after that. `value: None` deletes.
    pub fn write_critical(
        &self,
        shard: &str,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<CriticalHandle, SessionError> {
        let shared = self.shared();
        if shared.is_stopped() {
            return Err(SessionError::ShutDown);
        }
        let (tx, rx) = oneshot::channel();
        let result = {
            let mut peer = shared.peer();
            let id = anarchy_proto::ShardId::from_name(shard);
            if peer.shard(id).is_none() {
                return Err(SessionError::UnknownShard(shard.to_owned()));
            }
            let now = shared.clock.now();
            let result = peer.write_critical(now, id, key, value);
            if let Ok(write) = result {
                // Registered under the core's lock: the driver cannot see the
                // decision before the waiter exists.
                shared.critical_waiters.lock().unwrap_or_else(|p| p.into_inner()).0.insert(write, tx);
            }
            result
        };
        shared.wake.notify_one();
        let id = result.map_err(|e| SessionError::from_write(e, shard))?;
        Ok(CriticalHandle { id, decided: rx })
    }

    /// Installs the game's rule for critical updates, run on every proposal
    /// this peer votes on: `Ok(())` accepts, `Err(reason)` rejects. Keep it
    /// quick and deterministic (same state, same answer on every peer).
    pub fn set_validator(
        &self,
        validator: impl FnMut(&Proposal<'_>) -> Result<(), String> + Send + 'static,
    ) -> Result<(), SessionError> {
        let shared = self.shared();
        if shared.is_stopped() {
            return Err(SessionError::ShutDown);
        }
        shared.peer().set_validator(Box::new(validator));
        Ok(())
    }
}
