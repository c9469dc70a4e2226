//! The client of the meta service, over every meta node's address. Any node answers (followers
//! forward to the leader), so the client only moves on when a node is down or has no leader:
//! it sticks to the last node that answered and, on a retryable failure, tries the next one with
//! a short backoff until an overall deadline long enough to ride out a leader election.
//!
//! Invariant: a call returns either the answer of a node, a `Rejected` status a node gave for
//! good, or `Unavailable` after the deadline; never a transport error of one node while another
//! could still answer. A write that timed out may still have been committed (Raft cannot tell),
//! so retrying `execute` can apply a command twice; the commands' rules (existing bucket,
//! new version) keep that visible rather than silent.

use std::error::Error as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::meta_service_client::MetaServiceClient;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Response, Status};
use tracing::debug;

/// How long opening a connection to a meta node may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one call to one node may take.
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

/// A meta call that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetaClientError {
    /// No node answered before the deadline (down, no leader, no quorum). The gateway maps
    /// this to 503 Service Unavailable.
    #[error("meta service unavailable after {attempts} attempts: {last}")]
    Unavailable {
        /// Calls made.
        attempts: u32,
        /// The last failure seen.
        last: String,
    },
    /// A node answered with a status retrying cannot change.
    #[error("meta service rejected the request ({code:?}): {message}")]
    Rejected {
        /// The gRPC status code.
        code: Code,
        /// The node's explanation.
        message: String,
    },
    /// A node answered with a message that lacks what the call needs.
    #[error("malformed meta response: {0}")]
    Decode(String),
}

impl MetaClientError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, MetaClientError::Unavailable { .. })
    }

    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            MetaClientError::Unavailable { .. } => "meta_unavailable",
            MetaClientError::Rejected { .. } => "meta_rejected",
            MetaClientError::Decode(_) => "meta_decode",
        }
    }
}

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

/// A client of the meta service; cheap to clone (clones share connections).
#[derive(Clone)]
pub struct MetaClient {
    nodes: Arc<Vec<Node>>,
    preferred: Arc<AtomicUsize>,
    deadline: Duration,
}

impl std::fmt::Debug for MetaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<&str> = self.nodes.iter().map(|n| n.addr.as_str()).collect();
        f.debug_struct("MetaClient").field("nodes", &addrs).finish()
    }
}

fn lazy_channel(addr: &str) -> Result<Channel, String> {
    let uri = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let endpoint =
        Endpoint::from_shared(uri).map_err(|e| format!("invalid address {addr}: {e}"))?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(3))
        .connect_lazy())
}

impl MetaClient {
    /// A client of the meta nodes at `endpoints` ("host:port", optionally with a scheme).
    /// Nothing connects until the first call.
    pub fn new(endpoints: Vec<String>) -> Self {
        let nodes = endpoints
            .into_iter()
            .map(|addr| Node {
                channel: lazy_channel(&addr),
                addr,
            })
            .collect();
        MetaClient {
            nodes: Arc::new(nodes),
            preferred: Arc::new(AtomicUsize::new(0)),
            deadline: OVERALL_DEADLINE,
        }
    }

    /// The same client with another overall deadline per call (default
    /// [`OVERALL_DEADLINE`]); tools that must answer fast use a shorter one.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
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
                    let budget = remaining.min(REQUEST_TIMEOUT);
                    match tokio::time::timeout(budget, call(Self::service(channel.clone()))).await {
                        Ok(Ok(resp)) => {
                            self.preferred.store(index, Ordering::Relaxed);
                            return Ok(resp.into_inner());
                        }
                        Ok(Err(status)) if !is_retryable_status(&status) => {
                            return Err(MetaClientError::Rejected {
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

    /// Applies a command through Raft and returns its result (which may be a `MetaError` the
    /// state machine reported).
    pub async fn execute(&self, cmd: pb::Command) -> Result<pb::CommandResult, MetaClientError> {
        let result = self
            .call("execute", |mut c| {
                let cmd = cmd.clone();
                async move { c.execute(cmd).await }
            })
            .await?;
        if result.result.is_none() {
            return Err(MetaClientError::Decode(
                "command result carries no outcome".to_owned(),
            ));
        }
        Ok(result)
    }

    /// A bucket by name.
    pub async fn get_bucket(&self, name: &str) -> Result<Option<pb::Bucket>, MetaClientError> {
        let req = pb::GetBucketRequest {
            name: name.to_owned(),
        };
        let resp = self
            .call("get_bucket", |mut c| {
                let req = req.clone();
                async move { c.get_bucket(req).await }
            })
            .await?;
        Ok(resp.bucket)
    }

    /// Every bucket, by name.
    pub async fn list_buckets(&self) -> Result<Vec<pb::Bucket>, MetaClientError> {
        let resp = self
            .call("list_buckets", |mut c| async move {
                c.list_buckets(pb::ListBucketsRequest {}).await
            })
            .await?;
        Ok(resp.buckets)
    }

    /// The current version of a key or one version by id.
    pub async fn get_object(
        &self,
        req: pb::GetObjectRequest,
    ) -> Result<pb::GetObjectResponse, MetaClientError> {
        self.call("get_object", |mut c| {
            let req = req.clone();
            async move { c.get_object(req).await }
        })
        .await
    }

    /// One page of a bucket's current objects.
    pub async fn list_objects(
        &self,
        req: pb::ListObjectsRequest,
    ) -> Result<pb::ListObjectsResponse, MetaClientError> {
        self.call("list_objects", |mut c| {
            let req = req.clone();
            async move { c.list_objects(req).await }
        })
        .await
    }

    /// A multipart upload by id.
    pub async fn get_upload(
        &self,
        upload_id: &str,
    ) -> Result<Option<pb::MultipartUpload>, MetaClientError> {
        let req = pb::GetUploadRequest {
            upload_id: upload_id.to_owned(),
        };
        let resp = self
            .call("get_upload", |mut c| {
                let req = req.clone();
                async move { c.get_upload(req).await }
            })
            .await?;
        Ok(resp.upload)
    }

    /// One page of an upload's parts.
    pub async fn list_parts(
        &self,
        req: pb::ListPartsRequest,
    ) -> Result<pb::ListPartsResponse, MetaClientError> {
        self.call("list_parts", |mut c| {
            let req = req.clone();
            async move { c.list_parts(req).await }
        })
        .await
    }

    /// One page of a bucket's in-progress uploads.
    pub async fn list_uploads(
        &self,
        req: pb::ListUploadsRequest,
    ) -> Result<pb::ListUploadsResponse, MetaClientError> {
        self.call("list_uploads", |mut c| {
            let req = req.clone();
            async move { c.list_uploads(req).await }
        })
        .await
    }

    /// One page of the erasure-coded blobs of a record family: at most `limit` records (0 means
    /// 1000) strictly after the state-machine key `after` (empty: from the start). Resume with
    /// the response's `next_after` until `done`.
    pub async fn scan_blobs(
        &self,
        family: pb::BlobFamily,
        after: Vec<u8>,
        limit: u32,
    ) -> Result<pb::ScanBlobsResponse, MetaClientError> {
        let req = pb::ScanBlobsRequest {
            family: family as i32,
            after,
            limit,
        };
        self.call("scan_blobs", |mut c| {
            let req = req.clone();
            async move { c.scan_blobs(req).await }
        })
        .await
    }

    /// The record that owns the blob `data_id` now, with its current placement; `None` when no
    /// record references it.
    pub async fn get_blob(&self, data_id: &[u8]) -> Result<Option<pb::BlobRef>, MetaClientError> {
        let req = pb::GetBlobRequest {
            data_id: data_id.to_vec(),
        };
        let resp = self
            .call("get_blob", |mut c| {
                let req = req.clone();
                async move { c.get_blob(req).await }
            })
            .await?;
        Ok(resp.blob)
    }

    /// The cluster as the answering meta node sees it.
    pub async fn cluster_status(&self) -> Result<pb::ClusterStatusResponse, MetaClientError> {
        self.call("cluster_status", |mut c| async move {
            c.cluster_status(pb::ClusterStatusRequest {}).await
        })
        .await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_are_retryable_and_answers_are_not() {
        assert!(is_retryable_status(&Status::unavailable("down")));
        assert!(is_retryable_status(&Status::deadline_exceeded("slow")));
        assert!(is_retryable_status(&Status::cancelled("timeout expired")));
        assert!(!is_retryable_status(&Status::invalid_argument("bad")));
        assert!(!is_retryable_status(&Status::internal("server bug")));
        assert!(!is_retryable_status(&Status::unknown("server said so")));
    }

    #[test]
    fn errors_know_their_policy() {
        let down = MetaClientError::Unavailable {
            attempts: 3,
            last: "x".into(),
        };
        assert!(down.is_retryable());
        assert_eq!(down.code(), "meta_unavailable");
        let rejected = MetaClientError::Rejected {
            code: Code::InvalidArgument,
            message: "no".into(),
        };
        assert!(!rejected.is_retryable());
        assert_eq!(rejected.code(), "meta_rejected");
        assert_eq!(MetaClientError::Decode("x".into()).code(), "meta_decode");
    }

    #[tokio::test]
    async fn no_endpoint_means_unavailable() {
        let client = MetaClient::new(Vec::new());
        let err = client.list_buckets().await.expect_err("no endpoints");
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn unreachable_nodes_are_tried_in_turn_until_the_deadline() {
        // One address is not a URI, the other refuses connections (port 1 on loopback).
        let client = MetaClient::new(vec!["bad host:1:2".to_owned(), "127.0.0.1:1".to_owned()])
            .with_deadline(Duration::from_millis(300));
        let started = Instant::now();
        let err = client.get_bucket("b").await.expect_err("unreachable");
        match err {
            MetaClientError::Unavailable { attempts, .. } => assert!(attempts >= 2),
            other => panic!("unexpected {other}"),
        }
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn heartbeats_to_dead_nodes_return_promptly() {
        let client = MetaClient::new(vec!["127.0.0.1:1".to_owned()]);
        let started = Instant::now();
        client
            .heartbeat_all(pb::HeartbeatRequest {
                node: Some(pb::DataNode::default()),
                shards: 0,
                used_bytes: 0,
            })
            .await;
        assert!(started.elapsed() <= HEARTBEAT_TIMEOUT + Duration::from_millis(500));
    }
}
