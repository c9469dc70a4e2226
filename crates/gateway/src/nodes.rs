//! The gateway's view of the data nodes: who they are, where they live and whether to use them,
//! kept fresh by the [`NodeRefresher`] worker.
//!
//! Invariant: a node is `available` only while meta reports it healthy AND this gateway has not
//! seen a call to it fail in the last [`FAILURE_MEMORY`]; a failed refresh from meta keeps the
//! last good membership instead of forgetting every node.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tessera_client::{MetaClient, MetaClientError};
use tessera_core::names::{NodeId, ZoneName};
use tessera_core::placement::NodeInfo;
use tessera_runtime::worker::{StepOutcome, Worker, WorkerError, WorkerProgress};
use tracing::{debug, info, warn};

/// How often the membership is refreshed from meta.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// How long a node the gateway saw fail stays unavailable, whatever meta says: long enough to
/// stop every request of a burst from trying a dead node, short enough to notice its return.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(3);

/// How often `wait_ready` looks at the view again.
const READY_POLL: Duration = Duration::from_millis(50);

/// One data node as the gateway sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataNodeView {
    /// The node's id.
    pub id: NodeId,
    /// The zone (failure domain) it lives in.
    pub zone: ZoneName,
    /// Where its data service listens (`host:port`).
    pub addr: String,
    /// Whether writes and reads should go to it now.
    pub available: bool,
}

impl DataNodeView {
    /// What placement needs to know about this node.
    pub fn node_info(&self) -> NodeInfo {
        NodeInfo {
            id: self.id,
            zone: self.zone.clone(),
            available: self.available,
        }
    }
}

/// A member as meta last reported it.
#[derive(Clone, Debug)]
struct Member {
    zone: ZoneName,
    addr: String,
    healthy: bool,
}

#[derive(Default)]
struct View {
    members: BTreeMap<NodeId, Member>,
    /// When this gateway last saw each node fail.
    failures: HashMap<NodeId, Instant>,
}

struct Inner {
    meta: Option<MetaClient>,
    view: RwLock<View>,
}

/// The membership of data nodes, refreshed from meta and corrected by this gateway's own
/// experience of each node; cheap to clone, all clones share one view.
#[derive(Clone)]
pub struct NodeDirectory {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NodeDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeDirectory")
            .field("members", &self.read().members.len())
            .finish_non_exhaustive()
    }
}

impl NodeDirectory {
    /// An empty directory filled from `meta` by [`NodeDirectory::refresh`] or
    /// a [`NodeRefresher`] worker.
    pub fn new(meta: MetaClient) -> Self {
        Self::build(Some(meta), Vec::new())
    }

    /// A directory with a fixed membership and no meta (tests, tools). Each node's
    /// `available` is taken as what meta would report as its health.
    pub fn fixed(nodes: Vec<DataNodeView>) -> Self {
        Self::build(None, nodes)
    }

    fn build(meta: Option<MetaClient>, nodes: Vec<DataNodeView>) -> Self {
        let directory = Self {
            inner: Arc::new(Inner {
                meta,
                view: RwLock::new(View::default()),
            }),
        };
        directory.set_members(nodes);
        directory
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, View> {
        // Every write leaves the view whole, so a panic elsewhere cannot corrupt it.
        self.inner
            .view
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, View> {
        self.inner
            .view
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the membership, as a refresh from meta does; `available` is meta's health.
    /// Failures this gateway saw are kept.
    pub fn set_members(&self, nodes: Vec<DataNodeView>) {
        let members = nodes
            .into_iter()
            .map(|n| {
                let member = Member {
                    zone: n.zone,
                    addr: n.addr,
                    healthy: n.available,
                };
                (n.id, member)
            })
            .collect();
        self.write().members = members;
    }

    /// Fetches the membership from meta once and installs it. Without meta (a fixed
    /// directory) there is nothing to do. On error the previous view stays.
    pub async fn refresh(&self) -> Result<usize, MetaClientError> {
        let Some(meta) = &self.inner.meta else {
            return Ok(self.read().members.len());
        };
        let status = meta.cluster_status().await?;
        let nodes: Vec<DataNodeView> = status
            .data_nodes
            .into_iter()
            .filter_map(|s| {
                let node = s.node?;
                // A draining node takes no new writes (and is read from last).
                let draining = node.state == tessera_proto::meta::v1::NodeState::Draining as i32;
                Some(DataNodeView {
                    id: NodeId(node.node_id),
                    zone: ZoneName(node.zone),
                    addr: node.addr,
                    available: s.healthy && !draining,
                })
            })
            .collect();
        let count = nodes.len();
        self.set_members(nodes);
        Ok(count)
    }

    /// Whether the membership comes from meta (a fixed directory has nothing to refresh).
    pub fn refreshes(&self) -> bool {
        self.inner.meta.is_some()
    }

    /// Every known node, with availability as described in the module doc.
    pub fn snapshot(&self) -> Vec<DataNodeView> {
        let now = Instant::now();
        let view = self.read();
        view.members
            .iter()
            .map(|(id, m)| {
                let recently_failed = view
                    .failures
                    .get(id)
                    .is_some_and(|at| now.saturating_duration_since(*at) < FAILURE_MEMORY);
                DataNodeView {
                    id: *id,
                    zone: m.zone.clone(),
                    addr: m.addr.clone(),
                    available: m.healthy && !recently_failed,
                }
            })
            .collect()
    }

    /// Records that a call to `id` failed as if the node were down; it counts as unavailable
    /// for [`FAILURE_MEMORY`].
    pub fn report_failure(&self, id: NodeId) {
        let first = self.write().failures.insert(id, Instant::now()).is_none();
        if first {
            info!(
                node_id = id.0,
                "data node marked unavailable after a failed call"
            );
        }
    }

    /// Records that a call to `id` succeeded, clearing an earlier failure.
    pub fn report_success(&self, id: NodeId) {
        // Checked under the read lock first: the common case (no failure) stays cheap.
        let failed = self.read().failures.contains_key(&id);
        if failed && self.write().failures.remove(&id).is_some() {
            info!(node_id = id.0, "data node answering again");
        }
    }

    /// The address of node `id`, if it is a member.
    pub fn addr_of(&self, id: NodeId) -> Option<String> {
        self.read().members.get(&id).map(|m| m.addr.clone())
    }

    /// The zone of node `id`, if it is a member.
    pub fn zone_of(&self, id: NodeId) -> Option<ZoneName> {
        self.read().members.get(&id).map(|m| m.zone.clone())
    }

    /// Waits until at least `min_nodes` nodes are available; false if `timeout` passes first.
    pub async fn wait_ready(&self, min_nodes: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let available = self.snapshot().iter().filter(|n| n.available).count();
            if available >= min_nodes {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + READY_POLL)).await;
        }
    }
}

/// The worker that refreshes a directory from meta every [`REFRESH_INTERVAL`]. A failed
/// refresh is not a failed step: the last view stays, the worker warns once per outage and
/// tries again at the next interval (a backoff would leave the view stale for a minute).
pub struct NodeRefresher {
    directory: NodeDirectory,
    refreshes: u64,
    failing: bool,
    last_error: Option<String>,
    nodes: usize,
}

impl NodeRefresher {
    /// A refresher of `directory`.
    pub fn new(directory: NodeDirectory) -> Self {
        Self {
            directory,
            refreshes: 0,
            failing: false,
            last_error: None,
            nodes: 0,
        }
    }
}

impl Worker for NodeRefresher {
    fn name(&self) -> String {
        "node-refresh".to_owned()
    }

    async fn step(&mut self) -> Result<StepOutcome, WorkerError> {
        match self.directory.refresh().await {
            Ok(nodes) => {
                if self.failing {
                    info!(nodes, "data node membership refreshed again");
                }
                self.failing = false;
                self.nodes = nodes;
                self.refreshes += 1;
            }
            // Warn once per outage, not once a second.
            Err(e) if !self.failing => {
                self.failing = true;
                warn!(error = %e, code = e.code(), "data node membership refresh failed; keeping the last view");
                self.last_error = Some(e.to_string());
            }
            Err(e) => {
                debug!(error = %e, code = e.code(), "data node membership refresh failed");
                self.last_error = Some(e.to_string());
            }
        }
        Ok(StepOutcome::Idle(REFRESH_INTERVAL))
    }

    fn progress(&self) -> WorkerProgress {
        let mut text = format!("{} data nodes, {} refreshes", self.nodes, self.refreshes);
        if self.failing
            && let Some(error) = &self.last_error
        {
            text.push_str(&format!("; failing: {error}"));
        }
        WorkerProgress {
            text,
            done: self.refreshes,
            ..WorkerProgress::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, zone: &str, available: bool) -> DataNodeView {
        DataNodeView {
            id: NodeId(id),
            zone: ZoneName(zone.to_owned()),
            addr: format!("127.0.0.1:{}", 7100 + id),
            available,
        }
    }

    #[test]
    fn meta_health_and_local_failures_decide_availability() {
        let dir = NodeDirectory::fixed(vec![node(1, "a", true), node(2, "b", false)]);
        let snap = dir.snapshot();
        assert_eq!(snap.len(), 2);
        assert!(snap[0].available);
        assert!(!snap[1].available, "meta says unhealthy");

        dir.report_failure(NodeId(1));
        assert!(!dir.snapshot()[0].available, "recently failed");
        dir.report_success(NodeId(1));
        assert!(dir.snapshot()[0].available, "success clears the failure");
    }

    #[test]
    fn addresses_and_zones_come_from_the_membership() {
        let dir = NodeDirectory::fixed(vec![node(3, "c", true)]);
        assert_eq!(dir.addr_of(NodeId(3)).as_deref(), Some("127.0.0.1:7103"));
        assert_eq!(dir.zone_of(NodeId(3)), Some(ZoneName("c".into())));
        assert_eq!(dir.addr_of(NodeId(9)), None);
        dir.set_members(vec![node(9, "a", true)]);
        assert_eq!(dir.addr_of(NodeId(3)), None);
        assert!(dir.addr_of(NodeId(9)).is_some());
    }

    #[test]
    fn a_failure_is_forgotten_after_the_failure_memory() {
        let dir = NodeDirectory::fixed(vec![node(1, "a", true)]);
        dir.write().failures.insert(
            NodeId(1),
            Instant::now() - FAILURE_MEMORY - Duration::from_millis(1),
        );
        assert!(dir.snapshot()[0].available);
    }

    #[tokio::test]
    async fn wait_ready_sees_nodes_arrive_and_times_out_without_them() {
        let dir = NodeDirectory::fixed(vec![node(1, "a", true)]);
        assert!(dir.wait_ready(1, Duration::from_millis(10)).await);
        assert!(!dir.wait_ready(2, Duration::from_millis(120)).await);

        let later = dir.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(60)).await;
            later.set_members(vec![node(1, "a", true), node(2, "b", true)]);
        });
        assert!(dir.wait_ready(2, Duration::from_secs(5)).await);
    }

    #[tokio::test]
    async fn a_fixed_directory_refreshes_to_itself() {
        let dir = NodeDirectory::fixed(vec![node(1, "a", true), node(2, "b", true)]);
        assert!(!dir.refreshes());
        assert_eq!(dir.refresh().await.ok(), Some(2));
        let mut worker = NodeRefresher::new(dir.clone());
        let outcome = worker.step().await.expect("step");
        assert_eq!(outcome, StepOutcome::Idle(REFRESH_INTERVAL));
        assert_eq!(worker.progress().done, 1);
        assert_eq!(dir.snapshot().len(), 2);
    }

    #[tokio::test]
    async fn a_refresh_that_fails_keeps_the_view_and_says_so() {
        // No meta endpoint at all: every refresh fails at once.
        let dir = NodeDirectory::new(MetaClient::new(Vec::new()));
        dir.set_members(vec![node(1, "a", true)]);
        assert!(dir.refreshes());
        let mut worker = NodeRefresher::new(dir.clone());
        let outcome = worker
            .step()
            .await
            .expect("a failed refresh is not a failed step");
        assert_eq!(outcome, StepOutcome::Idle(REFRESH_INTERVAL));
        let progress = worker.progress();
        assert_eq!(progress.done, 0);
        assert!(progress.text.contains("failing"), "{}", progress.text);
        assert_eq!(dir.snapshot().len(), 1, "the last view stays");
    }
}
