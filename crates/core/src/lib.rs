//! Tessera's pure logic: no I/O, no async, no clock, no randomness of its own. Time and
//! randomness are parameters, so everything here is testable to exhaustion.
//!
//! - [`names`]: validated names and ids (buckets, keys, versions, uploads, nodes, zones, blobs).
//! - [`layout`]: erasure layouts RS(k, m) and which failures they survive.
//! - [`placement`]: zone-aware rendezvous placement of shards, and the write rule.
//! - [`repair`]: the repair planner: rebuild, wait or give up, and where shards go.
//! - [`stripe`]: stripe geometry and the Reed-Solomon codec wrapper.
//! - [`checksum`]: S3 additional checksums, COMPOSITE and FULL_OBJECT multipart checksums.
//! - [`etag`]: ETags and the If-Match / If-None-Match comparisons.
//! - [`multipart`]: multipart limits and the checks of CompleteMultipartUpload.
//! - [`object`]: the metadata records (buckets, versions, parts, uploads, data nodes).
//! - [`blob`]: blobs, shard copies and their generations, as manifests record them.
//! - [`shard_file`]: shard file format v2, chunk hashes bound to their place, shard digests.
//! - [`sealing`]: the transform between a client's bytes and the stored bytes; its AEAD
//!   interface, the segment framing for encryption at rest, and data-key wrapping.
//! - [`lease`]: write leases and the garbage-collection rules judged by the meta clock.
//! - [`meta_error`]: the typed rules a metadata command can break.

pub mod blob;
pub mod checksum;
pub mod etag;
pub mod kms;
pub mod layout;
pub mod lease;
pub mod meta_error;
pub mod multipart;
pub mod names;
pub mod object;
pub mod placement;
pub mod repair;
pub mod sealing;
pub mod shard_file;
pub mod stripe;
