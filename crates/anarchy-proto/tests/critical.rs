//! Critical updates: majority votes, validators, commits that survive takeovers,
//! and a minority that cannot commit.

mod support;

use std::time::Duration;

use anarchy_proto::wire::Frame;
use anarchy_proto::{Config, Event, WriteFailure, WriteId};
use support::Net;

fn session(n: usize) -> Net {
    Net::of(n, Config::default(), Duration::from_millis(20))
}

fn committed_everywhere(net: &Net, write: WriteId, writer: usize) -> bool {
    let origin = net.id(writer);
    net.live().iter().all(|i| {
        net.events[*i].iter().any(|e| match e {
            Event::Committed { write: w, origin: o, .. } => *o == origin && (*i != writer || *w == Some(write)),
            _ => false,
        })
    })
}

/// From now on no delta of `czar` arrives anywhere, and `heir` sees none of
/// its proposals: a commit reaches nobody's state, and only the voters other
/// than the heir hold copies of it.
fn hide_deltas_and_the_heirs_proposals(net: &mut Net, czar: usize, heir: usize) {
    net.frame_filter = Some(Box::new(move |d, f| {
        (d.from == czar && matches!(f, Frame::Delta { .. } | Frame::Piece { .. }))
            || (d.from == czar && d.to == heir && matches!(f, Frame::Propose { .. }))
    }));
}

#[test]
fn a_critical_write_commits_with_a_majority_and_every_member_sees_it() {
    let mut net = session(5);
    let world = net.declare_everywhere("world", None);
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let czar = net.index_of(net.peers[0].czar_of(world).unwrap());
    let writer = (czar + 1) % 5;
    let now = net.now;
    let id = net.peers[writer].write_critical(now, world, b"score", Some(b"10")).unwrap();
    net.drain_all();
    assert_eq!(net.peers[writer].get(world, b"score"), None, "not applied before the vote");
    net.run_for(Duration::from_millis(300));
    assert!(committed_everywhere(&net, id, writer));
    for i in 0..5 {
        assert_eq!(net.peers[i].get(world, b"score"), Some(&b"10"[..]), "peer {i}");
    }
    assert!(net.converged(world));
}

#[test]
fn a_czar_commits_its_own_critical_write() {
    let mut net = session(3);
    let world = net.declare_everywhere("world", Some(0));
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let now = net.now;
    let id = net.peers[0].write_critical(now, world, b"trade", Some(b"sword->bob")).unwrap();
    net.drain_all();
    net.run_for(Duration::from_millis(200));
    assert!(committed_everywhere(&net, id, 0));
}

#[test]
fn validators_that_reject_make_the_update_fail_with_their_reason() {
    let mut net = session(5);
    let world = net.declare_everywhere("world", Some(0));
    for i in 0..5 {
        net.peers[i].set_validator(Box::new(|p| {
            if p.value == Some(b"cheat".as_slice()) {
                Err("score too high".to_owned())
            } else {
                Ok(())
            }
        }));
    }
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let now = net.now;
    let id = net.peers[2].write_critical(now, world, b"score", Some(b"cheat")).unwrap();
    net.drain_all();
    net.run_for(Duration::from_millis(300));
    assert!(net.events[2]
        .iter()
        .any(|e| matches!(e, Event::Rejected { write, reason, .. } if *write == id && reason == "score too high")));
    for i in 0..5 {
        assert_eq!(net.peers[i].get(world, b"score"), None);
    }
}

#[test]
fn a_minority_side_cannot_commit() {
    let mut net = session(5);
    let world = net.declare_everywhere("world", None);
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let czar = net.index_of(net.peers[0].czar_of(world).unwrap());
    let small = vec![czar, (czar + 1) % 5];
    let cut = small.clone();
    net.drop_filter = Some(Box::new(move |d| cut.contains(&d.from) != cut.contains(&d.to)));
    net.run_for(Duration::from_secs(2));
    // The small side still has its czar, and plays on, but cannot commit.
    let now = net.now;
    let id = net.peers[small[1]].write_critical(now, world, b"kill", Some(b"x")).unwrap();
    net.drain_all();
    net.run_for(Duration::from_secs(3));
    assert!(net.events[small[1]]
        .iter()
        .any(|e| matches!(e, Event::WriteFailed { write, reason: WriteFailure::TimedOut, .. } if *write == id)));
    assert!(!net.events[small[1]].iter().any(|e| matches!(e, Event::Committed { .. })));
    // The big side took the shard over and can.
    let big = (0..5).find(|i| !small.contains(i)).unwrap();
    let now = net.now;
    let id = net.peers[big].write_critical(now, world, b"kill", Some(b"y")).unwrap();
    net.drain_all();
    net.run_for(Duration::from_millis(500));
    assert!(net.events[big].iter().any(|e| matches!(e, Event::Committed { write, .. } if *write == Some(id))));
}

#[test]
fn a_commit_survives_the_czar_crashing_right_after_it() {
    let mut net = session(5);
    let world = net.declare_everywhere("world", None);
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let czar = net.index_of(net.peers[0].czar_of(world).unwrap());
    let now = net.now;
    let id = net.peers[czar].write_critical(now, world, b"flag", Some(b"captured")).unwrap();
    net.drain_all();
    // Run until the czar has decided, then crash it at once.
    for _ in 0..100 {
        net.run_for(Duration::from_millis(5));
        if net.events[czar].iter().any(|e| matches!(e, Event::Committed { write, .. } if *write == Some(id))) {
            break;
        }
    }
    net.crash(czar);
    net.run_for(Duration::from_secs(2));
    for i in net.live() {
        assert_eq!(net.peers[i].get(world, b"flag"), Some(&b"captured"[..]), "peer {i}");
    }
    assert!(net.converged(world));
}

#[test]
fn a_new_czar_finishes_a_proposal_the_old_one_never_decided() {
    let mut net = session(5);
    let world = net.declare_everywhere("world", None);
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let czar = net.index_of(net.peers[0].czar_of(world).unwrap());
    // Votes never reach the czar: members prepare the proposal, nobody decides.
    net.drop_filter = Some(Box::new(move |d| {
        d.to == czar
            && support::decode(&d.payload).is_some_and(|dg| dg.frames.iter().any(|f| matches!(f, Frame::Vote { .. })))
    }));
    let now = net.now;
    net.peers[czar].write_critical(now, world, b"loot", Some(b"epic")).unwrap();
    net.drain_all();
    net.run_for(Duration::from_millis(150));
    net.crash(czar);
    net.drop_filter = None;
    net.run_for(Duration::from_secs(2));
    let origin = net.id(czar);
    for i in net.live() {
        assert_eq!(net.peers[i].get(world, b"loot"), Some(&b"epic"[..]), "peer {i}");
        assert!(
            net.events[i].iter().any(|e| matches!(e, Event::Committed { origin: o, .. } if *o == origin)),
            "peer {i} saw the commit"
        );
    }
}

#[test]
fn a_heal_never_undoes_a_commit_made_on_the_majority_side() {
    let mut net = session(5);
    let world = net.declare_everywhere("world", None);
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let czar = net.index_of(net.peers[0].czar_of(world).unwrap());
    // The czar stays on the big side; the small side times it out and claims
    // the shard provisionally, and may climb many epochs while it plays on.
    let small: Vec<usize> = (0..5).filter(|i| *i != czar).take(2).collect();
    let cut = small.clone();
    net.drop_filter = Some(Box::new(move |d| cut.contains(&d.from) != cut.contains(&d.to)));
    net.run_for(Duration::from_secs(3));
    let small_czar = net.peers[small[0]].czar_of(world).unwrap();
    assert_ne!(small_czar, net.id(czar), "the small side claimed the shard");
    for t in 0..10u8 {
        let now = net.now;
        let _ = net.peers[small[0]].write(now, world, b"small", &[t]);
        net.drain_all();
        net.run_for(Duration::from_millis(50));
    }
    let now = net.now;
    let id = net.peers[czar].write_critical(now, world, b"trophy", Some(b"big side")).unwrap();
    net.drain_all();
    net.run_for(Duration::from_millis(500));
    assert!(net.events[czar].iter().any(|e| matches!(e, Event::Committed { write, .. } if *write == Some(id))));
    net.drop_filter = None;
    net.run_for(Duration::from_secs(5));
    assert!(net.converged(world), "{}", net.describe(world));
    for i in 0..5 {
        assert_eq!(net.peers[i].get(world, b"trophy"), Some(&b"big side"[..]), "peer {i} lost the commit");
    }
    // The small side's optimistic writes were reported as discarded.
    assert!(small.iter().any(|i| net.events[*i].iter().any(|e| matches!(e, Event::Diverged { .. }))));
}

#[test]
fn a_blank_restarted_peer_whose_welcome_overtakes_the_member_lists_does_not_claim() {
    let mut net = session(5);
    let world = net.declare_everywhere("world", None);
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let czar = net.index_of(net.peers[0].czar_of(world).unwrap());
    let now = net.now;
    // Enough state that a snapshot of it takes several chunks.
    for k in 0..8u8 {
        net.peers[czar].write(now, world, &[b'k', k], &[k; 600]).unwrap();
    }
    let id = net.peers[czar].write_critical(now, world, b"score", Some(b"42")).unwrap();
    net.drain_all();
    net.run_for(Duration::from_millis(500));
    assert!(committed_everywhere(&net, id, czar));
    // A peer other than the czar and the bootstrap crashes and comes back blank.
    let victim = (1..5).find(|i| *i != czar).unwrap();
    net.crash(victim);
    net.run_for(Duration::from_secs(2));
    net.restart_blank(victim);
    let now = net.now;
    net.peers[victim].declare_shard(now, "world", None).unwrap();
    // Its welcome arrives with the first chunk of the shard's snapshot, but the
    // member lists and the other chunks are lost for a while: it knows the
    // czar's name, nothing about it, and holds none of the state.
    let until = net.now + Duration::from_millis(60);
    net.frame_filter = Some(Box::new(move |d, f| {
        d.to == victim && d.at < until && matches!(f, Frame::Members(_) | Frame::Snapshot { chunk: 1.., .. })
    }));
    net.peers[victim].join(now, &[support::addr(0)]);
    net.drain_all();
    net.run_for(Duration::from_secs(3));
    net.frame_filter = None;
    net.run_for(Duration::from_secs(1));
    for i in net.live() {
        assert_eq!(net.peers[i].get(world, b"score"), Some(&b"42"[..]), "peer {i}");
    }
    assert!(net.converged(world));
}

/// A new czar's proposals travel ahead of its claim (critical traffic goes
/// first), so a voter may see the re-proposal of a commit before it hears who
/// made it. A reject there would undo the commit; the voter waits instead
/// (isolate-and-stall, 32 peers, seed 397).
#[test]
fn a_re_proposal_that_overtakes_its_claim_is_not_rejected() {
    use std::cell::Cell;
    use std::rc::Rc;
    let mut net = session(5);
    let world = net.declare_everywhere("world", None);
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let czar = net.index_of(net.peers[0].czar_of(world).unwrap());
    let writer = (czar + 1) % 5;
    // The czar's delta and decision never leave it, and claims are held up.
    let hold_claims = Rc::new(Cell::new(true));
    let hold = hold_claims.clone();
    net.frame_filter = Some(Box::new(move |d, f| {
        (d.from == czar && matches!(f, Frame::Delta { .. } | Frame::Piece { .. } | Frame::Decided { .. }))
            || (hold.get() && matches!(f, Frame::Authority { .. }))
    }));
    let now = net.now;
    let id = net.peers[writer].write_critical(now, world, b"kill", Some(b"p3")).unwrap();
    net.drain_all();
    let origin = net.id(writer);
    let committed = net.run_until(Duration::from_secs(1), |net| {
        net.events[czar].iter().any(|e| matches!(e, Event::Committed { origin: o, .. } if *o == origin))
    });
    assert!(committed, "the czar committed the write");
    net.crash(czar);
    // Until a new czar re-proposes it, voters hear of no claim.
    let reproposed = net.run_until(Duration::from_secs(3), |net| {
        net.log.iter().any(|(_, from, _, bytes)| {
            *from != czar
                && support::decode(bytes).is_some_and(|dg| dg.frames.iter().any(|f| matches!(f, Frame::Propose { .. })))
        })
    });
    assert!(reproposed, "a new czar re-proposed the write");
    net.run_for(Duration::from_millis(50));
    hold_claims.set(false);
    net.run_for(Duration::from_secs(3));
    assert!(!net.events[writer].iter().any(|e| matches!(e, Event::Rejected { .. })), "the commit was undone");
    assert!(committed_everywhere(&net, id, writer));
    for i in net.live() {
        assert_eq!(net.peers[i].get(world, b"kill"), Some(&b"p3"[..]), "peer {i}");
    }
    assert!(net.converged(world), "{}", net.describe(world));
}

/// A czar that took a shard over by a recovery round does not pass it on
/// (here: leaving at once) before it has finished the proposals the voters
/// handed it: its successor would take the shard by hand-over, run no round,
/// and never learn of them (isolate-and-stall, 32 peers, seed 712).
#[test]
fn a_new_czar_leaving_before_it_finished_the_voters_copies_leaves_them_to_a_round() {
    let mut net = session(5);
    let world = net.declare_everywhere("world", None);
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let czar = net.index_of(net.peers[0].czar_of(world).unwrap());
    let backups = net.peers[czar].backups_of(world);
    let heir = net.index_of(backups[0]);
    let next = net.index_of(backups[1]);
    let writer = (0..5).find(|i| ![czar, heir, next].contains(i)).unwrap();
    // The commit reaches nobody's state, and the heir never holds a copy.
    hide_deltas_and_the_heirs_proposals(&mut net, czar, heir);
    let now = net.now;
    let id = net.peers[writer].write_critical(now, world, b"kill", Some(b"p3")).unwrap();
    net.drain_all();
    let heard = net.run_until(Duration::from_secs(1), |net| {
        net.events[writer].iter().any(|e| matches!(e, Event::Committed { write: Some(w), .. } if *w == id))
    });
    assert!(heard, "the write committed");
    net.crash(czar);
    net.frame_filter = None;
    // The moment the heir holds the shard, it leaves.
    let taken = net.run_until(Duration::from_secs(3), |net| net.peers[heir].czar_of(world) == Some(net.id(heir)));
    assert!(taken, "{}", net.describe(world));
    let now = net.now;
    net.peers[heir].leave(now);
    net.drain(heir);
    net.crash(heir);
    net.run_for(Duration::from_secs(3));
    assert!(net.peers[writer].czar_of(world).is_some_and(|c| c != net.id(heir) && c != net.id(czar)));
    for i in net.live() {
        assert_eq!(net.peers[i].get(world, b"kill"), Some(&b"p3"[..]), "peer {i} lost the commit");
    }
    assert!(net.converged(world), "{}", net.describe(world));
}

/// A new czar may know a commit only by its decision: it never had the
/// proposal nor the delta that applied it. The copies its voters hand over are
/// then the last ones left, and it finishes them like any other
/// (isolate-and-stall, 32 peers, seed 469).
#[test]
fn a_commit_the_new_czar_knows_only_by_its_decision_is_finished_from_the_voters_copies() {
    let mut net = session(5);
    let world = net.declare_everywhere("world", None);
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let czar = net.index_of(net.peers[0].czar_of(world).unwrap());
    let heir = net.index_of(net.peers[czar].backups_of(world)[0]);
    let writer = (0..5).find(|i| *i != czar && *i != heir).unwrap();
    // The heir hears only the decision.
    hide_deltas_and_the_heirs_proposals(&mut net, czar, heir);
    let now = net.now;
    let id = net.peers[writer].write_critical(now, world, b"kill", Some(b"p3")).unwrap();
    net.drain_all();
    let origin = net.id(writer);
    let heard = net.run_until(Duration::from_secs(1), |net| {
        net.events[heir].iter().any(|e| matches!(e, Event::Committed { origin: o, .. } if *o == origin))
    });
    assert!(heard, "the heir heard the decision");
    assert_eq!(net.peers[heir].get(world, b"kill"), None, "the heir holds no copy of the write");
    net.crash(czar);
    net.frame_filter = None;
    let taken = net.run_until(Duration::from_secs(3), |net| net.peers[writer].czar_of(world) == Some(net.id(heir)));
    assert!(taken, "{}", net.describe(world));
    net.run_for(Duration::from_secs(2));
    assert!(committed_everywhere(&net, id, writer));
    for i in net.live() {
        assert_eq!(net.peers[i].get(world, b"kill"), Some(&b"p3"[..]), "peer {i} lost the commit");
    }
    assert!(net.converged(world), "{}", net.describe(world));
}

/// A czar told that it was counted gone refutes and holds its shards
/// provisionally (a majority may have moved them on). When nobody did, a
/// round of its own, asking for promises while it is live, backs its claim
/// again: without it every critical write to the shard timed out for good
/// (PROTOCOL §7; seen in the simulator's standard workload, seed 5, on a
/// build whose pongs waited for the next heartbeat).
#[test]
fn a_czar_that_refuted_a_leave_nobody_acted_on_commits_again() {
    // A czar that hears everyone and is told it was counted gone would step
    // down (`step_down_when_evicted`); this is about the claim it keeps when
    // it does not.
    let config = Config { step_down_when_evicted: false, ..Config::default() };
    let mut net = Net::of(5, config, Duration::from_millis(20));
    let world = net.declare_everywhere("world", Some(0));
    net.start_all();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.peers[1].czar_of(world), Some(net.id(0)));
    // Only the czar hears that it was counted gone.
    let me = net.peers[0].members().find(|m| m.id == net.id(0)).unwrap();
    let record = anarchy_proto::wire::MemberRecord {
        id: me.id,
        public_key: me.public_key,
        addr: me.addr,
        incarnation: me.incarnation,
        status: anarchy_proto::wire::MemberStatus::Left,
        czar_eligible: true,
    };
    let gossip = support::seal(&anarchy_proto::wire::encode_frames(&net.id(2), &[Frame::Members(vec![record])]));
    let (now, from) = (net.now, net.addrs[2]);
    net.peers[0].handle_datagram(now, from, &gossip);
    net.drain_all();
    net.run_for(Duration::from_millis(200));
    // Nobody took the shard over: the refuting czar still holds it.
    for i in 0..5 {
        assert_eq!(net.peers[i].czar_of(world), Some(net.id(0)), "peer {i}");
    }
    let now = net.now;
    let id = net.peers[1].write_critical(now, world, b"score", Some(b"7")).unwrap();
    net.drain_all();
    net.run_for(Duration::from_secs(3));
    assert!(committed_everywhere(&net, id, 1), "{:?}", net.events[1]);
    for i in 0..5 {
        assert_eq!(net.peers[i].get(world, b"score"), Some(&b"7"[..]), "peer {i}");
        assert_eq!(net.peers[i].czar_of(world), Some(net.id(0)), "peer {i}");
    }
    assert!(net.converged(world));
}
