//! Real-UDP sessions on loopback: a shard written hard splits by key hash,
//! reads and writes through its declared name keep working, and `shard_of`
//! tells where a key lives. Every wait polls a condition against a generous
//! deadline; no fixed sleeps.

use std::time::Duration;

use anarchy::{Config, Session};

mod common;
use common::{wait_until, DEADLINE};

async fn start(i: usize, bootstrap: Option<std::net::SocketAddr>) -> Session {
    // A low budget: 30 updates per second for half a second splits `world` once.
    let config = Config {
        split_writes_per_sec: 30,
        split_bytes_per_sec: 0,
        split_after: Duration::from_millis(500),
        max_split_depth: 1,
        ..Config::default()
    };
    let mut builder =
        Session::builder().bind("127.0.0.1:0".parse().unwrap()).seed(i as u64).config(config).shard("world");
    if let Some(addr) = bootstrap {
        builder = builder.join(addr);
    }
    builder.start().await.expect("session starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_shard_splits_over_udp_and_its_keys_stay_reachable_by_name() {
    let first = start(0, None).await;
    let bootstrap = first.local_addr();
    let mut sessions = vec![first];
    for i in 1..3 {
        sessions.push(start(i, Some(bootstrap)).await);
    }
    for s in &sessions {
        s.wait_for_members(3, DEADLINE).await.expect("everyone sees everyone");
    }
    let keys: Vec<Vec<u8>> = (0..16).map(|k| format!("cell-{k}").into_bytes()).collect();
    let split = |s: &Session| keys.iter().all(|k| s.shard_of("world", k).is_some_and(|info| info.name != "world"));
    // Write every key from every session until the split reached all of them.
    let give_up = tokio::time::Instant::now() + DEADLINE;
    let mut round = 0u32;
    while !sessions.iter().all(split) {
        assert!(tokio::time::Instant::now() < give_up, "timed out waiting for the split");
        round += 1;
        for (i, s) in sessions.iter().enumerate() {
            for k in &keys {
                s.write("world", k, &[i as u8, round as u8]).expect("write accepted");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both children exist, each key is in the one its hash picks, and the
    // children have czars.
    let children: Vec<String> = keys.iter().map(|k| sessions[0].shard_of("world", k).unwrap().name).collect();
    assert!(children.iter().all(|n| n == "world/0" || n == "world/1"), "{children:?}");
    for name in ["world/0", "world/1"] {
        wait_until("every child has a czar", || sessions.iter().all(|s| s.czar_of(name).is_some())).await;
    }
    // A write through the declared name reaches every session.
    sessions[2].write("world", b"cell-3", b"final").expect("write accepted");
    wait_until("the write after the split reaches everyone", || {
        sessions.iter().all(|s| s.get("world", b"cell-3").as_deref() == Some(&b"final"[..]))
    })
    .await;
    for s in sessions {
        s.shutdown().await;
    }
}
