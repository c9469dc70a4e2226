//! Test harness of the state machine's rules: applies commands with the real applier to an
//! in-memory state (`MemKv`), one log index each, stamped with a leader time the test controls,
//! and builders for the commands and blobs the rule tests use.

use tessera_core::lease::MAX_LEASE_DURATION_MS;
use tessera_core::meta_error::MetaRuleError;
use tessera_core::object::ObjectVersion;
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::{command, command_result};

use crate::apply;
use crate::keys;
use crate::kv::{KvRead, KvReadExt, MemKv};
use crate::meta_clock;
use crate::records;

/// The leader time of the first command: a plausible wall clock.
pub(crate) const T0: i64 = 1_700_000_000_000;
/// Erasure-coded test blobs are RS(2,1).
pub(crate) const DATA_SHARDS: u32 = 2;
/// Bytes of a mebibyte.
pub(crate) const MIB: u64 = 1024 * 1024;

/// A shard copy as tests write it: (shard index, node id, generation).
pub(crate) type CopySpec = (u32, u64, u64);

/// Blob copies on nodes 1, 2 and 3, generation 1.
pub(crate) const SPREAD: &[CopySpec] = &[(0, 1, 1), (1, 2, 1), (2, 3, 1)];

/// The state machine in memory, with the next log index and the leader's clock.
#[derive(Clone)]
pub(crate) struct Sim {
    pub(crate) kv: MemKv,
    pub(crate) next_index: u64,
    /// The leader time stamped on the next command.
    pub(crate) now_ms: i64,
    /// A live write lease granted when the harness was made (renewed by `advance`).
    pub(crate) lease_id: u64,
}

impl Sim {
    /// An empty state machine holding one live lease (index 1).
    pub(crate) fn new() -> Sim {
        let mut sim = Sim {
            kv: MemKv::new(),
            next_index: 1,
            now_ms: T0,
            lease_id: 0,
        };
        sim.lease_id = sim.grant("test writer", MAX_LEASE_DURATION_MS);
        sim
    }

    /// `cmd` as the leader proposes it now, without a session.
    pub(crate) fn command(&self, cmd: command::Cmd) -> pb::Command {
        pb::Command {
            cmd: Some(cmd),
            session: None,
            leader_time_ms: self.now_ms,
        }
    }

    /// Applies a whole command as the next log entry; returns its index and result.
    pub(crate) fn apply(&mut self, command: &pb::Command) -> (u64, command_result::Result) {
        let index = self.next_index;
        self.next_index += 1;
        let applied = apply::apply_command(&self.kv, index, command).expect("apply");
        self.kv.apply(applied.writes);
        (index, applied.result.result.expect("a result"))
    }

    /// Applies an entry without a command (blank or membership) as the next log entry.
    pub(crate) fn apply_blank(&mut self) -> u64 {
        let index = self.next_index;
        self.next_index += 1;
        let writes = apply::apply_without_command(&self.kv, index).expect("apply");
        self.kv.apply(writes);
        index
    }

    /// Applies `cmd` as the next log entry.
    pub(crate) fn run(&mut self, cmd: command::Cmd) -> (u64, command_result::Result) {
        let command = self.command(cmd);
        self.apply(&command)
    }

    /// Applies `cmd`, which must be accepted.
    pub(crate) fn ok(&mut self, cmd: command::Cmd) -> command_result::Result {
        let (_, result) = self.run(cmd);
        if let command_result::Result::Error(e) = &result {
            panic!("command rejected: {e:?}");
        }
        result
    }

    /// Applies `cmd`, which must be rejected without changing anything but the clock (which
    /// follows the leader's stamp whatever the command); returns why.
    pub(crate) fn rejected(&mut self, cmd: command::Cmd) -> MetaRuleError {
        let before = self.records();
        let (_, result) = self.run(cmd);
        let error = rule_error(result);
        assert_eq!(self.records(), before, "a rejected command changes nothing");
        error
    }

    /// Every record but the meta clock, in key order.
    pub(crate) fn records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.kv
            .entries()
            .filter(|(k, _)| *k != keys::CLOCK)
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    /// Every record, in key order.
    pub(crate) fn dump(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.kv
            .entries()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    /// Moves the leader's clock on by `ms`.
    pub(crate) fn advance(&mut self, ms: i64) {
        self.now_ms += ms;
    }

    /// The meta clock.
    pub(crate) fn clock(&self) -> i64 {
        meta_clock::read(&self.kv).expect("clock")
    }

    /// Grants a lease for `duration_ms`; returns its id.
    pub(crate) fn grant(&mut self, holder: &str, duration_ms: u64) -> u64 {
        match self.ok(command::Cmd::GrantLease(pb::GrantLease {
            holder: holder.into(),
            duration_ms,
        })) {
            command_result::Result::Lease(l) => l.lease_id,
            other => panic!("not a lease: {other:?}"),
        }
    }

    /// Every version of a key, newest first.
    pub(crate) fn versions(&self, bucket: &str, key: &str) -> Vec<ObjectVersion> {
        records::versions(&self.kv, bucket, key).expect("versions")
    }

    /// Every garbage record as (key, first byte of the data id, copies, since).
    pub(crate) fn garbage_records(&self) -> Vec<(Vec<u8>, u8, Vec<CopySpec>, i64)> {
        self.kv
            .scan_pb::<pb::Garbage>(keys::GARBAGE_PREFIX, "garbage")
            .expect("scan")
            .into_iter()
            .map(|(k, g)| {
                let e = match g.blob.and_then(|b| b.storage) {
                    Some(pb::blob::Storage::Erasure(e)) => e,
                    other => panic!("garbage without shards: {other:?}"),
                };
                let copies = e
                    .shards
                    .iter()
                    .map(|s| (s.shard_index, s.node_id, s.generation))
                    .collect();
                (k, e.data_id[0], copies, g.since_ms)
            })
            .collect()
    }

    /// The first byte of the data id of every garbage record, in key order.
    pub(crate) fn garbage(&self) -> Vec<u8> {
        self.garbage_records().into_iter().map(|g| g.1).collect()
    }

    /// Whether the raw key exists.
    pub(crate) fn has(&self, key: &[u8]) -> bool {
        self.kv.get(key).expect("read").is_some()
    }
}

/// The typed rule error of a rejected command's result.
pub(crate) fn rule_error(result: command_result::Result) -> MetaRuleError {
    match result {
        command_result::Result::Error(e) => MetaRuleError::try_from(&e).expect("typed error"),
        other => panic!("expected a rule error, got {other:?}"),
    }
}

/// The version of a PutVersion / CompleteUpload result.
pub(crate) fn stored(result: command_result::Result) -> pb::ObjectVersion {
    match result {
        command_result::Result::PutVersion(r) => r.version.expect("version"),
        other => panic!("not a put result: {other:?}"),
    }
}

/// The answer of a DeleteObject.
pub(crate) fn deletion(result: command_result::Result) -> pb::DeleteObjectResult {
    match result {
        command_result::Result::DeleteObject(r) => r,
        other => panic!("not a delete result: {other:?}"),
    }
}

/// The copies a claim granted.
pub(crate) fn claimed(result: command_result::Result) -> Vec<pb::ShardRef> {
    match result {
        command_result::Result::ClaimShards(r) => r.claimed,
        other => panic!("not a claim result: {other:?}"),
    }
}

/// Shard placements from specs.
pub(crate) fn placements(copies: &[CopySpec]) -> Vec<pb::ShardPlacement> {
    copies
        .iter()
        .map(|&(shard_index, node_id, generation)| pb::ShardPlacement {
            shard_index,
            node_id,
            generation,
        })
        .collect()
}

/// Erasure-coded blob `id` (RS(2,1), every digest present) on `copies`.
pub(crate) fn erasure(id: u8, copies: &[CopySpec]) -> pb::Blob {
    pb::Blob {
        size: 100,
        storage: Some(pb::blob::Storage::Erasure(pb::ErasureBlob {
            data_id: vec![id; 16],
            data_shards: DATA_SHARDS,
            parity_shards: 1,
            chunk_size: 65536,
            shards: placements(copies),
            degraded: false,
            shard_digests: (0..3u8).map(|i| vec![id ^ i; 32]).collect(),
            chunks_per_shard: 1,
            placed_at_index: 0,
        })),
        sealing: None,
        stored_size: 100,
    }
}

/// A small blob stored inline.
pub(crate) fn inline(data: &[u8]) -> pb::Blob {
    pb::Blob {
        size: data.len() as u64,
        storage: Some(pb::blob::Storage::InlineData(data.to_vec())),
        sealing: None,
        stored_size: data.len() as u64,
    }
}

/// The erasure-coded form of a stored blob.
pub(crate) fn erasure_of(blob: Option<&pb::Blob>) -> &pb::ErasureBlob {
    match blob.and_then(|b| b.storage.as_ref()) {
        Some(pb::blob::Storage::Erasure(e)) => e,
        other => panic!("not erasure coded: {other:?}"),
    }
}

/// A one-part version of `bucket/key` holding `blob`.
pub(crate) fn version_with(
    bucket: &str,
    key: &str,
    etag: &str,
    blob: pb::Blob,
) -> pb::ObjectVersion {
    pb::ObjectVersion {
        bucket: bucket.into(),
        key: key.into(),
        etag: etag.into(),
        size: blob.size,
        parts: vec![pb::ObjectPart {
            part_number: 1,
            size: blob.size,
            etag: etag.into(),
            blob: Some(blob),
            checksums: Vec::new(),
        }],
        ..pb::ObjectVersion::default()
    }
}

/// CreateBucket.
pub(crate) fn create_bucket(name: &str, owner: &str) -> command::Cmd {
    command::Cmd::CreateBucket(pb::CreateBucket {
        bucket: Some(pb::Bucket {
            name: name.into(),
            owner: owner.into(),
            created_ms: 1,
            ..pb::Bucket::default()
        }),
    })
}

/// SetBucketVersioning.
pub(crate) fn versioning_cmd(bucket: &str, state: pb::VersioningState) -> command::Cmd {
    command::Cmd::SetBucketVersioning(pb::SetBucketVersioning {
        bucket: bucket.into(),
        state: state as i32,
    })
}

/// PutVersion of `version` under `lease_id`.
pub(crate) fn put_version(version: pb::ObjectVersion, lease_id: u64) -> command::Cmd {
    command::Cmd::PutVersion(pb::PutVersion {
        version: Some(version),
        precondition: None,
        lease_id,
    })
}

/// PutVersion of blob `id` on the standard spread.
pub(crate) fn put(bucket: &str, key: &str, etag: &str, id: u8, lease_id: u64) -> command::Cmd {
    put_version(
        version_with(bucket, key, etag, erasure(id, SPREAD)),
        lease_id,
    )
}

/// PutVersion of a small inline object (needs no lease).
pub(crate) fn put_inline(bucket: &str, key: &str, etag: &str) -> command::Cmd {
    put_version(version_with(bucket, key, etag, inline(b"abc")), 0)
}

/// DeleteObject.
pub(crate) fn delete(bucket: &str, key: &str, version_id: Option<&str>) -> command::Cmd {
    command::Cmd::DeleteObject(pb::DeleteObject {
        bucket: bucket.into(),
        key: key.into(),
        version_id: version_id.map(str::to_owned),
    })
}

/// CreateUpload.
pub(crate) fn create_upload(bucket: &str, key: &str, id: &str) -> command::Cmd {
    command::Cmd::CreateUpload(pb::CreateUpload {
        upload: Some(pb::MultipartUpload {
            bucket: bucket.into(),
            key: key.into(),
            upload_id: id.into(),
            initiated_ms: 10,
            ..pb::MultipartUpload::default()
        }),
    })
}

/// PutPart of blob `id` on the standard spread.
pub(crate) fn part(
    upload_id: &str,
    number: u32,
    size: u64,
    etag: &str,
    id: u8,
    lease_id: u64,
) -> command::Cmd {
    part_with(upload_id, number, size, etag, erasure(id, SPREAD), lease_id)
}

/// PutPart holding `blob`.
pub(crate) fn part_with(
    upload_id: &str,
    number: u32,
    size: u64,
    etag: &str,
    blob: pb::Blob,
    lease_id: u64,
) -> command::Cmd {
    command::Cmd::PutPart(pb::PutPart {
        part: Some(pb::UploadedPart {
            upload_id: upload_id.into(),
            part_number: number,
            size,
            etag: etag.into(),
            last_modified_ms: 20,
            blob: Some(blob),
            checksums: Vec::new(),
        }),
        lease_id,
    })
}

/// CompleteUpload naming `parts` as (number, ETag).
pub(crate) fn complete(upload_id: &str, parts: &[(u32, &str)]) -> command::Cmd {
    command::Cmd::CompleteUpload(pb::CompleteUpload {
        upload_id: upload_id.into(),
        parts: parts
            .iter()
            .map(|(n, e)| pb::CompletedPartRef {
                part_number: *n,
                etag: (*e).to_owned(),
            })
            .collect(),
        version: Some(pb::ObjectVersion {
            etag: "\"multi-2\"".into(),
            multipart: true,
            last_modified_ms: 30,
            ..pb::ObjectVersion::default()
        }),
        precondition: None,
    })
}

/// AbortUpload.
pub(crate) fn abort(upload_id: &str) -> command::Cmd {
    command::Cmd::AbortUpload(pb::AbortUpload {
        upload_id: upload_id.into(),
    })
}

/// UpdatePlacement of blob `id` from `expected` to `new`.
pub(crate) fn update(
    id: u8,
    expected: &[CopySpec],
    new: &[CopySpec],
    degraded: bool,
    lease_id: u64,
) -> command::Cmd {
    command::Cmd::UpdatePlacement(pb::UpdatePlacement {
        data_id: vec![id; 16],
        expected: placements(expected),
        shards: placements(new),
        degraded,
        lease_id,
    })
}

/// One exact shard file, written under `lease_id`.
pub(crate) fn shard_ref(
    id: u8,
    (shard_index, node_id, generation): CopySpec,
    lease_id: u64,
) -> pb::ShardRef {
    pb::ShardRef {
        data_id: vec![id; 16],
        shard_index,
        node_id,
        generation,
        lease_id,
    }
}

/// ClaimShards.
pub(crate) fn claim(
    claimer: &str,
    grace_ms: u64,
    orphans: Vec<pb::ShardRef>,
    garbage: &[(Vec<u8>, Vec<pb::ShardRef>)],
) -> command::Cmd {
    command::Cmd::ClaimShards(pb::ClaimShards {
        orphans,
        claimer: claimer.into(),
        grace_ms,
        garbage: garbage
            .iter()
            .map(|(key, shards)| pb::GarbageClaim {
                garbage_key: key.clone(),
                shards: shards.clone(),
            })
            .collect(),
    })
}

/// ReleaseShards.
pub(crate) fn release(refs: &[pb::ShardRef], garbage_keys: Vec<Vec<u8>>) -> command::Cmd {
    command::Cmd::ReleaseShards(pb::ReleaseShards {
        shards: refs.to_vec(),
        garbage_keys,
    })
}
