//! Applies one committed `Command` to the state machine, deterministically: the result depends
//! only on the stored records, the command and its log index (never on a node's clock or on
//! randomness; time is the meta clock, advanced by the leader's stamp on the command). Rules
//! read a `KvRead` and speak tessera-core's domain types; what they write is a `WriteSet` the
//! store commits together with the applied log id.
//!
//! Invariants: a command the rules reject (a `MetaRuleError`) writes nothing of its own (only
//! the clock, its session's bookkeeping and the periodic sweep, which are not the command's
//! doing). Any blob that no committed record references any more is recorded as `Garbage` in
//! the same write set, and no referenced blob ever is. Every erasure-coded blob a record holds
//! is named by exactly one data-id index entry (`d/`), kept in the same write set (see
//! `apply_blobs`), and no record ever takes a shard copy that garbage collection claimed. A
//! command that adds shard copies names a write lease that is live when it applies.

use std::collections::BTreeMap;

use tessera_core::blob::Blob;
use tessera_core::etag::etag_matches;
use tessera_core::meta_error::MetaRuleError;
use tessera_core::names::{DataId, ObjectKey, VersionId};
use tessera_core::object::{
    Bucket, DataNode, NodeState, ObjectVersion, VersioningState, WritePrecondition,
};
use tessera_proto::convert::meta::{MetaConvertError, versioning_from_pb};
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::{command, command_result};

use crate::error::StoreError;
use crate::keys;
use crate::kv::{KvRead, KvReadExt, Overlay, WriteSet};
use crate::meta_clock;
use crate::records;
use crate::session::{self, SessionCheck};

/// Sessions and leases are swept at every log index that is a multiple of this.
pub const SWEEP_INTERVAL: u64 = 4096;

/// What applying one log entry produced.
pub(crate) struct Applied {
    /// The writes to commit with the entry's log id.
    pub(crate) writes: WriteSet,
    /// The command's result.
    pub(crate) result: pb::CommandResult,
}

/// Applies `cmd`, the entry at log index `index`, to the records in `kv`.
pub(crate) fn apply_command(
    kv: &dyn KvRead,
    index: u64,
    cmd: &pb::Command,
) -> Result<Applied, StoreError> {
    let mut overlay = Overlay::new(kv);
    let clock_ms = meta_clock::advance(&mut overlay, cmd.leader_time_ms)?;
    let result = match session::check(&overlay, cmd.session.as_ref())? {
        SessionCheck::Repeat(first) => *first,
        SessionCheck::Refused(error) => error_result(&error),
        SessionCheck::Apply(session) => {
            let result = apply_rules(&mut overlay, index, clock_ms, cmd)?;
            if let Some(s) = session {
                session::record(&mut overlay, &s, index, clock_ms, &result)?;
            }
            result
        }
    };
    housekeeping(&mut overlay, index, clock_ms)?;
    Ok(Applied {
        writes: overlay.into_writes(),
        result,
    })
}

/// What an entry without a command (blank, membership) writes: the periodic sweep only.
pub(crate) fn apply_without_command(kv: &dyn KvRead, index: u64) -> Result<WriteSet, StoreError> {
    let mut overlay = Overlay::new(kv);
    let clock_ms = meta_clock::read(&overlay)?;
    housekeeping(&mut overlay, index, clock_ms)?;
    Ok(overlay.into_writes())
}

/// At every `SWEEP_INTERVAL`-th index: drops idle sessions and forgotten leases. Decided by the
/// log index and the meta clock alone, so every replica sweeps the same records.
fn housekeeping(overlay: &mut Overlay<'_>, index: u64, clock_ms: i64) -> Result<(), StoreError> {
    if !index.is_multiple_of(SWEEP_INTERVAL) {
        return Ok(());
    }
    let sessions = session::sweep_idle(overlay, clock_ms)?;
    let leases = leases::prune_forgotten(overlay, clock_ms)?;
    tracing::debug!(
        index,
        sessions,
        leases,
        "state machine swept idle sessions and forgotten leases"
    );
    Ok(())
}

/// The result of a rejected command.
pub(crate) fn error_result(error: &MetaRuleError) -> pb::CommandResult {
    pb::CommandResult {
        result: Some(command_result::Result::Error(error.into())),
    }
}

/// Runs the command's rules; their writes join `overlay` only if the command is accepted.
fn apply_rules(
    overlay: &mut Overlay<'_>,
    index: u64,
    clock_ms: i64,
    cmd: &pb::Command,
) -> Result<pb::CommandResult, StoreError> {
    let mut applier = Applier {
        kv: overlay,
        writes: WriteSet::default(),
        index,
        clock_ms,
        garbage_count: 0,
        pending_index: BTreeMap::new(),
        discarded: Vec::new(),
    };
    let outcome = applier.apply(cmd).and_then(|result| {
        applier.finish()?;
        Ok(result)
    });
    let writes = applier.writes;
    match outcome {
        Ok(result) => {
            overlay.writes_mut().extend(writes);
            Ok(pb::CommandResult {
                result: Some(result),
            })
        }
        Err(Fail::Rule(e)) => Ok(error_result(&e)),
        Err(Fail::Store(e)) => Err(e),
    }
}

/// Why a command did not apply: a rule it broke (normal), or a store failure (fatal).
enum Fail {
    Rule(MetaRuleError),
    Store(StoreError),
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<MetaRuleError> for Fail {
    fn from(e: MetaRuleError) -> Self {
        Fail::Rule(e)
    }
}

fn invalid(message: impl Into<String>) -> Fail {
    Fail::Rule(MetaRuleError::invalid(message))
}

/// Converts a command's wire payload into its core type; a malformed one is an invalid argument.
fn convert<'p, P, T>(payload: &'p P, what: &str) -> Result<T, Fail>
where
    T: TryFrom<&'p P, Error = MetaConvertError>,
{
    T::try_from(payload).map_err(|e| invalid(format!("{what}: {e}")))
}

fn required<'p, T>(field: Option<&'p T>, what: &str) -> Result<&'p T, Fail> {
    field.ok_or_else(|| invalid(format!("{what} is required")))
}

fn ok() -> command_result::Result {
    command_result::Result::Ok(pb::Empty {})
}

fn version_result(version: &ObjectVersion) -> command_result::Result {
    command_result::Result::PutVersion(pb::PutVersionResult {
        version: Some((&version.without_inline_bytes()).into()),
    })
}

struct Applier<'a> {
    /// The records as they stand before this command (plus the clock and session writes made
    /// before it). Each command reads everything it needs before it writes, so reads never
    /// need to see `writes`.
    kv: &'a dyn KvRead,
    writes: WriteSet,
    index: u64,
    clock_ms: i64,
    garbage_count: u32,
    /// Changes to the data-id index (`None`: entry removed), written by `finish`.
    pending_index: BTreeMap<DataId, Option<pb::BlobOwner>>,
    /// Blobs whose record went away; `finish` turns those that no record holds any more into
    /// garbage.
    discarded: Vec<Blob>,
}

impl Applier<'_> {
    fn apply(&mut self, cmd: &pb::Command) -> Result<command_result::Result, Fail> {
        let Some(cmd) = &cmd.cmd else {
            return Err(invalid("empty command"));
        };
        match cmd {
            command::Cmd::CreateBucket(c) => self.create_bucket(c),
            command::Cmd::DeleteBucket(c) => self.delete_bucket(c),
            command::Cmd::SetBucketVersioning(c) => self.set_bucket_versioning(c),
            command::Cmd::PutVersion(c) => self.put_version(c),
            command::Cmd::DeleteObject(c) => self.delete_object(c),
            command::Cmd::CreateUpload(c) => self.create_upload(c),
            command::Cmd::PutPart(c) => self.put_part(c),
            command::Cmd::CompleteUpload(c) => self.complete_upload(c),
            command::Cmd::AbortUpload(c) => self.abort_upload(c),
            command::Cmd::RegisterDataNode(c) => self.register_data_node(c),
            command::Cmd::SetDataNodeState(c) => self.set_data_node_state(c),
            command::Cmd::UpdatePlacement(c) => self.update_placement(c),
            command::Cmd::ClaimShards(c) => self.claim_shards(c),
            command::Cmd::ReleaseShards(c) => self.release_shards(c),
            command::Cmd::PutRepairReport(c) => self.put_repair_report(c),
            command::Cmd::GrantLease(c) => self.grant_lease(c),
            command::Cmd::RenewLease(c) => self.renew_lease(c),
            command::Cmd::ReleaseLease(c) => self.release_lease(c),
            command::Cmd::CreateKek(c) => self.create_kek(c),
            command::Cmd::RewrapKeys(c) => self.rewrap_keys(c),
            command::Cmd::CreateKmsKey(c) => self.create_kms_key(c),
            command::Cmd::UpdateKmsKey(c) => self.update_kms_key(c),
            command::Cmd::SetBucketEncryption(c) => self.set_bucket_encryption(c),
        }
    }

    // --- writes -------------------------------------------------------------------------

    fn put_version_record(&mut self, version: &ObjectVersion) {
        let key = keys::object_version(version.bucket.as_str(), version.key.as_str(), version.seq);
        self.writes.put_pb(key, &pb::ObjectVersion::from(version));
    }

    /// Writes a garbage record for `blob` (whose shards are the copies to delete), made now.
    fn put_garbage(&mut self, blob: &Blob) {
        let key = keys::garbage(self.index, self.garbage_count);
        self.garbage_count += 1;
        let record = pb::Garbage {
            blob: Some(blob.into()),
            since_ms: self.clock_ms,
        };
        self.writes.put_pb(key, &record);
    }

    /// Notes that the record `record_key` no longer holds `blob`: its index entry goes, and the
    /// blob becomes garbage if it has shards on data nodes (inline bytes vanish with the record
    /// that holds them) and no record of this command takes it over.
    fn discard_blob(&mut self, record_key: &[u8], blob: &Blob) -> Result<(), Fail> {
        let Some(data_id) = blob.data_id() else {
            return Ok(());
        };
        self.unindex(&data_id, record_key)?;
        self.discarded.push(blob.clone());
        Ok(())
    }

    /// Removes a version: its blobs become garbage and its completion record goes with it.
    fn remove_version(&mut self, version: &ObjectVersion) -> Result<(), Fail> {
        let key = keys::object_version(version.bucket.as_str(), version.key.as_str(), version.seq);
        self.writes.delete(key.clone());
        for part in &version.parts {
            self.discard_blob(&key, &part.blob)?;
        }
        if let Some(upload_id) = &version.upload_id {
            let completed = keys::completed_upload(upload_id);
            if self.kv.get(&completed)?.as_deref() == Some(key.as_slice()) {
                self.writes.delete(completed);
            }
        }
        Ok(())
    }

    // --- shared checks ------------------------------------------------------------------

    fn existing_bucket(&self, name: &str) -> Result<Bucket, Fail> {
        records::bucket(self.kv, name)?.ok_or_else(|| {
            Fail::Rule(MetaRuleError::NoSuchBucket {
                bucket: name.to_owned(),
            })
        })
    }

    /// Writes `version` as the new current version of its key, as PutObject does: checks the
    /// precondition against the current version, assigns seq, time and version id, and in
    /// buckets that are not versioning-enabled replaces the existing null version. The
    /// version's blobs keep the `placed_at_index` the caller gave them.
    fn write_version(
        &mut self,
        bucket: &Bucket,
        mut version: ObjectVersion,
        precondition: Option<&WritePrecondition>,
    ) -> Result<ObjectVersion, Fail> {
        if version.delete_marker {
            return Err(invalid("a written version cannot be a delete marker"));
        }
        let current =
            records::current_version(self.kv, bucket.name.as_str(), version.key.as_str())?;
        check_precondition(
            bucket.name.as_str(),
            version.key.as_str(),
            current.as_ref(),
            precondition,
        )?;
        version.bucket = bucket.name.clone();
        version.seq = self.index;
        version.last_modified_ms = self.clock_ms;
        if bucket.versioning == VersioningState::Enabled {
            version.version_id = VersionId::from_seq(self.index);
        } else {
            version.version_id = VersionId::null();
            let old = records::null_version(self.kv, bucket.name.as_str(), version.key.as_str())?;
            if let Some(old) = old {
                self.remove_version(&old)?;
            }
        }
        let key = keys::object_version(bucket.name.as_str(), version.key.as_str(), self.index);
        for (i, part) in version.parts.iter().enumerate() {
            let part_index = u32::try_from(i).map_err(|_| invalid("too many parts"))?;
            self.index_blob(&key, part_index, &part.blob)?;
        }
        self.put_version_record(&version);
        Ok(version)
    }

    /// Sets the placement index of every erasure-coded blob of `blobs` to this entry's.
    fn placed_now<'b>(&self, blobs: impl Iterator<Item = &'b mut Blob>) {
        for blob in blobs {
            if let Some(e) = blob.erasure_mut() {
                e.placed_at_index = self.index;
            }
        }
    }

    // --- buckets ------------------------------------------------------------------------

    fn create_bucket(&mut self, c: &pb::CreateBucket) -> Result<command_result::Result, Fail> {
        let mut bucket: Bucket = convert(required(c.bucket.as_ref(), "bucket")?, "bucket")?;
        if let Some(existing) = records::bucket(self.kv, bucket.name.as_str())? {
            let name = bucket.name.as_str().to_owned();
            return Err(Fail::Rule(if existing.owner == bucket.owner {
                MetaRuleError::BucketAlreadyOwnedByYou { bucket: name }
            } else {
                MetaRuleError::BucketAlreadyExists { bucket: name }
            }));
        }
        bucket.created_ms = self.clock_ms;
        self.writes.put_pb(
            keys::bucket(bucket.name.as_str()),
            &pb::Bucket::from(&bucket),
        );
        Ok(ok())
    }

    fn delete_bucket(&mut self, c: &pb::DeleteBucket) -> Result<command_result::Result, Fail> {
        self.existing_bucket(&c.name)?;
        if self.kv.any(&keys::objects_of_bucket(&c.name))?
            || self.kv.any(&keys::uploads_of_bucket(&c.name))?
        {
            return Err(Fail::Rule(MetaRuleError::BucketNotEmpty {
                bucket: c.name.clone(),
            }));
        }
        self.writes.delete(keys::bucket(&c.name));
        Ok(ok())
    }

    fn set_bucket_versioning(
        &mut self,
        c: &pb::SetBucketVersioning,
    ) -> Result<command_result::Result, Fail> {
        let mut bucket = self.existing_bucket(&c.bucket)?;
        let state = versioning_from_pb(c.state).map_err(|e| invalid(e.to_string()))?;
        if state == VersioningState::Unversioned {
            return Err(invalid(
                "versioning can only be enabled or suspended, never turned off",
            ));
        }
        bucket.versioning = state;
        self.writes
            .put_pb(keys::bucket(&c.bucket), &pb::Bucket::from(&bucket));
        Ok(ok())
    }

    // --- objects ------------------------------------------------------------------------

    fn put_version(&mut self, c: &pb::PutVersion) -> Result<command_result::Result, Fail> {
        let mut version: ObjectVersion =
            convert(required(c.version.as_ref(), "version")?, "version")?;
        let bucket = self.existing_bucket(version.bucket.as_str())?;
        if version.parts.iter().any(|p| p.blob.erasure().is_some()) {
            self.require_live_lease(c.lease_id)?;
        }
        self.placed_now(version.parts.iter_mut().map(|p| &mut p.blob));
        // A version of a single PUT is no completed upload, whatever the command says.
        version.upload_id = None;
        let precondition = c.precondition.as_ref().map(WritePrecondition::from);
        let stored = self.write_version(&bucket, version, precondition.as_ref())?;
        Ok(version_result(&stored))
    }

    fn delete_object(&mut self, c: &pb::DeleteObject) -> Result<command_result::Result, Fail> {
        let bucket = self.existing_bucket(&c.bucket)?;
        ObjectKey::parse(&c.key).map_err(|e| invalid(format!("key: {e}")))?;
        if let Some(version_id) = &c.version_id {
            // S3 deletes a version id that does not exist silently; only a malformed id is an
            // error.
            VersionId::parse(version_id)
                .map_err(|_| invalid(format!("invalid version id {version_id}")))?;
            let found = records::version_by_id(self.kv, &c.bucket, &c.key, version_id)?;
            let delete_marker = found.as_ref().is_some_and(|v| v.delete_marker);
            if let Some(v) = found {
                self.remove_version(&v)?;
            }
            return Ok(deleted(version_id.clone(), delete_marker));
        }
        match bucket.versioning {
            VersioningState::Unversioned => {
                if let Some(old) = records::null_version(self.kv, &c.bucket, &c.key)? {
                    self.remove_version(&old)?;
                }
                Ok(deleted(String::new(), false))
            }
            VersioningState::Enabled => {
                let marker =
                    self.delete_marker(&bucket, &c.key, VersionId::from_seq(self.index))?;
                Ok(deleted(marker.version_id.as_str().to_owned(), true))
            }
            VersioningState::Suspended => {
                if let Some(old) = records::null_version(self.kv, &c.bucket, &c.key)? {
                    self.remove_version(&old)?;
                }
                let marker = self.delete_marker(&bucket, &c.key, VersionId::null())?;
                Ok(deleted(marker.version_id.as_str().to_owned(), true))
            }
        }
    }

    fn delete_marker(
        &mut self,
        bucket: &Bucket,
        key: &str,
        id: VersionId,
    ) -> Result<ObjectVersion, Fail> {
        let marker = ObjectVersion {
            version_id: id,
            seq: self.index,
            delete_marker: true,
            last_modified_ms: self.clock_ms,
            ..ObjectVersion::new(
                bucket.name.clone(),
                ObjectKey::parse(key).map_err(|e| invalid(format!("key: {e}")))?,
            )
        };
        self.put_version_record(&marker);
        Ok(marker)
    }

    // --- cluster ------------------------------------------------------------------------

    /// Adds a node, or updates a known node's zone, address and registration time; the
    /// operator's state of a known node stays, a new node starts active.
    fn register_data_node(
        &mut self,
        c: &pb::RegisterDataNode,
    ) -> Result<command_result::Result, Fail> {
        let mut node: DataNode = convert(required(c.node.as_ref(), "node")?, "node")?;
        let known = records::data_node(self.kv, node.id.0)?;
        node.state = known.map_or(NodeState::Active, |k| k.state);
        node.registered_ms = self.clock_ms;
        self.writes
            .put_pb(keys::data_node(node.id.0), &pb::DataNode::from(&node));
        Ok(ok())
    }

    fn set_data_node_state(
        &mut self,
        c: &pb::SetDataNodeState,
    ) -> Result<command_result::Result, Fail> {
        let state = match pb::NodeState::try_from(c.state) {
            Ok(pb::NodeState::Active) => NodeState::Active,
            Ok(pb::NodeState::Draining) => NodeState::Draining,
            Err(_) => return Err(invalid(format!("unknown node state {}", c.state))),
        };
        let mut node = records::data_node(self.kv, c.node_id)?
            .ok_or_else(|| invalid(format!("no such data node {}", c.node_id)))?;
        node.state = state;
        self.writes
            .put_pb(keys::data_node(c.node_id), &pb::DataNode::from(&node));
        Ok(ok())
    }

    fn put_repair_report(
        &mut self,
        c: &pb::PutRepairReport,
    ) -> Result<command_result::Result, Fail> {
        let report = required(c.report.as_ref(), "report")?;
        if report.reporter.is_empty() {
            return Err(invalid("a repair report needs its reporter"));
        }
        self.writes
            .put_pb(keys::repair_report(&report.reporter), report);
        Ok(ok())
    }
}

fn deleted(version_id: String, delete_marker: bool) -> command_result::Result {
    command_result::Result::DeleteObject(pb::DeleteObjectResult {
        version_id,
        delete_marker,
    })
}

/// If-None-Match: * fails when a live current version exists; If-Match fails with NoSuchKey
/// when there is none and with PreconditionFailed when its ETag differs.
fn check_precondition(
    bucket: &str,
    key: &str,
    current: Option<&ObjectVersion>,
    precondition: Option<&WritePrecondition>,
) -> Result<(), Fail> {
    let Some(p) = precondition else {
        return Ok(());
    };
    let live = current.filter(|v| !v.delete_marker);
    if p.if_none_match_any
        && let Some(v) = live
    {
        return Err(Fail::Rule(MetaRuleError::PreconditionFailed {
            condition: format!("If-None-Match: {} exists", v.key),
        }));
    }
    if let Some(expected) = &p.if_match {
        // S3: If-Match on a key with no live current version is 404 NoSuchKey, not 412.
        let Some(live) = live else {
            return Err(Fail::Rule(MetaRuleError::NoSuchKey {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            }));
        };
        if !etag_matches(expected, &live.etag) {
            return Err(Fail::Rule(MetaRuleError::PreconditionFailed {
                condition: format!("If-Match: {expected} does not match {}", live.etag),
            }));
        }
    }
    Ok(())
}

#[path = "apply_blobs.rs"]
mod blobs;
#[path = "apply_keks.rs"]
mod keks;
#[path = "apply_kms.rs"]
mod kms;
#[path = "apply_leases.rs"]
mod leases;
#[path = "apply_uploads.rs"]
mod uploads;

#[cfg(test)]
#[path = "apply_kms_test.rs"]
mod kms_tests;
#[cfg(test)]
#[path = "apply_test.rs"]
mod tests;
