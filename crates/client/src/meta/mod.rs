//! The client of the meta service, over every meta node's address: one typed method per
//! command and per query, speaking core's domain types (`tessera_core::object`, `::blob`,
//! `::lease`); wire types stay inside this module, except in cluster status, heartbeats and
//! worker and repair reports.
//!
//! Leader following: any node answers (followers forward to the leader), so the client only
//! moves on when a node is down or has no leader: it sticks to the last node that answered and,
//! on a retryable failure, tries the next one with a short backoff until an overall deadline
//! long enough to ride out a leader election.
//!
//! Exactly once: a client (with all its clones) draws a random 16-byte client id once and
//! numbers its commands 1, 2, 3, ...; every attempt of a command carries
//! `CommandSession { client_id, seq, first_unacked }` with the same client id and seq, where
//! `first_unacked` is the smallest seq still in flight (it may rise between attempts, never
//! above the seq; see the `session` module). A command that timed out or lost its connection
//! may have committed; its retry is answered with the first result instead of being applied
//! again.
//!
//! Invariant: a call returns either the answer of a node, a status a node gave for good, or
//! `Unavailable` after the deadline; never a transport error of one node while another could
//! still answer. Every attempt of one command carries one seq, and that seq stays in flight
//! until the call returns, so the state machine applies each command at most once and answers
//! every retry with its first result.

mod commands;
mod error;
mod fault;
mod keys;
mod queries;
mod session;

#[cfg(test)]
#[path = "client_test.rs"]
mod client_test;

use std::error::Error as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tessera_core::meta_error::MetaRuleError;
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::meta_service_client::MetaServiceClient;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};
use tracing::{debug, warn};

pub use commands::{DeleteOutcome, GarbageClaim, PlacementChange, PutVersion, ShardClaim};
pub use error::{CommandError, MetaClientError};
pub use fault::{CommandKind, DROP_META_ANSWER_ENV, FaultPlan, FaultSpecError};
pub use keys::{DataKey, KMS_REFUSAL_PREFIX, WrappingKey};
pub use queries::{
    BlobFamily, BlobPage, BlobRef, ListObjects, ListUploads, ObjectLookup, ObjectPage, PartPage,
    UploadLookup, UploadPage,
};
pub use session::CLIENT_ID_LEN;

use fault::FaultHook;
use session::Session;

/// How long opening a connection to a meta node may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one call to one node may take (default; see [`MetaClient::with_request_timeout`]).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call keeps trying other nodes before giving up; longer than an election.
pub const OVERALL_DEADLINE: Duration = Duration::from_secs(15);
/// How long a heartbeat to one node may take.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(800);
/// Largest gRPC message sent or accepted (inline objects travel inside commands).
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// First and largest pause after every node of the list failed once.
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Whether another node (or the same one later) may answer differently: transport failures,
/// timeouts, a node without leader or quorum.
fn is_retryable_status(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => true,
        // A status made locally from a broken connection (the node died mid-call) carries its
        // transport error as source; one sent by a node never does.
        Code::Unknown | Code::Internal => status.source().is_some(),
        _ => false,
    }
}

struct Node {
    addr: String,
    channel: Result<Channel, String>,
}

/// A client of the meta service; cheap to clone (clones share connections, the session and the
/// fault hook).
#[derive(Clone)]
pub struct MetaClient {
    nodes: Arc<Vec<Node>>,
    preferred: Arc<AtomicUsize>,
    session: Arc<Session>,
    fault: Arc<FaultHook>,
    deadline: Duration,
    request_timeout: Duration,
}

impl std::fmt::Debug for MetaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<&str> = self.nodes.iter().map(|n| n.addr.as_str()).collect();
        f.debug_struct("MetaClient")
            .field("nodes", &addrs)
            .field("session", &self.session)
            .finish()
    }
}

fn lazy_channel(addr: &str, tls: Option<&crate::tls::ClusterTls>) -> Result<Channel, String> {
    let endpoint = crate::tls::endpoint(addr, tls, tessera_runtime::tls::Role::Meta)
        .map_err(|e| format!("invalid address {addr}: {e}"))?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(3))
        .connect_lazy())
}

/// The name of a command outcome, for errors.
fn outcome_name(outcome: &pb::command_result::Result) -> &'static str {
    use pb::command_result::Result as R;
    match outcome {
        R::Error(_) => "error",
        R::Ok(_) => "ok",
        R::PutVersion(_) => "put_version",
        R::DeleteObject(_) => "delete_object",
        R::ClaimShards(_) => "claim_shards",
        R::Lease(_) => "lease",
    }
}

/// The typed error of a `MetaError` answer to a command of `kind`.
pub(crate) fn rule_error(kind: CommandKind, error: &pb::MetaError) -> CommandError {
    match MetaRuleError::try_from(error) {
        Ok(rule) => CommandError::Rule(rule),
        Err(source) => CommandError::Client(MetaClientError::Convert {
            op: kind.as_str(),
            source,
        }),
    }
}

impl MetaClient {
    /// A client of the meta nodes at `endpoints` ("host:port", optionally with a scheme), with a
    /// fresh session. Nothing connects until the first call. The fault hook is read from
    /// [`DROP_META_ANSWER_ENV`] (misspelt names are logged and ignored; see
    /// [`FaultPlan::from_env`] to refuse them).
    pub fn new(endpoints: Vec<String>) -> Self {
        Self::with_tls(endpoints, None)
    }

    /// As [`MetaClient::new`], over mutual TLS with `tls` when given (every process of a
    /// cluster), plain HTTP/2 when not (in-process tests).
    pub fn with_tls(endpoints: Vec<String>, tls: Option<&crate::tls::ClusterTls>) -> Self {
        let nodes = endpoints
            .into_iter()
            .map(|addr| Node {
                channel: lazy_channel(&addr, tls),
                addr,
            })
            .collect();
        let plan = FaultPlan::from_env_lenient();
        if !plan.is_empty() {
            warn!(plan = ?plan, "meta answers will be dropped by the fault hook");
        }
        MetaClient {
            nodes: Arc::new(nodes),
            preferred: Arc::new(AtomicUsize::new(0)),
            session: Arc::new(Session::new()),
            fault: Arc::new(FaultHook::new(plan)),
            deadline: OVERALL_DEADLINE,
            request_timeout: REQUEST_TIMEOUT,
        }
    }

    /// The same client with another overall deadline per call (default
    /// [`OVERALL_DEADLINE`]); tools that must answer fast use a shorter one.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The same client with another limit on one call to one node (default
    /// [`REQUEST_TIMEOUT`]).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The same client (same session) with the answers of `plan`'s commands dropped once each
    /// (see [`DROP_META_ANSWER_ENV`]); replaces the plan read from the environment.
    pub fn with_fault(mut self, plan: FaultPlan) -> Self {
        self.fault = Arc::new(FaultHook::new(plan));
        self
    }

    /// The client id of this client's session.
    pub fn client_id(&self) -> [u8; CLIENT_ID_LEN] {
        self.session.client_id()
    }

    /// How many answers the fault hook dropped so far.
    pub fn faults_fired(&self) -> u64 {
        self.fault.fired()
    }

    fn service(channel: Channel) -> MetaServiceClient<Channel> {
        MetaServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// Runs `call` against the preferred node, moving on to the next node on a retryable
    /// failure until the client's deadline.
    async fn call<T, F, Fut>(&self, op: &'static str, call: F) -> Result<T, MetaClientError>
    where
        F: Fn(MetaServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let count = self.nodes.len();
        if count == 0 {
            return Err(MetaClientError::Unavailable {
                attempts: 0,
                last: "no meta endpoints configured".to_owned(),
            });
        }
        let deadline = Instant::now() + self.deadline;
        let mut index = self.preferred.load(Ordering::Relaxed) % count;
        let mut attempts: u32 = 0;
        let mut backoff = BACKOFF_START;
        loop {
            let node = &self.nodes[index];
            attempts += 1;
            let failure = match &node.channel {
                Err(reason) => reason.clone(),
                Ok(channel) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let budget = remaining.min(self.request_timeout);
                    match tokio::time::timeout(budget, call(Self::service(channel.clone()))).await {
                        Ok(Ok(resp)) => {
                            self.preferred.store(index, Ordering::Relaxed);
                            return Ok(resp.into_inner());
                        }
                        Ok(Err(status)) if !is_retryable_status(&status) => {
                            return Err(MetaClientError::Rejected {
                                op,
                                code: status.code(),
                                message: status.message().to_owned(),
                            });
                        }
                        Ok(Err(status)) => {
                            format!("{}: {:?}: {}", node.addr, status.code(), status.message())
                        }
                        Err(_) => format!("{}: no answer within {budget:?}", node.addr),
                    }
                }
            };
            debug!(op, addr = %node.addr, attempts, failure = %failure, "meta call failed, trying next node");
            if Instant::now() >= deadline {
                return Err(MetaClientError::Unavailable {
                    attempts,
                    last: failure,
                });
            }
            index = (index + 1) % count;
            // After every node failed once, pause before the next round.
            if (attempts as usize).is_multiple_of(count) {
                let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// Applies a command through Raft, exactly once, and returns its outcome (which may be a
    /// `MetaError` the state machine reported). Every attempt carries the same seq.
    async fn execute(
        &self,
        cmd: pb::command::Cmd,
    ) -> Result<pb::command_result::Result, MetaClientError> {
        let kind = CommandKind::of(&cmd);
        let ticket = self.session.begin();
        let mut drop_answer = self.fault.plan.matches(kind);
        loop {
            let answer = self
                .call(kind.as_str(), |mut client| {
                    let command = pb::Command {
                        cmd: Some(cmd.clone()),
                        session: Some(ticket.header()),
                        leader_time_ms: 0,
                    };
                    async move { client.execute(command).await }
                })
                .await?;
            let outcome = answer
                .result
                .ok_or_else(|| MetaClientError::missing(kind.as_str(), "result"))?;
            if drop_answer {
                drop_answer = false;
                self.fault.fire();
                warn!(kind = %kind, seq = ticket.seq(), outcome = outcome_name(&outcome), "fault hook dropped a meta answer, retrying the command");
                continue;
            }
            return Ok(outcome);
        }
    }

    /// Executes `cmd` and turns a `MetaError` outcome into [`CommandError::Rule`].
    async fn command(
        &self,
        cmd: pb::command::Cmd,
    ) -> Result<pb::command_result::Result, CommandError> {
        let kind = CommandKind::of(&cmd);
        match self.execute(cmd).await? {
            pb::command_result::Result::Error(e) => Err(rule_error(kind, &e)),
            outcome => Ok(outcome),
        }
    }

    /// Executes a command that answers `ok`.
    async fn command_ok(&self, cmd: pb::command::Cmd) -> Result<(), CommandError> {
        let kind = CommandKind::of(&cmd);
        match self.command(cmd).await? {
            pb::command_result::Result::Ok(_) => Ok(()),
            other => Err(unexpected(kind, &other)),
        }
    }

    /// Sends a process's worker report to every meta node at once (each keeps the latest
    /// report in memory), each bounded by [`HEARTBEAT_TIMEOUT`]; failures are ignored, the
    /// next report follows within seconds.
    pub async fn report_workers_all(&self, report: pb::WorkerReport) {
        let sends = self.nodes.iter().filter_map(|node| {
            let channel = node.channel.as_ref().ok()?.clone();
            let report = report.clone();
            let addr = node.addr.as_str();
            Some(async move {
                let mut client = Self::service(channel);
                let sent =
                    tokio::time::timeout(HEARTBEAT_TIMEOUT, client.report_workers(report)).await;
                if !matches!(sent, Ok(Ok(_))) {
                    debug!(addr = %addr, "worker report not delivered");
                }
            })
        });
        futures::future::join_all(sends).await;
    }

    /// Every process's latest worker report, as one meta node holds it.
    pub async fn list_workers(&self) -> Result<pb::ListWorkersResponse, MetaClientError> {
        self.call("list_workers", |mut c| async move {
            c.list_workers(pb::ListWorkersRequest {}).await
        })
        .await
    }

    /// Sends a data node's heartbeat to every meta node at once (each keeps liveness in its own
    /// memory), each bounded by [`HEARTBEAT_TIMEOUT`]; failures are ignored, the next beat
    /// follows within a second.
    pub async fn heartbeat_all(&self, req: pb::HeartbeatRequest) {
        let beats = self.nodes.iter().filter_map(|node| {
            let channel = node.channel.as_ref().ok()?.clone();
            let req = req.clone();
            let addr = node.addr.as_str();
            Some(async move {
                let mut client = Self::service(channel);
                let sent = tokio::time::timeout(HEARTBEAT_TIMEOUT, client.heartbeat(req)).await;
                if !matches!(sent, Ok(Ok(_))) {
                    debug!(addr = %addr, "heartbeat not delivered");
                }
            })
        });
        futures::future::join_all(beats).await;
    }
}

/// The error of an outcome of the wrong kind.
fn unexpected(kind: CommandKind, outcome: &pb::command_result::Result) -> CommandError {
    CommandError::Client(MetaClientError::UnexpectedOutcome {
        kind,
        got: outcome_name(outcome),
    })
}
