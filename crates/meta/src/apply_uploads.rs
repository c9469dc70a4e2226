//! The applier's multipart-upload commands. Invariants: an open upload has one `u/` record and
//! one `ui/` entry; its parts live under `p/<upload id>`; completing it builds the version's
//! parts from the stored parts the request names (so the version holds exactly the blobs and
//! placements the parts hold now, and needs no write lease: no copy is new), removes the upload
//! and every part record, and records `uc/<upload id>` so that a repeated completion with the
//! same part list answers the version it made instead of failing.

use std::collections::{BTreeMap, BTreeSet};

use tessera_core::etag::part_etag_matches;
use tessera_core::meta_error::MetaRuleError;
use tessera_core::multipart::{MAX_PART_NUMBER, MultipartError, validate_completion};
use tessera_core::object::{
    MultipartUpload, ObjectPart, ObjectVersion, UploadedPart, WritePrecondition,
};
use tessera_proto::meta::v1 as pb;
use tessera_proto::meta::v1::command_result;

use super::{Applier, Fail, convert, invalid, ok, required, version_result};
use crate::keys;
use crate::records;

/// The longest upload id the state machine accepts.
const MAX_UPLOAD_ID_LEN: usize = 256;

fn no_such_upload(upload_id: &str) -> Fail {
    Fail::Rule(MetaRuleError::NoSuchUpload {
        upload_id: upload_id.to_owned(),
    })
}

impl Applier<'_> {
    pub(super) fn create_upload(
        &mut self,
        c: &pb::CreateUpload,
    ) -> Result<command_result::Result, Fail> {
        let mut upload: MultipartUpload =
            convert(required(c.upload.as_ref(), "upload")?, "upload")?;
        self.existing_bucket(upload.bucket.as_str())?;
        let id = upload.upload_id.clone();
        if id.is_empty() || id.len() > MAX_UPLOAD_ID_LEN || id.contains('\0') {
            return Err(invalid("upload id must be 1 to 256 bytes without NUL"));
        }
        // An id stays taken while its completion is remembered, so `uc/` never names two.
        if self.kv.get(&keys::upload_index(&id))?.is_some()
            || self.kv.get(&keys::completed_upload(&id))?.is_some()
        {
            return Err(invalid(format!("upload id {id} is already in use")));
        }
        upload.initiated_ms = self.clock_ms;
        let key = keys::upload(upload.bucket.as_str(), upload.key.as_str(), &id);
        self.writes
            .put_pb(key.clone(), &pb::MultipartUpload::from(&upload));
        self.writes.put(keys::upload_index(&id), key);
        Ok(ok())
    }

    fn existing_upload(&self, upload_id: &str) -> Result<(Vec<u8>, MultipartUpload), Fail> {
        records::upload_by_id(self.kv, upload_id)?.ok_or_else(|| no_such_upload(upload_id))
    }

    pub(super) fn put_part(&mut self, c: &pb::PutPart) -> Result<command_result::Result, Fail> {
        let mut part: UploadedPart = convert(required(c.part.as_ref(), "part")?, "part")?;
        if !(1..=MAX_PART_NUMBER).contains(&part.part_number) {
            return Err(invalid(format!(
                "part number {} is outside 1..={MAX_PART_NUMBER}",
                part.part_number
            )));
        }
        self.existing_upload(&part.upload_id)?;
        if part.blob.erasure().is_some() {
            self.require_live_lease(c.lease_id)?;
        }
        self.placed_now(std::iter::once(&mut part.blob));
        part.last_modified_ms = self.clock_ms;
        let key = keys::part(&part.upload_id, part.part_number);
        if let Some(old) = records::part_at(self.kv, &key)? {
            self.discard_blob(&key, &old.blob)?;
        }
        self.index_blob(&key, 0, &part.blob)?;
        self.writes.put_pb(key, &pb::UploadedPart::from(&part));
        Ok(ok())
    }

    pub(super) fn complete_upload(
        &mut self,
        c: &pb::CompleteUpload,
    ) -> Result<command_result::Result, Fail> {
        let Some((upload_key, upload)) = records::upload_by_id(self.kv, &c.upload_id)? else {
            return self.completed_again(c);
        };
        let bucket = self.existing_bucket(upload.bucket.as_str())?;
        let stored_parts = records::parts(self.kv, &c.upload_id)?;
        let uploaded: BTreeMap<u32, (u64, String)> = stored_parts
            .iter()
            .map(|(_, p)| (p.part_number, (p.size, p.etag.clone())))
            .collect();
        let requested: Vec<(u32, String)> = c
            .parts
            .iter()
            .map(|p| (p.part_number, p.etag.clone()))
            .collect();
        validate_completion(&requested, &uploaded).map_err(|e| completion_error(e, &requested))?;

        // The object-level fields come from the command; bucket, key and parts from the upload.
        let mut wire = required(c.version.as_ref(), "version")?.clone();
        wire.bucket = upload.bucket.as_str().to_owned();
        wire.key = upload.key.as_str().to_owned();
        wire.parts.clear();
        let mut version: ObjectVersion = convert(&wire, "version")?;
        let by_number: BTreeMap<u32, &UploadedPart> = stored_parts
            .iter()
            .map(|(_, p)| (p.part_number, p))
            .collect();
        version.parts = requested
            .iter()
            .filter_map(|(number, _)| by_number.get(number))
            .map(|p| ObjectPart {
                part_number: p.part_number,
                size: p.size,
                etag: p.etag.clone(),
                blob: p.blob.clone(),
                checksums: p.checksums.clone(),
            })
            .collect();
        version.size = version.parts.iter().map(|p| p.size).sum();
        version.multipart = true;
        version.upload_id = Some(c.upload_id.clone());

        // Every part record goes; the blobs of used parts move to the version (write_version
        // indexes them under it), the others become garbage.
        let used: BTreeSet<u32> = requested.iter().map(|(n, _)| *n).collect();
        for (key, part) in &stored_parts {
            if used.contains(&part.part_number) {
                if let Some(data_id) = part.blob.data_id() {
                    self.unindex(&data_id, key)?;
                }
            } else {
                self.discard_blob(key, &part.blob)?;
            }
            self.writes.delete(key.clone());
        }
        let precondition = c.precondition.as_ref().map(WritePrecondition::from);
        let stored = self.write_version(&bucket, version, precondition.as_ref())?;
        self.writes.delete(upload_key);
        self.writes.delete(keys::upload_index(&c.upload_id));
        self.writes.put(
            keys::completed_upload(&c.upload_id),
            keys::object_version(bucket.name.as_str(), stored.key.as_str(), stored.seq),
        );
        Ok(version_result(&stored))
    }

    /// CompleteUpload of an upload that is gone: the version it made, if that completion named
    /// the same parts (an S3 client retrying its request); otherwise NoSuchUpload.
    fn completed_again(&self, c: &pb::CompleteUpload) -> Result<command_result::Result, Fail> {
        let Some((_, version)) = records::completed_upload(self.kv, &c.upload_id)? else {
            return Err(no_such_upload(&c.upload_id));
        };
        let same_parts = version.parts.len() == c.parts.len()
            && version.parts.iter().zip(&c.parts).all(|(made, asked)| {
                made.part_number == asked.part_number && part_etag_matches(&asked.etag, &made.etag)
            });
        if same_parts {
            Ok(version_result(&version))
        } else {
            Err(no_such_upload(&c.upload_id))
        }
    }

    pub(super) fn abort_upload(
        &mut self,
        c: &pb::AbortUpload,
    ) -> Result<command_result::Result, Fail> {
        let (upload_key, _) = self.existing_upload(&c.upload_id)?;
        for (key, part) in records::parts(self.kv, &c.upload_id)? {
            self.discard_blob(&key, &part.blob)?;
            self.writes.delete(key);
        }
        self.writes.delete(upload_key);
        self.writes.delete(keys::upload_index(&c.upload_id));
        Ok(ok())
    }
}

/// The typed rule error of a refused completion, with the ETag the request named.
fn completion_error(e: MultipartError, requested: &[(u32, String)]) -> Fail {
    Fail::Rule(match e {
        MultipartError::InvalidPartOrder => MetaRuleError::InvalidPartOrder,
        MultipartError::InvalidPart { part_number } => MetaRuleError::InvalidPart {
            part_number,
            etag: requested
                .iter()
                .find(|(n, _)| *n == part_number)
                .map(|(_, etag)| etag.clone())
                .unwrap_or_default(),
        },
        MultipartError::EntityTooSmall { part_number, size } => {
            MetaRuleError::EntityTooSmall { part_number, size }
        }
        MultipartError::NoParts | MultipartError::InvalidPartNumber { .. } => {
            MetaRuleError::invalid(e.to_string())
        }
    })
}
