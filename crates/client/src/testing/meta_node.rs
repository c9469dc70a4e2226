//! An in-memory meta service with the state machine's exactly-once session table: it records
//! every command it receives, answers a repeated (client id, seq) with the stored first result,
//! refuses a seq below the session's `first_unacked` with SESSION_EXPIRED, and forgets results
//! below `first_unacked`. A few commands have real rules (buckets, versions, leases); named
//! faults cut the connection, hang or fail after a command applied.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tessera_core::names::VersionId;
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::command::Cmd;
use tessera_proto::meta::v1::command_result::Result as Outcome;
use tessera_proto::meta::v1::meta_service_server::{MetaService, MetaServiceServer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Request, Response, Status};

use super::proxy::Cutter;
use crate::meta::CommandKind;

/// One command as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) kind: CommandKind,
    pub(crate) session: pb::CommandSession,
}

/// What happens after a command of a kind applies for the first time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AfterApply {
    /// Cut every connection through the proxy and never answer.
    Cut,
    /// Never answer.
    Hang,
    /// Answer UNAVAILABLE.
    Unavailable,
}

/// The model's state; tests read and set it directly.
#[derive(Debug, Default)]
pub(crate) struct MetaState {
    pub(crate) received: Vec<Received>,
    /// (kind, seq) of every application.
    pub(crate) applied: Vec<(CommandKind, u64)>,
    results: HashMap<(Vec<u8>, u64), pb::CommandResult>,
    sessions: HashMap<Vec<u8>, u64>,
    pub(crate) buckets: BTreeMap<String, pb::Bucket>,
    pub(crate) versions: BTreeMap<(String, String), pb::ObjectVersion>,
    pub(crate) leases: BTreeMap<u64, pb::WriteLease>,
    pub(crate) index: u64,
    pub(crate) clock_ms: i64,
    /// Every command applies as this rule error.
    pub(crate) reply_error: Option<pb::MetaError>,
    /// Every command applies with this outcome.
    pub(crate) reply_outcome: Option<Outcome>,
    /// Every Execute fails with this status (nothing applies).
    pub(crate) status_error: Option<Code>,
    /// The first application of each kind is followed by this.
    pub(crate) after_apply: BTreeMap<CommandKind, AfterApply>,
    /// CreateBucket of this name waits for the notify before applying.
    pub(crate) gate: Option<(String, Arc<Notify>)>,
    pub(crate) upload: pb::GetUploadResponse,
    pub(crate) parts: pb::ListPartsResponse,
    pub(crate) uploads: pb::ListUploadsResponse,
    pub(crate) blobs: pb::ScanBlobsResponse,
    pub(crate) blob: pb::GetBlobResponse,
}

fn rule(code: pb::MetaErrorCode, fill: impl FnOnce(&mut pb::MetaError)) -> Outcome {
    let mut error = pb::MetaError {
        code: code as i32,
        message: format!("{code:?}"),
        ..pb::MetaError::default()
    };
    fill(&mut error);
    Outcome::Error(error)
}

fn ok() -> Outcome {
    Outcome::Ok(pb::Empty {})
}

impl MetaState {
    /// The seqs whose results the session table still holds for `client_id`.
    pub(crate) fn stored_results(&self, client_id: &[u8]) -> BTreeSet<u64> {
        self.results
            .keys()
            .filter(|(c, _)| c == client_id)
            .map(|(_, s)| *s)
            .collect()
    }

    /// Receipts of commands of `kind`.
    pub(crate) fn received_of(&self, kind: CommandKind) -> Vec<pb::CommandSession> {
        self.received
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.session.clone())
            .collect()
    }

    /// Applications of commands of `kind`.
    pub(crate) fn applied_of(&self, kind: CommandKind) -> usize {
        self.applied.iter().filter(|(k, _)| *k == kind).count()
    }

    fn apply(&mut self, kind: CommandKind, session: &pb::CommandSession, cmd: Cmd) -> Outcome {
        let key = (session.client_id.clone(), session.seq);
        if let Some(result) = self.results.get(&key) {
            return result.result.clone().unwrap_or_else(ok);
        }
        if self
            .sessions
            .get(&session.client_id)
            .is_some_and(|first| session.seq < *first)
        {
            return rule(pb::MetaErrorCode::MetaErrorSessionExpired, |_| {});
        }
        self.index += 1;
        self.clock_ms += 1;
        self.applied.push((kind, session.seq));
        let outcome = match (&self.reply_error, &self.reply_outcome) {
            (Some(error), _) => Outcome::Error(error.clone()),
            (None, Some(outcome)) => outcome.clone(),
            (None, None) => self.run(cmd),
        };
        self.results.insert(
            key,
            pb::CommandResult {
                result: Some(outcome.clone()),
            },
        );
        let first = self.sessions.entry(session.client_id.clone()).or_insert(0);
        *first = (*first).max(session.first_unacked);
        let first = *first;
        self.results
            .retain(|(c, s), _| c != &session.client_id || *s >= first);
        outcome
    }

    fn lease_live(&self, lease_id: u64) -> bool {
        self.leases
            .get(&lease_id)
            .is_some_and(|l| self.clock_ms < l.expires_ms)
    }

    fn put(&mut self, mut version: pb::ObjectVersion, lease_id: u64) -> Outcome {
        let Some(bucket) = self.buckets.get(&version.bucket) else {
            let name = version.bucket.clone();
            return rule(pb::MetaErrorCode::MetaErrorNoSuchBucket, |e| {
                e.bucket = name
            });
        };
        if lease_id != 0 && !self.lease_live(lease_id) {
            return rule(pb::MetaErrorCode::MetaErrorLeaseExpired, |e| {
                e.lease_id = lease_id
            });
        }
        let versioned = bucket.versioning == pb::VersioningState::VersioningEnabled as i32;
        version.seq = self.index;
        version.last_modified_ms = self.clock_ms;
        version.version_id = if versioned {
            VersionId::from_seq(self.index).as_str().to_owned()
        } else {
            "null".to_owned()
        };
        self.versions.insert(
            (version.bucket.clone(), version.key.clone()),
            version.clone(),
        );
        Outcome::PutVersion(pb::PutVersionResult {
            version: Some(version),
        })
    }

    fn run(&mut self, cmd: Cmd) -> Outcome {
        match cmd {
            Cmd::CreateBucket(c) => {
                let mut bucket = c.bucket.unwrap_or_default();
                if self.buckets.contains_key(&bucket.name) {
                    let name = bucket.name.clone();
                    return rule(pb::MetaErrorCode::MetaErrorBucketAlreadyOwnedByYou, |e| {
                        e.bucket = name
                    });
                }
                bucket.created_ms = self.clock_ms;
                self.buckets.insert(bucket.name.clone(), bucket);
                ok()
            }
            Cmd::DeleteBucket(d) => match self.buckets.remove(&d.name) {
                Some(_) => ok(),
                None => rule(pb::MetaErrorCode::MetaErrorNoSuchBucket, |e| {
                    e.bucket = d.name
                }),
            },
            Cmd::SetBucketVersioning(s) => match self.buckets.get_mut(&s.bucket) {
                Some(bucket) => {
                    bucket.versioning = s.state;
                    ok()
                }
                None => rule(pb::MetaErrorCode::MetaErrorNoSuchBucket, |e| {
                    e.bucket = s.bucket
                }),
            },
            Cmd::SetBucketEncryption(s) => match self.buckets.get_mut(&s.bucket) {
                Some(bucket) => {
                    bucket.encryption = s.encryption;
                    ok()
                }
                None => rule(pb::MetaErrorCode::MetaErrorNoSuchBucket, |e| {
                    e.bucket = s.bucket
                }),
            },
            Cmd::PutVersion(p) => {
                let version = p.version.unwrap_or_default();
                if p.precondition.is_some_and(|c| c.if_none_match_any)
                    && self
                        .versions
                        .contains_key(&(version.bucket.clone(), version.key.clone()))
                {
                    return rule(pb::MetaErrorCode::MetaErrorPreconditionFailed, |e| {
                        e.message = "If-None-Match".into()
                    });
                }
                self.put(version, p.lease_id)
            }
            Cmd::CompleteUpload(c) => {
                let mut version = c.version.unwrap_or_default();
                version.upload_id = c.upload_id;
                self.put(version, 0)
            }
            Cmd::DeleteObject(d) => {
                let removed = self.versions.remove(&(d.bucket, d.key));
                Outcome::DeleteObject(pb::DeleteObjectResult {
                    version_id: removed.map(|v| v.version_id).unwrap_or_default(),
                    delete_marker: false,
                })
            }
            Cmd::ClaimShards(c) => Outcome::ClaimShards(pb::ClaimShardsResult {
                claimed: c
                    .orphans
                    .into_iter()
                    .chain(c.garbage.into_iter().flat_map(|g| g.shards))
                    .collect(),
            }),
            Cmd::GrantLease(g) => {
                let lease = pb::WriteLease {
                    lease_id: self.index,
                    holder: g.holder,
                    granted_ms: self.clock_ms,
                    expires_ms: self.clock_ms + g.duration_ms as i64,
                };
                self.leases.insert(lease.lease_id, lease.clone());
                Outcome::Lease(lease)
            }
            Cmd::RenewLease(r) => {
                if !self.lease_live(r.lease_id) {
                    return rule(pb::MetaErrorCode::MetaErrorLeaseExpired, |e| {
                        e.lease_id = r.lease_id
                    });
                }
                let clock = self.clock_ms;
                let lease = self.leases.get_mut(&r.lease_id).expect("live lease");
                lease.expires_ms = clock + r.duration_ms as i64;
                Outcome::Lease(lease.clone())
            }
            Cmd::ReleaseLease(r) => {
                let clock = self.clock_ms;
                if let Some(lease) = self.leases.get_mut(&r.lease_id) {
                    lease.expires_ms = lease.expires_ms.min(clock);
                }
                ok()
            }
            Cmd::CreateUpload(_)
            | Cmd::PutPart(_)
            | Cmd::AbortUpload(_)
            | Cmd::RegisterDataNode(_)
            | Cmd::SetDataNodeState(_)
            | Cmd::UpdatePlacement(_)
            | Cmd::ReleaseShards(_)
            | Cmd::PutRepairReport(_)
            | Cmd::CreateKek(_)
            | Cmd::RewrapKeys(_)
            | Cmd::CreateKmsKey(_)
            | Cmd::UpdateKmsKey(_) => ok(),
        }
    }
}

/// The service; clones share the state.
#[derive(Clone, Debug, Default)]
pub(crate) struct MetaModel {
    state: Arc<Mutex<MetaState>>,
    cutter: Arc<Mutex<Option<Cutter>>>,
}

impl MetaModel {
    pub(crate) fn lock(&self) -> MutexGuard<'_, MetaState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Serves the model on a fresh loopback port; its address.
    pub(crate) async fn serve(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(MetaServiceServer::new(self.clone()))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        addr
    }

    /// Serves the model behind a proxy whose connections `AfterApply::Cut` cuts; the proxy's
    /// address.
    pub(crate) async fn serve_behind_proxy(&self) -> String {
        let upstream = self.serve().await;
        let (addr, cutter) = super::proxy::start(upstream).await;
        *self.cutter.lock().unwrap_or_else(PoisonError::into_inner) = Some(cutter);
        addr
    }
}

#[tonic::async_trait]
impl MetaService for MetaModel {
    async fn execute(
        &self,
        request: Request<pb::Command>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        let command = request.into_inner();
        let session = command
            .session
            .ok_or_else(|| Status::invalid_argument("command without session"))?;
        let cmd = command
            .cmd
            .ok_or_else(|| Status::invalid_argument("command without cmd"))?;
        let kind = CommandKind::of(&cmd);
        let gate = {
            let mut state = self.lock();
            state.received.push(Received {
                kind,
                session: session.clone(),
            });
            if let Some(code) = state.status_error {
                return Err(Status::new(code, "the model refuses"));
            }
            match (&state.gate, &cmd) {
                (Some((name, notify)), Cmd::CreateBucket(c))
                    if c.bucket.as_ref().is_some_and(|b| &b.name == name) =>
                {
                    Some(Arc::clone(notify))
                }
                _ => None,
            }
        };
        if let Some(gate) = gate {
            gate.notified().await;
        }
        let (outcome, after) = {
            let mut state = self.lock();
            let applied_before = state.applied.len();
            let outcome = state.apply(kind, &session, cmd);
            let fresh = state.applied.len() > applied_before;
            let after = if fresh {
                state.after_apply.remove(&kind)
            } else {
                None
            };
            (outcome, after)
        };
        match after {
            None => Ok(Response::new(pb::CommandResult {
                result: Some(outcome),
            })),
            Some(AfterApply::Unavailable) => Err(Status::unavailable("connection lost")),
            Some(AfterApply::Hang) => std::future::pending().await,
            Some(AfterApply::Cut) => {
                let cutter = self
                    .cutter
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                if let Some(cutter) = cutter {
                    cutter.cut();
                }
                std::future::pending().await
            }
        }
    }

    async fn get_bucket(
        &self,
        request: Request<pb::GetBucketRequest>,
    ) -> Result<Response<pb::GetBucketResponse>, Status> {
        let name = request.into_inner().name;
        Ok(Response::new(pb::GetBucketResponse {
            bucket: self.lock().buckets.get(&name).cloned(),
        }))
    }

    async fn list_buckets(
        &self,
        _request: Request<pb::ListBucketsRequest>,
    ) -> Result<Response<pb::ListBucketsResponse>, Status> {
        Ok(Response::new(pb::ListBucketsResponse {
            buckets: self.lock().buckets.values().cloned().collect(),
        }))
    }

    async fn get_object(
        &self,
        request: Request<pb::GetObjectRequest>,
    ) -> Result<Response<pb::GetObjectResponse>, Status> {
        let req = request.into_inner();
        let state = self.lock();
        let version = state
            .versions
            .get(&(req.bucket.clone(), req.key))
            .filter(|v| req.version_id.as_ref().is_none_or(|id| id == &v.version_id))
            .cloned();
        Ok(Response::new(pb::GetObjectResponse {
            version,
            no_such_bucket: !state.buckets.contains_key(&req.bucket),
        }))
    }

    async fn list_objects(
        &self,
        request: Request<pb::ListObjectsRequest>,
    ) -> Result<Response<pb::ListObjectsResponse>, Status> {
        let req = request.into_inner();
        let state = self.lock();
        let objects = state
            .versions
            .values()
            .filter(|v| v.bucket == req.bucket && v.key.starts_with(&req.prefix))
            .cloned()
            .collect::<Vec<_>>();
        Ok(Response::new(pb::ListObjectsResponse {
            next_marker: objects.last().map(|v| v.key.clone()).unwrap_or_default(),
            objects,
            common_prefixes: Vec::new(),
            is_truncated: false,
            no_such_bucket: !state.buckets.contains_key(&req.bucket),
        }))
    }

    async fn get_upload(
        &self,
        _request: Request<pb::GetUploadRequest>,
    ) -> Result<Response<pb::GetUploadResponse>, Status> {
        Ok(Response::new(self.lock().upload.clone()))
    }

    async fn list_parts(
        &self,
        _request: Request<pb::ListPartsRequest>,
    ) -> Result<Response<pb::ListPartsResponse>, Status> {
        Ok(Response::new(self.lock().parts.clone()))
    }

    async fn list_uploads(
        &self,
        _request: Request<pb::ListUploadsRequest>,
    ) -> Result<Response<pb::ListUploadsResponse>, Status> {
        Ok(Response::new(self.lock().uploads.clone()))
    }

    async fn cluster_status(
        &self,
        _request: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let state = self.lock();
        Ok(Response::new(pb::ClusterStatusResponse {
            applied_index: state.index,
            meta_time_ms: state.clock_ms,
            ..pb::ClusterStatusResponse::default()
        }))
    }

    async fn heartbeat(
        &self,
        _request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Ok(Response::new(pb::HeartbeatResponse {}))
    }

    async fn scan_blobs(
        &self,
        _request: Request<pb::ScanBlobsRequest>,
    ) -> Result<Response<pb::ScanBlobsResponse>, Status> {
        Ok(Response::new(self.lock().blobs.clone()))
    }

    async fn get_blob(
        &self,
        _request: Request<pb::GetBlobRequest>,
    ) -> Result<Response<pb::GetBlobResponse>, Status> {
        Ok(Response::new(self.lock().blob.clone()))
    }

    async fn list_versions(
        &self,
        _request: Request<pb::ListVersionsRequest>,
    ) -> Result<Response<pb::ListVersionsResponse>, Status> {
        Err(Status::unimplemented("the client model keeps no versions"))
    }

    async fn report_workers(
        &self,
        _request: Request<pb::WorkerReport>,
    ) -> Result<Response<pb::Empty>, Status> {
        Ok(Response::new(pb::Empty {}))
    }

    async fn list_workers(
        &self,
        _request: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        Ok(Response::new(pb::ListWorkersResponse::default()))
    }

    async fn generate_data_key(
        &self,
        _request: Request<pb::GenerateDataKeyRequest>,
    ) -> Result<Response<pb::GenerateDataKeyResponse>, Status> {
        Err(Status::unimplemented(
            "this test meta service holds no keys",
        ))
    }

    async fn decrypt_data_key(
        &self,
        _request: Request<pb::DecryptDataKeyRequest>,
    ) -> Result<Response<pb::DecryptDataKeyResponse>, Status> {
        Err(Status::unimplemented(
            "this test meta service holds no keys",
        ))
    }

    async fn rotate_kek(
        &self,
        _request: Request<pb::RotateKekRequest>,
    ) -> Result<Response<pb::RotateKekResponse>, Status> {
        Err(Status::unimplemented(
            "this test meta service holds no keys",
        ))
    }

    async fn list_keks(
        &self,
        _request: Request<pb::ListKeksRequest>,
    ) -> Result<Response<pb::ListKeksResponse>, Status> {
        Ok(Response::new(pb::ListKeksResponse::default()))
    }

    async fn create_kms_key(
        &self,
        _request: Request<pb::CreateKmsKeyRequest>,
    ) -> Result<Response<pb::KmsKeyResponse>, Status> {
        Err(Status::unimplemented(
            "this test meta service holds no keys",
        ))
    }

    async fn describe_kms_key(
        &self,
        _request: Request<pb::DescribeKmsKeyRequest>,
    ) -> Result<Response<pb::KmsKeyResponse>, Status> {
        Err(Status::unimplemented(
            "this test meta service holds no keys",
        ))
    }

    async fn list_kms_keys(
        &self,
        _request: Request<pb::ListKmsKeysRequest>,
    ) -> Result<Response<pb::ListKmsKeysResponse>, Status> {
        Ok(Response::new(pb::ListKmsKeysResponse::default()))
    }

    async fn update_kms_key(
        &self,
        _request: Request<pb::UpdateKmsKeyRequest>,
    ) -> Result<Response<pb::KmsKeyResponse>, Status> {
        Err(Status::unimplemented(
            "this test meta service holds no keys",
        ))
    }
}
