//! Czar eligibility: a peer whose game says it may not carry a czar's duties
//! (`Config::czar_eligible = false`) is ranked after every eligible member,
//! so it is czar and backup of nothing, beats at the idle rate, and its
//! writes still reach everyone through the czar.

mod support;

use std::time::Duration;

use anarchy_proto::wire::Frame;
use anarchy_proto::Config;
use support::Net;

/// Five peers; peer 4 may not be czar, yet is the preferred czar of `avatar`.
fn session() -> (Net, anarchy_proto::ShardId, anarchy_proto::ShardId) {
    let mut net = Net::new(Config::default());
    for _ in 0..4 {
        net.add();
    }
    net.add_with(Config { czar_eligible: false, ..Config::default() });
    let avatar = net.declare_everywhere("avatar", Some(4));
    let world = net.declare_everywhere("world", None);
    net.start_all();
    net.run_for(Duration::from_secs(2));
    (net, avatar, world)
}

#[test]
fn a_peer_that_may_not_be_czar_holds_nothing_and_beats_at_the_idle_rate() {
    let (mut net, avatar, world) = session();
    let p4 = net.id(4);
    for i in 0..5 {
        for shard in [avatar, world] {
            let czar = net.peers[i].czar_of(shard);
            assert!(czar.is_some() && czar != Some(p4), "peer {i}: czar of {shard:?} is {czar:?}");
            assert!(!net.peers[i].backups_of(shard).contains(&p4), "peer {i}: p4 among the backups of {shard:?}");
        }
    }
    // Its own record says so everywhere, joiners' views included.
    let late = net.add();
    let now = net.now;
    for name in ["avatar", "world"] {
        net.peers[late].declare_shard(now, name, (name == "avatar").then_some(p4)).unwrap();
    }
    net.peers[late].join(now, &[support::addr(0)]);
    net.drain(late);
    net.run_for(Duration::from_secs(2));
    assert!(net.peers[late].czar_of(avatar).is_some_and(|c| c != p4));
    assert!(!net.peers[late].backups_of(avatar).contains(&p4));
    // Over one second a czar beats every member 20 times; p4 about 4.
    let from = net.log.len();
    net.run_for(Duration::from_secs(1));
    let beats = |i: usize| {
        net.log[from..]
            .iter()
            .filter(|(_, f, t, _)| *f == i && *t == 0)
            .filter_map(|(_, _, _, payload)| support::decode(payload))
            .filter(|d| d.frames.iter().any(|f| matches!(f, Frame::Heartbeat { .. })))
            .count()
    };
    let czar = net.index_of(net.peers[0].czar_of(avatar).unwrap());
    let (idle, full) = (beats(4), beats(czar));
    assert!((2..=6).contains(&idle), "p4 beat p0 {idle} times in a second");
    assert!(full >= 18, "the czar beat p0 {full} times in a second");
}

#[test]
fn a_peer_that_may_not_be_czar_writes_through_the_czar_and_takes_over_when_alone() {
    let (mut net, avatar, _) = session();
    let now = net.now;
    net.peers[4].write(now, avatar, b"pos", b"here").unwrap();
    net.drain_all();
    net.run_for(Duration::from_millis(500));
    for i in 0..5 {
        assert_eq!(net.peers[i].get(avatar, b"pos"), Some(&b"here"[..]), "peer {i}");
    }
    // With every eligible member gone but one, the ineligible peer is the
    // only backup left: eligibility orders the ranking, it never empties it.
    for i in 1..4 {
        net.crash(i);
    }
    net.run_for(Duration::from_secs(3));
    let backups = net.peers[0].backups_of(avatar);
    let czar = net.peers[0].czar_of(avatar);
    assert_eq!(czar, Some(net.id(0)), "the last eligible member holds the shard");
    assert_eq!(backups, vec![net.id(4)], "the ineligible peer backs it up");
}

#[test]
fn a_peer_restarted_with_another_eligibility_is_seen_with_the_new_one() {
    let (mut net, avatar, world) = session();
    let p4 = net.id(4);
    // p4 restarts before anyone times it out, with the same identity and the
    // default settings: eligible now, at the incarnation its old record holds.
    net.crash(4);
    net.run_for(Duration::from_millis(200));
    net.restart_blank(4);
    let now = net.now;
    net.peers[4].declare_shard(now, "avatar", Some(p4)).unwrap();
    net.peers[4].declare_shard(now, "world", None).unwrap();
    net.peers[4].join(now, &[support::addr(0)]);
    net.drain(4);
    net.run_for(Duration::from_secs(4));
    // It corrected its record with a higher incarnation: every view agrees,
    // and it holds its preferred shard again.
    for i in 0..5 {
        let me = net.peers[i].members().find(|m| m.id == p4).expect("p4 is a member");
        assert!(me.czar_eligible && me.is_alive(), "peer {i} holds p4 as {me:?}");
    }
    for i in 0..5 {
        assert_eq!(net.peers[i].czar_of(avatar), Some(p4), "peer {i}");
        assert!(net.peers[i].czar_of(world).is_some());
    }
}
