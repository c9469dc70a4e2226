//! Chaos tests through the shared harness, with real processes killed by PID: a zone under
//! load, a zone plus one node, bit rot, crash loops, a wiped node, and the rebuild-time figure.
//! Each test records an operation history that `history::check` judges. The short versions run
//! in the test suite; TESSERA_CHAOS_LONG=1 runs more rounds and more objects.

#[path = "../cluster/harness.rs"]
mod harness;
mod history;
mod workload;

mod bit_rot;
mod crash_loop;
mod rebuild_time;
mod wiped_node;
mod zone_kill;
mod zone_plus_one;
