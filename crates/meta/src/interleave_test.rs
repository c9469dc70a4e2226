//! Two daemons and a gateway interleaved at every step, against the real applier over an
//! in-memory state and a model of the data nodes' files (each file an exact copy with the lease
//! it was written under):
//!
//! - a collector lists files and garbage, claims what looks collectable, deletes exactly the
//!   granted copies, and releases them;
//! - a rebuilder reads a blob's placement, writes a new generation of its lost shard under its
//!   lease, and commits it with UpdatePlacement;
//! - a gateway writes a new blob's shards under its lease and commits it with PutVersion;
//! - the meta clock jumps past every lease's end and the grace period at a chosen point.
//!
//! Every interleaving of the steps is run, and after each step two things must hold: every copy
//! an owning placement names exists as a file (unless it was lost before the run began), and
//! every committed version's blob is readable (at least k shard indices have a file).

use std::collections::{BTreeMap, BTreeSet};

use tessera_core::blob::ShardCopy;
use tessera_core::lease::MIN_GC_GRACE_MS;
use tessera_core::names::DataId;

use super::*;
use crate::records;

/// A shard file: (blob id, shard index, node, generation).
type File = (u8, u32, u64, u64);
/// Garbage claims as a collector makes them: record key and the copies it lists.
type GarbageClaims = Vec<(Vec<u8>, Vec<pb::ShardRef>)>;

/// The blob the rebuilder repairs: shard 2's copy on node 3 is lost.
const X: u8 = 1;
/// A blob turned into garbage before the run.
const Y: u8 = 2;
/// The gateway's new blob.
const Z: u8 = 3;
/// The rebuilder's new copy of X's shard 2 (node 4, generation 7).
const REBUILT: CopySpec = (2, 4, 7);
/// An orphan: an earlier, failed rebuild of the same shard on the same node.
const OLD_ORPHAN: File = (X, 2, 4, 5);
/// How long the rebuilder's and gateway's leases last.
const LEASE_MS: u64 = 60_000;
/// The clock jump that ends both leases and passes the grace period.
const JUMP_MS: i64 = (LEASE_MS + MIN_GC_GRACE_MS + 1) as i64;

#[derive(Clone)]
struct World {
    sim: Sim,
    files: BTreeMap<File, u64>,
    /// Copies a placement names whose file was lost before the run began.
    lost: BTreeSet<File>,
}

#[derive(Clone, Default)]
struct Stats {
    runs: u64,
    /// Interleavings in which a collector was granted a copy a writer had just written.
    fresh_copies_granted: u64,
    /// Commits refused (lease ended or copy claimed).
    commits_refused: u64,
    /// Interleavings that ended with the rebuilt copy in X's placement.
    rebuilds_committed: u64,
}

#[derive(Clone, Debug)]
enum Actor {
    Collector {
        claimer: &'static str,
        step: u8,
        orphans: Vec<pb::ShardRef>,
        garbage: GarbageClaims,
        granted: Vec<pb::ShardRef>,
    },
    Rebuilder {
        step: u8,
        lease: u64,
        expected: Vec<CopySpec>,
    },
    Gateway {
        step: u8,
        lease: u64,
    },
    Tick {
        done: bool,
    },
}

fn collector(claimer: &'static str) -> Actor {
    Actor::Collector {
        claimer,
        step: 0,
        orphans: Vec::new(),
        garbage: Vec::new(),
        granted: Vec::new(),
    }
}

fn spec(c: &ShardCopy) -> CopySpec {
    (c.shard_index, c.node.0, c.generation.get())
}

fn file_of(r: &pb::ShardRef) -> File {
    (r.data_id[0], r.shard_index, r.node_id, r.generation)
}

impl Actor {
    fn done(&self) -> bool {
        match self {
            Actor::Collector { step, .. } => *step == 4,
            Actor::Rebuilder { step, .. } => *step == 3,
            Actor::Gateway { step, .. } => *step == 2,
            Actor::Tick { done } => *done,
        }
    }

    fn step(&mut self, w: &mut World, stats: &mut Stats) {
        match self {
            Actor::Collector {
                claimer,
                step,
                orphans,
                garbage,
                granted,
            } => {
                match step {
                    0 => (*orphans, *garbage) = list_collectable(w),
                    1 => {
                        let result =
                            w.sim
                                .ok(claim(claimer, MIN_GC_GRACE_MS, orphans.clone(), garbage));
                        *granted = claimed(result);
                        let fresh = granted.iter().any(|r| {
                            file_of(r) == (X, REBUILT.0, REBUILT.1, REBUILT.2) || r.data_id[0] == Z
                        });
                        if fresh {
                            stats.fresh_copies_granted += 1;
                        }
                    }
                    2 => {
                        for r in granted.iter() {
                            w.files.remove(&file_of(r));
                        }
                    }
                    _ => {
                        let done: BTreeSet<File> = granted.iter().map(file_of).collect();
                        let finished = garbage
                            .iter()
                            .filter(|(_, shards)| shards.iter().all(|r| done.contains(&file_of(r))))
                            .map(|(key, _)| key.clone())
                            .collect();
                        w.sim.ok(release(granted, finished));
                    }
                }
                *step += 1;
            }
            Actor::Rebuilder {
                step,
                lease,
                expected,
            } => {
                match step {
                    0 => {
                        let owned = records::owned_blob(&w.sim.kv, &DataId::from_bytes([X; 16]))
                            .expect("read")
                            .expect("X is committed");
                        *expected = owned
                            .erasure()
                            .expect("erasure")
                            .shards
                            .iter()
                            .map(spec)
                            .collect();
                    }
                    1 => {
                        let (index, node, generation) = REBUILT;
                        w.files.insert((X, index, node, generation), *lease);
                    }
                    _ => {
                        // The copies of shard 2 it read as lost are replaced by the new one.
                        let mut shards: Vec<CopySpec> = expected
                            .iter()
                            .copied()
                            .filter(|c| c.0 != REBUILT.0)
                            .collect();
                        shards.push(REBUILT);
                        let (_, result) = w.sim.run(update(X, expected, &shards, false, *lease));
                        match result {
                            command_result::Result::Ok(_) => {}
                            command_result::Result::Error(_) => stats.commits_refused += 1,
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                }
                *step += 1;
            }
            Actor::Gateway { step, lease } => {
                let copies = [(0, 1, 11), (1, 2, 11), (2, 4, 11)];
                if *step == 0 {
                    for (index, node, generation) in copies {
                        w.files.insert((Z, index, node, generation), *lease);
                    }
                } else {
                    let (_, result) = w.sim.run(put_version(
                        version_with("bkt", "z", "\"z\"", erasure(Z, &copies)),
                        *lease,
                    ));
                    match result {
                        command_result::Result::PutVersion(_) => {}
                        command_result::Result::Error(_) => stats.commits_refused += 1,
                        other => panic!("unexpected {other:?}"),
                    }
                }
                *step += 1;
            }
            Actor::Tick { done } => {
                w.sim.now_ms += JUMP_MS;
                *done = true;
            }
        }
    }
}

/// What a collector lists: every file no placement names (as an orphan, with its lease), and
/// every garbage record's copies.
fn list_collectable(w: &World) -> (Vec<pb::ShardRef>, GarbageClaims) {
    let mut orphans = Vec::new();
    for (&(id, index, node, generation), &lease) in &w.files {
        let owned = records::owned_blob(&w.sim.kv, &DataId::from_bytes([id; 16])).expect("read");
        let named = owned.is_some_and(|o| {
            o.erasure().is_some_and(|e| {
                e.shards
                    .iter()
                    .any(|c| spec(c) == (index, node, generation))
            })
        });
        if !named {
            orphans.push(shard_ref(id, (index, node, generation), lease));
        }
    }
    let garbage = w
        .sim
        .garbage_records()
        .into_iter()
        .map(|(key, id, copies, _)| {
            let shards = copies.iter().map(|c| shard_ref(id, *c, 0)).collect();
            (key, shards)
        })
        .collect();
    (orphans, garbage)
}

/// The two properties, after every step.
fn check(w: &World, trace: &[usize]) {
    let mut owners = Vec::new();
    for (_, v) in crate::kv::KvReadExt::scan_pb::<pb::ObjectVersion>(
        &w.sim.kv,
        keys::OBJECT_PREFIX,
        "version",
    )
    .expect("scan")
    {
        for part in v.parts {
            owners.push((format!("{}/{}", v.bucket, v.key), part.blob));
        }
    }
    for (name, blob) in owners {
        let Some(pb::blob::Storage::Erasure(e)) = blob.and_then(|b| b.storage) else {
            continue;
        };
        let id = e.data_id[0];
        let mut readable = BTreeSet::new();
        for s in &e.shards {
            let file = (id, s.shard_index, s.node_id, s.generation);
            if w.files.contains_key(&file) {
                readable.insert(s.shard_index);
            } else {
                assert!(
                    w.lost.contains(&file),
                    "{name}: placement names deleted file {file:?} after steps {trace:?}"
                );
            }
        }
        assert!(
            readable.len() >= DATA_SHARDS as usize,
            "{name}: unreadable after steps {trace:?}"
        );
    }
}

fn explore(w: &World, actors: &[Actor], trace: &mut Vec<usize>, stats: &mut Stats) {
    if actors.iter().all(Actor::done) {
        stats.runs += 1;
        let rebuilt = records::owned_blob(&w.sim.kv, &DataId::from_bytes([X; 16]))
            .expect("read")
            .is_some_and(|o| {
                o.erasure()
                    .is_some_and(|e| e.shards.iter().any(|c| spec(c) == REBUILT))
            });
        if rebuilt {
            stats.rebuilds_committed += 1;
        }
        return;
    }
    for i in 0..actors.len() {
        if actors[i].done() {
            continue;
        }
        let mut world = w.clone();
        let mut next = actors.to_vec();
        next[i].step(&mut world, stats);
        trace.push(i);
        check(&world, trace);
        explore(&world, &next, trace, stats);
        trace.pop();
    }
}

/// X committed on nodes 1, 2, 3 with node 3's file lost; Y garbage with all its files; an old
/// orphan of X's shard 2 on node 4; leases for the rebuilder and the gateway.
fn start() -> (World, u64, u64) {
    let mut sim = Sim::new();
    let lease = sim.lease_id;
    sim.ok(create_bucket("bkt", "o"));
    sim.ok(put("bkt", "x", "\"x\"", X, lease));
    let y_copies = [(0, 1, 1), (1, 2, 1), (2, 4, 1)];
    sim.ok(put_version(
        version_with("bkt", "y", "\"y\"", erasure(Y, &y_copies)),
        lease,
    ));
    sim.ok(put_inline("bkt", "y", "\"y2\""));
    let mut files = BTreeMap::new();
    for (index, node, generation) in SPREAD.iter().copied().filter(|c| c.1 != 3) {
        files.insert((X, index, node, generation), lease);
    }
    for (index, node, generation) in y_copies {
        files.insert((Y, index, node, generation), lease);
    }
    files.insert(OLD_ORPHAN, 0);
    // Long after all that, the model begins.
    sim.advance(10 * MIN_GC_GRACE_MS as i64 + 600_000);
    let rebuilder = sim.grant("repair", LEASE_MS);
    let gateway = sim.grant("gateway", LEASE_MS);
    let world = World {
        sim,
        files,
        lost: BTreeSet::from([(X, 2, 3, 1)]),
    };
    check(&world, &[]);
    (world, rebuilder, gateway)
}

#[test]
fn collect_rebuild_and_commit_interleaved_at_every_step_never_lose_data() {
    for with_tick in [false, true] {
        let (world, rebuilder, gateway) = start();
        let mut actors = vec![
            collector("gc"),
            Actor::Rebuilder {
                step: 0,
                lease: rebuilder,
                expected: Vec::new(),
            },
            Actor::Gateway {
                step: 0,
                lease: gateway,
            },
        ];
        if with_tick {
            actors.push(Actor::Tick { done: false });
        }
        let mut stats = Stats::default();
        explore(&world, &actors, &mut Vec::new(), &mut stats);
        if with_tick {
            assert_eq!(stats.runs, 12_600, "12! / (4! 3! 2! 1!) interleavings");
            assert!(stats.fresh_copies_granted > 0, "a lease ran out mid-write");
            assert!(stats.commits_refused > 0, "and its commit was refused");
        } else {
            assert_eq!(stats.runs, 1_260, "9! / (4! 3! 2!) interleavings");
            assert_eq!(
                stats.fresh_copies_granted, 0,
                "live leases protect new shards"
            );
            assert_eq!(stats.commits_refused, 0);
            assert_eq!(stats.rebuilds_committed, stats.runs);
        }
    }
}

#[test]
fn two_collectors_racing_on_the_same_copies_with_a_rebuild_never_lose_data() {
    for with_tick in [false, true] {
        let (world, rebuilder, _) = start();
        let mut actors = vec![
            collector("gc-1"),
            collector("gc-2"),
            Actor::Rebuilder {
                step: 0,
                lease: rebuilder,
                expected: Vec::new(),
            },
        ];
        if with_tick {
            actors.push(Actor::Tick { done: false });
        }
        let mut stats = Stats::default();
        explore(&world, &actors, &mut Vec::new(), &mut stats);
        assert!(stats.runs > 0);
        if !with_tick {
            assert_eq!(stats.commits_refused, 0);
            assert_eq!(stats.rebuilds_committed, stats.runs);
        }
    }
}
