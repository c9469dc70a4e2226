//! Starts, supervises and stops a local multi-process Tessera cluster: three zones, one meta
//! node per zone, N data nodes per zone, one gateway. `tessera dev` and the cluster test
//! harness both use it, so the laptop cluster is itself tested. Every child is started by this
//! crate and stopped by its PID; nothing is ever killed by name.

pub mod certs;
pub mod cluster;
pub mod layout;
pub mod process;

pub use cluster::{DevCluster, DevClusterError, DevClusterSpec, NodeEnv};
pub use layout::{ClusterLayout, NodeRole, NodeSpec};
pub use process::ManagedProcess;
