//! Chaos tests: whole zones die under load (SIGKILL of every process in the zone). Every
//! acknowledged write must read back byte-exact, writes must keep succeeding, and the cluster
//! must serve fully again after the zone returns. The short version runs in the test suite;
//! TESSERA_CHAOS_LONG=1 runs more rounds.

#[path = "../cluster/harness.rs"]
mod harness;
mod zone_kill;
