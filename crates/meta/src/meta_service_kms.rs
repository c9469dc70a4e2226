//! The built-in KMS on a meta node: named customer keys (created, described, listed, enabled,
//! disabled, scheduled for deletion) and the checks a data-key request with a KMS key passes.
//! A key's state is read with the state machine's clock, so every node judges a deletion date
//! the same way; a key that is not usable is refused with a `KMS.<Exception>: reason` message
//! (`tessera_client::KMS_REFUSAL_PREFIX`), and every use or refusal of a key is audited on the
//! `tessera::audit` target.
//!
//! Invariants: key commands are proposed by this node itself (never relayed from a client), on
//! the leader or forwarded there whole, once; the default key `aws/s3` is made only on its
//! first use, and a race between two first uses leaves exactly one key with that alias.

use tessera_core::kms::{self, KeyRef, KmsError};
use tessera_core::meta_error::MetaRuleError;
use tessera_core::sealing::kek::KekId;
use tessera_proto::meta::v1 as pb;
use tonic::{Request, Response, Status};

use super::{MetaGrpc, Route, forward_call, forwarded, is_forwarded, store_status};
use crate::key_service::{self, KeyBinding};
use crate::kms_keys;
use crate::store::blocking;

/// The description of the key the cluster makes for the default alias.
const DEFAULT_DESCRIPTION: &str = "Default key for SSE-KMS";
/// How often a request retries after losing a race to create the default key.
const ATTEMPTS: usize = 3;

/// The audit name of a data-key generation.
pub(super) const GENERATE: &str = "GenerateDataKey";
/// The audit name of a data-key decryption.
pub(super) const DECRYPT: &str = "DecryptDataKey";

/// Records one use (or refused use) of a KMS key.
pub(super) fn audit(kms_key: &str, op: &'static str, bound: &KeyBinding<'_>, outcome: &str) {
    tracing::info!(
        target: "tessera::audit",
        kms_key = %kms_key,
        op,
        bucket = bound.binding.bucket,
        key = bound.binding.key,
        part = bound.binding.part_number,
        layer = bound.layer,
        outcome,
        "KMS key use"
    );
}

/// The AWS KMS exception a refusal is answered as.
fn exception(e: &KmsError) -> &'static str {
    match e {
        KmsError::Disabled(_) => "DisabledException",
        KmsError::PendingDeletion(_) | KmsError::InvalidState { .. } => "KMSInvalidStateException",
        KmsError::NotFound(_) | KmsError::BadKeyRef(_) => "NotFoundException",
        KmsError::BadAlias(_) => "InvalidAliasNameException",
        KmsError::DescriptionTooLong
        | KmsError::BadPendingWindow(_)
        | KmsError::BadContext
        | KmsError::ContextTooLong => "ValidationException",
    }
}

/// The status a KMS refusal is answered with: `KMS.<Exception>: reason`.
pub(super) fn kms_status(e: &KmsError) -> Status {
    let message = format!("KMS.{}: {e}", exception(e));
    match e {
        KmsError::NotFound(_) | KmsError::BadKeyRef(_) => Status::not_found(message),
        KmsError::Disabled(_) | KmsError::PendingDeletion(_) | KmsError::InvalidState { .. } => {
            Status::failed_precondition(message)
        }
        KmsError::BadAlias(_)
        | KmsError::DescriptionTooLong
        | KmsError::BadPendingWindow(_)
        | KmsError::BadContext
        | KmsError::ContextTooLong => Status::invalid_argument(message),
    }
}

/// The status of a key command the state machine refused.
fn rule_status(e: &MetaRuleError) -> Status {
    match e {
        MetaRuleError::Conflict { message } => {
            Status::failed_precondition(format!("KMS.KMSInvalidStateException: {message}"))
        }
        MetaRuleError::InvalidArgument { message } => {
            Status::invalid_argument(format!("KMS.ValidationException: {message}"))
        }
        other => Status::internal(format!("unexpected refusal of a KMS key command: {other}")),
    }
}

/// The rule error a command result carries, if it carries one.
fn rule_error(result: &pb::CommandResult) -> Result<Option<MetaRuleError>, Status> {
    match &result.result {
        Some(pb::command_result::Result::Error(e)) => MetaRuleError::try_from(e)
            .map(Some)
            .map_err(|e| Status::internal(format!("a refusal does not decode: {e}"))),
        Some(_) => Ok(None),
        None => Err(Status::internal("a command applied without a result")),
    }
}

/// What proposing a key command came to.
enum Proposed {
    /// Applied here (the leader), with this result (boxed: results are large).
    Applied(Box<pb::CommandResult>),
    /// Only the leader can propose it.
    Forward(Route),
}

/// What creating a key came to.
enum Created {
    /// Made, with this id.
    Id(String),
    /// Refused: its alias is taken (or, never in practice, its random id).
    Taken(MetaRuleError),
    /// Only the leader can create it.
    Forward(Route),
}

/// A key's record as this node has it, with the state machine's clock.
type Found = (Option<pb::KmsKeyRecord>, i64);

/// Sends `$req` whole to the leader `$route` names with `$method`.
macro_rules! to_leader {
    ($route:expr, $method:ident, $req:expr) => {
        match $route {
            Route::Leader { mut client, addr } => {
                forward_call(&addr, client.$method(forwarded($req))).await
            }
            Route::Local => Err(Status::internal("a KMS request was routed back here")),
        }
    };
}

impl MetaGrpc {
    /// Proposes `cmd` through Raft, stamped with this node's clock.
    async fn propose(
        &self,
        cmd: pb::command::Cmd,
        was_forwarded: bool,
    ) -> Result<Proposed, Status> {
        use openraft::error::{ClientWriteError, RaftError};
        let cmd = pb::Command {
            cmd: Some(cmd),
            session: None,
            leader_time_ms: tessera_runtime::clock::now_ms(),
        };
        let write = tokio::time::timeout(super::WRITE_TIMEOUT, self.raft.client_write(cmd));
        match write.await {
            Err(_) => Err(Status::unavailable("write was not committed in time")),
            Ok(Ok(resp)) => Ok(Proposed::Applied(Box::new(resp.data))),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to)))) => self
                .route_to_leader(to, was_forwarded)
                .map(Proposed::Forward),
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => Err(
                Status::internal(format!("unexpected membership error: {e}")),
            ),
            Ok(Err(RaftError::Fatal(e))) => Err(Status::unavailable(format!("raft stopped: {e}"))),
        }
    }

    /// The key `key` names as this node's store has it now, and the state machine's clock.
    async fn lookup(&self, key: &KeyRef) -> Result<Found, Status> {
        let store = self.store.clone();
        let key = key.clone();
        blocking(move || {
            let now = store.applied_clock()?.clock_ms;
            let view = crate::kv::KvSource::view(&store)?;
            Ok((kms_keys::resolve(view.as_ref(), &key)?, now))
        })
        .await
        .map_err(store_status)
    }

    /// The key `key` names as the group has it now: read here after a read barrier, so a key
    /// disabled a moment ago on the leader is never still usable on a follower that has not
    /// applied the change yet; `Err`: only the leader can answer.
    async fn lookup_linearizable(
        &self,
        key: &KeyRef,
        was_forwarded: bool,
    ) -> Result<Result<Found, Route>, Status> {
        match self.read_route(was_forwarded).await? {
            Route::Local => Ok(Ok(self.lookup(key).await?)),
            route @ Route::Leader { .. } => Ok(Err(route)),
        }
    }

    /// Creates a key with version 1 of its KEK through Raft.
    async fn create_key(
        &self,
        alias: &str,
        description: &str,
        was_forwarded: bool,
    ) -> Result<Created, Status> {
        let key_id = kms::new_key_id(rand::random());
        let kek_id = KekId::new(&kms::kek_name(&key_id), 1)
            .ok_or_else(|| Status::internal("a KMS key's KEK name is not a KEK name"))?;
        let cmd = pb::command::Cmd::CreateKmsKey(pb::CreateKmsKey {
            key_id: key_id.clone(),
            alias: alias.to_owned(),
            description: description.to_owned(),
            kek: Some(self.keys.new_kek(&kek_id)),
        });
        let result = match self.propose(cmd, was_forwarded).await? {
            Proposed::Forward(route) => return Ok(Created::Forward(route)),
            Proposed::Applied(result) => result,
        };
        match rule_error(&result)? {
            None => {
                tracing::info!(kms_key = %key_id, alias, "KMS key created");
                Ok(Created::Id(key_id))
            }
            Some(e @ MetaRuleError::Conflict { .. }) => Ok(Created::Taken(e)),
            Some(e) => Err(rule_status(&e)),
        }
    }

    /// Serves GenerateDataKey for a KMS key: the key must be enabled (the default alias is
    /// made on first use); its KEK's newest version wraps.
    pub(super) async fn kms_generate_data_key(
        &self,
        req: pb::GenerateDataKeyRequest,
        was_forwarded: bool,
    ) -> Result<Response<pb::GenerateDataKeyResponse>, Status> {
        let bound = key_service::binding(req.binding.as_ref())?;
        let key_ref = KeyRef::parse(&req.kms_key).map_err(|e| {
            audit(&req.kms_key, GENERATE, &bound, exception(&e));
            kms_status(&e)
        })?;
        for _ in 0..ATTEMPTS {
            let (record, now) = match self.lookup_linearizable(&key_ref, was_forwarded).await? {
                Ok(found) => found,
                Err(route) => return to_leader!(route, generate_data_key, req.clone()),
            };
            let Some(record) = record else {
                if key_ref != KeyRef::Alias(kms::DEFAULT_ALIAS.to_owned()) {
                    let e = KmsError::NotFound(req.kms_key.clone());
                    audit(&req.kms_key, GENERATE, &bound, exception(&e));
                    return Err(kms_status(&e));
                }
                match self
                    .create_key(kms::DEFAULT_ALIAS, DEFAULT_DESCRIPTION, was_forwarded)
                    .await?
                {
                    Created::Id(_) | Created::Taken(_) => continue,
                    Created::Forward(route) => {
                        return to_leader!(route, generate_data_key, req.clone());
                    }
                }
            };
            let key_id = record.key_id.clone();
            let usable = kms_keys::status(&record)
                .ok_or_else(|| Status::internal(format!("KMS key {key_id} has an unknown state")))?
                .check_usable(&key_id, now);
            if let Err(e) = usable {
                audit(&key_id, GENERATE, &bound, exception(&e));
                return Err(kms_status(&e));
            }
            let name = kms::kek_name(&key_id);
            let newest = match self.keys.cached_newest(&name) {
                Some(newest) => Some(newest),
                None => {
                    let keys = self.keys.clone();
                    blocking(move || Ok(keys.newest(&name)))
                        .await
                        .map_err(store_status)??
                }
            };
            let (kek_id, kek) = newest
                .ok_or_else(|| Status::internal(format!("KMS key {key_id} has no key material")))?;
            let mut resp = key_service::generate(&kek_id, &kek, &bound);
            resp.kms_key_id = key_id.clone();
            audit(&key_id, GENERATE, &bound, "ok");
            return Ok(Response::new(resp));
        }
        Err(Status::unavailable(
            "the default KMS key could not be created; retry",
        ))
    }

    /// Whether KMS key `key_id` may unwrap data keys now: `Ok(None)` if so, `Ok(Some(route))`
    /// if only the leader knows; a refusal (audited) if not.
    pub(super) async fn kms_check_decrypt(
        &self,
        key_id: &str,
        bound: &KeyBinding<'_>,
        was_forwarded: bool,
    ) -> Result<Option<Route>, Status> {
        let key_ref = KeyRef::Id(key_id.to_owned());
        let (record, now) = match self.lookup_linearizable(&key_ref, was_forwarded).await? {
            Ok(found) => found,
            Err(route) => return Ok(Some(route)),
        };
        let usable = match record {
            None => Err(KmsError::NotFound(key_id.to_owned())),
            Some(record) => kms_keys::status(&record)
                .ok_or_else(|| Status::internal(format!("KMS key {key_id} has an unknown state")))?
                .check_usable(key_id, now),
        };
        match usable {
            Ok(()) => Ok(None),
            Err(e) => {
                audit(key_id, DECRYPT, bound, exception(&e));
                Err(kms_status(&e))
            }
        }
    }

    /// The answer for the key `key_id`, read here.
    async fn key_response(&self, key_id: &str) -> Result<pb::KmsKeyResponse, Status> {
        let (record, now_ms) = self.lookup(&KeyRef::Id(key_id.to_owned())).await?;
        let key = record.ok_or_else(|| kms_status(&KmsError::NotFound(key_id.to_owned())))?;
        Ok(pb::KmsKeyResponse {
            key: Some(key),
            now_ms,
        })
    }

    /// Serves CreateKmsKey.
    pub(super) async fn serve_create_kms_key(
        &self,
        request: Request<pb::CreateKmsKeyRequest>,
    ) -> Result<Response<pb::KmsKeyResponse>, Status> {
        let was_forwarded = is_forwarded(&request);
        let req = request.into_inner();
        if !req.alias.is_empty() {
            kms::check_new_alias(&req.alias).map_err(|e| kms_status(&e))?;
        }
        kms::check_description(&req.description).map_err(|e| kms_status(&e))?;
        match self
            .create_key(&req.alias, &req.description, was_forwarded)
            .await?
        {
            Created::Id(key_id) => Ok(Response::new(self.key_response(&key_id).await?)),
            Created::Taken(e) => Err(Status::already_exists(format!(
                "KMS.AlreadyExistsException: {e}"
            ))),
            Created::Forward(route) => to_leader!(route, create_kms_key, req),
        }
    }

    /// Serves DescribeKmsKey (making the default key if asked to and it is missing).
    pub(super) async fn serve_describe_kms_key(
        &self,
        request: Request<pb::DescribeKmsKeyRequest>,
    ) -> Result<Response<pb::KmsKeyResponse>, Status> {
        let was_forwarded = is_forwarded(&request);
        let req = request.into_inner();
        let key_ref = KeyRef::parse(&req.key).map_err(|e| kms_status(&e))?;
        for _ in 0..ATTEMPTS {
            if let route @ Route::Leader { .. } = self.read_route(was_forwarded).await? {
                return to_leader!(route, describe_kms_key, req);
            }
            let (record, now_ms) = self.lookup(&key_ref).await?;
            if let Some(key) = record {
                return Ok(Response::new(pb::KmsKeyResponse {
                    key: Some(key),
                    now_ms,
                }));
            }
            if !(req.create_default && key_ref == KeyRef::Alias(kms::DEFAULT_ALIAS.to_owned())) {
                return Err(kms_status(&KmsError::NotFound(req.key.clone())));
            }
            match self
                .create_key(kms::DEFAULT_ALIAS, DEFAULT_DESCRIPTION, was_forwarded)
                .await?
            {
                Created::Id(_) | Created::Taken(_) => continue,
                Created::Forward(route) => return to_leader!(route, describe_kms_key, req),
            }
        }
        Err(Status::unavailable(
            "the default KMS key could not be created; retry",
        ))
    }

    /// Serves UpdateKmsKey: the change is checked here (for a precise refusal) and again
    /// where it applies.
    pub(super) async fn serve_update_kms_key(
        &self,
        request: Request<pb::UpdateKmsKeyRequest>,
    ) -> Result<Response<pb::KmsKeyResponse>, Status> {
        let was_forwarded = is_forwarded(&request);
        let req = request.into_inner();
        let key_ref = KeyRef::parse(&req.key).map_err(|e| kms_status(&e))?;
        let action = kms_keys::action_from_pb(req.action, req.pending_window_days)
            .ok_or_else(|| Status::invalid_argument(format!("unknown action {}", req.action)))?;
        if let route @ Route::Leader { .. } = self.read_route(was_forwarded).await? {
            return to_leader!(route, update_kms_key, req);
        }
        let (record, now) = self.lookup(&key_ref).await?;
        let record = record.ok_or_else(|| kms_status(&KmsError::NotFound(req.key.clone())))?;
        let key_id = record.key_id.clone();
        kms_keys::status(&record)
            .ok_or_else(|| Status::internal(format!("KMS key {key_id} has an unknown state")))?
            .after(&key_id, action, now)
            .map_err(|e| kms_status(&e))?;
        let cmd = pb::command::Cmd::UpdateKmsKey(pb::UpdateKmsKey {
            key_id: key_id.clone(),
            action: req.action,
            pending_window_days: req.pending_window_days,
        });
        match self.propose(cmd, was_forwarded).await? {
            Proposed::Forward(route) => to_leader!(route, update_kms_key, req),
            Proposed::Applied(result) => {
                if let Some(e) = rule_error(&result)? {
                    return Err(rule_status(&e));
                }
                tracing::info!(kms_key = %key_id, action = ?action, "KMS key updated");
                Ok(Response::new(self.key_response(&key_id).await?))
            }
        }
    }
}
