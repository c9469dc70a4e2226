//! The data node's membership in the cluster, as a [`Worker`]: it registers the node with meta
//! (retrying), then reports the node's usage with a heartbeat to every meta node each
//! [`HEARTBEAT_INTERVAL`].
//!
//! Invariant: serving never waits for meta, and this worker never fails: an unreachable meta
//! means a retried registration (backing off from [`REGISTER_BACKOFF_FIRST`] to
//! [`REGISTER_BACKOFF_MAX`], shorter than the runner's error backoff so that a node starting
//! before meta joins soon after meta is up) or a missed heartbeat, shown in its progress.

use crate::store::ShardStore;
use std::time::Duration;
use tessera_client::MetaClient;
use tessera_proto::meta::v1 as meta_pb;
use tessera_runtime::clock::now_ms;
use tessera_runtime::worker::{StepOutcome, Worker, WorkerError, WorkerProgress};
use tracing::{debug, info, warn};

/// The name the membership worker is registered under.
pub const WORKER_NAME: &str = "heartbeat";

/// How often a registered node reports its usage to meta.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// The first wait after a failed registration; each further failure doubles it.
pub const REGISTER_BACKOFF_FIRST: Duration = Duration::from_millis(100);

/// The longest wait between registration attempts.
pub const REGISTER_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How long one registration attempt may try (every meta node, with the client's retries)
/// before the worker reports it failed and backs off.
pub const REGISTER_ATTEMPT_DEADLINE: Duration = Duration::from_secs(5);

/// Registers the node, then sends heartbeats.
pub struct Membership {
    meta: MetaClient,
    /// The same client with [`REGISTER_ATTEMPT_DEADLINE`].
    register_meta: MetaClient,
    node: meta_pb::DataNode,
    store: ShardStore,
    registered: bool,
    attempts: u64,
    backoff: Duration,
    heartbeats: u64,
    last_failure: Option<String>,
}

impl Membership {
    /// The membership of `node` (its usage read from `store`) in the cluster `meta` serves.
    pub fn new(meta: MetaClient, node: meta_pb::DataNode, store: ShardStore) -> Self {
        Self {
            register_meta: meta.clone().with_deadline(REGISTER_ATTEMPT_DEADLINE),
            meta,
            node,
            store,
            registered: false,
            attempts: 0,
            backoff: REGISTER_BACKOFF_FIRST,
            heartbeats: 0,
            last_failure: None,
        }
    }

    /// Sends `RegisterDataNode` once; whether meta accepted it.
    async fn register(&mut self) -> bool {
        self.attempts += 1;
        let attempt = self.attempts;
        self.node.registered_ms = now_ms();
        let node = match tessera_core::object::DataNode::try_from(&self.node) {
            Ok(node) => node,
            Err(e) => {
                warn!(error = %e, "data node identity does not convert; registration impossible");
                self.last_failure = Some(format!("invalid node identity: {e}"));
                return false;
            }
        };
        let failure = match self.register_meta.register_data_node(&node).await {
            Err(tessera_client::CommandError::Rule(refusal)) => {
                warn!(attempt, code = refusal.code(), error = %refusal, "data node registration refused");
                format!("registration refused: {refusal}")
            }
            Ok(()) => {
                info!(attempt, addr = %self.node.addr, "data node registered");
                self.last_failure = None;
                return true;
            }
            Err(e) => {
                if attempt < 5 {
                    debug!(attempt, error = %e, "meta not reachable yet; registration retried");
                } else {
                    warn!(attempt, error = %e, "data node registration failed; retrying");
                }
                format!("meta unreachable: {e}")
            }
        };
        self.last_failure = Some(failure);
        false
    }
}

impl Worker for Membership {
    fn name(&self) -> String {
        WORKER_NAME.to_owned()
    }

    async fn step(&mut self) -> Result<StepOutcome, WorkerError> {
        if !self.registered {
            if !self.register().await {
                let wait = self.backoff;
                self.backoff = (self.backoff * 2).min(REGISTER_BACKOFF_MAX);
                return Ok(StepOutcome::Idle(wait));
            }
            self.registered = true;
        }
        let usage = self.store.usage();
        let request = meta_pb::HeartbeatRequest {
            node: Some(self.node.clone()),
            shards: usage.shards,
            used_bytes: usage.bytes,
        };
        self.meta.heartbeat_all(request).await;
        self.heartbeats += 1;
        Ok(StepOutcome::Idle(HEARTBEAT_INTERVAL))
    }

    fn progress(&self) -> WorkerProgress {
        let text = match (&self.last_failure, self.registered) {
            (_, true) => format!("registered; {} heartbeats sent", self.heartbeats),
            (Some(failure), false) => {
                format!("registering: attempt {} failed: {failure}", self.attempts)
            }
            (None, false) => "registering".to_owned(),
        };
        WorkerProgress {
            text,
            done: self.heartbeats,
            ..WorkerProgress::default()
        }
    }
}
