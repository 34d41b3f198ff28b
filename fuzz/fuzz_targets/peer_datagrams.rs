//! A joined peer (two declared shards, one other member) fed a sequence of
//! datagrams split from the input, with time passing in between, never panics;
//! every datagram that does not open or does not decode is counted as a drop;
//! whatever the peer sends is a valid sealed datagram of at most `MAX_DATAGRAM_BYTES`.
//!
//! Input layout, repeated: one control byte, then a datagram.
//!   control bits 0..=5: milliseconds to advance (times 8) before the datagram
//!   control bit 6:      the datagram comes from the other member's address
//!                       (else from an unknown address)
//!   control bit 7:      put a valid header from the other member in front of
//!                       the datagram and seal it with the session secret under
//!                       the next counter (so its frames reach the handlers);
//!                       else the bytes arrive as they are (and never open)
//! Datagrams are separated by the 4-byte marker `b"\xffAY\xff"`; the last one
//! runs to the end of the input.
#![no_main]

use std::net::SocketAddr;

use anarchy_proto::seal::{open_datagram_as, seal_datagram, SessionSecret};
use anarchy_proto::wire::{encode_frames, put_header, Frame, HEADER_BYTES};
use anarchy_proto::{Config, Instant, Keypair, Peer, MAX_DATAGRAM_BYTES};
use libfuzzer_sys::fuzz_target;

#[path = "../common/split.rs"]
mod split;
use split::split;


fn drain(peer: &mut Peer) {
    while let Some(t) = peer.poll_transmit() {
        assert!(t.payload.len() <= MAX_DATAGRAM_BYTES, "peer sent {} bytes", t.payload.len());
        let (_, plain) = open_datagram_as(&SessionSecret::default(), &t.payload, &peer.id(), peer.boot())
            .expect("the peer seals what it sends");
        let d = anarchy_proto::compress::decode_received(&plain).expect("the peer sends only valid datagrams");
        assert_eq!(d.sender, peer.id());
    }
    while peer.poll_event().is_some() {}
}


fuzz_target!(|data: &[u8]| {
    let mut now = Instant::from_millis(1_000);
    let me_addr: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    let them_addr: SocketAddr = "127.0.0.1:7002".parse().unwrap();
    let stranger_addr: SocketAddr = "[2001:db8::1]:9000".parse().unwrap();
    let mut peer = Peer::new(Config::default(), Keypair::from_seed(1), me_addr, 42, now);
    let world = peer.declare_shard(now, "world", None).unwrap();
    peer.declare_shard(now, "lobby", Some(peer.id())).unwrap();
    peer.join(now, &[]);
    peer.write(now, world, b"door", b"open").unwrap();
    let them = Keypair::from_seed(2);
    let join = encode_frames(&them.peer_id(), &[Frame::Join { public_key: them.public_key(), incarnation: 0, czar_eligible: true }]);
    let secret = SessionSecret::default();
    let boot = 0xf022;
    peer.handle_datagram(now, them_addr, &seal_datagram(&secret, boot, 0, &join));
    drain(&mut peer);
    let mut counter = 1;

    for part in split(data) {
        let Some((&control, body)) = part.split_first() else { continue };
        now = Instant::from_micros(now.as_micros() + u64::from(control & 0x3f) * 8_000);
        if peer.poll_timeout().is_some_and(|t| t <= now) {
            peer.handle_timeout(now);
            drain(&mut peer);
        }
        let from = if control & 0x40 != 0 { them_addr } else { stranger_addr };
        let (bytes, plain) = if control & 0x80 != 0 {
            let mut framed = Vec::with_capacity(HEADER_BYTES + body.len());
            put_header(&mut framed, &them.peer_id());
            framed.extend_from_slice(body);
            counter += 1;
            (seal_datagram(&secret, boot, counter, &framed), Some(framed))
        } else {
            (body.to_vec(), None)
        };
        let before = peer.stats().total_drops();
        peer.handle_datagram(now, from, &bytes);
        let opens_and_decodes = plain.is_some_and(|p| bytes.len() <= MAX_DATAGRAM_BYTES && anarchy_proto::compress::decode_received(&p).is_ok());
        if !opens_and_decodes {
            assert!(peer.stats().total_drops() > before, "a datagram that cannot be used was not counted");
        }
        drain(&mut peer);
    }
});
