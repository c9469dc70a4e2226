//! The server side of `meta.v1.MetaService`. Writes go through Raft on the leader; reads first
//! make themselves linearizable there (read index), so whatever node answers, a read sees every
//! write acknowledged before it began. A follower forwards the whole RPC to the leader it knows
//! of, once: a forwarded request that lands on a non-leader fails `Unavailable` rather than
//! bouncing, and the client retries. Data-node heartbeats and processes' worker reports stay in
//! this node's memory; liveness is judged from heartbeats with the configured timeouts.
//! `ClusterStatus` and `ListWorkers` are answered by the node called, so they work without a
//! quorum; `ClusterStatus` reads the applied index after a read barrier when it can get one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use tessera_core::sealing::kek::{KekId, SSE_S3_KEK};
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::meta_service_client::MetaServiceClient;
use tessera_proto::meta::v1::meta_service_server::MetaService;
use tessera_proto::raft::v1::NodeStatusRequest;
use tessera_proto::raft::v1::raft_service_client::RaftServiceClient;
use tessera_runtime::worker::WorkerRegistry;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use crate::channels::{ChannelPool, MAX_MESSAGE_BYTES};
use crate::error::StoreError;
use crate::key_service::{self, KeyService};
use crate::liveness::{LivenessTimeouts, heartbeat_age};
use crate::query;
use crate::raft_service::role_name;
use crate::store::{MetaStore, blocking};
use crate::types::{MetaNode, MetaRaft};
use crate::worker_reports::WorkerReports;

/// Metadata key marking a request a follower already forwarded.
const FORWARDED: &str = "x-tessera-forwarded";
/// How long a write may wait for commit before the client is told to retry.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long confirming leadership for a read may take.
const READ_BARRIER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a forwarded call may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a peer has to answer a status probe.
const STATUS_PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long `ClusterStatus` tries to get a read barrier (and then to apply up to it) before it
/// answers with what this node has applied.
const STATUS_BARRIER_TIMEOUT: Duration = Duration::from_secs(1);

/// MetaService over one node's Raft and store.
pub struct MetaGrpc {
    node_id: u64,
    raft: MetaRaft,
    store: MetaStore,
    pool: ChannelPool,
    heartbeats: Arc<Mutex<HashMap<u64, Instant>>>,
    liveness: LivenessTimeouts,
    /// When this service started: the age of a data node never heard from.
    started: Instant,
    /// Every process's latest worker report.
    worker_reports: WorkerReports,
    /// This meta process's own workers, listed with the reports when there are any.
    own_workers: Option<(pb::ProcessId, WorkerRegistry)>,
    /// Key-encryption keys, unwrapped under the root key only in this process.
    keys: Arc<KeyService>,
}

enum Route {
    Local,
    Leader {
        client: MetaServiceClient<Channel>,
        addr: String,
    },
}

fn is_forwarded<T>(request: &Request<T>) -> bool {
    request.metadata().contains_key(FORWARDED)
}

fn forwarded<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    request
}

fn store_status(e: StoreError) -> Status {
    tracing::error!(error = %e, code = e.code(), "meta store read failed");
    Status::internal(format!("meta store: {e}"))
}

/// Awaits a forwarded call within the forwarding deadline; a leader that cannot be reached is
/// reported as such, so the client moves on to another node.
async fn forward_call<T>(
    addr: &str,
    call: impl std::future::Future<Output = Result<Response<T>, Status>>,
) -> Result<Response<T>, Status> {
    match tokio::time::timeout(FORWARD_TIMEOUT, call).await {
        Ok(Err(status)) if status.code() == tonic::Code::Unavailable => Err(Status::unavailable(
            format!("leader at {addr} unavailable: {}", status.message()),
        )),
        Ok(result) => result,
        Err(_) => Err(Status::unavailable(format!(
            "leader at {addr} did not answer in time"
        ))),
    }
}

/// Serves one query RPC: locally after a read barrier, or forwarded to the leader.
macro_rules! query_rpc {
    ($self:ident, $request:ident, $method:ident, |$store:ident, $req:ident| $answer:expr) => {{
        let was_forwarded = is_forwarded(&$request);
        let $req = $request.into_inner();
        match $self.read_route(was_forwarded).await? {
            Route::Local => {
                let $store = $self.store.clone();
                let resp = blocking(move || $answer).await.map_err(store_status)?;
                Ok(Response::new(resp))
            }
            Route::Leader { mut client, addr } => {
                forward_call(&addr, client.$method(forwarded($req))).await
            }
        }
    }};
}

impl MetaGrpc {
    /// Serves `raft` and `store` as node `node_id`, judging data nodes with `liveness`.
    pub fn new(
        node_id: u64,
        raft: MetaRaft,
        store: MetaStore,
        pool: ChannelPool,
        liveness: LivenessTimeouts,
        keys: Arc<KeyService>,
    ) -> Self {
        MetaGrpc {
            node_id,
            raft,
            store,
            pool,
            heartbeats: Arc::new(Mutex::new(HashMap::new())),
            liveness,
            started: Instant::now(),
            worker_reports: WorkerReports::new(),
            own_workers: None,
            keys,
        }
    }

    /// Lists this process's own workers (from `registry`, as `process`) with the reports.
    pub fn with_own_workers(mut self, process: pb::ProcessId, registry: WorkerRegistry) -> Self {
        self.own_workers = Some((process, registry));
        self
    }

    fn leader_client(&self, addr: &str) -> Result<MetaServiceClient<Channel>, Status> {
        let channel = self
            .pool
            .get(addr)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(MetaServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// Where a request this node cannot serve should go.
    fn route_to_leader(
        &self,
        to: ForwardToLeader<u64, MetaNode>,
        was_forwarded: bool,
    ) -> Result<Route, Status> {
        if was_forwarded {
            return Err(Status::unavailable(format!(
                "node {} is not the leader (leader: {:?})",
                self.node_id, to.leader_id
            )));
        }
        let node = match (to.leader_node, to.leader_id) {
            (Some(node), _) => node,
            (None, Some(id)) => {
                let metrics = self.raft.metrics().borrow().clone();
                let found = metrics
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .cloned();
                found.ok_or_else(|| Status::unavailable(format!("leader {id} has no address")))?
            }
            (None, None) => return Err(Status::unavailable("no leader elected yet")),
        };
        Ok(Route::Leader {
            client: self.leader_client(&node.addr)?,
            addr: node.addr,
        })
    }

    /// Makes a read linearizable here, or says which leader must serve it.
    async fn read_route(&self, was_forwarded: bool) -> Result<Route, Status> {
        let barrier = tokio::time::timeout(READ_BARRIER_TIMEOUT, self.raft.ensure_linearizable());
        match barrier.await {
            Err(_) => Err(Status::unavailable("could not confirm leadership in time")),
            Ok(Ok(_)) => Ok(Route::Local),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(to)))) => {
                self.route_to_leader(to, was_forwarded)
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))) => {
                Err(Status::unavailable(format!("no quorum: {e}")))
            }
            Ok(Err(RaftError::Fatal(e))) => Err(Status::unavailable(format!("raft stopped: {e}"))),
        }
    }

    fn record_heartbeat(&self, node_id: u64) {
        let mut beats = self
            .heartbeats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        beats.insert(node_id, Instant::now());
    }

    fn last_heartbeat_age(&self, node_id: u64) -> Option<Duration> {
        let beats = self
            .heartbeats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        beats.get(&node_id).map(|at| at.elapsed())
    }

    async fn probe_peer(&self, node_id: u64, node: MetaNode) -> pb::MetaNodeStatus {
        let mut status = pb::MetaNodeStatus {
            node_id,
            zone: node.zone.clone(),
            addr: node.addr.clone(),
            role: "unreachable".to_owned(),
            last_applied: 0,
        };
        let Ok(channel) = self.pool.get(&node.addr) else {
            return status;
        };
        let mut client = RaftServiceClient::new(channel);
        let probe = tokio::time::timeout(
            STATUS_PROBE_TIMEOUT,
            client.node_status(NodeStatusRequest { read_index: false }),
        );
        if let Ok(Ok(resp)) = probe.await {
            let resp = resp.into_inner();
            status.role = resp.role;
            status.last_applied = resp.last_applied;
        }
        status
    }

    /// A read index: this node's own when it leads, else the leader's (asked over Raft's
    /// service); `None` when neither can be had in time (no leader, no quorum).
    async fn read_index(&self) -> Option<u64> {
        let barrier = tokio::time::timeout(STATUS_BARRIER_TIMEOUT, self.raft.ensure_linearizable());
        let to = match barrier.await {
            Ok(Ok(read)) => return Some(read.map_or(0, |id| id.index)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(to)))) => to,
            _ => return None,
        };
        let addr = match (to.leader_node, to.leader_id) {
            (Some(node), _) => node.addr,
            (None, Some(id)) => {
                let metrics = self.raft.metrics().borrow().clone();
                let node = metrics
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .cloned();
                node?.addr
            }
            (None, None) => return None,
        };
        let mut client = RaftServiceClient::new(self.pool.get(&addr).ok()?);
        let asked = tokio::time::timeout(
            STATUS_BARRIER_TIMEOUT,
            client.node_status(NodeStatusRequest { read_index: true }),
        );
        asked.await.ok()?.ok()?.into_inner().read_index
    }

    /// The state machine's applied index and clock, read after a read barrier when one can be
    /// had (every command committed before the call is then at or below the index), else as
    /// this node has them.
    async fn applied_index_and_clock(&self) -> Result<(u64, i64), Status> {
        if let Some(index) = self.read_index().await {
            let caught_up = self
                .raft
                .wait(Some(STATUS_BARRIER_TIMEOUT))
                .applied_index_at_least(Some(index), "cluster status read index")
                .await;
            if let Err(e) = caught_up {
                tracing::debug!(index, error = %e, "not caught up to the read index in time");
            }
        }
        let store = self.store.clone();
        blocking(move || query::applied_clock(&store))
            .await
            .map(|at| (at.applied_index, at.clock_ms))
            .map_err(store_status)
    }

    /// Adds the next version of KEK `name` through Raft (only the SSE-S3 KEK is made on first
    /// use). `Ok(None)`: added, or another creation won the race; either way the store has a
    /// version now. `Ok(Some(route))`: only the leader can add it.
    async fn create_kek(&self, name: &str, was_forwarded: bool) -> Result<Option<Route>, Status> {
        let keys = self.keys.clone();
        let owned = name.to_owned();
        let next = blocking(move || Ok(keys.newest(&owned)))
            .await
            .map_err(store_status)??
            .map_or(1, |(id, _)| id.version + 1);
        let id = KekId::new(name, next)
            .ok_or_else(|| Status::invalid_argument(format!("not a key name: {name:?}")))?;
        let cmd = pb::Command {
            cmd: Some(pb::command::Cmd::CreateKek(self.keys.new_kek(&id))),
            session: None,
            leader_time_ms: tessera_runtime::clock::now_ms(),
        };
        let write = tokio::time::timeout(WRITE_TIMEOUT, self.raft.client_write(cmd));
        match write.await {
            Err(_) => Err(Status::unavailable("write was not committed in time")),
            Ok(Ok(_)) => {
                tracing::info!(kek = %id, "key-encryption key created");
                self.keys.forget_newest();
                self.keys.rotated.notify_one();
                Ok(None)
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to)))) => {
                self.route_to_leader(to, was_forwarded).map(Some)
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => Err(
                Status::internal(format!("unexpected membership error: {e}")),
            ),
            Ok(Err(RaftError::Fatal(e))) => Err(Status::unavailable(format!("raft stopped: {e}"))),
        }
    }

    /// This process's own workers as a report entry, if it runs any.
    fn own_worker_entry(&self) -> Option<pb::ProcessWorkers> {
        let (process, registry) = self.own_workers.as_ref()?;
        let workers = registry.snapshot();
        if workers.is_empty() {
            return None;
        }
        Some(pb::ProcessWorkers {
            process: Some(process.clone()),
            age_ms: 0,
            workers: workers
                .iter()
                .map(tessera_client::workers::worker_status)
                .collect(),
        })
    }
}

#[tonic::async_trait]
impl MetaService for MetaGrpc {
    async fn execute(
        &self,
        request: Request<pb::Command>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        let was_forwarded = is_forwarded(&request);
        let role = tessera_client::tls::peer_role(&request);
        let mut cmd = request.into_inner();
        if let (Some(role), Some(kind)) = (role, cmd.cmd.as_ref())
            && !crate::command_policy::command_allowed(role, kind)
        {
            return Err(Status::permission_denied(format!(
                "a {role} may not send {} commands",
                crate::command_policy::command_name(kind)
            )));
        }
        // Key-encryption keys and their re-wraps are made by meta nodes themselves (wrapped
        // under the root key only they hold); no client may propose them.
        if matches!(
            cmd.cmd,
            Some(
                pb::command::Cmd::CreateKek(_)
                    | pb::command::Cmd::RewrapKeys(_)
                    | pb::command::Cmd::CreateKmsKey(_)
                    | pb::command::Cmd::UpdateKmsKey(_)
            )
        ) {
            return Err(Status::permission_denied(
                "key-encryption keys are made by meta nodes only",
            ));
        }
        // The meta clock's source: whichever node proposes the command (the leader) stamps it.
        cmd.leader_time_ms = tessera_runtime::clock::now_ms();
        let write = tokio::time::timeout(WRITE_TIMEOUT, self.raft.client_write(cmd.clone()));
        match write.await {
            Err(_) => Err(Status::unavailable("write was not committed in time")),
            Ok(Ok(resp)) => Ok(Response::new(resp.data)),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to)))) => {
                match self.route_to_leader(to, was_forwarded)? {
                    Route::Leader { mut client, addr } => {
                        forward_call(&addr, client.execute(forwarded(cmd))).await
                    }
                    Route::Local => Err(Status::internal("write routed back to this node")),
                }
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => Err(
                Status::internal(format!("unexpected membership error: {e}")),
            ),
            Ok(Err(RaftError::Fatal(e))) => Err(Status::unavailable(format!("raft stopped: {e}"))),
        }
    }

    async fn get_bucket(
        &self,
        request: Request<pb::GetBucketRequest>,
    ) -> Result<Response<pb::GetBucketResponse>, Status> {
        query_rpc!(self, request, get_bucket, |store, req| query::get_bucket(
            &store, &req
        ))
    }

    async fn list_buckets(
        &self,
        request: Request<pb::ListBucketsRequest>,
    ) -> Result<Response<pb::ListBucketsResponse>, Status> {
        query_rpc!(self, request, list_buckets, |store, _req| {
            query::list_buckets(&store)
        })
    }

    async fn get_object(
        &self,
        request: Request<pb::GetObjectRequest>,
    ) -> Result<Response<pb::GetObjectResponse>, Status> {
        query_rpc!(self, request, get_object, |store, req| query::get_object(
            &store, &req
        ))
    }

    async fn list_objects(
        &self,
        request: Request<pb::ListObjectsRequest>,
    ) -> Result<Response<pb::ListObjectsResponse>, Status> {
        query_rpc!(self, request, list_objects, |store, req| {
            query::list_objects(&store, &req)
        })
    }

    async fn get_upload(
        &self,
        request: Request<pb::GetUploadRequest>,
    ) -> Result<Response<pb::GetUploadResponse>, Status> {
        query_rpc!(self, request, get_upload, |store, req| query::get_upload(
            &store, &req
        ))
    }

    async fn list_parts(
        &self,
        request: Request<pb::ListPartsRequest>,
    ) -> Result<Response<pb::ListPartsResponse>, Status> {
        query_rpc!(self, request, list_parts, |store, req| query::list_parts(
            &store, &req
        ))
    }

    async fn list_uploads(
        &self,
        request: Request<pb::ListUploadsRequest>,
    ) -> Result<Response<pb::ListUploadsResponse>, Status> {
        query_rpc!(self, request, list_uploads, |store, req| {
            query::list_uploads(&store, &req)
        })
    }

    async fn scan_blobs(
        &self,
        request: Request<pb::ScanBlobsRequest>,
    ) -> Result<Response<pb::ScanBlobsResponse>, Status> {
        if pb::BlobFamily::try_from(request.get_ref().family).is_err() {
            return Err(Status::invalid_argument("unknown blob family"));
        }
        query_rpc!(self, request, scan_blobs, |store, req| query::scan_blobs(
            &store, &req
        ))
    }

    async fn list_versions(
        &self,
        request: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        query_rpc!(self, request, list_versions, |store, req| {
            query::list_versions(&store, &req)
        })
    }

    async fn get_blob(
        &self,
        request: Request<pb::GetBlobRequest>,
    ) -> Result<Response<pb::GetBlobResponse>, Status> {
        query_rpc!(self, request, get_blob, |store, req| query::get_blob(
            &store, &req
        ))
    }

    async fn report_workers(
        &self,
        request: Request<pb::WorkerReport>,
    ) -> Result<Response<pb::Empty>, Status> {
        self.worker_reports
            .record(request.into_inner(), Instant::now())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(pb::Empty {}))
    }

    /// Answered locally from this node's memory: every process that reported to it, with the
    /// age of its report, and this meta process's own workers.
    async fn list_workers(
        &self,
        _request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        let mut processes: Vec<pb::ProcessWorkers> = self.own_worker_entry().into_iter().collect();
        processes.extend(self.worker_reports.list(Instant::now()));
        Ok(Response::new(pb::ListWorkersResponse {
            answered_by: self.node_id,
            processes,
        }))
    }

    /// Answered locally, so it works without a quorum: the meta view comes from this node's
    /// Raft metrics and probes of its peers, data nodes and repair reports from its own state
    /// machine, liveness from its heartbeat memory; the applied index and clock are read after
    /// a read barrier when one can be had within a second.
    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let metrics = self.raft.metrics().borrow().clone();
        let members: Vec<(u64, MetaNode)> = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.clone()))
            .collect();
        let probes = members.into_iter().map(|(id, node)| {
            let own = id == self.node_id;
            let state = metrics.state;
            let applied = metrics.last_applied.map(|l| l.index).unwrap_or(0);
            async move {
                if own {
                    pb::MetaNodeStatus {
                        node_id: id,
                        zone: node.zone,
                        addr: node.addr,
                        role: role_name(state).to_owned(),
                        last_applied: applied,
                    }
                } else {
                    self.probe_peer(id, node).await
                }
            }
        });
        let (meta_nodes, position) = tokio::join!(join_all(probes), self.applied_index_and_clock());
        let (applied_index, meta_time_ms) = position?;
        let store = self.store.clone();
        let (registered, repair_reports) =
            blocking(move || Ok((query::data_nodes(&store)?, query::repair_reports(&store)?)))
                .await
                .map_err(store_status)?;
        let since_start = self.started.elapsed();
        let data_nodes = registered
            .into_iter()
            .map(|node| {
                let last = self.last_heartbeat_age(node.node_id);
                let liveness = self.liveness.classify(heartbeat_age(last, since_start));
                pb::DataNodeStatus {
                    last_heartbeat_ms_ago: last
                        .map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
                    healthy: liveness == pb::Liveness::Alive,
                    liveness: liveness as i32,
                    node: Some(node),
                }
            })
            .collect();
        Ok(Response::new(pb::ClusterStatusResponse {
            applied_index,
            meta_time_ms,
            answered_by: self.node_id,
            leader_id: metrics.current_leader,
            term: metrics.current_term,
            meta_nodes,
            data_nodes,
            repair_reports,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let beat = request.into_inner();
        let node = beat
            .node
            .ok_or_else(|| Status::invalid_argument("heartbeat needs the node"))?;
        self.record_heartbeat(node.node_id);
        Ok(Response::new(pb::HeartbeatResponse {}))
    }

    async fn generate_data_key(
        &self,
        request: Request<pb::GenerateDataKeyRequest>,
    ) -> Result<Response<pb::GenerateDataKeyResponse>, Status> {
        let was_forwarded = is_forwarded(&request);
        let req = request.into_inner();
        if !req.kms_key.is_empty() {
            return self.kms_generate_data_key(req, was_forwarded).await;
        }
        let bound = key_service::binding(req.binding.as_ref())?;
        if req.kek_name != SSE_S3_KEK {
            return Err(Status::not_found(format!(
                "no key-encryption key named {:?}",
                req.kek_name
            )));
        }
        // Served from memory when the newest version was read just now (the common case).
        if let Some((id, kek)) = self.keys.cached_newest(&req.kek_name) {
            return Ok(Response::new(key_service::generate(&id, &kek, &bound)));
        }
        // The newest version this node has; the first use makes version 1 (on the leader).
        for _ in 0..3 {
            let keys = self.keys.clone();
            let name = req.kek_name.clone();
            let newest = blocking(move || Ok(keys.newest(&name)))
                .await
                .map_err(store_status)??;
            if let Some((id, kek)) = newest {
                return Ok(Response::new(key_service::generate(&id, &kek, &bound)));
            }
            if let Some(route) = self.create_kek(&req.kek_name, was_forwarded).await? {
                return match route {
                    Route::Leader { mut client, addr } => {
                        forward_call(&addr, client.generate_data_key(forwarded(req.clone()))).await
                    }
                    Route::Local => Err(Status::internal("key creation routed back here")),
                };
            }
        }
        Err(Status::unavailable(
            "the key-encryption key could not be created; retry",
        ))
    }

    async fn decrypt_data_key(
        &self,
        request: Request<pb::DecryptDataKeyRequest>,
    ) -> Result<Response<pb::DecryptDataKeyResponse>, Status> {
        let was_forwarded = is_forwarded(&request);
        let req = request.into_inner();
        let id: KekId = req
            .kek_id
            .parse()
            .map_err(|e| Status::invalid_argument(format!("{e}")))?;
        let bound = key_service::binding(req.binding.as_ref())?;
        // A KMS key's data keys unwrap only while the key is usable.
        let kms_key = tessera_core::kms::key_id_of_kek(&id.name);
        if let Some(key_id) = kms_key
            && let Some(route) = self
                .kms_check_decrypt(key_id, &bound, was_forwarded)
                .await?
        {
            return match route {
                Route::Leader { mut client, addr } => {
                    forward_call(&addr, client.decrypt_data_key(forwarded(req.clone()))).await
                }
                Route::Local => Err(Status::internal("a KMS request was routed back here")),
            };
        }
        let kek = match self.keys.cached_version(&id) {
            Some(kek) => Some(kek),
            None => {
                let keys = self.keys.clone();
                let wanted = id.clone();
                blocking(move || Ok(keys.version(&wanted)))
                    .await
                    .map_err(store_status)??
            }
        };
        match kek {
            Some(kek) => {
                let answer = key_service::decrypt(&id, &kek, &bound, &req.wrapped_key);
                if let Some(key_id) = kms_key {
                    let outcome = if answer.is_ok() {
                        "ok"
                    } else {
                        "unwrap failed"
                    };
                    kms::audit(key_id, kms::DECRYPT, &bound, outcome);
                }
                answer.map(Response::new)
            }
            // This node may not have applied the KEK's creation yet: the leader has.
            None => match self.read_route(was_forwarded).await? {
                Route::Leader { mut client, addr } => {
                    forward_call(&addr, client.decrypt_data_key(forwarded(req.clone()))).await
                }
                Route::Local => Err(Status::not_found(format!("no key-encryption key {id}"))),
            },
        }
    }

    async fn rotate_kek(
        &self,
        request: Request<pb::RotateKekRequest>,
    ) -> Result<Response<pb::RotateKekResponse>, Status> {
        let was_forwarded = is_forwarded(&request);
        let req = request.into_inner();
        if req.kek_name != SSE_S3_KEK {
            return Err(Status::not_found(format!(
                "no key-encryption key named {:?}",
                req.kek_name
            )));
        }
        if let Some(route) = self.create_kek(&req.kek_name, was_forwarded).await? {
            return match route {
                Route::Leader { mut client, addr } => {
                    forward_call(&addr, client.rotate_kek(forwarded(req))).await
                }
                Route::Local => Err(Status::internal("rotation routed back here")),
            };
        }
        // Applied here (the leader) before the write returned: the newest version is the one
        // just added, or a concurrent rotation's.
        let keys = self.keys.clone();
        let name = req.kek_name.clone();
        let newest = blocking(move || Ok(keys.newest(&name)))
            .await
            .map_err(store_status)??
            .ok_or_else(|| Status::internal("rotated, yet no version is stored"))?;
        Ok(Response::new(pb::RotateKekResponse {
            kek_id: newest.0.to_string(),
        }))
    }

    async fn list_keks(
        &self,
        request: Request<pb::ListKeksRequest>,
    ) -> Result<Response<pb::ListKeksResponse>, Status> {
        query_rpc!(self, request, list_keks, |store, _req| {
            let view = crate::kv::KvSource::view(&store)?;
            Ok(pb::ListKeksResponse {
                keks: crate::records::list_keks(view.as_ref())?,
            })
        })
    }

    async fn create_kms_key(
        &self,
        request: Request<pb::CreateKmsKeyRequest>,
    ) -> Result<Response<pb::KmsKeyResponse>, Status> {
        self.serve_create_kms_key(request).await
    }

    async fn describe_kms_key(
        &self,
        request: Request<pb::DescribeKmsKeyRequest>,
    ) -> Result<Response<pb::KmsKeyResponse>, Status> {
        self.serve_describe_kms_key(request).await
    }

    async fn list_kms_keys(
        &self,
        request: Request<pb::ListKmsKeysRequest>,
    ) -> Result<Response<pb::ListKmsKeysResponse>, Status> {
        query_rpc!(self, request, list_kms_keys, |store, _req| {
            let view = crate::kv::KvSource::view(&store)?;
            Ok(pb::ListKmsKeysResponse {
                keys: crate::records::list_kms_keys(view.as_ref())?,
            })
        })
    }

    async fn update_kms_key(
        &self,
        request: Request<pb::UpdateKmsKeyRequest>,
    ) -> Result<Response<pb::KmsKeyResponse>, Status> {
        self.serve_update_kms_key(request).await
    }
}

#[path = "meta_service_kms.rs"]
mod kms;
