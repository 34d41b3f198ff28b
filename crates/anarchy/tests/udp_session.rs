//! Real-UDP sessions on loopback in one process: joining, converging,
//! graceful leave with czar hand-over, and garbage input.
//! Every wait polls a condition against a generous deadline; no fixed sleeps.

use anarchy::{Session, SessionError, WriteOutcome};

mod common;
use common::{wait_until, DEADLINE};

async fn start(i: usize, bootstrap: Option<std::net::SocketAddr>) -> Session {
    let mut builder = Session::builder()
        .bind("127.0.0.1:0".parse().unwrap())
        .seed(i as u64)
        .shard("world")
        .own_shard(format!("avatar-{i}"));
    if let Some(addr) = bootstrap {
        builder = builder.join(addr);
    }
    builder.start().await.expect("session starts")
}

/// `n` sessions joined through the first, each seeing all the others.
async fn start_all(n: usize) -> Vec<Session> {
    let first = start(0, None).await;
    let bootstrap = first.local_addr();
    let mut sessions = vec![first];
    for i in 1..n {
        sessions.push(start(i, Some(bootstrap)).await);
    }
    for s in &sessions {
        s.wait_for_members(n, DEADLINE).await.expect("everyone sees everyone");
    }
    sessions
}

/// Every shard name any of `sessions` knows.
fn shard_names(sessions: &[&Session]) -> Vec<String> {
    let mut names: Vec<String> = sessions.iter().flat_map(|s| s.shards()).map(|info| info.name).collect();
    names.sort();
    names.dedup();
    names
}

/// Whether all `sessions` hold the same version and checksum of every shard.
fn converged(sessions: &[&Session], shards: &[String]) -> bool {
    shards.iter().all(|shard| {
        let first = (sessions[0].shard_version(shard), sessions[0].shard_checksum(shard));
        first.0.is_some() && sessions.iter().all(|s| (s.shard_version(shard), s.shard_checksum(shard)) == first)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_sessions_converge_and_survive_a_graceful_leave() {
    const PEERS: usize = 5;
    let mut sessions = start_all(PEERS).await;
    let all: Vec<&Session> = sessions.iter().collect();
    wait_until("every avatar shard is known everywhere and owned by its player", || {
        (0..PEERS).all(|i| {
            let shard = format!("avatar-{i}");
            all.iter().all(|s| s.czar_of(&shard) == Some(sessions[i].id()))
        })
    })
    .await;

    for round in 0..3u8 {
        for (i, s) in sessions.iter().enumerate() {
            let outcome = s.write(&format!("avatar-{i}"), b"pos", &[i as u8, round]).expect("avatar write");
            assert!(matches!(outcome, WriteOutcome::Applied(_)), "the player is czar of its avatar: {outcome:?}");
        }
    }
    sessions[2].write("world", b"door", b"open").expect("world write");
    // A value far larger than one datagram crosses real UDP in fragments.
    let map: Vec<u8> = (0..anarchy::MAX_VALUE_BYTES).map(|i| (i * 7 % 251) as u8).collect();
    sessions[4].write("world", b"map", &map).expect("the largest value is accepted");

    let shards = shard_names(&all);
    assert_eq!(shards.len(), PEERS + 1, "world plus one avatar each: {shards:?}");
    wait_until("all five replicas agree and read back the writes", || {
        converged(&all, &shards)
            && all.iter().all(|s| {
                s.get("world", b"door").as_deref() == Some(&b"open"[..])
                    && s.get("world", b"map").as_deref() == Some(&map[..])
                    && (0..PEERS).all(|i| s.get(&format!("avatar-{i}"), b"pos") == Some(vec![i as u8, 2]))
            })
    })
    .await;

    // Player 3 leaves gracefully; its avatar moves on and the rest stay in step.
    let leaver = sessions.remove(3);
    let leaver_id = leaver.id();
    leaver.leave().await.expect("leave is announced");
    assert!(matches!(leaver.write("avatar-3", b"pos", b"x"), Err(SessionError::NotInSession)));
    leaver.shutdown().await;

    let rest: Vec<&Session> = sessions.iter().collect();
    wait_until("the others see four live members", || rest.iter().all(|s| s.live_member_count() == PEERS - 1)).await;
    wait_until("avatar-3 has one new czar everywhere", || {
        let czar = rest[0].czar_of("avatar-3");
        czar.is_some() && czar != Some(leaver_id) && rest.iter().all(|s| s.czar_of("avatar-3") == czar)
    })
    .await;

    sessions[0].write("avatar-3", b"pos", b"abandoned").expect("write to the orphaned avatar");
    sessions[1].write("world", b"door", b"closed").expect("world write after the leave");
    wait_until("the remaining four converge", || {
        converged(&rest, &shards)
            && rest.iter().all(|s| {
                s.get("avatar-3", b"pos").as_deref() == Some(&b"abandoned"[..])
                    && s.get("world", b"door").as_deref() == Some(&b"closed"[..])
            })
    })
    .await;

    for s in sessions {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_are_counted_as_drops_and_the_session_keeps_working() {
    let session = start(0, None).await;
    session.wait_joined(DEADLINE).await.expect("a session of one is joined at once");
    let drops_before = session.stats().total_drops();

    let attacker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    attacker.send_to(b"definitely not anarchy", session.local_addr()).unwrap();
    attacker.send_to(&[0xff; 1500], session.local_addr()).unwrap();
    attacker.send_to(&[], session.local_addr()).unwrap();
    wait_until("the garbage is counted", || session.stats().total_drops() >= drops_before + 3).await;

    // Still a working peer: it writes, and a newcomer joins through it and catches up,
    // both on a shard that stays here and on one that may move to the newcomer.
    session.write("avatar-0", b"k", b"v").expect("write after garbage");
    session.write("world", b"k", b"w").expect("write after garbage");
    let other = start(1, Some(session.local_addr())).await;
    other.wait_for_members(2, DEADLINE).await.expect("join after garbage");
    wait_until("the newcomer reads the writes", || {
        other.get("avatar-0", b"k").as_deref() == Some(&b"v"[..])
            && other.get("world", b"k").as_deref() == Some(&b"w"[..])
    })
    .await;

    other.shutdown().await;
    session.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_errors_that_name_their_cause() {
    let session = start(0, None).await;
    session.wait_joined(DEADLINE).await.unwrap();
    assert!(matches!(session.write("nowhere", b"k", b"v"), Err(SessionError::UnknownShard(name)) if name == "nowhere"));
    assert!(matches!(session.write("world", b"", b"v"), Err(SessionError::EmptyKey)));
    assert!(matches!(session.write("world", &[b'k'; 65], b"v"), Err(SessionError::KeyTooLong(65))));
    assert!(matches!(session.write("world", b"k", &[0; 20_000]), Err(SessionError::ValueTooLarge(20_000))));
    assert!(matches!(session.declare_shard("", None), Err(SessionError::BadShardName { .. })));

    let taken = Session::builder().bind(session.local_addr()).start().await;
    assert!(matches!(taken, Err(SessionError::Bind { .. })), "the port is in use");

    let joined = async {
        while let Some(event) = session.next_event().await {
            if matches!(event, anarchy::Event::Joined { .. }) {
                return true;
            }
        }
        false
    };
    assert!(tokio::time::timeout(DEADLINE, joined).await.expect("events arrive"), "a Joined event");
    session.write("world", b"k", b"v").unwrap();
    wait_until("the Authored event is queued", || {
        session.poll_events().iter().any(|e| matches!(e, anarchy::Event::Authored { .. }))
    })
    .await;
    session.shutdown().await;
}

#[tokio::test]
async fn the_event_stream_ends_after_shutdown() {
    use std::pin::Pin;
    use std::task::Poll;

    let session = start(0, None).await;
    session.wait_joined(DEADLINE).await.unwrap();
    let mut stream = session.events();
    session.shutdown().await;
    let mut drained = 0;
    loop {
        let next = std::future::poll_fn(|cx| match futures_core::Stream::poll_next(Pin::new(&mut stream), cx) {
            Poll::Ready(item) => Poll::Ready(item),
            Poll::Pending => Poll::Ready(Some(anarchy::Event::Joined { members: usize::MAX })),
        })
        .await;
        match next {
            Some(anarchy::Event::Joined { members: usize::MAX }) => panic!("stream still pending after shutdown"),
            Some(_) => drained += 1,
            None => break,
        }
    }
    assert!(drained >= 1, "the Joined event was still delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stream_keys_reach_every_session_and_only_the_czar_writes_them() {
    const PEERS: usize = 3;
    let sessions = start_all(PEERS).await;
    let all: Vec<&Session> = sessions.iter().collect();
    wait_until("avatar-1 is owned by its player everywhere", || {
        all.iter().all(|s| s.czar_of("avatar-1") == Some(sessions[1].id()))
    })
    .await;
    for frame in 0..30u8 {
        sessions[1].write_stream("avatar-1", b"pos", &[frame, 0, 40, 0]).expect("the czar streams its avatar");
    }
    assert!(
        matches!(sessions[0].write_stream("avatar-1", b"pos", b"x"), Err(SessionError::NotCzar(name)) if name == "avatar-1")
    );
    let long = vec![0; anarchy::MAX_STREAM_VALUE_BYTES + 1];
    assert!(matches!(sessions[1].write_stream("avatar-1", b"pos", &long), Err(SessionError::StreamValueTooLarge(_))));
    wait_until("every session holds the newest stream value", || {
        all.iter().all(|s| s.stream_value("avatar-1", b"pos") == Some(vec![29, 0, 40, 0]))
    })
    .await;
    assert_eq!(sessions[0].get("avatar-1", b"pos"), None, "stream keys are apart from the versioned state");
    for s in sessions {
        s.shutdown().await;
    }
}
