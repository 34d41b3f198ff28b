//! Session admission, privacy and abuse limits, as stories over the in-memory
//! network: a peer with another secret gets nothing in and nothing out, a
//! replayed datagram is refused, a member's address moves only with its
//! newest authenticated datagram, floods are rate-limited and a source that
//! keeps sending garbage is blocked and reported.

mod support;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use anarchy_proto::wire::{encode_frames, Frame};
use anarchy_proto::{Config, DropReason, Event, Keypair, SessionSecret};
use support::Net;

fn session(n: usize) -> Net {
    let mut net = Net::new(Config::default());
    for _ in 0..n {
        net.add();
    }
    net
}

fn with_passphrase(passphrase: &str) -> Config {
    Config { session_secret: SessionSecret::from_passphrase(passphrase), ..Config::default() }
}

#[test]
fn a_peer_with_another_secret_cannot_join_and_gets_no_byte_back() {
    let mut net = Net::new(with_passphrase("right"));
    net.add();
    net.add();
    let world = net.declare_everywhere("world", Some(0));
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let now = net.now;
    net.peers[0].write(now, world, b"gold", b"10").unwrap();
    net.run_for(Duration::from_millis(200));

    let outsider = net.add_with(with_passphrase("wrong"));
    let now = net.now;
    net.peers[outsider].declare_shard(now, "world", None).unwrap();
    net.peers[outsider].join(now, &[net.addrs[0]]);
    net.drain(outsider);
    let log_start = net.log.len();
    net.run_for(Duration::from_secs(2));

    assert!(!net.peers[outsider].is_joined(), "the outsider is never welcomed");
    assert!(net.peers[0].stats().drops(DropReason::BadTag) >= 8, "its joins were dropped at the tag");
    let answers = net.log[log_start..].iter().filter(|(_, _, to, _)| *to == outsider).count();
    assert_eq!(answers, 0, "nothing at all is sent to an address that never produced a valid tag");
    for i in 0..2 {
        assert_eq!(net.peers[i].live_members().count(), 2, "peer {i} never counts the outsider");
        assert_eq!(net.peers[i].get(world, b"gold"), Some(&b"10"[..]));
    }
    // The outsider cannot read what it overhears either: the members' datagrams do not open with its secret.
    let (_, _, _, overheard) = net.log.iter().rev().find(|(_, from, _, _)| *from == 0).unwrap();
    let wrong = SessionSecret::from_passphrase("wrong");
    let (id, boot) = (net.id(0), net.peers[0].boot());
    assert!(anarchy_proto::seal::open_datagram_as(&wrong, overheard, &id, boot).is_err());
    let right = SessionSecret::from_passphrase("right");
    assert!(anarchy_proto::seal::open_datagram_as(&right, overheard, &id, boot).is_ok());
}

#[test]
fn a_write_sealed_with_another_secret_changes_no_state() {
    let mut net = session(2);
    let world = net.declare_everywhere("world", Some(0));
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let czar = net.id(0);
    let epoch = net.peers[1].version_of(world).unwrap().epoch;
    let forged = encode_frames(
        &czar,
        &[Frame::Delta {
            shard: world,
            epoch,
            first_seq: 1,
            base: 0,
            after: 0,
            author: czar,
            sig: [0; 64],
            updates: vec![anarchy_proto::wire::Update {
                key: b"gold".to_vec(),
                op: anarchy_proto::wire::Op::Put(b"999".to_vec()),
            }],
        }],
    );
    let sealed = support::seal_with_secret(&SessionSecret::from_passphrase("guess"), &forged);
    let before = net.peers[1].checksum_of(world);
    let now = net.now;
    let from = net.addrs[0];
    net.peers[1].handle_datagram(now, from, &sealed);
    assert_eq!(net.peers[1].stats().drops(DropReason::BadTag), 1);
    assert_eq!(net.peers[1].checksum_of(world), before);
    assert_eq!(net.peers[1].get(world, b"gold"), None);
}

#[test]
fn peers_sharing_a_passphrase_join_and_converge() {
    let mut net = Net::new(with_passphrase("our game"));
    for _ in 0..4 {
        net.add();
    }
    let world = net.declare_everywhere("world", None);
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let now = net.now;
    for i in 0..4 {
        let _ = net.peers[i].write(now, world, &[b'k', i as u8], b"v");
    }
    net.drain_all();
    net.run_for(Duration::from_secs(1));
    assert!(net.member_counts().values().all(|n| *n == 4));
    assert!(net.converged(world));
    assert_eq!(net.peers[3].get(world, b"k\x00"), Some(&b"v"[..]));
    assert!((0..4).all(|i| net.peers[i].stats().drops(DropReason::BadTag) == 0));
}

#[test]
fn a_replayed_datagram_is_dropped_and_counted() {
    let mut net = session(2);
    let world = net.declare_everywhere("world", Some(0));
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let now = net.now;
    net.peers[0].write(now, world, b"hp", b"100").unwrap();
    let start = net.log.len();
    net.drain(0);
    let (_, _, _, delta) = net.log[start..].iter().find(|(_, from, to, _)| *from == 0 && *to == 1).unwrap().clone();
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.peers[1].get(world, b"hp"), Some(&b"100"[..]));
    net.peers[0].write(net.now, world, b"hp", b"50").unwrap();
    net.run_for(Duration::from_millis(100));

    let replays_before = net.peers[1].stats().drops(DropReason::Replay);
    let now = net.now;
    let from = net.addrs[0];
    net.peers[1].handle_datagram(now, from, &delta);
    assert_eq!(net.peers[1].stats().drops(DropReason::Replay), replays_before + 1);
    assert_eq!(net.peers[1].get(world, b"hp"), Some(&b"50"[..]), "the old value did not come back");
    assert!(net.peers[1].poll_transmit().is_none(), "a replay is never answered");
}

/// Holds back peer 1's datagrams to peer 0 for a while and returns them, in send order.
fn hold_back_from_1_to_0(net: &mut Net, how_long: Duration) -> Vec<Vec<u8>> {
    let held: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
    let sink = held.clone();
    net.drop_filter = Some(Box::new(move |d| {
        if d.from == 1 && d.to == 0 {
            sink.borrow_mut().push(d.payload.clone());
            return true;
        }
        false
    }));
    net.run_for(how_long);
    net.drop_filter = None;
    let held = held.borrow().clone();
    assert!(held.len() >= 2, "heartbeats were held back");
    held
}

/// Takes what peer `i` sends to `to` right now, dropping the rest.
fn sent_to(net: &mut Net, i: usize, to: SocketAddr) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(t) = net.peers[i].poll_transmit() {
        if t.destination == to {
            out.push(t.payload);
        }
    }
    out
}

fn addr_of(net: &Net, at: usize, member: usize) -> SocketAddr {
    let id = net.id(member);
    net.peers[at].members().find(|m| m.id == id).unwrap().addr
}

#[test]
fn a_members_address_moves_only_once_it_proves_the_new_one_with_its_key() {
    let mut net = session(2);
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let held = hold_back_from_1_to_0(&mut net, Duration::from_millis(600));
    let (old, moved): (SocketAddr, SocketAddr) = (net.addrs[1], "10.9.9.9:7000".parse().unwrap());
    let now = net.now;

    // Forged from the new address without the secret: no move, no check.
    let mut forged = held[1].clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    net.peers[0].handle_datagram(now, moved, &forged);
    assert!(sent_to(&mut net, 0, moved).is_empty(), "nothing goes to an address that has not proved the secret");
    // Its newest authenticated datagrams from the new address (a NAT rebinding):
    // the frames are handled, the address waits for a proof.
    for d in &held {
        net.peers[0].handle_datagram(now, moved, d);
    }
    assert_eq!(addr_of(&net, 0, 1), old);
    let checks = sent_to(&mut net, 0, moved);
    assert_eq!(checks.len(), 1, "one address check to the new address per heartbeat interval");
    assert!(checks[0].len() <= held.iter().map(Vec::len).max().unwrap(), "no larger than what arrived");
    assert!(support::decode(&checks[0]).unwrap().frames.iter().any(|f| matches!(f, Frame::AddrCheck { .. })));
    // An older datagram from the old address and a replay change nothing either.
    net.peers[0].handle_datagram(now, old, &held[0]);
    net.peers[0].handle_datagram(now, old, &held[1]);
    assert_eq!(addr_of(&net, 0, 1), old);
    // The member answers the check (it came from the checker's own address) and signs.
    net.peers[1].handle_datagram(now, net.addrs[0], &checks[0]);
    let checker = net.addrs[0];
    let proofs = sent_to(&mut net, 1, checker);
    assert!(proofs.iter().any(|p| support::decode(p)
        .unwrap()
        .frames
        .iter()
        .any(|f| matches!(f, Frame::AddrProof { .. }))));
    // A proof from anywhere but the checked address does not count; from it, it does.
    for p in &proofs {
        net.peers[0].handle_datagram(now, old, p);
    }
    assert_eq!(addr_of(&net, 0, 1), old);
    let replayed = net.peers[0].stats().drops(DropReason::Replay);
    for p in &proofs {
        net.peers[0].handle_datagram(now, moved, p);
    }
    assert_eq!(net.peers[0].stats().drops(DropReason::Replay), replayed + proofs.len() as u64);
    assert_eq!(addr_of(&net, 0, 1), old, "and a replayed proof is refused by the window");
}

#[test]
fn a_proof_delivered_from_the_checked_address_moves_it() {
    let mut net = session(2);
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let held = hold_back_from_1_to_0(&mut net, Duration::from_millis(600));
    let moved: SocketAddr = "10.9.9.9:7000".parse().unwrap();
    let now = net.now;
    for d in &held {
        net.peers[0].handle_datagram(now, moved, d);
    }
    let checks = sent_to(&mut net, 0, moved);
    net.peers[1].handle_datagram(now, net.addrs[0], &checks[0]);
    let checker = net.addrs[0];
    for p in sent_to(&mut net, 1, checker) {
        net.peers[0].handle_datagram(now, moved, &p);
    }
    assert_eq!(addr_of(&net, 0, 1), moved, "proved with the member's key: the address moves");
}

#[test]
fn an_insider_cannot_move_another_members_address() {
    let mut net = session(3);
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let victim = net.id(1);
    let insider_addr = net.addrs[2];
    let now = net.now;
    // Sealing under the victim's id works for any holder of the secret ...
    let pings = [Frame::Ping { stamp: u64::MAX }, Frame::Ping { stamp: u64::MAX - 1 }];
    let ping = support::seal(&encode_frames(&victim, &pings));
    net.peers[0].handle_datagram(now, insider_addr, &ping);
    assert_eq!(addr_of(&net, 0, 1), net.addrs[1]);
    let checks = sent_to(&mut net, 0, insider_addr);
    let nonce = checks
        .iter()
        .flat_map(|c| support::decode(c).unwrap().frames)
        .find_map(|f| match f {
            Frame::AddrCheck { nonce } => Some(nonce),
            _ => None,
        })
        .expect("the insider's address is checked");
    // ... but the proof needs the victim's key: the insider's own signature fails,
    let mine = Keypair::from_seed(102).sign(&anarchy_proto::seal::addr_proof_message(&victim, &net.id(0), nonce));
    let fake = support::seal(&encode_frames(&victim, &[Frame::AddrProof { nonce, signature: mine }]));
    net.peers[0].handle_datagram(now, insider_addr, &fake);
    assert_eq!(addr_of(&net, 0, 1), net.addrs[1]);
    // and the victim will not sign a check forged under the checker's id from elsewhere.
    let relayed = support::seal(&encode_frames(&net.id(0), &[Frame::AddrCheck { nonce }]));
    net.peers[1].handle_datagram(now, insider_addr, &relayed);
    let answers = sent_to(&mut net, 1, insider_addr);
    let proofs = answers.iter().flat_map(|a| support::decode(a).unwrap().frames);
    assert_eq!(proofs.filter(|f| matches!(f, Frame::AddrProof { .. })).count(), 0, "no signature for the insider");
    // A forged Join carrying the victim's public key does not move it either.
    let join = Frame::Join { public_key: net.peers[1].public_key(), incarnation: 5, czar_eligible: true };
    net.peers[0].handle_datagram(now, insider_addr, &support::seal(&encode_frames(&victim, &[join])));
    assert_eq!(addr_of(&net, 0, 1), net.addrs[1]);
    net.drain_all();
    net.run_for(Duration::from_millis(500));
    assert!(net.member_counts().values().all(|n| *n == 3));
}

#[test]
fn a_flood_from_one_address_is_rate_limited_and_the_session_keeps_working() {
    let config = Config { source_datagrams_per_sec: 100, source_burst_datagrams: 50, ..Config::default() };
    let mut net = Net::new(config);
    net.add();
    net.add();
    let world = net.declare_everywhere("world", Some(0));
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let flooder: std::net::SocketAddr = "10.7.7.7:9999".parse().unwrap();
    let now = net.now;
    // One valid datagram repeated: replays earn no strike, so only the bucket stops them.
    let valid = support::seal(&encode_frames(&net.id(1), &[Frame::SyncReq]));
    for _ in 0..200 {
        net.peers[0].handle_datagram(now, flooder, &valid);
    }
    let stats = net.peers[0].stats();
    assert_eq!(stats.drops(DropReason::RateLimited), 150, "the burst of 50 passes the bucket, no more");
    assert_eq!(stats.drops(DropReason::Replay), 49, "of those, all but the first are replays");
    net.drain(0);
    net.peers[1].write(net.now, world, b"still", b"here").unwrap();
    net.run_for(Duration::from_millis(300));
    assert_eq!(net.peers[0].get(world, b"still"), Some(&b"here"[..]));
}

#[test]
fn a_source_that_keeps_sending_garbage_is_blocked_and_reported() {
    let mut net = session(2);
    let world = net.declare_everywhere("world", Some(0));
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let stranger: std::net::SocketAddr = "10.6.6.6:6666".parse().unwrap();
    let max = Config::default().source_max_strikes;
    let now = net.now;
    for i in 0..max {
        net.peers[0].handle_datagram(now, stranger, format!("AY\x02 garbage {i:040}").as_bytes());
    }
    net.drain(0);
    let blocked: Vec<&Event> =
        net.events[0].iter().filter(|e| matches!(e, Event::SourceBlocked { addr, .. } if *addr == stranger)).collect();
    assert_eq!(blocked.len(), 1, "one report per block");
    // Even a valid datagram from it is now ignored, unopened.
    let valid = support::seal(&encode_frames(&net.id(1), &[Frame::SyncReq]));
    net.peers[0].handle_datagram(now, stranger, &valid);
    assert_eq!(net.peers[0].stats().drops(DropReason::Blocked), 1);
    assert!(net.peers[0].poll_transmit().is_none());
    // Garbage from a member's own address (anyone can forge it) blocks nobody.
    let member = net.addrs[1];
    for _ in 0..2 * max {
        net.peers[0].handle_datagram(now, member, format!("AY\x02{:060}", 0).as_bytes());
    }
    net.peers[1].write(net.now, world, b"k", b"v").unwrap();
    net.run_for(Duration::from_millis(300));
    assert_eq!(net.peers[0].get(world, b"k"), Some(&b"v"[..]));
    // After the block the source is heard again.
    net.run_for(Config::default().source_block_duration);
    let valid = support::seal(&encode_frames(&net.id(1), &[Frame::SyncReq]));
    let blocked_before = net.peers[0].stats().drops(DropReason::Blocked);
    net.peers[0].handle_datagram(net.now, stranger, &valid);
    assert_eq!(net.peers[0].stats().drops(DropReason::Blocked), blocked_before);
}

#[test]
fn authenticated_garbage_from_an_insider_earns_strikes_too() {
    let mut net = session(2);
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let insider: std::net::SocketAddr = "10.5.5.5:5555".parse().unwrap();
    let now = net.now;
    let mut plain = encode_frames(&net.id(1), &[Frame::SyncReq]);
    plain.push(200); // an unknown frame type after a valid one
    for _ in 0..Config::default().source_max_strikes {
        net.peers[0].handle_datagram(now, insider, &support::seal(&plain));
    }
    assert!(net.peers[0].stats().drops(DropReason::UnknownFrame) >= 1);
    net.drain(0);
    assert!(net.events[0].iter().any(|e| matches!(e, Event::SourceBlocked { addr, .. } if *addr == insider)));
}
