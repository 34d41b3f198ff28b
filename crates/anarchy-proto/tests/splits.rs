//! Shard splits: a hot shard splits by key hash into two children that every
//! peer derives alike, writes follow their keys to the children, and nothing
//! written before, during or after the split is lost.

mod support;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use anarchy_proto::shards::{key_bit, ranking, ShardInfo};
use anarchy_proto::wire::{self, Frame};
use anarchy_proto::{Config, Event, PeerId, ShardId, WriteError, WriteId, WriteOutcome, RESERVED_KEY_PREFIX};
use support::Net;

/// Five peers sharing `world` with a low split budget (40 writes/s for 300 ms).
fn session(config: Config) -> (Net, ShardId) {
    let (net, world, _) = session_beside_quiet_shards(config, 0);
    (net, world)
}

/// As `session`, with `quiet` more shards (`quiet-0`, …) that nobody writes.
fn session_beside_quiet_shards(config: Config, quiet: usize) -> (Net, ShardId, Vec<ShardId>) {
    let mut net = Net::new(config);
    for _ in 0..5 {
        net.add();
    }
    let world = net.declare_everywhere("world", None);
    let quiet: Vec<ShardId> = (0..quiet).map(|n| net.declare_everywhere(&format!("quiet-{n}"), None)).collect();
    net.start_all();
    net.run_for(Duration::from_secs(1));
    (net, world, quiet)
}

/// A trickle of writes (well under a quarter of the budget): keys `slow0`
/// to `slow6`, one write every 100 ms for 6 s, recorded in `want`.
fn write_trickle(net: &mut Net, world: ShardId, want: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
    write_every(net, world, Duration::from_millis(100), 60, want);
}

/// `count` writes of keys `slow0` to `slow6`, one every `every`, from
/// peers 0 to 4 in turn, recorded in `want`.
fn write_every(net: &mut Net, world: ShardId, every: Duration, count: u32, want: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
    for t in 0..count {
        let now = net.now;
        let i = (t as usize) % 5;
        let key = format!("slow{}", t % 7).into_bytes();
        let value = t.to_le_bytes().to_vec();
        net.peers[i].write(now, world, &key, &value).unwrap();
        want.insert(key, value);
        net.drain_all();
        net.run_for(every);
    }
}

fn hot_config() -> Config {
    Config {
        split_writes_per_sec: 40,
        split_bytes_per_sec: 0,
        split_after: Duration::from_millis(300),
        max_split_depth: 1,
        merge_after: Duration::from_secs(600),
        ..Config::default()
    }
}

/// Every peer writes keys `k{peer}-{n}` (n < 20) for `ticks` ticks of 50 ms;
/// returns the last value each key was given.
fn write_load(net: &mut Net, world: ShardId, ticks: u32, round: &mut u32) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut last = BTreeMap::new();
    for _ in 0..ticks {
        *round += 1;
        let now = net.now;
        for i in net.live() {
            for n in 0..4u32 {
                let key = format!("k{i}-{}", (*round * 4 + n) % 20).into_bytes();
                let value = round.to_le_bytes().to_vec();
                net.peers[i].write(now, world, &key, &value).unwrap();
                last.insert(key, value);
            }
        }
        net.drain_all();
        net.run_for(Duration::from_millis(50));
    }
    last
}

fn merges_seen(net: &Net, i: usize) -> Vec<([ShardId; 2], ShardId)> {
    net.events[i]
        .iter()
        .filter_map(|e| match e {
            Event::ShardMerged { children, parent } => Some((*children, *parent)),
            _ => None,
        })
        .collect()
}

fn splits_seen(net: &Net, i: usize) -> Vec<(ShardId, [ShardId; 2])> {
    net.events[i]
        .iter()
        .filter_map(|e| match e {
            Event::ShardSplit { parent, children } => Some((*parent, *children)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_hot_shard_splits_and_every_write_lands_in_the_child_holding_its_key() {
    let (mut net, world) = session(hot_config());
    let mut round = 0;
    let mut want = write_load(&mut net, world, 40, &mut round);
    want.extend(write_load(&mut net, world, 10, &mut round));
    net.run_for(Duration::from_secs(2));
    let children = [ShardId::child(world, false), ShardId::child(world, true)];
    for i in net.live() {
        assert_eq!(splits_seen(&net, i), vec![(world, children)], "peer {i}{}", net.describe(world));
        for (key, value) in &want {
            let leaf = net.peers[i].shard_of(world, key).unwrap();
            assert_eq!(leaf, children[usize::from(key_bit(key, 0))]);
            assert_eq!(
                net.peers[i].get(world, key),
                Some(&value[..]),
                "peer {i} key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }
    for child in children {
        assert!(net.converged(child), "{}", net.describe(child));
        // Each child holds only its half of the keys, and nothing reserved.
        let r = net.peers[0].replica(child).unwrap();
        let bit = child == children[1];
        assert!(r.entries().all(|(k, _)| key_bit(k, 0) == bit && !k.starts_with(RESERVED_KEY_PREFIX)));
        assert!(!r.is_empty());
    }
    // The parent is retired: its state is frozen at the split.
    let v = net.peers[0].version_of(world);
    write_load(&mut net, world, 4, &mut round);
    net.run_for(Duration::from_millis(500));
    assert_eq!(net.peers[0].version_of(world), v);
    // The split went through a majority vote: no game event names it.
    for i in net.live() {
        assert!(!net.events[i].iter().any(|e| matches!(e, Event::Committed { .. } | Event::Rejected { .. })));
    }
}

#[test]
fn children_are_spread_by_ranking_and_take_writes_from_everyone() {
    let (mut net, world) = session(hot_config());
    let mut round = 0;
    write_load(&mut net, world, 40, &mut round);
    net.run_for(Duration::from_secs(1));
    let children = [ShardId::child(world, false), ShardId::child(world, true)];
    for child in children {
        let czars = net.czars(child);
        assert_eq!(czars.len(), 1, "one czar per child: {czars:?}");
        assert!(czars.iter().next().unwrap().is_some());
    }
    // A write through the parent's name from a peer that is czar of neither child.
    let czars: Vec<_> = children.iter().map(|c| net.peers[0].czar_of(*c).unwrap()).collect();
    let writer = (0..5).find(|i| !czars.contains(&net.id(*i))).expect("five peers, two czars");
    let now = net.now;
    net.peers[writer].write(now, world, b"late", b"v").unwrap();
    net.drain_all();
    net.run_for(Duration::from_millis(300));
    for i in net.live() {
        assert_eq!(net.peers[i].get(world, b"late"), Some(&b"v"[..]));
    }
    let applied =
        net.events[writer].iter().any(|e| matches!(e, Event::WriteApplied { shard, .. } if children.contains(shard)));
    assert!(applied, "the writer heard back from the child's czar");
}

#[test]
fn a_quiet_shard_does_not_split_and_reserved_keys_are_refused() {
    let (mut net, world) = session(Config::default());
    let mut round = 0;
    write_load(&mut net, world, 20, &mut round);
    assert!(splits_seen(&net, 0).is_empty());
    let now = net.now;
    let reserved = [RESERVED_KEY_PREFIX, b"x"].concat();
    assert_eq!(net.peers[1].write(now, world, &reserved, b"v"), Err(WriteError::ReservedKey));
}

#[test]
fn a_pinned_shard_never_splits() {
    let mut net = Net::new(hot_config());
    for _ in 0..5 {
        net.add();
    }
    let world = net.declare_everywhere("world", Some(2));
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let mut round = 0;
    write_load(&mut net, world, 40, &mut round);
    assert!(splits_seen(&net, 0).is_empty());
}

/// Distinct czars of `shards` at peer 0.
fn czar_count(net: &Net, shards: &[ShardId]) -> usize {
    shards.iter().filter_map(|s| net.peers[0].czar_of(*s)).collect::<std::collections::BTreeSet<_>>().len()
}

#[test]
fn a_shard_carrying_far_more_than_the_mean_czar_splits_under_its_budget() {
    // 400 writes/s: under the 1000 budget, over a quarter of it.
    let config = Config { split_writes_per_sec: 1000, ..hot_config() };
    // Alone, the shard is the mean: it stays whole.
    let (mut net, world) = session(config.clone());
    let mut round = 0;
    write_load(&mut net, world, 40, &mut round);
    assert!(splits_seen(&net, 0).is_empty(), "{}", net.describe(world));
    // Beside quiet shards with other czars it carries all the load, more
    // than twice the mean czar's: it splits.
    let (mut net, world, quiet) = session_beside_quiet_shards(config, 6);
    let all: Vec<ShardId> = quiet.iter().copied().chain([world]).collect();
    assert!(czar_count(&net, &all) >= 3, "the rule needs three czars to act");
    let mut round = 0;
    write_load(&mut net, world, 40, &mut round);
    net.run_for(Duration::from_secs(1));
    let children = [ShardId::child(world, false), ShardId::child(world, true)];
    // Only `world` split (no quiet shard did), once, everywhere.
    for i in net.live() {
        assert_eq!(splits_seen(&net, i), vec![(world, children)], "peer {i}{}", net.describe(world));
    }
    for child in children {
        assert!(net.converged(child), "{}", net.describe(child));
    }
}

#[test]
fn a_shard_over_the_balance_floor_splits_for_balance_and_one_under_it_stays_whole() {
    // Beside six quiet shards of other czars a shard with any load carries
    // more than twice the mean czar's. With a budget of 40 writes/s the
    // balance floor is 2.5 writes/s (a sixteenth).
    let config = hot_config();
    // 2 writes/s, for 6 s: under the floor, whole.
    let (mut net, world, quiet) = session_beside_quiet_shards(config.clone(), 6);
    let all: Vec<ShardId> = quiet.iter().copied().chain([world]).collect();
    assert!(czar_count(&net, &all) >= 3, "the rule needs three czars to act");
    let mut want = BTreeMap::new();
    write_every(&mut net, world, Duration::from_millis(500), 12, &mut want);
    for i in net.live() {
        assert!(splits_seen(&net, i).is_empty(), "peer {i}{}", net.describe(world));
    }
    // 5 writes/s: over the floor (and under the merge share, 10 writes/s,
    // the floor before): it splits.
    let (mut net, world, _) = session_beside_quiet_shards(config, 6);
    let mut want = BTreeMap::new();
    write_every(&mut net, world, Duration::from_millis(200), 30, &mut want);
    net.run_for(Duration::from_secs(1));
    let children = [ShardId::child(world, false), ShardId::child(world, true)];
    for i in net.live() {
        assert_eq!(splits_seen(&net, i), vec![(world, children)], "peer {i}{}", net.describe(world));
        for (key, value) in &want {
            assert_eq!(net.peers[i].get(world, key), Some(&value[..]), "peer {i}");
        }
    }
}

#[test]
fn cold_siblings_whose_union_would_split_for_balance_merge_only_once_it_is_under_the_floor() {
    // Split for the budget beside six quiet shards of other czars. Then a
    // trickle of 10 writes/s: under the merge share, but over the balance
    // floor, and the union would carry more than twice the mean czar's (the
    // quiet czars carry nothing): merged, it would split again, so the
    // children stay apart. Once the trickle stops they merge back.
    let config = Config { merge_after: Duration::from_millis(500), ..hot_config() };
    let (mut net, world, quiet) = session_beside_quiet_shards(config, 6);
    let all: Vec<ShardId> = quiet.iter().copied().chain([world]).collect();
    assert!(czar_count(&net, &all) >= 3, "the rule needs three czars to act");
    let mut round = 0;
    let mut want = write_load(&mut net, world, 40, &mut round);
    let children = [ShardId::child(world, false), ShardId::child(world, true)];
    assert_eq!(splits_seen(&net, 0), vec![(world, children)], "{}", net.describe(world));
    write_trickle(&mut net, world, &mut want);
    for i in net.live() {
        assert!(merges_seen(&net, i).is_empty(), "peer {i}{}", net.describe(world));
    }
    net.run_for(Duration::from_secs(3));
    for i in net.live() {
        assert_eq!(merges_seen(&net, i), vec![(children, world)], "peer {i}{}", net.describe(world));
        for (key, value) in &want {
            assert_eq!(net.peers[i].get(world, key), Some(&value[..]), "peer {i}");
        }
    }
    assert!(net.converged(world), "{}", net.describe(world));
}

#[test]
fn a_czar_carrying_far_more_than_the_mean_splits_its_busiest_shard_though_no_shard_alone_does() {
    // One peer is czar of two shards written 5 times a second each (over the
    // balance floor of 2.5, under the budget of 40); two quiet shards have
    // two other czars. The mean czar carries 2L/3: no shard alone carries
    // over twice that (L < 4L/3), but their czar does (2L): it splits its
    // busiest shard, and then, if its load is still over, the other.
    let mut net = Net::new(hot_config());
    for _ in 0..5 {
        net.add();
    }
    let ids: Vec<PeerId> = (0..5).map(|i| net.id(i)).collect();
    let top = |name: &str| ranking(&ShardInfo::declared(ShardId::from_name(name), name, None), ids.iter(), 1)[0];
    let names: Vec<String> = (0..200).map(|n| format!("s{n}")).collect();
    let busy_czar = top(&names[0]);
    let busy: Vec<&String> = names.iter().filter(|n| top(n) == busy_czar).take(2).collect();
    let mut quiet: Vec<&String> = Vec::new();
    for n in &names {
        if quiet.len() < 2 && top(n) != busy_czar && quiet.iter().all(|q| top(q) != top(n)) {
            quiet.push(n);
        }
    }
    let busy: Vec<ShardId> = busy.iter().map(|n| net.declare_everywhere(n, None)).collect();
    let quiet: Vec<ShardId> = quiet.iter().map(|n| net.declare_everywhere(n, None)).collect();
    net.start_all();
    net.run_for(Duration::from_secs(1));
    let all: Vec<ShardId> = busy.iter().chain(&quiet).copied().collect();
    assert_eq!(czar_count(&net, &all), 3, "{}", net.describe(busy[0]));
    let mut want = Vec::new();
    for t in 0..60u32 {
        let now = net.now;
        let shard = busy[t as usize % 2];
        let key = format!("k{}", t % 7).into_bytes();
        let value = t.to_le_bytes().to_vec();
        net.peers[t as usize % 5].write(now, shard, &key, &value).unwrap();
        want.retain(|(s, k, _)| (*s, k) != (shard, &key));
        want.push((shard, key, value));
        net.drain_all();
        net.run_for(Duration::from_millis(100));
    }
    net.run_for(Duration::from_secs(1));
    let split = splits_seen(&net, 0);
    assert!(!split.is_empty(), "{}", net.describe(busy[0]));
    for i in net.live() {
        assert_eq!(splits_seen(&net, i), split, "peer {i}");
        assert!(split.iter().all(|(parent, _)| busy.contains(parent)), "only the busy czar's shards split");
        for (shard, key, value) in &want {
            assert_eq!(net.peers[i].get(*shard, key), Some(&value[..]), "peer {i}");
        }
    }
}

#[test]
fn a_peer_that_joins_after_a_split_derives_the_children_and_catches_up() {
    let (mut net, world) = session(hot_config());
    let mut round = 0;
    let want = write_load(&mut net, world, 40, &mut round);
    net.run_for(Duration::from_secs(1));
    assert_eq!(splits_seen(&net, 0).len(), 1);
    let late = net.add();
    let now = net.now;
    net.peers[late].declare_shard(now, "world", None).unwrap();
    net.peers[late].join(now, &[support::addr(0)]);
    net.drain_all();
    net.run_for(Duration::from_secs(3));
    let children = [ShardId::child(world, false), ShardId::child(world, true)];
    assert_eq!(splits_seen(&net, late).len(), 1, "{}", net.describe(world));
    for child in children {
        assert!(net.converged(child), "{}", net.describe(child));
    }
    for (key, value) in &want {
        assert_eq!(net.peers[late].get(world, key), Some(&value[..]));
    }
}

#[test]
fn cold_siblings_merge_back_without_losing_a_write() {
    let config = Config { merge_after: Duration::from_millis(500), ..hot_config() };
    let (mut net, world) = session(config);
    let mut round = 0;
    let mut want = write_load(&mut net, world, 40, &mut round);
    let children = [ShardId::child(world, false), ShardId::child(world, true)];
    assert_eq!(splits_seen(&net, 0), vec![(world, children)], "{}", net.describe(world));
    // A trickle of writes (well under a quarter of the budget) goes on
    // through the seal and the merge: none may be lost.
    write_trickle(&mut net, world, &mut want);
    net.run_for(Duration::from_secs(2));
    for i in net.live() {
        assert_eq!(merges_seen(&net, i), vec![(children, world)], "peer {i}{}", net.describe(world));
        assert_eq!(net.peers[i].shard_of(world, b"any"), Some(world));
        for (key, value) in &want {
            assert_eq!(
                net.peers[i].get(world, key),
                Some(&value[..]),
                "peer {i} key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }
    assert!(net.converged(world), "{}", net.describe(world));
    // The parent is whole again: it holds every key and takes writes.
    let r = net.peers[0].replica(world).unwrap();
    assert_eq!(r.entries().filter(|(k, _)| !k.starts_with(RESERVED_KEY_PREFIX)).count(), want.len());
    let now = net.now;
    net.peers[3].write(now, world, b"after", b"merge").unwrap();
    net.drain_all();
    net.run_for(Duration::from_millis(300));
    assert!(net.live().iter().all(|i| net.peers[*i].get(world, b"after") == Some(&b"merge"[..])));
    assert!(net.converged(world), "{}", net.describe(world));
}

#[test]
fn a_peer_that_takes_the_merged_parent_before_it_can_merge_keeps_the_children_as_everyone_does() {
    // One member hears nothing of the bit-1 child from the split until after
    // the merge: it cannot merge by itself (it lacks the sealed sibling), and
    // the merged parent's czar advertises the parent meanwhile. However it
    // comes by the merged parent, it must end holding both children, retired,
    // as the others do.
    merge_while_one_member_misses(&[true]);
}

#[test]
fn a_peer_that_misses_the_merge_record_too_keeps_the_children_as_everyone_does() {
    // As above, but the member hears nothing of either child: it lacks the
    // merge record as well as the sealed sibling when the merged parent's
    // czar advertises the parent.
    merge_while_one_member_misses(&[false, true]);
}

/// Splits `world`, then keeps one member that is czar of nothing from
/// hearing of the children with these bits until 1 s after the others
/// merged them back; checks it ends as they do.
fn merge_while_one_member_misses(bits: &[bool]) {
    let config = Config { merge_after: Duration::from_millis(500), ..hot_config() };
    let (mut net, world) = session(config);
    let mut round = 0;
    let mut want = write_load(&mut net, world, 40, &mut round);
    let children = [ShardId::child(world, false), ShardId::child(world, true)];
    assert_eq!(splits_seen(&net, 0), vec![(world, children)], "{}", net.describe(world));
    let czars: Vec<usize> = [world, children[0], children[1]]
        .iter()
        .filter_map(|s| net.peers[0].czar_of(*s))
        .map(|c| net.index_of(c))
        .collect();
    let y = (0..5).find(|i| !czars.contains(i)).expect("a peer that is no czar");
    let blind = Rc::new(Cell::new(true));
    let b = blind.clone();
    let hidden: Vec<ShardId> = bits.iter().map(|b| children[usize::from(*b)]).collect();
    net.frame_filter = Some(Box::new(move |d, f| {
        b.get()
            && d.to == y
            && match f {
                Frame::Delta { shard, .. }
                | Frame::RunSig { shard, .. }
                | Frame::Snapshot { shard, .. }
                | Frame::RepairReq { shard, .. } => hidden.contains(shard),
                // A piece names its shard by the id's low 16 bits.
                Frame::Piece { shard, .. } => hidden.iter().any(|h| wire::piece_shard_bits(*h) == *shard),
                _ => false,
            }
    }));
    write_trickle(&mut net, world, &mut want);
    let merged: Vec<usize> = net.live().into_iter().filter(|i| !merges_seen(&net, *i).is_empty()).collect();
    assert!(merged.len() >= 4 && !merged.contains(&y), "merged: {merged:?}, y = {y}{}", net.describe(world));
    net.run_for(Duration::from_secs(1));
    blind.set(false);
    net.run_for(Duration::from_secs(3));
    assert!(net.converged(world), "{}", net.describe(world));
    for child in children {
        let held: Vec<bool> = net.live().iter().map(|i| net.peers[*i].version_of(child).is_some()).collect();
        assert!(held.iter().all(|h| *h), "{child:?} held by {held:?} (y = {y}){}", net.describe(child));
        assert!(net.converged(child), "{}", net.describe(child));
    }
    for i in net.live() {
        assert_eq!(net.peers[i].shard_of(world, b"any"), Some(world), "peer {i}");
        for (key, value) in &want {
            assert_eq!(net.peers[i].get(world, key), Some(&value[..]), "peer {i}");
        }
    }
}

#[test]
fn a_merged_shard_splits_again_when_it_heats_up() {
    let config = Config { merge_after: Duration::from_millis(500), ..hot_config() };
    let (mut net, world) = session(config);
    let mut round = 0;
    write_load(&mut net, world, 40, &mut round);
    net.run_for(Duration::from_secs(3));
    assert_eq!(merges_seen(&net, 0).len(), 1, "{}", net.describe(world));
    let want = write_load(&mut net, world, 40, &mut round);
    net.run_for(Duration::from_millis(500));
    let children = [ShardId::child(world, false), ShardId::child(world, true)];
    for i in net.live() {
        assert_eq!(splits_seen(&net, i).len(), 2, "peer {i}{}", net.describe(world));
        for (key, value) in &want {
            assert_eq!(net.peers[i].get(world, key), Some(&value[..]));
        }
    }
    for child in children {
        assert!(net.converged(child), "{}", net.describe(child));
    }
}

/// Whether peer `from` has sent a `Propose` of a layout record (split, seal
/// or merge) since log entry `since`.
fn proposed_layout(net: &Net, from: usize, since: usize) -> bool {
    net.log[since..]
        .iter()
        .filter(|(_, f, _, _)| *f == from)
        .filter_map(|(_, _, _, payload)| support::decode(payload))
        .flat_map(|d| d.frames)
        .any(|f| matches!(f, Frame::Propose { update, .. } if update.key.starts_with(RESERVED_KEY_PREFIX)))
}

/// Writes load until `world`'s czar proposes a layout record, crashes it
/// `crash_after_ms` later and writes on (80 ticks in all); whether it crashed.
fn crash_the_czar_once_it_proposes_a_layout(
    net: &mut Net,
    world: ShardId,
    round: &mut u32,
    crash_after_ms: u64,
) -> bool {
    let czar = net.index_of(net.peers[0].czar_of(world).unwrap());
    let mut since = net.log.len();
    let mut crashed = false;
    for _ in 0..80 {
        write_load(net, world, 1, round);
        if !crashed && proposed_layout(net, czar, since) {
            net.run_for(Duration::from_millis(crash_after_ms));
            net.crash(czar);
            crashed = true;
        }
        since = net.log.len();
    }
    crashed
}

/// Every key `write_load` writes reads the same at every live peer through the declared name.
fn assert_keys_read_alike(net: &Net, world: ShardId) {
    let live = net.live();
    for key in (0..5).flat_map(|i| (0..20).map(move |n| format!("k{i}-{n}").into_bytes())) {
        let first = net.peers[live[0]].get(world, &key).map(<[u8]>::to_vec);
        for i in &live {
            assert_eq!(net.peers[*i].get(world, &key).map(<[u8]>::to_vec), first, "peer {i}");
        }
    }
}

#[test]
fn a_czar_that_crashes_while_its_split_is_voted_on_leaves_one_valid_layout() {
    for crash_after_ms in [0u64, 10, 30] {
        let (mut net, world) = session(hot_config());
        let mut round = 0;
        let crashed = crash_the_czar_once_it_proposes_a_layout(&mut net, world, &mut round, crash_after_ms);
        assert!(crashed, "the czar proposed a split");
        // Writes stop; the survivors settle.
        net.run_for(Duration::from_secs(3));
        let live = net.live();
        let children = [ShardId::child(world, false), ShardId::child(world, true)];
        let split: Vec<bool> = live.iter().map(|i| !splits_seen(&net, *i).is_empty()).collect();
        assert!(split.iter().all(|s| *s == split[0]), "one layout everywhere: {split:?}{}", net.describe(world));
        assert!(net.converged(world), "{}", net.describe(world));
        if split[0] {
            for child in children {
                assert!(net.converged(child), "{}", net.describe(child));
                assert_eq!(net.czars(child).len(), 1, "one czar of {child:?}");
            }
        }
        // Every key reads the same everywhere through the declared name.
        assert_keys_read_alike(&net, world);
    }
}

#[test]
fn a_czar_that_crashes_while_a_merged_shard_splits_again_leaves_its_children_as_everyone_holds_them() {
    // The children, merged back, are retired but kept: a split of the merged
    // parent makes them anew. Whatever becomes of that split with its czar
    // crashed, every peer ends holding both children alike (a failover
    // during a split, issue item 5).
    let children_held = |net: &Net, world: ShardId| {
        [ShardId::child(world, false), ShardId::child(world, true)]
            .iter()
            .all(|c| net.live().iter().all(|i| net.peers[*i].version_of(*c).is_some()) && net.converged(*c))
    };
    for crash_after_ms in [0u64, 5, 10, 20, 30] {
        let config = Config { merge_after: Duration::from_millis(500), ..hot_config() };
        let (mut net, world) = session(config);
        let mut round = 0;
        write_load(&mut net, world, 40, &mut round);
        net.run_for(Duration::from_secs(3));
        assert_eq!(merges_seen(&net, 0).len(), 1, "{}", net.describe(world));
        let crashed = crash_the_czar_once_it_proposes_a_layout(&mut net, world, &mut round, crash_after_ms);
        assert!(crashed, "the merged shard's czar proposed a split");
        net.run_for(Duration::from_secs(3));
        let live = net.live();
        let splits: Vec<usize> = live.iter().map(|i| splits_seen(&net, *i).len()).collect();
        assert!(net.converged(world), "crash after {crash_after_ms} ms: {}", net.describe(world));
        assert!(children_held(&net, world), "crash after {crash_after_ms} ms, splits seen {splits:?}");
        assert_keys_read_alike(&net, world);
    }
}

#[test]
fn a_write_acknowledged_too_late_for_the_split_is_applied_once() {
    // Each other peer as the writer: some hold the key's child afterwards.
    for offset in 1..5 {
        let (net, world, write, writer) = lose_an_ack_then_split(offset);
        let applied: Vec<&Event> = net.events[writer]
            .iter()
            .filter(|e| matches!(e, Event::WriteApplied { write: w, .. } | Event::WriteFailed { write: w, .. } if *w == write))
            .collect();
        for i in net.live() {
            let value = net.peers[i].get(world, b"contested");
            assert_eq!(value, Some(&b"second"[..]), "writer {writer}, peer {i}{}", net.describe(world));
        }
        assert!(
            matches!(applied[..], [Event::WriteApplied { shard, .. }] if *shard == world),
            "the writer learns its write was applied, in the shard it sent it to: {applied:?}"
        );
    }
}

/// The czar of `world` applies a write of the peer `offset` places after it
/// and writes the same key again; its acknowledgements of `world`'s writes to
/// that peer are lost until the peer has seen `world` split.
fn lose_an_ack_then_split(offset: usize) -> (Net, ShardId, WriteId, usize) {
    let (mut net, world) = session(hot_config());
    let czar = net.index_of(net.peers[0].czar_of(world).unwrap());
    let writer = (czar + offset) % 5;
    // The czar's acknowledgements of world's writes to the writer are lost
    // until the writer has seen the split.
    let lose_acks = Rc::new(Cell::new(true));
    let lose = lose_acks.clone();
    net.frame_filter = Some(Box::new(move |d, f| {
        lose.get()
            && d.from == czar
            && d.to == writer
            && matches!(f, Frame::ForwardAck { shard, .. } if *shard == world)
    }));
    let now = net.now;
    let Ok(WriteOutcome::Forwarded(write)) = net.peers[writer].write(now, world, b"contested", b"first") else {
        panic!("a forwarded write");
    };
    net.drain_all();
    net.run_for(Duration::from_millis(150));
    assert_eq!(net.peers[czar].get(world, b"contested"), Some(&b"first"[..]), "the czar applied it");
    // A later write of the same key: a second application of the first
    // would undo it.
    let now = net.now;
    net.peers[czar].write(now, world, b"contested", b"second").unwrap();
    net.drain_all();
    let mut round = 0;
    for _ in 0..60 {
        write_load(&mut net, world, 1, &mut round);
        if !splits_seen(&net, writer).is_empty() {
            lose_acks.set(false);
        }
    }
    assert!(!lose_acks.get(), "the shard split{}", net.describe(world));
    net.run_for(Duration::from_secs(2));
    (net, world, write, writer)
}

#[test]
fn a_shard_holding_too_many_keys_splits_however_quiet_and_merges_back_once_emptied() {
    let config = Config {
        split_writes_per_sec: 0,
        split_bytes_per_sec: 0,
        split_keys: 60,
        merge_after: Duration::from_millis(500),
        ..hot_config()
    };
    let (mut net, world) = session(config);
    let children = [ShardId::child(world, false), ShardId::child(world, true)];
    // 80 keys at 20 writes per second: far under any rate budget.
    let mut want = BTreeMap::new();
    for n in 0..80u32 {
        let now = net.now;
        let key = format!("tile{n}").into_bytes();
        net.peers[(n % 5) as usize].write(now, world, &key, b"grass").unwrap();
        want.insert(key, b"grass".to_vec());
        net.drain_all();
        net.run_for(Duration::from_millis(50));
    }
    net.run_for(Duration::from_secs(1));
    for i in net.live() {
        assert_eq!(splits_seen(&net, i), vec![(world, children)], "peer {i}{}", net.describe(world));
        for (key, value) in &want {
            assert_eq!(net.peers[i].get(world, key), Some(&value[..]), "peer {i}");
        }
    }
    // Deleted down to 10 keys, under a quarter of the budget together: the
    // children merge back.
    for n in 10..80u32 {
        let now = net.now;
        let key = format!("tile{n}").into_bytes();
        net.peers[(n % 5) as usize].delete(now, world, &key).unwrap();
        want.remove(&key);
        net.drain_all();
        net.run_for(Duration::from_millis(20));
    }
    net.run_for(Duration::from_secs(3));
    for i in net.live() {
        assert_eq!(merges_seen(&net, i), vec![(children, world)], "peer {i}{}", net.describe(world));
        for n in 0..80u32 {
            let key = format!("tile{n}").into_bytes();
            assert_eq!(net.peers[i].get(world, &key).map(<[u8]>::to_vec), want.get(&key).cloned(), "peer {i}");
        }
    }
    assert!(net.converged(world), "{}", net.describe(world));
}

/// A split names each child's czar, usually a peer that was czar of nothing
/// and beat each member only once per idle period (about 3 s at 1000
/// members). Members held it to a czar's silence threshold from the moment
/// they applied the split, so until it applied the split too they found it
/// silent: the child's heir ran a round about it, and in a 256-peer run with
/// a moving hot spot every false eviction was such a czar, confirmed gone
/// before its first full-rate heartbeat. Members now watch a czar as an idle
/// member until they hear from it as czar. (Here, before that change, six of
/// nine peers suspected a child's czar right after the split.)
#[test]
fn the_czar_a_split_names_is_not_suspected_before_it_learns_of_the_split() {
    let config = Config { idle_heartbeat_interval: Duration::from_secs(3), ..hot_config() };
    let mut net = Net::new(config);
    net.latency = Duration::from_millis(20);
    for _ in 0..9 {
        net.add();
    }
    let world = net.declare_everywhere("world", None);
    net.start_all();
    net.run_for(Duration::from_secs(4));
    let mut round = 0;
    write_load(&mut net, world, 40, &mut round);
    net.run_for(Duration::from_secs(2));
    let children = [ShardId::child(world, false), ShardId::child(world, true)];
    let mut named = Vec::new();
    for child in children {
        let czars = net.czars(child);
        assert_eq!(czars.len(), 1, "{}", net.describe(child));
        named.push(czars.into_iter().next().flatten().expect("a czar"));
    }
    for i in 0..9 {
        let after_split = net.events[i].iter().skip_while(|e| !matches!(e, Event::ShardSplit { .. }));
        let suspected: Vec<_> =
            after_split.filter(|e| matches!(e, Event::PeerSuspected { peer } if named.contains(peer))).collect();
        assert!(suspected.is_empty(), "peer {i} suspected a child's new czar: {suspected:?}");
        assert!(!net.events[i].iter().any(|e| matches!(e, Event::PeerLeft { .. })), "peer {i} counted a peer gone");
        assert_eq!(net.peers[i].live_members().count(), 9, "peer {i}");
    }
}
