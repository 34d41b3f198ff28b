//! Convergence under random loss with several writers, over a few seeds.

mod support;

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use anarchy_proto::Config;
use support::Net;

fn lossy_session_converges(seed: u64, loss: f64) {
    let mut net = Net::new(Config::default());
    let n = 8;
    for _ in 0..n {
        net.add();
    }
    let mut shards = vec![net.declare_everywhere("world", None)];
    for i in 0..n {
        shards.push(net.declare_everywhere(&format!("avatar-{i}"), Some(i)));
    }
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut loss_rng = ChaCha8Rng::seed_from_u64(seed ^ 0xdead_beef);
    net.drop_filter = Some(Box::new(move |_| loss_rng.gen_bool(loss)));
    for tick in 0..60u32 {
        let now = net.now;
        for i in 0..n {
            let _ = net.peers[i].write(now, shards[i + 1], b"pos", &tick.to_le_bytes());
        }
        if rng.gen_bool(0.3) {
            let writer = rng.gen_range(0..n);
            let key = [rng.gen_range(0..8u8)];
            let _ = net.peers[writer].write(now, shards[0], &key, &tick.to_le_bytes());
        }
        net.drain_all();
        net.run_for(Duration::from_millis(50));
    }
    net.drop_filter = None;
    net.run_for(Duration::from_secs(3));
    for s in &shards {
        assert!(net.converged(*s), "seed {seed}: shard {s:?} did not converge");
    }
    for i in 0..n {
        assert_eq!(net.peers[i].live_members().count(), n, "seed {seed}: peer {i} lost members");
        assert_eq!(net.peers[i].pending_writes(), 0, "seed {seed}: peer {i} has writes left");
    }
}

#[test]
fn eight_peers_converge_after_five_percent_loss() {
    for seed in 0..5 {
        lossy_session_converges(seed, 0.05);
    }
}

#[test]
fn eight_peers_converge_after_thirty_percent_loss() {
    for seed in 10..13 {
        lossy_session_converges(seed, 0.30);
    }
}

/// A value of `len` bytes that differs from tick to tick in more than a few
/// bytes (so it travels whole, not as a patch).
fn big_value(len: usize, tick: u32) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(u64::from(tick));
    (0..len).map(|_| rng.gen()).collect()
}

#[test]
fn values_too_large_for_a_datagram_travel_in_fragments_and_survive_loss() {
    let n = 5;
    let (mut net, world) = Net::session_with_shard(n, "world", Some(0));
    let mut loss_rng = ChaCha8Rng::seed_from_u64(11);
    net.drop_filter = Some(Box::new(move |_| loss_rng.gen_bool(0.05)));
    let max = anarchy_proto::MAX_VALUE_BYTES;
    for tick in 0..20u32 {
        let now = net.now;
        // The czar's own write, one forwarded to it, and a critical one: a
        // delta, a forward and a proposal each too large for one datagram.
        net.peers[0].write(now, world, b"map", &big_value(max, tick)).expect("the largest value is accepted");
        net.peers[3].write(now, world, &[tick as u8], &big_value(3000 + tick as usize, tick)).expect("forwarded");
        if tick % 5 == 0 {
            net.peers[2].write_critical(now, world, b"score", Some(&big_value(2000, tick))).expect("proposed");
        }
        net.drain_all();
        net.run_for(Duration::from_millis(50));
    }
    net.drop_filter = None;
    net.run_for(Duration::from_secs(3));
    assert!(net.converged(world), "{}", net.describe(world));
    for i in 0..n {
        assert_eq!(net.peers[i].get(world, b"map"), Some(&big_value(max, 19)[..]), "peer {i}");
        assert_eq!(net.peers[i].get(world, &[19]), Some(&big_value(3019, 19)[..]), "peer {i}");
        assert_eq!(net.peers[i].get(world, b"score"), Some(&big_value(2000, 15)[..]), "peer {i}");
        assert_eq!(net.peers[i].pending_writes(), 0, "peer {i} has writes left");
    }
    let stats = |i: usize| net.peers[i].stats().clone();
    assert!(stats(0).frames_fragmented > 0 && stats(1).frames_joined > 0);
    assert!(stats(0).datagrams_out > 0);
    // A peer that joins now gets the state as a snapshot whose large entries
    // are fragmented too.
    let late = net.add();
    let now = net.now;
    let first = net.id(0);
    net.peers[late].declare_shard(now, "world", Some(first)).unwrap();
    net.peers[late].join(now, &[support::addr(0)]);
    net.drain_all();
    net.run_for(Duration::from_secs(2));
    assert!(net.converged(world), "{}", net.describe(world));
    assert_eq!(net.peers[late].get(world, b"map"), Some(&big_value(max, 19)[..]));
    assert!(net.peers[late].stats().frames_joined > 0);
}

#[test]
fn a_value_over_the_limit_is_refused_with_a_clear_error() {
    let mut net = Net::new(Config::default());
    net.add();
    let world = net.declare_everywhere("world", None);
    net.start_all();
    let now = net.now;
    let too_long = vec![0; anarchy_proto::MAX_VALUE_BYTES + 1];
    let err = net.peers[0].write(now, world, b"k", &too_long).expect_err("over the limit");
    assert_eq!(err.to_string(), format!("value of {} bytes exceeds 16384", too_long.len()));
}
