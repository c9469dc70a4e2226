//! One typed method per meta command: core types in, core types (or a typed rule error) out.
//!
//! Invariant: every method sends exactly one command (retried under one seq, see the parent
//! module) and accepts only the outcome its command is documented to produce; any other
//! outcome is a [`MetaClientError::UnexpectedOutcome`], never silently ignored.

use std::time::Duration;

use tessera_core::blob::{ShardCopy, ShardRef};
use tessera_core::lease::WriteLease;
use tessera_core::names::{BucketName, DataId, NodeId, ObjectKey, VersionId};
use tessera_core::object::{
    Bucket, BucketEncryption, DataNode, MultipartUpload, NodeState, ObjectVersion, UploadedPart,
    VersioningState, WritePrecondition,
};
use tessera_proto::convert::meta::versioning_to_pb;
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::command::Cmd;
use tessera_proto::meta::v1::command_result::Result as Outcome;

use super::{CommandError, CommandKind, MetaClient, MetaClientError, unexpected};

/// A new version to commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutVersion {
    /// The version; the state machine assigns its id, seq and time.
    pub version: ObjectVersion,
    /// If-Match / If-None-Match, checked when the command applies.
    pub precondition: Option<WritePrecondition>,
    /// The write lease its erasure-coded shards were written under (0 when it has none).
    pub lease_id: u64,
}

/// What a delete did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// The version removed or the delete marker added; `None` when nothing was removed or added.
    pub version_id: Option<VersionId>,
    /// Whether a delete marker was added (or the version removed was one).
    pub delete_marker: bool,
}

/// Repair's compare-and-set on one blob's placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacementChange {
    /// The blob.
    pub data_id: DataId,
    /// Its copies as last read (a set: order does not matter); the change applies only if
    /// they are still exactly these.
    pub expected: Vec<ShardCopy>,
    /// Its copies after the change.
    pub shards: Vec<ShardCopy>,
    /// Whether the new placement misses the full zone spread.
    pub degraded: bool,
    /// The write lease the new copies were written under.
    pub lease_id: u64,
}

/// The copies of one garbage record a collector wants to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GarbageClaim {
    /// The garbage record's state-machine key.
    pub garbage_key: Vec<u8>,
    /// Its copies to delete.
    pub shards: Vec<ShardRef>,
}

/// Garbage collection's first step: copies to mark for deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardClaim {
    /// Who claims (a repair daemon's id).
    pub claimer: String,
    /// The grace period (at least `tessera_core::lease::MIN_GC_GRACE_MS`).
    pub grace_ms: u64,
    /// Listed copies no placement referenced.
    pub orphans: Vec<ShardRef>,
    /// Copies of garbage records.
    pub garbage: Vec<GarbageClaim>,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn convert_version(
    kind: CommandKind,
    version: Option<&pb::ObjectVersion>,
) -> Result<ObjectVersion, CommandError> {
    let version = version.ok_or_else(|| MetaClientError::missing(kind.as_str(), "version"))?;
    ObjectVersion::try_from(version)
        .map_err(MetaClientError::convert(kind.as_str()))
        .map_err(CommandError::from)
}

fn convert_lease(kind: CommandKind, outcome: Outcome) -> Result<WriteLease, CommandError> {
    match outcome {
        Outcome::Lease(lease) => Ok(WriteLease::from(&lease)),
        other => Err(unexpected(kind, &other)),
    }
}

impl MetaClient {
    /// Creates a bucket.
    pub async fn create_bucket(&self, bucket: &Bucket) -> Result<(), CommandError> {
        self.command_ok(Cmd::CreateBucket(pb::CreateBucket {
            bucket: Some(bucket.into()),
        }))
        .await
    }

    /// Deletes an empty bucket.
    pub async fn delete_bucket(&self, name: &BucketName) -> Result<(), CommandError> {
        self.command_ok(Cmd::DeleteBucket(pb::DeleteBucket {
            name: name.as_str().to_owned(),
        }))
        .await
    }

    /// Sets a bucket's versioning state.
    pub async fn set_bucket_versioning(
        &self,
        bucket: &BucketName,
        state: VersioningState,
    ) -> Result<(), CommandError> {
        self.command_ok(Cmd::SetBucketVersioning(pb::SetBucketVersioning {
            bucket: bucket.as_str().to_owned(),
            state: versioning_to_pb(state) as i32,
        }))
        .await
    }

    /// Sets a bucket's default encryption, or removes it (`None`: objects that ask for no
    /// encryption get SSE-S3).
    pub async fn set_bucket_encryption(
        &self,
        bucket: &BucketName,
        encryption: Option<&BucketEncryption>,
    ) -> Result<(), CommandError> {
        self.command_ok(Cmd::SetBucketEncryption(pb::SetBucketEncryption {
            bucket: bucket.as_str().to_owned(),
            encryption: encryption.map(|e| pb::BucketEncryption {
                algorithm: e.algorithm.clone(),
                kms_key_id: e.kms_key_id.clone(),
                bucket_key_enabled: e.bucket_key_enabled,
            }),
        }))
        .await
    }

    /// Commits a new version and returns it as stored (id, seq and time assigned; inline bytes
    /// are not sent back, so an inline blob comes back empty).
    pub async fn put_version(&self, put: &PutVersion) -> Result<ObjectVersion, CommandError> {
        let kind = CommandKind::PutVersion;
        let outcome = self
            .command(Cmd::PutVersion(pb::PutVersion {
                version: Some((&put.version).into()),
                precondition: put.precondition.as_ref().map(Into::into),
                lease_id: put.lease_id,
            }))
            .await?;
        match outcome {
            Outcome::PutVersion(result) => convert_version(kind, result.version.as_ref()),
            other => Err(unexpected(kind, &other)),
        }
    }

    /// Deletes a key by S3's rules for the bucket's versioning state, or exactly one version.
    pub async fn delete_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&VersionId>,
    ) -> Result<DeleteOutcome, CommandError> {
        let kind = CommandKind::DeleteObject;
        let outcome = self
            .command(Cmd::DeleteObject(pb::DeleteObject {
                bucket: bucket.as_str().to_owned(),
                key: key.as_str().to_owned(),
                version_id: version_id.map(|v| v.as_str().to_owned()),
            }))
            .await?;
        let Outcome::DeleteObject(result) = outcome else {
            return Err(unexpected(kind, &outcome));
        };
        let version_id = if result.version_id.is_empty() {
            None
        } else {
            let id = VersionId::parse(&result.version_id).map_err(|source| {
                MetaClientError::Convert {
                    op: kind.as_str(),
                    source: tessera_proto::convert::meta::MetaConvertError::Name {
                        field: "version_id",
                        source,
                    },
                }
            })?;
            Some(id)
        };
        Ok(DeleteOutcome {
            version_id,
            delete_marker: result.delete_marker,
        })
    }

    /// Opens a multipart upload.
    pub async fn create_upload(&self, upload: &MultipartUpload) -> Result<(), CommandError> {
        self.command_ok(Cmd::CreateUpload(pb::CreateUpload {
            upload: Some(upload.into()),
        }))
        .await
    }

    /// Records an uploaded part; an erasure-coded one must have been written under the live
    /// lease `lease_id` (0 for an inline part).
    pub async fn put_part(&self, part: &UploadedPart, lease_id: u64) -> Result<(), CommandError> {
        self.command_ok(Cmd::PutPart(pb::PutPart {
            part: Some(part.into()),
            lease_id,
        }))
        .await
    }

    /// Completes a multipart upload with `parts` (part number, quoted ETag) and returns the
    /// version it made. Completing an upload already completed with the same parts answers
    /// the version it made then.
    pub async fn complete_upload(
        &self,
        upload_id: &str,
        parts: &[(u32, String)],
        version: &ObjectVersion,
        precondition: Option<&WritePrecondition>,
    ) -> Result<ObjectVersion, CommandError> {
        let kind = CommandKind::CompleteUpload;
        let outcome = self
            .command(Cmd::CompleteUpload(pb::CompleteUpload {
                upload_id: upload_id.to_owned(),
                parts: parts
                    .iter()
                    .map(|(part_number, etag)| pb::CompletedPartRef {
                        part_number: *part_number,
                        etag: etag.clone(),
                    })
                    .collect(),
                version: Some(version.into()),
                precondition: precondition.map(Into::into),
            }))
            .await?;
        match outcome {
            Outcome::PutVersion(result) => convert_version(kind, result.version.as_ref()),
            other => Err(unexpected(kind, &other)),
        }
    }

    /// Aborts a multipart upload (its parts become garbage).
    pub async fn abort_upload(&self, upload_id: &str) -> Result<(), CommandError> {
        self.command_ok(Cmd::AbortUpload(pb::AbortUpload {
            upload_id: upload_id.to_owned(),
        }))
        .await
    }

    /// Adds a data node or updates its zone and address (its state is kept).
    pub async fn register_data_node(&self, node: &DataNode) -> Result<(), CommandError> {
        self.command_ok(Cmd::RegisterDataNode(pb::RegisterDataNode {
            node: Some(node.into()),
        }))
        .await
    }

    /// Sets a data node active or draining.
    pub async fn set_data_node_state(
        &self,
        node: NodeId,
        state: NodeState,
    ) -> Result<(), CommandError> {
        let state = match state {
            NodeState::Active => pb::NodeState::Active,
            NodeState::Draining => pb::NodeState::Draining,
        };
        self.command_ok(Cmd::SetDataNodeState(pb::SetDataNodeState {
            node_id: node.0,
            state: state as i32,
        }))
        .await
    }

    /// Replaces a blob's placement if it is still exactly `change.expected`
    /// (`MetaRuleError::Conflict` otherwise).
    pub async fn update_placement(&self, change: &PlacementChange) -> Result<(), CommandError> {
        self.command_ok(Cmd::UpdatePlacement(pb::UpdatePlacement {
            data_id: change.data_id.as_bytes().to_vec(),
            expected: change.expected.iter().map(Into::into).collect(),
            shards: change.shards.iter().map(Into::into).collect(),
            degraded: change.degraded,
            lease_id: change.lease_id,
        }))
        .await
    }

    /// Marks copies for deletion and returns those granted (see `ClaimShards` in meta.proto).
    pub async fn claim_shards(&self, claim: &ShardClaim) -> Result<Vec<ShardRef>, CommandError> {
        let kind = CommandKind::ClaimShards;
        let outcome = self
            .command(Cmd::ClaimShards(pb::ClaimShards {
                orphans: claim.orphans.iter().map(Into::into).collect(),
                claimer: claim.claimer.clone(),
                grace_ms: claim.grace_ms,
                garbage: claim
                    .garbage
                    .iter()
                    .map(|g| pb::GarbageClaim {
                        garbage_key: g.garbage_key.clone(),
                        shards: g.shards.iter().map(Into::into).collect(),
                    })
                    .collect(),
            }))
            .await?;
        let Outcome::ClaimShards(result) = outcome else {
            return Err(unexpected(kind, &outcome));
        };
        result
            .claimed
            .iter()
            .map(ShardRef::try_from)
            .collect::<Result<_, _>>()
            .map_err(MetaClientError::convert(kind.as_str()))
            .map_err(CommandError::from)
    }

    /// Removes the deletion marks of deleted copies and the garbage records now collected.
    pub async fn release_shards(
        &self,
        shards: &[ShardRef],
        garbage_keys: &[Vec<u8>],
    ) -> Result<(), CommandError> {
        self.command_ok(Cmd::ReleaseShards(pb::ReleaseShards {
            shards: shards.iter().map(Into::into).collect(),
            garbage_keys: garbage_keys.to_vec(),
        }))
        .await
    }

    /// Publishes a repair daemon's report.
    pub async fn put_repair_report(&self, report: pb::RepairReport) -> Result<(), CommandError> {
        self.command_ok(Cmd::PutRepairReport(pb::PutRepairReport {
            report: Some(report),
        }))
        .await
    }

    /// Grants a new write lease for `duration` of meta clock.
    pub async fn grant_lease(
        &self,
        holder: &str,
        duration: Duration,
    ) -> Result<WriteLease, CommandError> {
        let kind = CommandKind::GrantLease;
        let outcome = self
            .command(Cmd::GrantLease(pb::GrantLease {
                holder: holder.to_owned(),
                duration_ms: millis(duration),
            }))
            .await?;
        convert_lease(kind, outcome)
    }

    /// Extends a live lease to `duration` past the meta clock and returns it renewed;
    /// `MetaRuleError::LeaseExpired` if it has ended.
    pub async fn renew_lease(
        &self,
        lease_id: u64,
        duration: Duration,
    ) -> Result<WriteLease, CommandError> {
        let kind = CommandKind::RenewLease;
        let outcome = self
            .command(Cmd::RenewLease(pb::RenewLease {
                lease_id,
                duration_ms: millis(duration),
            }))
            .await?;
        convert_lease(kind, outcome)
    }

    /// Ends a lease now (accepts an `ok` or the ended `lease` as its outcome).
    pub async fn release_lease(&self, lease_id: u64) -> Result<(), CommandError> {
        let kind = CommandKind::ReleaseLease;
        match self
            .command(Cmd::ReleaseLease(pb::ReleaseLease { lease_id }))
            .await?
        {
            Outcome::Ok(_) | Outcome::Lease(_) => Ok(()),
            other => Err(unexpected(kind, &other)),
        }
    }
}
