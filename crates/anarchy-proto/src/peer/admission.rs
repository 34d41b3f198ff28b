//! Admission: the gate every datagram passes before the protocol sees it, and
//! the seal every datagram gets on its way out.
//!
//! In: the source's rate limit and block (`limits`), then the seal (`seal`:
//! tag, replay window), then decoding; whatever fails is counted and dropped
//! with no other work, and invalid data earns its source a strike. Out: every
//! packed plain datagram is sealed under our boot and next counter. Owns no
//! protocol decision.

use std::net::SocketAddr;

use crate::event::Event;
use crate::seal::{Opened, SealError, Sealer};
use crate::time::Instant;
use crate::wire::{self, Datagram};

use super::Peer;

impl Peer {
    /// Passes `bytes` from `from` through the limits, the seal and the
    /// decoder. `None`: dropped and counted, nothing else to do.
    pub(super) fn admit(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> Option<(Opened, Datagram)> {
        if let Err(reason) = self.limits.admit(now, from) {
            self.stats.drop(reason);
            return None;
        }
        let opened = match self.opener.open(bytes) {
            Ok(opened) => opened,
            Err(e) => {
                self.stats.drop(e.into());
                // Networks duplicate, so a replay earns no strike; and anyone can
                // forge a member's source address, so a bad tag from one does not either.
                let member_addr = self.members.others().any(|m| m.addr == from);
                if e != SealError::Replay && !member_addr {
                    self.strike(now, from);
                }
                return None;
            }
        };
        match wire::decode_datagram(&opened.plain) {
            Ok(datagram) => Some((opened, datagram)),
            Err(e) => {
                // Authenticated garbage: only a holder of the secret can send it.
                self.stats.drop(e.into());
                self.strike(now, from);
                None
            }
        }
    }

    /// One invalid datagram from `from`; reports the block it may cause.
    fn strike(&mut self, now: Instant, from: SocketAddr) {
        if self.limits.strike(now, from) {
            self.push_event(Event::SourceBlocked { addr: from, duration: self.config.source_block_duration });
        }
    }

    /// Seals a packed plain datagram (header + frames) for the network.
    pub(super) fn seal(&mut self, plain: &[u8]) -> Vec<u8> {
        debug_assert!(plain.len() <= wire::MAX_PLAIN_DATAGRAM_BYTES, "plain datagram of {} bytes", plain.len());
        self.sealer.seal(plain)
    }

    /// Replaces the boot drawn from the seed. Call it before anything is sent:
    /// a driver that lets its user fix the seed (for replayable runs) draws the
    /// boot from OS entropy here, so two processes started with one seed and
    /// one key never seal under the same key and nonce.
    pub fn set_boot(&mut self, boot: u32) {
        debug_assert_eq!(self.sealer.sealed(), 0, "the boot changes before the first datagram");
        self.sealer = Sealer::new(&self.config.session_secret, &self.id, boot);
    }

    /// Our boot: random per process life, part of our datagram key.
    pub fn boot(&self) -> u32 {
        self.sealer.boot()
    }
}
