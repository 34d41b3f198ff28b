//! Any sequence of fragments from a few senders, at any times: `Reassembly`
//! never panics, never holds more than its byte budget, never more partial
//! frames per sender than allowed, and every frame it joins is a whole,
//! non-fragment frame.
#![no_main]

use std::time::Duration;

use anarchy_proto::fragment::{Reassembly, ReassemblySettings};
use anarchy_proto::wire::Frame;
use anarchy_proto::{Instant, Keypair};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let settings = ReassemblySettings { timeout: Duration::from_millis(500), max_per_sender: 3, max_bytes: 8 * 1024 };
    let mut r = Reassembly::new(settings);
    let senders = [Keypair::from_seed(1).peer_id(), Keypair::from_seed(2).peer_id()];
    let mut now = Instant::ZERO;
    let mut dropped = Vec::new();
    // Each record: sender bit + time step, id, index, count, piece length, piece bytes.
    let mut rest = data;
    while rest.len() >= 5 {
        let (head, tail) = rest.split_at(5);
        let sender = senders[usize::from(head[0] & 1)];
        now = now + Duration::from_millis(u64::from(head[0] >> 1) * 10);
        let (id, index, count) = (u32::from(head[1] & 3), u16::from(head[2] & 7), u16::from(head[3] & 7));
        let len = usize::from(head[4]).min(tail.len());
        let (piece, tail) = tail.split_at(len);
        rest = tail;
        if let Some(frame) = r.insert(now, sender, (id, index, count, piece.to_vec()), &mut dropped) {
            assert!(!matches!(frame, Frame::Fragment { .. }));
        }
        r.expire(now, &mut dropped);
        assert!(r.pending_bytes() <= settings.max_bytes);
        assert!(r.pending() <= 2 * settings.max_per_sender);
    }
});
