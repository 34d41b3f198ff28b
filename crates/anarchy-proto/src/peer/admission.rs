//! Admission: the gate every datagram passes before the protocol sees it, and
//! the seal every datagram gets on its way out.
//!
//! In: the source's rate limit and block (`limits`), then the seal (`seal`:
//! tag, replay window), then decoding; whatever fails is counted and dropped
//! with no other work, and invalid data earns its source a strike. Out: every
//! packed plain datagram is sealed under our boot and next counter. Also owns
//! address checks: a member's address moves only when the member proves the
//! new address with its key (`AddrCheck` / `AddrProof`).

use std::net::SocketAddr;

use rand::Rng;

use crate::event::Event;
use crate::identity::{PeerId, SIGNATURE_BYTES};
use crate::seal::{addr_proof_message, Opened, SealError, Sealer, SEALED_HEADER_BYTES, TAG_BYTES};
use crate::stats::DropReason;
use crate::time::Instant;
use crate::wire::{self, Datagram, Frame};

use super::Peer;

/// An address check in flight: we sent `nonce` to `addr`, where a datagram
/// of the member came from, and wait for its signed answer from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AddrCheck {
    addr: SocketAddr,
    nonce: u64,
    sent: Instant,
}

/// A sealed datagram carrying only an `AddrCheck`: we send one only in answer
/// to a datagram at least this large, so a check never amplifies.
const ADDR_CHECK_DATAGRAM_BYTES: usize = SEALED_HEADER_BYTES + 1 + 8 + TAG_BYTES;

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
        match crate::compress::decode_received(&opened.plain) {
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

    /// A live member's newest authenticated datagram came from `from`, not
    /// from its address: challenge `from` (at most once per heartbeat
    /// interval per member, and only if `arrived` bytes are no fewer than the
    /// challenge). Its address moves when the signed answer comes back.
    pub(super) fn check_address(&mut self, now: Instant, member: PeerId, from: SocketAddr, arrived: usize) {
        if arrived < ADDR_CHECK_DATAGRAM_BYTES {
            return;
        }
        if let Some(c) = self.addr_checks.get(&member) {
            if c.addr == from && now.saturating_duration_since(c.sent) < self.config.heartbeat_interval {
                return;
            }
        }
        // One check per live member at most.
        let members = &self.members;
        self.addr_checks.retain(|id, _| members.is_alive(id));
        let nonce = self.rng.gen();
        self.addr_checks.insert(member, AddrCheck { addr: from, nonce, sent: now });
        self.queue_frame(from, &Frame::AddrCheck { nonce });
    }

    /// A live member challenges us. We answer only at the address we hold for
    /// it: another member could forge a check under its id from elsewhere to
    /// collect our signature for its own use.
    pub(super) fn handle_addr_check(&mut self, from: SocketAddr, checker: PeerId, nonce: u64) {
        if self.members.get(&checker).is_none_or(|m| m.addr != from) {
            self.stats.drop(DropReason::Invalid);
            return;
        }
        let signature = self.keypair.sign(&addr_proof_message(&self.id, &checker, nonce));
        self.queue_frame(from, &Frame::AddrProof { nonce, signature });
    }

    /// A member answers our check: from the address we challenged, for the
    /// nonce we sent, signed with its key. Only then does its address move.
    pub(super) fn handle_addr_proof(
        &mut self,
        from: SocketAddr,
        member: PeerId,
        nonce: u64,
        signature: [u8; SIGNATURE_BYTES],
    ) {
        let Some(check) = self.addr_checks.get(&member).copied() else {
            self.stats.drop(DropReason::Duplicate);
            return;
        };
        let message = addr_proof_message(&member, &self.id, nonce);
        let Some(m) = self.members.get_mut(&member) else { return };
        if check.nonce != nonce || check.addr != from || !m.public_key.verify(&message, &signature) {
            self.stats.drop(DropReason::Invalid);
            return;
        }
        m.addr = from;
        self.addr_checks.remove(&member);
    }

    /// Our boot: random per process life, part of our datagram key.
    pub fn boot(&self) -> u32 {
        self.sealer.boot()
    }
}
