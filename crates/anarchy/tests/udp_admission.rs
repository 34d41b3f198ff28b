//! Session admission over real UDP on loopback: a node started with the wrong
//! session secret cannot join, gets nothing back, and nothing it sends
//! changes any state. Every wait polls a condition against a generous
//! deadline; no fixed sleeps.

use anarchy::proto::seal::seal_datagram;
use anarchy::proto::wire::{encode_frames, Frame, Op, Update};
use anarchy::{DropReason, Session, SessionSecret};

mod common;
use common::{wait_until, DEADLINE};

async fn start(i: u64, passphrase: &str, bootstrap: Option<std::net::SocketAddr>) -> Session {
    let mut builder =
        Session::builder().bind("127.0.0.1:0".parse().unwrap()).seed(i).passphrase(passphrase).shard("world");
    if let Some(addr) = bootstrap {
        builder = builder.join(addr);
    }
    builder.start().await.expect("session starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_secret_cannot_join_and_changes_nothing() {
    let host = start(0, "right", None).await;
    host.wait_joined(DEADLINE).await.expect("a session of one is joined at once");
    let friend = start(1, "right", Some(host.local_addr())).await;
    friend.wait_for_members(2, DEADLINE).await.expect("the same secret joins");
    host.write("world", b"gold", b"10").expect("host write");
    wait_until("the friend reads the host's write", || friend.get("world", b"gold").as_deref() == Some(&b"10"[..]))
        .await;

    let intruder = start(2, "wrong", Some(host.local_addr())).await;
    wait_until("the host dropped three of the intruder's joins at the tag", || {
        host.stats().drops(DropReason::BadTag) >= 3
    })
    .await;

    // A forged update for the host's shard, sealed with a guessed secret, from a raw socket.
    let czar = host.czar_of("world").expect("the world has a czar");
    let epoch = host.shard_version("world").expect("declared").epoch;
    let delta = Frame::Delta {
        shard: anarchy::ShardId::from_name("world"),
        epoch,
        first_seq: 2,
        base: 0,
        after: 0,
        author: czar,
        sig: [0; 64],
        updates: vec![Update { key: b"gold".to_vec(), op: Op::Put(b"999".to_vec()) }],
    };
    let forged = seal_datagram(&SessionSecret::from_passphrase("guess"), 7, 0, &encode_frames(&czar, &[delta]));
    let raw = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tags_before = friend.stats().drops(DropReason::BadTag);
    raw.send_to(&forged, friend.local_addr()).unwrap();
    wait_until("the friend dropped the forgery at the tag", || friend.stats().drops(DropReason::BadTag) > tags_before)
        .await;

    // The members still talk to each other after all that.
    friend.write("world", b"mark", b"after").expect("friend write");
    wait_until("the host reads the friend's later write", || {
        host.get("world", b"mark").as_deref() == Some(&b"after"[..])
    })
    .await;
    // The friend's own copy follows when the czar's delta comes back.
    wait_until("both hold the same world", || host.shard_checksum("world") == friend.shard_checksum("world")).await;

    assert!(!intruder.is_joined(), "the intruder is never welcomed");
    assert_eq!(intruder.stats().datagrams_in, 0, "nothing is ever sent back to it");
    for s in [&host, &friend] {
        assert_eq!(s.live_member_count(), 2, "nobody counts the intruder");
        assert_eq!(s.get("world", b"gold").as_deref(), Some(&b"10"[..]), "no forged state");
    }
    assert_eq!(host.shard_checksum("world"), friend.shard_checksum("world"));

    intruder.shutdown().await;
    friend.shutdown().await;
    host.shutdown().await;
}
