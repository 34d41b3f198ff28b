//! Scenario tests for the simulator: determinism, checkers that can fail, the
//! shipped scenarios, a CI-sized seed sweep, and one regression test per
//! protocol bug the simulator found (ignored until the core is fixed).

use std::path::{Path, PathBuf};

use anarchy_proto::Fault;
use anarchy_sim::cli::SimArgs;
use anarchy_sim::{Report, Scenario, Sim, SimConfig};

fn scenario_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios").join(name)
}

/// Runs one seed the way `anarchy sim` would and returns its report.
fn run(scenario: Option<&str>, seed: u64, tweak: impl FnOnce(&mut SimArgs)) -> Report {
    let mut args = SimArgs { scenario: scenario.map(scenario_path), seed: Some(seed), ..SimArgs::default() };
    tweak(&mut args);
    let plan = args.plan().expect("valid arguments");
    anarchy_sim::cli::run_one(&args, &plan, seed, None)
}

/// The CI sweep's settings: 8 peers, 6 s of workload, at most 5 s to settle.
fn run_small(scenario: &str, seed: u64) -> Report {
    run(Some(scenario), seed, |a| {
        a.peers = Some(8);
        a.seconds = Some(6.0);
        a.settle = Some(5.0);
    })
}

/// The failover issue's setting: 32 peers, 4 shards, 40 ± 10 ms links, with
/// `tweak` on top (the scenario's own length otherwise).
fn run_failover_setting(scenario: &str, seed: u64, tweak: impl FnOnce(&mut SimArgs)) -> Report {
    run(Some(scenario), seed, |a| {
        a.peers = Some(32);
        a.shards = Some(4);
        a.latency_ms = Some(40.0);
        a.jitter_ms = Some(10.0);
        tweak(a);
    })
}

/// The wider sweeps' runs: the failover setting over the scenario's own length.
fn run_swept(scenario: &str, seed: u64) -> Report {
    run_failover_setting(scenario, seed, |_| {})
}

/// The failover setting cut to 6 s of workload and at most 5 s to settle.
fn run_large(scenario: &str, seed: u64) -> Report {
    run_failover_setting(scenario, seed, |a| {
        a.seconds = Some(6.0);
        a.settle = Some(5.0);
    })
}

fn assert_passes(r: &Report) {
    assert!(r.passed(), "{}", r.human());
}

fn without_wall_time(mut r: Report) -> Report {
    r.wall_seconds = 0.0;
    r.speed = 0.0;
    r
}

#[test]
fn same_seed_gives_a_byte_identical_run() {
    let a = run(Some("duplication-storm.toml"), 7, |a| a.seconds = Some(4.0));
    let b = run(Some("duplication-storm.toml"), 7, |a| a.seconds = Some(4.0));
    assert_eq!(without_wall_time(a.clone()), without_wall_time(b));
    let c = run(Some("duplication-storm.toml"), 8, |a| a.seconds = Some(4.0));
    assert_ne!(a.trace_digest, c.trace_digest, "another seed, another run");
}

#[test]
fn faults_in_a_schedule_replay_identically() {
    let args = |a: &mut SimArgs| {
        a.seconds = Some(6.0);
        a.peers = Some(10);
    };
    let a = run(Some("crash-restart-churn.toml"), 3, args);
    let b = run(Some("crash-restart-churn.toml"), 3, args);
    assert_eq!(without_wall_time(a), without_wall_time(b));
}

#[test]
fn a_clean_network_converges_with_no_violation() {
    // Seed 1 avoids the bugs kept as ignored regressions below (seed 4 now
    // hits the older-epoch-after-newer one during session formation).
    let r = run(None, 1, |a| {
        a.peers = Some(16);
        a.seconds = Some(5.0);
    });
    assert_passes(&r);
    assert!(r.updates_applied > 10 * r.updates_written / 2, "updates reach the other peers");
    assert!(r.propagation_ms.p50 > 0.0 && r.propagation_ms.p50 < 100.0);
}

#[test]
fn a_peer_that_skips_a_delta_is_caught() {
    let cfg = SimConfig { peers: 8, shards: 3, seconds: 4.0, seed: 4, ..SimConfig::default() };
    let mut sim = Sim::new(cfg);
    sim.run_until(2_000_000);
    for i in 1..8 {
        sim.peer_mut(i).expect("started").inject_fault(Fault::SkipDeltaSilently);
    }
    let outcome = sim.run(|_, _| {});
    let names: Vec<&str> = outcome.findings.counts.keys().copied().collect();
    assert!(!outcome.findings.is_empty(), "the broken peers went unnoticed");
    assert!(names.contains(&"czar-authored"), "applied content differs from what the czar wrote: {names:?}");
    // Convergence may still come back: the workload rewrites every key later.
}

#[test]
fn a_peer_that_misplaces_a_key_on_a_split_is_caught() {
    let cfg = SimConfig {
        peers: 8,
        shards: 2,
        seconds: 8.0,
        seed: 3,
        hot_rate_hz: 60.0,
        proto: anarchy_proto::Config { split_writes_per_sec: 200, ..anarchy_proto::Config::default() },
        ..SimConfig::default()
    };
    let mut sim = Sim::new(cfg);
    sim.run_until(1_000_000);
    for i in 1..8 {
        sim.peer_mut(i).expect("started").inject_fault(Fault::MisplaceKeyOnSplit);
    }
    let outcome = sim.run(|_, _| {});
    assert!(outcome.splits > 0, "the hot spot split a shard");
    let names: Vec<&str> = outcome.findings.counts.keys().copied().collect();
    assert!(names.contains(&"split-merge-union"), "a child without its keys went unnoticed: {names:?}");
    assert!(names.contains(&"one-shard-per-key"), "a key in the wrong child went unnoticed: {names:?}");
}

#[test]
fn hostile_members_are_rejected_and_honest_peers_converge() {
    for seed in [1, 2] {
        let r = run(None, seed, |a| {
            a.peers = Some(8);
            a.seconds = Some(5.0);
            a.byzantine = Some(2);
            a.loss = Some(0.01);
        });
        assert_passes(&r);
        assert_eq!(r.forged_accepted, 0, "{}", r.human());
        assert!(r.attack_datagrams > 1000, "{}", r.human());
        let j = &r.rejected;
        assert!(j.bad_signature > 0 && j.not_czar > 0 && j.stale_epoch > 0 && j.malformed > 0, "{}", r.human());
        assert!(j.bad_tag > 0 && j.replay > 0 && j.rate_limited > 0, "{}", r.human());
        let json = r.to_json();
        for field in ["\"forged_accepted\"", "\"rejected\"", "\"bad_signature\"", "\"rate_limited\""] {
            assert!(json.contains(field), "{field} missing from {json}");
        }
    }
}

#[test]
fn a_peer_that_takes_any_signature_is_caught() {
    let cfg = SimConfig { peers: 8, shards: 3, seconds: 4.0, seed: 4, byzantine: 1, ..SimConfig::default() };
    let mut sim = Sim::new(cfg);
    sim.run_until(1_500_000);
    for i in 0..7 {
        sim.peer_mut(i).expect("started").inject_fault(Fault::AcceptAnySignature);
    }
    let outcome = sim.run(|_, _| {});
    let forged = outcome.findings.counts.get("signed-by-czar").copied().unwrap_or(0);
    assert!(forged > 0, "forged updates went unnoticed: {:?}", outcome.findings.counts);
}

#[test]
fn failover_and_critical_updates_are_measured() {
    let r = run(Some("failover-32.toml"), 2, |a| {
        a.peers = Some(12);
        a.seconds = Some(14.0);
    });
    assert!(r.failover_ms.count >= 2, "czar crashes are timed: {}", r.human());
    assert!(r.failover_ms.p50 > 0.0 && r.failover_ms.max < 5000.0, "{}", r.human());
    assert!(r.critical.proposed > 0 && r.critical.committed > 0, "{}", r.human());
    assert!(r.critical.rejected > 0, "the validator refuses the workload's cheats: {}", r.human());
    let json = r.to_json();
    for field in ["\"failover_ms\"", "\"false_evictions\"", "\"lost_after_commit\""] {
        assert!(json.contains(field), "{field} missing from {json}");
    }
    let none = run(None, 4, |a| {
        a.peers = Some(6);
        a.seconds = Some(3.0);
        a.critical_rate = Some(0.0);
    });
    assert_eq!(none.critical.proposed, 0);
}

#[test]
fn every_shipped_scenario_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("scenarios/ exists") {
        let path = entry.expect("readable").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(!s.description.is_empty(), "{} has no description", path.display());
            n += 1;
        }
    }
    assert!(n >= 9, "at least nine scenarios ship");
}

#[test]
fn splits_and_merges_follow_a_moving_hot_spot() {
    // grow-shrink.toml at CI size: 4 → 32 peers, back to 8, the hot spot
    // moving every 10 s, a split budget of 300 updates/s, the hot spot in
    // one eighth of the hash space (deep splits, and merges as it moves on).
    let r = run(Some("grow-shrink.toml"), 1, |a| {
        a.peers = Some(32);
        a.split_writes = Some(300);
        a.hot_by_hash = true;
    });
    assert_passes(&r);
    assert!(r.splits >= 2, "the hot spot splits shards: {}", r.human());
    assert!(r.merges >= 1, "cold siblings merge back: {}", r.human());
    let counts: Vec<usize> = r.shards_over_time.iter().map(|s| s.shards).collect();
    assert_eq!(counts.first(), Some(&4), "four declared shards at the start");
    assert!(counts.iter().max() > counts.first(), "{counts:?}");
    assert!(r.czar_load_max_over_mean.is_some());
    let json = serde_json::to_value(&r).unwrap();
    for field in ["splits", "merges", "shards_over_time", "czar_load_max_over_mean"] {
        assert!(json.get(field).is_some(), "report field {field}");
    }
}

#[test]
fn rejoiners_after_a_merge_converge_without_the_merged_children() {
    // 24 peers, 20 leaves and rejoins a minute, a hot spot in one eighth of
    // the hash space moving every 4 s: shards split and merge back while
    // peers rejoin blank. A rejoiner that learns a merged parent from its
    // snapshot (no split record in it) never hears of the retired children.
    // Seed 3 failed when the convergence checker asked every live peer to
    // hold every shard ever made: "2 of 22 live peers differ from p0 (at
    // 22075.411, czar p19) on world/0/0/0: p2 at -, p6 at -". Live shards
    // must still agree everywhere, and retired ones wherever they are known.
    let args = SimArgs {
        peers: Some(24),
        shards: Some(4),
        seconds: Some(30.0),
        rate: Some(1.0),
        hot_rate: Some(3.0),
        hot_by_hash: true,
        hot_move_secs: Some(4.0),
        split_writes: Some(40),
        churn: Some(20.0),
        ..SimArgs::default()
    };
    let plan = args.plan().expect("valid arguments");
    let mut sim = Sim::new(SimConfig { seed: 3, ..plan.config.clone() });
    sim.run_until(30_000_000);
    sim.end_writes();
    sim.run_until(35_000_000);
    assert!(sim.findings().is_empty(), "{:?}", sim.findings().counts);
    let w = sim.world();
    assert_eq!(w.divergence(), None);
    let live: Vec<_> = w.live_peers().map(|(_, p)| p).collect();
    let unheard = w.shard_ids().iter().filter(|&&s| {
        live.iter().any(|p| p.version_of(s).is_none())
            && live.iter().all(|p| p.version_of(s).is_none() || p.is_retired(s))
    });
    assert!(unheard.count() > 0, "some live peer never heard of a retired shard");
    for s in w.shard_ids() {
        let held: Vec<bool> = live.iter().map(|p| p.version_of(*s).is_some() && !p.is_retired(*s)).collect();
        assert!(held.iter().all(|&h| h) || held.iter().all(|&h| !h), "{} live on some peers only", w.shard_name(*s));
    }
}

#[test]
fn bad_arguments_are_refused_with_a_reason() {
    let bad = SimArgs { loss: Some(1.5), ..SimArgs::default() };
    assert!(bad.plan().unwrap_err().contains("--loss 1.5"));
    let bad = SimArgs { seeds: Some("9..3".into()), ..SimArgs::default() };
    assert!(bad.plan().unwrap_err().contains("--seeds"));
    let bad = SimArgs { scenario: Some("no/such.toml".into()), ..SimArgs::default() };
    assert!(bad.plan().unwrap_err().contains("no/such.toml"));
    assert_eq!(anarchy_sim::cli::run(SimArgs { peers: Some(0), ..SimArgs::default() }), 2);
}

/// The shipped scenarios used by the CI sweep.
const SWEPT: [&str; 7] = [
    "lossy-link.toml",
    "partition-heal.toml",
    "czar-crash.toml",
    "crash-restart-churn.toml",
    "oneway-partition.toml",
    "duplication-storm.toml",
    "isolate-and-stall.toml",
];

/// The scenarios every seed of the CI sweep passes today (the others still
/// trip `monotonic-versions` at partition heal, see the ignored tests).
const SWEPT_PASSING: [&str; 6] = [
    "lossy-link.toml",
    "partition-heal.toml",
    "czar-crash.toml",
    "crash-restart-churn.toml",
    "duplication-storm.toml",
    "isolate-and-stall.toml",
];

/// Runs every seed in `seeds` of every scenario with 8 peers for 6 s and
/// asserts that all pass, listing each failure with its reproducing command.
fn sweep_passes(scenarios: &[&str], seeds: std::ops::RangeInclusive<u64>) {
    let mut failing = Vec::new();
    for scenario in scenarios {
        for seed in seeds.clone() {
            let r = run_small(scenario, seed);
            if !r.passed() {
                failing.push(format!("{}\n{}", r.command, r.human()));
            }
        }
    }
    assert!(failing.is_empty(), "{} failing runs:\n{}", failing.len(), failing.join("\n"));
}

/// CI sweep that must pass: 204 runs (34 seeds × 6 scenarios), 8 peers, 6 s each.
#[test]
fn ci_sweep_over_every_scenario_but_oneway_partition() {
    sweep_passes(&SWEPT_PASSING, 1..=34);
}

#[test]
fn regression_old_czar_serves_its_isolated_history_after_a_hand_over() {
    // isolate-and-stall.toml, 8 peers, seed 1: p3 applied 2.226 of avatars-2
    // after 4.225. Updates buffered from a lineage a peer had left were
    // drained onto the new one; now a buffered update must continue the run
    // (or the base) of the update before it.
    assert_passes(&run_small("isolate-and-stall.toml", 1));
}

/// CI-sized sweep: 105 runs (15 seeds × 7 scenarios), 8 peers, 6 s each.
/// The bigger sweep is `anarchy sim --scenario scenarios/X.toml --seeds 1..1000`.
#[test]
fn ci_sweep_over_shipped_scenarios() {
    sweep_passes(&SWEPT, 1..=15);
}

// ----- protocol bugs found by the simulator, kept with their seeds -----------------

#[test]
fn the_standard_workload_measures_its_wire_overhead() {
    let r = run(Some("bandwidth-standard.toml"), 1, |a| {
        a.peers = Some(8);
        a.seconds = Some(3.0);
    });
    assert_passes(&r);
    assert_eq!(r.shards, 9, "one avatar shard per player, plus the world");
    assert!(r.payload_bytes_per_peer_per_sec > 0.0);
    let ratio = r.wire_bytes_per_peer_per_sec / r.payload_bytes_per_peer_per_sec;
    assert!((r.wire_overhead_ratio - ratio).abs() < 1e-9);
    let balance = r.czar_load_max_over_mean.expect("czars advertise load");
    assert!((1.0..2.0).contains(&balance), "every player is czar of its own avatar: {balance}");
    let json = r.to_json();
    for field in [
        "\"payload_bytes_per_peer_per_sec\"",
        "\"wire_overhead_ratio\"",
        "\"bytes_sent_per_peer_per_sec\"",
        "\"czar_load_max_over_mean\"",
    ] {
        assert!(json.contains(field), "{field} missing from {json}");
    }
}

#[test]
fn streamed_entities_converge_and_are_timed_even_through_a_capped_uplink() {
    // The capped peer is a czar whose uplink cannot carry its heartbeats: it
    // is evicted again and again, and the last values settle slowly (seeds
    // 1-6 converged 0.1 to 7.3 s after the writes stopped). A 10 s settle.
    let r = run(Some("bandwidth-standard.toml"), 1, |a| {
        a.peers = Some(8);
        a.seconds = Some(3.0);
        a.settle = Some(10.0);
        a.streams = true;
        a.cap_peer = Some("3:64".into());
    });
    assert_passes(&r);
    assert!(r.updates_written > 0 && r.updates_applied > 0, "{}", r.human());
    assert!(r.propagation_ms.p50 > 0.0, "stream arrivals are timed: {}", r.human());
    assert!(r.command.contains("--streams"), "{}", r.command);
    let refused = SimArgs { streams: true, ..SimArgs::default() }.plan().expect_err("streams need the entity workload");
    assert!(refused.contains("--streams"), "{refused}");
}

#[test]
fn a_capped_peer_that_may_not_be_czar_gets_its_updates_on_time() {
    // One player's uplink carries 192 kbit/s: as czar of its avatar (and a
    // backup of others) it would owe 15 members a datagram every heartbeat.
    // Its game declares it not czar-eligible: it holds nothing, its writes
    // go through a czar, and what it receives stays as timely as elsewhere.
    let with = |cap: &str| {
        run(Some("bandwidth-standard.toml"), 1, |a| {
            a.peers = Some(16);
            a.seconds = Some(4.0);
            a.cap_peer = Some(cap.into());
            a.not_czar = Some("3".into());
        })
    };
    let (free, capped) = (with("3:100000"), with("3:192"));
    assert_passes(&capped);
    assert_updates_to_the_capped_peer_within_twice(&free, &capped);
    let from = capped.capped_author_propagation_ms.expect("a capped peer");
    assert!(from.p50 > 0.0 && from.p99 < 1_000.0, "its forwarded writes are timed: {}", capped.human());
    assert_eq!(capped.false_evictions, 0, "{}", capped.human());
    assert!(capped.command.contains("--not-czar 3"), "{}", capped.command);
}

#[test]
fn a_capped_peer_that_may_be_czar_steps_down_and_gets_its_updates_on_time() {
    // The standard workload's 32 players, one uplink at 256 kbit/s: as czar
    // of its avatar it owes its 31 members about twice that. Its probes'
    // round trips run far above the members' typical ones, and it hands its
    // avatar over (seeds 1-6 of the 10 s run: 1.0-1.7x the uncapped p99 of
    // updates to it; 3.6-10.5x before it stepped down by itself).
    let with = |cap: &str| {
        run(None, 1, |a| {
            a.workload = Some("standard".into());
            a.seconds = Some(4.0);
            a.cap_peer = Some(cap.into());
        })
    };
    let (free, capped) = (with("5:100000"), with("5:256"));
    assert_passes(&capped);
    assert_eq!(free.step_downs, 0, "{}", free.human());
    assert_eq!(capped.step_downs, 1, "{}", capped.human());
    assert!(capped.step_down_notes[0].contains("p5 (UplinkQueued"), "{:?}", capped.step_down_notes);
    assert_updates_to_the_capped_peer_within_twice(&free, &capped);
}

/// The p99 of updates the capped peer applied is at most twice the uncapped run's.
fn assert_updates_to_the_capped_peer_within_twice(free: &Report, capped: &Report) {
    let to = |r: &Report| r.capped_receiver_propagation_ms.expect("a capped peer").p99;
    assert!(to(capped) <= 2.0 * to(free), "updates to the capped peer p99 {} ms, uncapped {} ms", to(capped), to(free));
}

#[test]
fn regression_a_restarted_member_never_gets_the_stream_values_it_acknowledged_before() {
    // czar-crash.toml, 16 peers, standard workload with --streams, seeds 2,
    // 9, 16: `convergence`, p0 (restarted blank) held no stream values of
    // avatars-4. The new czar kept its cursor for p0's address from p0's
    // previous life (everything acknowledged) and, writing nothing new, never
    // sent again. A link's cursors now belong to one incarnation.
    for seed in [2, 9] {
        assert_passes(&run(Some("czar-crash.toml"), seed, |a| {
            a.peers = Some(16);
            a.workload = Some("standard".into());
            a.streams = true;
        }));
    }
}

#[test]
fn values_too_large_for_a_datagram_converge_under_loss() {
    // Every entity value is the largest a shard accepts: each delta, repair
    // and snapshot chunk travels in 15 fragments, and 2% loss costs about a
    // quarter of them whole.
    let r = run(Some("bandwidth-standard.toml"), 3, |a| {
        a.peers = Some(8);
        a.entities = Some(2);
        a.rate = Some(5.0);
        a.value_bytes = Some(anarchy_proto::MAX_VALUE_BYTES);
        a.loss = Some(0.02);
        a.seconds = Some(5.0);
    });
    assert_passes(&r);
    assert!(r.updates_applied >= 7 * r.updates_written / 2, "{}", r.human());
}

#[test]
fn regression_hand_over_to_a_joining_peer_is_lost() {
    // 16 peers, default network, seed 2: the others follow p14 at epoch 4
    // (version 4.2 of avatars-4) while p14 itself still follows the old czar
    // at 3.2 and p13 sits at 3.0; the shard never converges. With the working
    // tree core of the same day, seed 1 showed the sibling case: p1 claimed
    // avatars-1 on entering the session, then accepted p0's hand-over with
    // itself as prev_czar, so its catch-up repair had no target (stuck at 2.0).
    let r = run(None, 2, |a| {
        a.peers = Some(16);
        a.seconds = Some(5.0);
    });
    assert_passes(&r);
}

#[test]
fn regression_a_provisional_czar_commits_after_the_heal_and_loses_to_a_backed_one() {
    // partition-heal.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 2 (and 23),
    // once each flush started with another destination: `critical-never-lost`,
    // the commits 5.87 and 5.88 of world gone. Neither half of 16 is a
    // majority; p23 claimed world provisionally at epoch 5 on its side. After
    // the heal members that followed its claim voted for its proposals and
    // they committed, then the backed czar of epoch 3 re-asserted over the
    // provisional claim (epoch 7) with a history that lacked them. Now no
    // member votes under a provisional claim.
    //
    // Seed 25 (found with that change): the backed czar of world itself took
    // the other side's provisional claim, implied by one of its deltas, and
    // discarded its history with the commit 3.46 before re-asserting. An
    // implied claim no longer displaces a ready czar of a backed claim.
    for seed in [2, 23, 25] {
        assert_passes(&run_large("partition-heal.toml", seed));
    }
}

#[test]
fn regression_two_czars_write_one_epoch_after_isolate_and_stall_seed_33() {
    // isolate-and-stall.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 33 (past
    // the swept 1-30): `one-czar-per-epoch`, p0 and p16 both wrote avatars-3
    // in epoch 5. p17 held the shard by a provisional claim at epoch 3; at the
    // heal p0, the backed czar it displaced, re-asserted at 5 while p17 handed
    // the shard to p16 at 5. Re-assertions now take epochs 3 mod 4 and claims
    // and hand-overs 1 mod 4, so the two can no longer meet.
    assert_passes(&run_large("isolate-and-stall.toml", 33));
}

#[test]
fn regression_a_snapshot_we_hold_is_taken_over_a_lost_claims_updates_seed_45() {
    // isolate-and-stall.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 45 at 6 s
    // (+ 5 s settle): `convergence`, p15 stayed at 17.1411 of avatars-1 while
    // everyone else was at 25.1370. p22 wrote 17.1371-1411, was paused, and
    // p27 took the shard over from 1370; the shard came back to p22 at epoch
    // 25, still from 1370. p15 dropped every snapshot of 25.1370 as "a state
    // we already hold", since p22 had written its later updates too. Now
    // updates written in an epoch before the snapshot's count as foreign.
    assert_passes(&run_large("isolate-and-stall.toml", 45));
}

#[test]
fn regression_takeover_starts_behind_its_claimant_after_isolate_and_stall_seed_45() {
    // isolate-and-stall.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 45, the
    // scenario's 9 s (`run_large`'s 6 s shows only the first finding):
    // `monotonic-versions`, p22 installed snapshot 1.323 of avatars-3 after
    // 1.327. Its recovery round for the isolated czar p0's shard counted its
    // own grant at 1.228, its state when the round began; by the time a
    // majority granted (3237 ms) it held 1.327, but the round took the most
    // advanced grant, 1.323, as epoch 2's start. Past the start, p22 asked for
    // it whole, installed it over its own state (3899 ms) and wrote epoch 2
    // from seq 324 on, over seqs it already held. The claimant's own grant is
    // now its state when the round completes.
    // Then `czar-authored` / `signed-by-czar`: p16 applied 8.1479 of avatars-3
    // with content p22 never wrote. p16 had installed p0's snapshot 5.1478;
    // p22's takeover started epoch 8 at 5.1476, and its first run (8.1477 on)
    // reached p16 before the `Authority` frame: p16 took 1477-1478 for
    // duplicates and applied the patches from 1479 on to its own state, since
    // a run straddling a snapshot's seq counted as continuing it. It now does
    // only in the snapshot's own epoch; otherwise the follower resyncs.
    assert_passes(&run_swept("isolate-and-stall.toml", 45));
}

#[test]
fn regression_older_epoch_update_applied_after_newer_one() {
    // oneway-partition.toml, seed 1: e.g. p0 applied 4.235 of avatars-3 after 7.234.
    assert_passes(&run(Some("oneway-partition.toml"), 1, |_| {}));
}

#[test]
fn regression_version_of_goes_backwards_within_an_epoch() {
    // crash-restart-churn.toml, seed 1: p0 version_of(avatars-2) went from 8.248 to 8.179.
    // Later (after signed deltas changed its timeline): p3 applied 2.384 of
    // avatars-3 after a snapshot labelled 3.383, served by a peer that was
    // behind the start of epoch 3; such peers no longer serve snapshots.
    // Later still: p9, restarted blank, stayed at 3.38 of world; the czar's
    // log held 39, an update of its own whose sending was cancelled when it
    // accepted another claim (never signed), so its answer to every repair
    // from 39 was empty. Now the asker gets a snapshot.
    assert_passes(&run(Some("crash-restart-churn.toml"), 1, |_| {}));
}

#[test]
fn regression_halves_never_remerge_after_partition() {
    // Later: p1 applied 3.296 of avatars-5 after 4.295, from updates of the
    // losing side's czar it had buffered before the heal (same fix as above).
    // partition-heal.toml, seed 1. First found as the halves never merging (8 of
    // 16 peers stayed at world 6.32 while the others followed p7 at 10.35); that
    // is fixed. What remains: e.g. p0 version_of(avatars-3) went from 4.298 to 4.240.
    assert_passes(&run(Some("partition-heal.toml"), 1, |_| {}));
}

#[test]
fn regression_older_epoch_update_during_session_formation() {
    // 16 peers, default network, seed 4 (also with --critical-rate 0): p7 applied
    // 1.5 of avatars-1 after 2.4; p0 installed snapshot 2.3 of avatars-1 after 2.5.
    assert_passes(&run(None, 4, |a| {
        a.peers = Some(16);
        a.seconds = Some(5.0);
    }));
}

#[test]
fn regression_hand_over_to_a_suspect_loses_commits_after_a_oneway_partition() {
    // oneway-partition.toml, 8 peers, seed 27: e.g. p0 at 31.14 of world held no
    // value for score-2, committed at 4.25. The majority's recovery round took
    // world over from the cut-off czar p0 (epoch 2, backed) and at once handed it
    // to p1, top-ranked but cut off too and already suspected. p1 (hearing
    // everyone, heard by nobody) held that backed epoch 3; the majority, once p1
    // was confirmed gone, claimed world again without a round (provisional,
    // epoch 4) and committed there, while p1 and then p0 re-asserted over that
    // provisional claim up to epoch 31 and won at the heal. Seed 46 is the same.
    // Now no shard is handed over to a suspect.
    for seed in [27, 46] {
        assert_passes(&run_small("oneway-partition.toml", seed));
    }
}

#[test]
fn regression_a_piece_applied_over_another_lineages_state() {
    // oneway-partition.toml, 8 peers, seed 45: p1 applied 25548.130 of
    // avatars-3 with content its czar p7 never wrote there. Pieces (a czar's
    // MAC'd pushes of its open run) stated no base, so p1 applied p7's patches
    // over a state of another lineage at 129. Pieces now state the low half
    // of their base, and one that does not build on our state is off history.
    assert_passes(&run_small("oneway-partition.toml", 45));
}

#[test]
fn regression_shard_of_a_confirmed_czar_claimed_provisionally_loses_commits() {
    // oneway-partition.toml, 8 peers, seed 101: p0 at 27.23 of world held the
    // value authored at 1.9 for score-10 instead of the update committed at
    // 2.28. World's czar p0 was cut off (one way); the round that confirmed it
    // gone claimed no shard (world's first backup, p1, was cut off too but not
    // yet suspected), so once p1 was confirmed too, p4 claimed world plainly:
    // provisional, epoch 2. The majority committed there, and p0, still the
    // backed czar of epoch 1 in its own view, re-asserted over that provisional
    // claim up to epoch 27 and won at the heal. crash-restart-churn.toml seeds
    // 150 and 193 are the same with a restarted czar: p5 (blank, named czar of
    // epoch 2 by a snapshot) or p4 (state kept) re-asserted over the
    // provisional claim of epoch 3 and the commits 2.7-2.10 or 3.22 were lost.
    // Now the shard of a czar that left for good is taken over by a recovery
    // round of its own (backed, from a majority's most advanced state).
    for (scenario, seed) in
        [("oneway-partition.toml", 101), ("crash-restart-churn.toml", 150), ("crash-restart-churn.toml", 193)]
    {
        assert_passes(&run_small(scenario, seed));
    }
}

#[test]
fn regression_hand_over_races_a_claim_of_the_successor_at_the_same_epoch() {
    // lossy-link.toml, 8 peers, seed 119 (found while fixing the above): p0
    // version_of(avatars-1) went from 2.14 to 2.8. p7, a late joiner that had
    // not heard of p0's claim, claimed avatars-1 and re-asserted at epoch 2 from
    // seq 0, while p0 handed the shard over to p7 at epoch 2 from seq 14. p7
    // took the hand-over for its own claim (same czar, same epoch), so p0 held
    // 2.14 off p7's history and later resynced back to 2.6. Now a czar told of
    // its own epoch from another starting state re-asserts at a higher epoch.
    assert_passes(&run_small("lossy-link.toml", 119));
}

#[test]
fn regression_joiner_whose_lists_were_lost_claims_a_shard_alone() {
    // lossy-link.toml, 8 peers, seed 198: p1 authored 1.1 of avatars-5 while p0
    // also authored in epoch 1, and avatars-5 never converged. p1's `Welcome`
    // arrived but the `Members` frames before it were lost: it entered the
    // session knowing nobody, and after the join grace claimed avatars-5 as a
    // shard that never had a czar (backed, epoch 1). p0's hand-over at epoch 2
    // then named p1, which took it for its own claim and caught up from itself.
    // Now a `Welcome` from a sender we do not know is not entered on; the
    // `Join` is retried and answered again, lists first.
    assert_passes(&run_small("lossy-link.toml", 198));
}

#[test]
fn regression_follower_past_the_czar_on_a_losing_lineage_never_resyncs() {
    // partition-heal.toml, 8 peers, seed 107: p6 stayed at 3.118 of avatars-4
    // while the others followed p5 at 4.58. p6 had resynced to the losing
    // side's 3.118 just as p5 re-asserted at epoch 4 from 58; it accepted that
    // claim from a frame that did not state the start, and past the advert
    // with no memory of its checksum at 58 (its log began at the snapshot) it
    // counted itself ahead on the same history. Now a follower past the
    // advertised seq on an older lineage than the advert's is diverged. (With
    // the welcome fix above this seed no longer reaches that state; it is
    // kept for the named case.)
    assert_passes(&run_small("partition-heal.toml", 107));
}

#[test]
fn regression_snapshot_naming_us_czar_makes_us_ready_behind_the_start() {
    // lossy-link.toml, 8 peers, seed 91 (found while fixing the above): p4
    // version_of(avatars-4) went from 2.7 to 2.6. p0 handed avatars-4 over to
    // p7 at epoch 2 from seq 7 while p7 was still joining (its welcomes came
    // without lists); p7 learned of it from the welcomer's snapshot, which
    // names p7 czar, and, taking no start from it, counted its own state (seq
    // 5) as the epoch's start: it was ready there and wrote 2.6 over the 2.6
    // the others held. Now a snapshot naming us czar of an epoch we do not
    // hold states the start: the snapshot's own state.
    assert_passes(&run_small("lossy-link.toml", 91));
}

#[test]
fn regression_late_prepared_copies_are_proposed_again_by_a_czar_by_hand_over() {
    // oneway-partition.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 8 (11, 21, 26
    // and 30 alike): a critical update committed at 6.74 of world that no czar
    // authored. p3, world's czar cut off one way, ran recovery rounds on its
    // side; late `Prepared` answers of voters that never saw the majority's
    // decision (commit 5.40) were kept after the rounds ended (its promise to
    // itself outlived them). Handed world after the heal, p3 proposed that
    // long-committed update again and it committed a second time. Now voters'
    // prepared copies are kept only while a round of ours claims the shard,
    // and dropped when the round ends without taking it over or another's
    // claim is accepted.
    assert_passes(&run_large("oneway-partition.toml", 8));
}

#[test]
fn regression_a_commit_missed_by_a_paused_czar_is_committed_again_when_handed_back() {
    // isolate-and-stall.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 8: a
    // critical update committed at 7.71 of world that no czar authored. p3,
    // world's czar at epoch 5, was paused; p10 took world over at epoch 6 and
    // committed a write at 6.58 that p3 accepted late but whose decision it
    // never heard. Handed world back at epoch 7, p3 adopted its prepared copy
    // and proposed it again: its state already held the value, so it
    // committed a second time at its current version. (Members that knew the
    // decision accepted the re-proposal and even kept a new prepared copy of
    // it.) Now a member answers a `Propose` of a write it saw committed with
    // that `Decided` first, and a czar whose history holds that commit
    // closes the proposal with the original decision; recovery voters send
    // the decision they know after each `Prepared` copy. The run still fails
    // convergence (a follower behind a gap on another shard), so only the
    // critical invariants are checked.
    let r = run_large("isolate-and-stall.toml", 8);
    assert_eq!(r.critical.lost_after_commit, 0, "{}", r.human());
    assert!(!r.violation_counts.contains_key("critical-never-lost"), "{}", r.human());
}

#[test]
fn regression_a_commit_lost_at_a_heal_partition_heal_seed_308() {
    // partition-heal.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 308:
    // `critical-never-lost`, the update of score-13 committed at 5.45 of
    // world was missing from every peer at 13.101 after the heal. The 16/16
    // split left neither side a majority; p25 held world backed (epoch 5) and
    // committed 5.45 as the cut began, p6 claimed it provisionally on the
    // other side (epoch 9). After the heal, p25's followers took the epoch-9
    // claim from its deltas, assumed it backed (a delta does not state its
    // standing), and hinted it to p25 as backed; p25 gave way and its commit
    // was lost. Hints now state an assumed standing as provisional, and only
    // the czar (or a statement replacing an assumed one) changes a claim's
    // standing.
    assert_passes(&run_swept("partition-heal.toml", 308));
}

#[test]
fn regression_a_re_proposal_that_overtakes_its_claim_is_not_rejected_seed_397() {
    // isolate-and-stall.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 397:
    // `critical-never-lost`, score-6 committed at 5.36 of world was replaced
    // by its value of 5.7. p26, world's czar, committed it at the moment it
    // was isolated; no peer got the delta or the decision. p19 took over by a
    // round (epoch 6) with the prepared copy and proposed it again, but its
    // proposals left ahead of its `Authority` (critical traffic first): every
    // voter still followed epoch 5 and rejected the proposal as "not the
    // current czar's epoch", and the commit was undone. A voter now ignores a
    // proposal of a later epoch than it follows; the czar asks again.
    assert_passes(&run_swept("isolate-and-stall.toml", 397));
}

#[test]
fn regression_a_provisional_hand_over_never_displaces_a_stated_backed_czar_seed_395() {
    // isolate-and-stall.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 395 (on
    // the build with the seed 397 change): `convergence`, every replica of
    // avatars-2 at epoch 13 waiting for a snapshot. p26, isolated, claimed
    // avatars-2 provisionally (epoch 9) from its stale state and handed it to
    // p24 (epoch 13, provisional). After the heal, avatars-2's backed czar
    // re-asserted (epoch 11) and stalled at once, before any advert of epoch 11
    // left it; its followers then took the epoch-13 claim, from p26's
    // snapshots (implied, so assumed backed) and from the stated hand-over
    // (their czar had never advertised its epoch), and all ended off the new
    // epoch's history with nobody serving its start. A backed standing stated
    // to us now counts without an advert, and an implied claim never displaces
    // a live backed czar at a follower either.
    assert_passes(&run_swept("isolate-and-stall.toml", 395));
}

#[test]
fn regression_a_late_hand_over_from_a_replaced_czar_does_not_undo_its_successor_seed_328() {
    // isolate-and-stall.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 328 (on
    // the build with the seed 395 change): `critical-never-lost`, score-0,
    // score-2 and score-3 committed at 8.74-8.77 of world were lost at 9.98.
    // p23, world's czar at epoch 6, handed it to p6 (epoch 9) from its state
    // while p6's round took it over (epoch 8); the hand-over, held up at
    // p23's capped uplink, reached p6 two seconds later. p6, the ready czar at
    // epoch 8, took it as a hand-over to itself and cut its history back to
    // p23's old state, its commits with it. A hand-over to a ready backed czar
    // from the czar it took the shard from now makes it re-assert instead.
    assert_passes(&run_swept("isolate-and-stall.toml", 328));
}

#[test]
fn regression_a_commit_the_new_czar_knows_only_by_its_decision_is_kept_seed_469() {
    // isolate-and-stall.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 469:
    // `critical-never-lost`, score-5 committed at 5.36 of world (by p22 just
    // before it was isolated at 2.5 s; 9 peers saw the decision) holds its
    // 5.24 value at 13.74 on every peer. p9 took world over by a round at
    // epoch 12. It had heard the decision but held neither the proposal nor
    // the delta (its replica stood at 5.29), and it dropped the copies its
    // voters handed over as "already decided", so no one finished the
    // commit. Now a claimant keeps a copy of a commit it knows and proposes
    // it again once the round's state turns out not to hold it.
    assert_passes(&run_swept("isolate-and-stall.toml", 469));
}

#[test]
fn regression_a_czar_finishes_its_recovered_proposals_before_handing_over_seed_712() {
    // `critical-never-lost`: score-4, committed at 5.38 of world by its czar
    // p27 just as p27 was cut off, held no value on any peer afterwards
    // (lost_after_commit 32). The commit's delta and decision never left p27;
    // its copies were with the voters. p20 won the recovery round (epoch 6,
    // from a majority state at 5.37) while it suspected p5, the first backup,
    // and was handed the copies. p5's suspicion cleared, and p20 handed world
    // to it at epoch 9 in the same step, before it had proposed the copies
    // again. A czar by hand-over runs no round, so nobody finished them. Now
    // a czar does not hand a shard over (nor does a leaver) while proposals
    // from its recovery round are unfinished.
    assert_passes(&run_swept("isolate-and-stall.toml", 712));
}

// Findings of the 1000-seed sweep of the four failover scenarios at 32 peers
// (PROTOCOL.md §7): 3995 of 4000 runs passed; the five that did not, all of
// isolate-and-stall, are fixed (seed 712 above, 572 and 463/513/701 here).
// The sweep of isolate-and-stall on those fixes found 259 and 671 (below).

#[test]
fn regression_a_czar_that_handed_over_ignores_the_adverts_of_the_claim_before_seed_572() {
    // `convergence`: 30 of 32 live peers differed on avatars-1 after the
    // settle (epochs 5 and 13). p3, cut off with world, claimed avatars-1
    // provisionally at the heal (epoch 9), wrote to 495 and handed it to p18
    // (epoch 13, starting at 495). It still held an advert of p12, the czar
    // before (epoch 5, seq 468): compared with it, its own writes past 468
    // looked foreign, so it wanted a snapshot and stopped serving the start
    // state only it held. p18 waited for that state for good, and every
    // follower (off its history) waited for p18. Now an advert of an epoch
    // before ours is dropped unused.
    assert_passes(&run_swept("isolate-and-stall.toml", 572));
}

#[test]
fn regression_a_recovered_commit_the_new_czar_holds_only_by_snapshot_keeps_its_version_seeds_463_513_701() {
    // `critical-never-lost`, "a critical update committed at 16.58 / 10.43 /
    // 14.81 of world that no czar authored". Seed 463: p30's write committed
    // at 14.28 just as world's czar was cut off, and the decision reached
    // two members only. The new czar (epoch 16) finished the voters' copies;
    // its state held the value, but through a snapshot, so its log (from 39)
    // no longer told which write gave the key that value, and the commit was
    // named at its current version 16.58; the two members' reports came
    // after the majority's accepts. Now the state records, per key, the
    // version that wrote it, snapshots carry it, and such a commit is named
    // at 14.28.
    for seed in [463, 513, 701] {
        assert_passes(&run_swept("isolate-and-stall.toml", seed));
    }
}

#[test]
fn regression_a_replaced_czars_proposal_gets_no_vote_instead_of_a_reject_seeds_259_671() {
    // `critical-never-lost`: score-11 (seed 259), committed at 5.41 of world
    // as its czar was cut off, held no value on any peer from 9.74 on
    // (lost_after_commit 30; seed 671 likewise, score-7 at 5.45). The new
    // czar proposed the voters' copy again while a later round gathered
    // promises; the members that had promised the later epoch voted reject
    // ("not the current czar's epoch"), which made a majority, so the update
    // was decided `Rejected` everywhere, and the winner of the later round
    // dropped the copies it had just collected. Now a member that does not
    // follow the proposer in its epoch, or promised a later one, does not
    // vote, and a recovered proposal that times out is dropped undecided.
    for seed in [259, 671] {
        assert_passes(&run_swept("isolate-and-stall.toml", seed));
    }
}

#[test]
fn regression_two_claims_made_alone_never_share_an_epoch_seeds_329_685() {
    // Seed 329: `czar-authored` and `signed-by-czar` at 650 ms: p0 and p29
    // both made the first claim of avatars-3 at epoch 1 while the session
    // formed, and p31 applied 1.4 with content neither wrote. Seed 685:
    // `one-czar-per-epoch` at 7727 ms: p17 (backed czar of epoch 20, by a
    // round while p8 stalled) re-asserted at 23 over p9's round claim of 22,
    // and p9 re-asserted from 22 at 23 before p17's claim reached it. Two
    // claims made alone, of one class, landed on one epoch. Now every epoch
    // carries its claimant's tag in its low bits, so they cannot.
    for seed in [329, 685] {
        assert_passes(&run_swept("isolate-and-stall.toml", seed));
    }
}

#[test]
fn regression_a_czar_gives_up_a_start_nobody_serves_seeds_51_918_1134() {
    // `convergence` after the settle: seed 51, 30 of 32 live peers differ on
    // avatars-1 (epochs 14 and 22); seed 918, 15 of 32 on avatars-2 (epochs
    // 5, 76 and 78). In seed 51 the backed czar of epoch 25 was still
    // catching up to a starting state (seq 1067) that no live member held
    // (the most advanced held 996), and every follower waited with it. Now a
    // czar that gets no nearer to its start for `catch_up_timeout`
    // re-asserts from its own state. On the build before epochs named their
    // claimant, that bound alone made seeds 51 and 1134 (which also ended
    // unconverged) pass; seed 918's czar stalled at 11.3 s and passed with a
    // 10 s settle (the run ends 2.7 s later).
    for seed in [51, 918, 1134] {
        assert_passes(&run_swept("isolate-and-stall.toml", seed));
    }
}

#[test]
fn regression_a_former_czar_answers_a_decided_write_instead_of_relaying_it_seed_502() {
    // isolate-and-stall.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 502, the
    // scenario's 9 s: `critical-never-lost`, "a critical update committed at
    // 13.68 of world that no czar authored". p14, world's czar at epoch 9
    // (isolated, its uplink stalled), committed p2's write of score-8 at 9.61
    // (4932 ms); its decision reached p2 only at 5238 ms, so p2 kept
    // retrying `ForwardCritical` to p14. Having lost world to p30 (epoch 13,
    // 5080 ms), p14 relayed those retries to p30, which had never heard of
    // the write and proposed it afresh (5337 ms). p30's state (a snapshot of
    // 9.64) already held the value and its log no longer reached 9.61, so the
    // update committed a second time at p30's current version 13.68, an
    // ordinary write (5450 ms); the reports of the members that knew the
    // commit arrived 2-37 ms after the majority's accepts. Now a non-czar
    // that knows a write's decision answers the writer's retry with it
    // instead of relaying it.
    assert_passes(&run_swept("isolate-and-stall.toml", 502));
}

#[test]
fn regression_a_late_run_of_a_lost_claim_does_not_stall_a_hand_back_seed_556() {
    // isolate-and-stall.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 556:
    // `convergence`, replicas of avatars-1 at epochs 15, 16, 19 and 41 after the
    // settle. p15, avatars-1's czar, was paused at 5 s; p25 took the shard over by
    // a round (epoch 16, 5412 ms). Back at 6.8 s, p15 still wrote in its epoch 19
    // (to 19.1285); p25 re-asserted (epochs 23 to 39) and handed the shard back to
    // p15, which ranks first, at epoch 41 from 35.1415 (7335 ms). A run p15 had
    // signed in epoch 19 at 7208 ms, still on its way (queued at its capped
    // uplink), reached p25 after the hand-over; from the czar it followed, of an
    // older epoch, it was checked against p25's history, did not build on it, and
    // p25 marked itself off and asked p15 for a snapshot. Wanting one, p25 served
    // none, and p15, catching up to 1415 from another history, could only get that
    // state whole from p25: neither moved again. Now a follower on its epoch's
    // history (at or past its start) takes nothing from a run of an older epoch:
    // it is dropped as stale.
    assert_passes(&run_swept("isolate-and-stall.toml", 556));
}

#[test]
fn regression_a_late_run_of_a_lost_claim_does_not_stall_a_hand_back_seed_566() {
    // isolate-and-stall.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 566:
    // `convergence`, replicas of avatars-1 at epochs 15, 19 and 45 after the
    // settle. The cause of seed 556: p23, the paused czar, wrote in its epoch 19
    // after it resumed; p3, which had taken the shard over at epoch 14,
    // re-asserted (23 to 43) and handed it back at epoch 45 from 43.1495 (7343
    // ms); p23's epoch-19 run from seq 1190 (authored at 7186 ms) reached p3 after
    // that, and p3, the only holder of the start, stopped serving it.
    assert_passes(&run_swept("isolate-and-stall.toml", 566));
}

#[test]
fn regression_a_late_run_of_a_lost_claim_does_not_stall_a_hand_back_seed_631() {
    // isolate-and-stall.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 631:
    // `convergence`, replicas of avatars-2 at epochs 1, 3 and 5 after the settle,
    // no write applied after 0.9 s. p27 joined, knew no czar of avatars-2 yet and
    // claimed it first at epoch 1 (580 ms) from an empty state while p0 held it at
    // 1.57; p27 re-asserted at epoch 3 over p0's equal-epoch claim (619 ms) and
    // wrote to 3.111, while p0 handed the shard to p27 at epoch 5 from 1.57 (601
    // ms). p27's epoch-1 run then reached p0: its base was the empty state, so it
    // applied as duplicates, but its end checksum differed from p0's
    // (`BadChecksum`), and p0 marked itself off. p27, catching up to 57 from its
    // own 3.111, needed p0's state whole, which p0 no longer served. The same
    // cause as seed 556, found by the end check instead of the base check; the
    // same change fixes it.
    assert_passes(&run_swept("isolate-and-stall.toml", 631));
}

#[test]
fn regression_a_late_run_of_a_lost_claim_does_not_stall_a_hand_back_seed_632() {
    // isolate-and-stall.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 632:
    // `convergence`, replicas of avatars-1 at epochs 5, 8, 13, 27, 31 and 33 after
    // the settle. The cause of seed 556: p3, avatars-1's czar at epoch 13, was
    // paused and wrote on in epoch 13 once back (to 13.1775); p11 took the shard
    // over at epoch 16 (7880 ms), re-asserted (19 to 31) and handed it back at
    // epoch 33 from 31.2001 (8216 ms); p3's epoch-13 run from seq 1756 (authored
    // at 8060 ms) reached p11 after that, and p11, the only holder of the start,
    // stopped serving it.
    assert_passes(&run_swept("isolate-and-stall.toml", 632));
}

#[test]
fn regression_a_joiner_confirmed_gone_before_it_knew_anyone_stays_alone() {
    // lossy-link.toml, 8 peers, seed 74 (on the code with idle heartbeats, before
    // the fix): p5 at 1.2 of world for good while the others reached 2.23. p5's
    // welcome lists were lost, so it knew nobody and beat nobody; the others
    // confirmed it gone, and its sync requests were dropped as coming from a
    // non-member. Now a member we count as gone is answered with our lists,
    // which carry its tombstone, and it refutes.
    assert_passes(&run_small("lossy-link.toml", 74));
}

#[test]
fn regression_a_czar_paused_past_its_confirmation_undoes_commits() {
    // isolate-and-stall.toml, 8 peers, seed 30 (on the code with idle heartbeats
    // and batching, before the fix): commits of epoch 5 of world lost. The world
    // czar, paused past its confirmation, came back still backed at epoch 4, saw
    // the majority's claim of epoch 5 and re-asserted over it at epoch 6.
    // Now a peer told it was counted gone marks its own claims provisional, and
    // hard-left members get only their tombstone, never authority hints.
    assert_passes(&run_small("isolate-and-stall.toml", 30));
}

#[test]
fn regression_one_side_of_a_split_times_the_other_out_to_a_majority() {
    // partition-heal.toml, 8 peers, seeds 14, 37, 44 and 56 (on the code with
    // idle heartbeats, whose members time out later than czars): commits lost at
    // the heal. In a 4/4 split one side dropped a member of the other by its own
    // timeout, its next recovery round counted a quorum of 7, and 4 confirmed
    // the rest gone and committed. Now rounds count soft-left members, as
    // critical updates do.
    for seed in [14, 37, 44, 56] {
        assert_passes(&run_small("partition-heal.toml", seed));
    }
}

#[test]
fn regression_a_slow_joiner_is_confirmed_gone() {
    // lossy-10pct.toml (32 peers, 10% loss), seed 1, 2 s: p13 evicted p3
    // (Confirmed) at 1.2 s. p3's join took a second; the others, told of it by
    // its welcomer, counted its silence from then. Now a member learned of less
    // than `peer_timeout` ago that is czar of nothing is neither suspected nor
    // voted silent.
    let r = run(Some("lossy-10pct.toml"), 1, |a| a.seconds = Some(2.0));
    assert_eq!(r.false_evictions, 0, "{}", r.human());
}

#[test]
fn regression_a_plain_claim_after_a_failed_round_undoes_commits_the_majority_held() {
    // Same seed, once each flush started with another destination:
    // `monotonic-versions`, "p13 installed snapshot 3.427 of avatars-2 after
    // 3.428". p13 had buffered the old czar's 3.428 early, claimed epoch 8
    // from 3.427 and, catching up, applied 3.428 from the buffer as soon as
    // 3.427 arrived; only a snapshot brought it back. Now a new epoch's start
    // forgets buffered updates of older epochs past it.
    //
    // isolate-and-stall.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 16:
    // `critical-never-lost` (64 findings), the commits 2.30 and later of
    // world gone. World's czar p16 (uplink capped, queueing) committed 2.30
    // as it was cut off; its delta never left. The next czar's departed-czar
    // round got 15 of the 17 complete grants it needed and timed out, and a
    // failed round let a plain claim follow at once: provisional, from its own
    // state, which lacked 2.30 although a majority held it prepared. At the
    // heal p16, backed in its own eyes, re-asserted over that claim before
    // it heard it had been confirmed gone. Now, while we hear a majority, a
    // failed round is tried again (it then completed, 110 ms later) and a czar
    // re-asserts only while it hears a majority.
    //
    // Seed 21 (found with that change): p0, czar of world by a hand-over from
    // the suspect of a round of its own still collecting, then took the shard
    // over again from the round's most advanced voter, older than its own
    // state: p0 and every follower were off the new epoch's history and
    // nobody could serve it. A round now leaves a shard that is ours already.
    //
    // Seed 16 again, once runs carried patches (the timing moved):
    // `critical-never-lost`, "a commit at 10.37 that no czar authored". The
    // epoch-10 czar finished a recovered proposal its old czar had committed
    // at 3.16 (the decision never reached the voters that reported it): the
    // value was in its state already, and a commit that changes nothing named
    // the czar's current version, an ordinary write. It now names the version
    // of the write that gave the key that value, while the log remembers it.
    for seed in [16, 21] {
        assert_passes(&run_large("isolate-and-stall.toml", seed));
    }
}

#[test]
fn regression_followers_behind_a_capped_czar_never_catch_up() {
    // isolate-and-stall.toml, 32 peers, 4 shards, 40 ± 10 ms, seed 12:
    // `convergence`, six followers of avatars-2 still 80-280 updates behind
    // its czar 5 s after the writes stopped. The czar's uplink is capped and
    // followers repaired from the czar only, so its answers were queued behind
    // its own deltas and lost; the stragglers gained about 100 updates a
    // second. Now a repeated repair goes to another member, and followers
    // take runs the czar signed in its own epoch from whoever relays them.
    assert_passes(&run_large("isolate-and-stall.toml", 12));
}

#[test]
fn regression_a_hand_over_lands_on_the_epoch_a_round_claims() {
    // isolate-and-stall.toml, 32 peers, 4 shards, 40 ± 10 ms (found while
    // fixing the two above). Seed 15: `one-czar-per-epoch`, p0 and p21 both
    // wrote avatars-2 in one epoch. p0's uplink was jammed, so the others
    // took its shard over by a round at epoch 9 while p0, hearing everyone,
    // handed the shard to p16 at epoch 9 (one up, no promises asked). Now
    // rounds claim even epochs and claims made alone odd ones. Seed 19:
    // the same between a hand-over and a re-assertion; then a czar catching
    // up to a round's start dropped the voter holding it as its source for
    // good after one unanswered request (its snapshot was still crossing a
    // capped uplink), and never reached the start: every follower waited for
    // a snapshot only that czar could serve. Now it alternates between the
    // source and others. Seed 4 failed `convergence` on a build between these
    // fixes (one follower left on epoch 1 of avatars-1); kept as a check.
    for seed in [15, 19, 4] {
        assert_passes(&run_large("isolate-and-stall.toml", seed));
    }
}

#[test]
fn regression_a_mass_leave_strands_followers_behind_a_forgotten_authors_run() {
    // grow-shrink.toml, 24 peers, split budget 300, seed 1: `convergence`, p1
    // and p3 stuck at 9.10262 of world while the others reached 17.10736. At
    // 40 s, when 16 of 24 peers left at once, world's czar p14 handed the
    // shard to p18 (leaving too) with its last run, 9.10263-10266, flushed
    // just before its `Leave`; at p1 and p3 the run arrived after the `Leave`
    // and was dropped (unknown sender). p7, next in line, learned of p18's
    // departure before the hand-over, so it held off claiming until the
    // tombstones expired at 70 s, and p14's key went with them. Asked by p1
    // and p3 for 10263 on, p7 kept resending p14's run, which neither could
    // verify (`BadSignature`); the members they asked in between may not
    // relay older epochs (`StaleEpoch`). Now a run whose author we no longer
    // know is not resent: the asker gets a snapshot.
    assert_passes(&run(Some("grow-shrink.toml"), 1, |a| {
        a.peers = Some(24);
        a.split_writes = Some(300);
    }));
}

#[test]
#[ignore = "250 peers: about a minute in release; run with --ignored"]
fn regression_late_joiners_stay_on_a_czar_that_handed_over() {
    // 250 peers, 64 shards, 2 s at 1 Hz + 5 s settle, seed 1: `convergence`,
    // ten late joiners (p187-p204) stayed on epoch 7 of avatars-24 (or 3 of
    // avatars-52 on older builds) while everyone followed a later czar.
    // The snapshot at their join implied a backed claim of the czar of
    // epoch 7, which then handed the shard on with a provisional standing;
    // "a provisional claim never displaces a live backed czar" refused that
    // hand-over and every later one. Now only a czar whose advert for our
    // epoch we hold counts as live for that rule.
    assert_passes(&run(None, 1, |a| {
        a.peers = Some(250);
        a.shards = Some(64);
        a.seconds = Some(2.0);
        a.settle = Some(5.0);
        a.rate = Some(1.0);
    }));
}

#[test]
#[ignore = "256 peers for 70 simulated seconds: about 5 minutes in release; run with --ignored"]
fn regression_the_czars_splits_name_are_not_evicted() {
    // grow-shrink.toml --hot-by-hash, seed 1: 5 false evictions (`Confirmed`),
    // all of czars of children made at 21.4, 23.8 and 33.1 s. Members held
    // a czar to the 60 ms silence threshold from the moment they applied the
    // split naming it, while it still beat at the idle rate until it applied
    // the split too; the child's heir found it silent at once. Now a czar is
    // watched as an idle member until heard from since its claim.
    let r = run(Some("grow-shrink.toml"), 1, |a| a.hot_by_hash = true);
    assert_passes(&r);
    assert_eq!(r.false_evictions, 0, "{:?}", r.false_eviction_notes);
    assert!(r.splits > 0 && r.merges > 0, "the hot spot split and merged shards");
}

#[test]
#[ignore = "1000 peers for 12 simulated seconds: about 6 minutes and 4.7 GB in release; run with --ignored"]
fn regression_a_thousand_peers_keep_the_czars_a_split_names() {
    // `--peers 1000 --shards 4 --seconds 8 --settle 4 --rate 1 --hot-rate 1
    // --hot-by-hash --hot-move-secs 15 --split-writes 500 --seed 1`, the first
    // 8 s of the 1000-peer split run: before the rule of §6.4 (a czar is held
    // to a czar's thresholds once heard from since its claim) 494 evictions
    // of live peers by `peer_timeout`, from 5653 ms, all of the czars the
    // first split named (p181, p593): at 1000 members an idle peer beats each
    // member every 3.2 s, and members gave the new czars a czar's 1 s.
    let r = run(None, 1, |a| {
        a.peers = Some(1000);
        a.shards = Some(4);
        a.seconds = Some(8.0);
        a.settle = Some(4.0);
        a.rate = Some(1.0);
        a.hot_rate = Some(1.0);
        a.hot_by_hash = true;
        a.hot_move_secs = Some(15.0);
        a.split_writes = Some(500);
    });
    assert_passes(&r);
    assert!(r.splits > 0, "the hot spot split a shard");
    assert_eq!(r.false_evictions, 0, "{:?}", r.false_eviction_notes);
}
