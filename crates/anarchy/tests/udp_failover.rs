//! Real-UDP failover on loopback: the czar's session is dropped without a
//! goodbye, its first backup takes over, writes and critical writes go on.
//! Every wait polls a condition against a generous deadline; no fixed sleeps.

use anarchy::{CriticalOutcome, Event, Session};

mod common;
use common::{wait_until, DEADLINE};

async fn start(i: usize, bootstrap: Option<std::net::SocketAddr>) -> Session {
    let mut builder = Session::builder().bind("127.0.0.1:0".parse().unwrap()).seed(100 + i as u64).shard("world");
    if let Some(addr) = bootstrap {
        builder = builder.join(addr);
    }
    builder.start().await.expect("session starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_takes_over_when_the_czar_vanishes_and_writes_continue() {
    const PEERS: usize = 4;
    let first = start(0, None).await;
    let bootstrap = first.local_addr();
    let mut sessions = vec![first];
    for i in 1..PEERS {
        sessions.push(start(i, Some(bootstrap)).await);
    }
    for s in &sessions {
        s.wait_for_members(PEERS, DEADLINE).await.expect("everyone sees everyone");
    }
    wait_until("everyone follows one czar for world", || {
        let czar = sessions[0].czar_of("world");
        czar.is_some() && sessions.iter().all(|s| s.czar_of("world") == czar)
    })
    .await;
    let czar_id = sessions[0].czar_of("world").unwrap();
    let backup = sessions[0].backups_of("world")[0];
    let czar_index = sessions.iter().position(|s| s.id() == czar_id).unwrap();
    for (i, s) in sessions.iter().enumerate() {
        s.write("world", format!("k{i}").as_bytes(), b"before").expect("write");
    }
    let everyone: Vec<&Session> = sessions.iter().collect();
    wait_until("the writes are everywhere", || {
        (0..PEERS).all(|i| everyone.iter().all(|s| s.get("world", format!("k{i}").as_bytes()).is_some()))
    })
    .await;

    // The czar's process dies: no leave, no hand-over.
    let dead = sessions.remove(czar_index);
    dead.abort();
    let started = std::time::Instant::now();
    wait_until("the first backup is czar everywhere", || sessions.iter().all(|s| s.czar_of("world") == Some(backup)))
        .await;
    let failover = started.elapsed();
    eprintln!("failover over loopback took {failover:?}");

    // Ordinary writes go on, from the new czar and through it.
    for (i, s) in sessions.iter().enumerate() {
        s.write("world", format!("after{i}").as_bytes(), b"x").expect("write after failover");
    }
    let survivors: Vec<&Session> = sessions.iter().collect();
    wait_until("writes after the failover are everywhere", || {
        (0..survivors.len()).all(|i| survivors.iter().all(|s| s.get("world", format!("after{i}").as_bytes()).is_some()))
    })
    .await;
    // Nothing acknowledged before the crash was lost.
    for s in &survivors {
        for i in 0..PEERS {
            assert_eq!(s.get("world", format!("k{i}").as_bytes()).as_deref(), Some(&b"before"[..]));
        }
    }
    // A critical write still commits: three of the four original members are a majority.
    let handle = sessions[0].write_critical("world", b"score", Some(b"42")).expect("critical write");
    let outcome = tokio::time::timeout(DEADLINE, handle.outcome()).await.expect("decided in time");
    assert!(matches!(outcome, CriticalOutcome::Committed(_)), "{outcome:?}");
    wait_until("the commit is everywhere", || {
        survivors.iter().all(|s| s.get("world", b"score").as_deref() == Some(b"42"))
    })
    .await;
    let events = sessions[1].poll_events();
    assert!(events.iter().any(|e| matches!(e, Event::CzarChanged { new, .. } if *new == backup)));
    assert!(events.iter().any(|e| matches!(e, Event::PeerLeft { peer, .. } if *peer == czar_id)));
    assert!(events.iter().any(|e| matches!(e, Event::Committed { .. })));
    for s in sessions {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_validator_can_reject_a_critical_write() {
    let a = start(10, None).await;
    let b = start(11, Some(a.local_addr())).await;
    let c = start(12, Some(a.local_addr())).await;
    for s in [&a, &b, &c] {
        s.wait_for_members(3, DEADLINE).await.expect("joined");
        s.set_validator(|p| if p.value == Some(b"999".as_slice()) { Err("too rich".into()) } else { Ok(()) })
            .expect("validator");
    }
    let handle = b.write_critical("world", b"gold", Some(b"999")).expect("critical write");
    let outcome = tokio::time::timeout(DEADLINE, handle.outcome()).await.expect("decided in time");
    assert_eq!(outcome, CriticalOutcome::Rejected("too rich".into()));
    assert_eq!(a.get("world", b"gold"), None);
    let ok = b.write_critical("world", b"gold", Some(b"10")).expect("critical write");
    let outcome = tokio::time::timeout(DEADLINE, ok.outcome()).await.expect("decided in time");
    assert!(matches!(outcome, CriticalOutcome::Committed(_)));
    assert!(matches!(
        b.write_critical("nowhere", b"k", None),
        Err(anarchy::SessionError::UnknownShard(name)) if name == "nowhere"
    ));
    for s in [a, b, c] {
        s.shutdown().await;
    }
}
