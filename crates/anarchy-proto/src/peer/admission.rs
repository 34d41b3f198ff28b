//! Admission: the gate every datagram passes before the protocol sees it, and
//! the seal every datagram gets on its way out.
//!
//! In: the source's rate limit and block (`limits`), then the seal (`seal`:
//! tag, replay window), then decoding; whatever fails is counted and dropped
//! with no other work, and invalid data earns its source a strike. Out: every
//! packed plain datagram is sealed under our boot and next counter. Also owns
//! address checks: a member's address moves only when the member proves the
//! new address with its key (`AddrCheck` / `AddrProof`). And owns short
//! indexes: we give each member that seals to us in the long form the index
//! our opener holds for it (`ShortId`), and seal to each member that gave us
//! one in the short form, 22 bytes less per datagram (`seal`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use rand::Rng;

use crate::event::Event;
use crate::identity::{PeerId, SIGNATURE_BYTES};
use crate::seal::{
    addr_proof_message, Opened, SealError, Sealer, MAX_TRACKED_SENDERS, SEALED_HEADER_BYTES, SHORT_SEALED_HEADER_BYTES,
    SHORT_SENDER_FLAG, TAG_BYTES,
};
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

/// The short index a member gave us: we seal to its address in the short form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ShortId {
    /// The index its opener holds for our id and boot.
    index: u16,
    /// Its boot when it gave the index: its opener's table lives as long.
    their_boot: u32,
}

/// Short-index bookkeeping: the indexes members gave us, and those we told.
#[derive(Debug, Clone, Default)]
pub(super) struct ShortIds {
    /// By member address: the index to seal to it under.
    given: BTreeMap<SocketAddr, ShortId>,
    /// By member: the (its boot, index) we last told it, and when.
    told: BTreeMap<PeerId, (u32, u16, Instant)>,
    /// By address: when we last said an index from there names no one.
    unknown_told: BTreeMap<SocketAddr, Instant>,
}

/// A sealed datagram carrying only an `AddrCheck`: we send one only in answer
/// to a datagram at least this large, so a check never amplifies.
const ADDR_CHECK_DATAGRAM_BYTES: usize = SEALED_HEADER_BYTES + 1 + 8 + TAG_BYTES;
/// The same in the short form (the member gave us an index).
const SHORT_ADDR_CHECK_DATAGRAM_BYTES: usize = SHORT_SEALED_HEADER_BYTES + 1 + 8 + TAG_BYTES;

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
                let short = bytes.len() > 5 && bytes[3] & SHORT_SENDER_FLAG != 0;
                if member_addr && short && matches!(e, SealError::UnknownIndex(_) | SealError::BadTag) {
                    self.short_index_unknown(now, from, u16::from_le_bytes([bytes[4], bytes[5]]));
                }
                return None;
            }
        };
        // The member at `from` gave us its index in a life it has left: its
        // table went with it.
        if opened.newest && self.short_ids.given.get(&from).is_some_and(|s| s.their_boot != opened.header.boot) {
            self.short_ids.given.remove(&from);
        }
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

    /// Seals a packed plain datagram (header + frames) for `to`: in the
    /// short form if the member there gave us an index.
    pub(super) fn seal(&mut self, to: SocketAddr, plain: &[u8]) -> Vec<u8> {
        debug_assert!(plain.len() <= wire::MAX_PLAIN_DATAGRAM_BYTES, "plain datagram of {} bytes", plain.len());
        let index = self.short_ids.given.get(&to).map(|s| s.index);
        self.sealer.seal_to(plain, index)
    }

    /// A live member sealed to us in the long form: tell it the index our
    /// opener holds for it (again if it has not used the one we told it for
    /// a `sync_interval`: the telling may have been lost).
    pub(super) fn offer_short_id(&mut self, now: Instant, from: SocketAddr, sender: PeerId, opened: &Opened) {
        let (boot, index) = (opened.header.boot, opened.index);
        let recent = |&(b, i, at): &(u32, u16, Instant)| {
            b == boot && i == index && now.saturating_duration_since(at) < self.config.sync_interval
        };
        if self.short_ids.told.get(&sender).is_some_and(recent) {
            return;
        }
        if self.short_ids.told.len() >= MAX_TRACKED_SENDERS {
            let members = &self.members;
            self.short_ids.told.retain(|id, _| members.is_alive(id));
        }
        self.short_ids.told.insert(sender, (boot, index, now));
        self.queue_frame(from, &Frame::ShortId { boot, index });
    }

    /// A live member at `from`, in its life `their_boot`, gave us `index`
    /// for our life `boot`.
    pub(super) fn handle_short_id(&mut self, from: SocketAddr, sender: PeerId, their_boot: u32, boot: u32, index: u16) {
        if boot != self.sealer.boot() || !self.members.is_alive(&sender) {
            self.stats.drop(DropReason::Invalid);
            return;
        }
        if self.short_ids.given.len() >= MAX_TRACKED_SENDERS && !self.short_ids.given.contains_key(&from) {
            let members = &self.members;
            self.short_ids.given.retain(|addr, _| members.others().any(|m| m.addr == *addr));
        }
        self.short_ids.given.insert(from, ShortId { index, their_boot });
    }

    /// The member at `from` says `index` names no one there: if we seal to
    /// it under that index, we go back to the long form (and it tells us a
    /// new index when that arrives).
    pub(super) fn handle_short_id_unknown(&mut self, from: SocketAddr, index: u16) {
        if self.short_ids.given.get(&from).is_some_and(|s| s.index == index) {
            self.short_ids.given.remove(&from);
        } else {
            self.stats.drop(DropReason::Duplicate);
        }
    }

    /// A short-form datagram from a member's address did not open under its
    /// index: say so, once per `sync_interval` per address (it costs the
    /// sender nothing but its short form, so a forged one does no harm).
    fn short_index_unknown(&mut self, now: Instant, from: SocketAddr, index: u16) {
        let interval = self.config.sync_interval;
        if self.short_ids.unknown_told.get(&from).is_some_and(|t| now.saturating_duration_since(*t) < interval) {
            return;
        }
        if self.short_ids.unknown_told.len() >= MAX_TRACKED_SENDERS {
            self.short_ids.unknown_told.clear();
        }
        self.short_ids.unknown_told.insert(from, now);
        self.queue_frame(from, &Frame::ShortIdUnknown { index });
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
        // The member's index names it wherever it is: the check goes in the
        // short form if it gave us one (only the member can open it).
        let short = self.members.get(&member).and_then(|m| self.short_ids.given.get(&m.addr)).copied();
        let check_bytes = if short.is_some() { SHORT_ADDR_CHECK_DATAGRAM_BYTES } else { ADDR_CHECK_DATAGRAM_BYTES };
        if arrived < check_bytes {
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
        if let Some(short) = short {
            self.short_ids.given.insert(from, short);
        }
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
