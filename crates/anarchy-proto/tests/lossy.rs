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
