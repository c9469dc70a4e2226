//! The blob pipeline: request bodies in, sealed and erasure-coded shards out to data nodes, and
//! back.
//!
//! Invariant: a write returns a blob only when its committed shards satisfy the write rule
//! (they survive the loss of any one zone) and the body passed its own check; no shard is
//! committed before the whole body was read and checked, and a failed write commits nothing
//! unless it lost its quorum at the very end (then the orphans are logged, and garbage
//! collection takes them once the write's lease ended). Every shard written carries the
//! write's lease id, and the manifest records every shard's digest. A read emits only bytes
//! of chunks verified against the manifest's digests (by the shared shard reader), or rebuilt
//! from k such chunks. Neither direction holds more than a few stripes of a blob in memory,
//! whatever its size.

pub mod bucket_keys;
mod error;
mod metrics;
mod object_read;
mod read;
pub mod sealing;
pub mod sse;
mod write;

use std::collections::BTreeMap;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tessera_client::DataClient;
use tessera_core::blob::Blob;
use tessera_core::checksum::ChecksumAlgorithm;
use tessera_core::layout::Layout;
use tessera_core::names::ZoneName;
use tessera_core::object::ObjectVersion;
use tessera_core::sealing::customer_key::CustomerKey;
use tessera_core::stripe::DEFAULT_CHUNK_SIZE;

use crate::nodes::{DataNodeView, NodeDirectory};

pub use error::{BodyRejection, PipelineError};
pub use metrics::PipelineMetrics;
pub use object_read::{ExpectedChecksum, PartSlice, ReadCheck, plan_object_read};
pub use sealing::{
    IdentitySeals, KmsTarget, Opened, SealError, SealTarget, Sealer, Seals, Unsealer,
};
pub use sse::{DataKeys, MetaKeys, SseSeals};

/// The error a request body stream yields (whatever the HTTP layer had).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The bytes of a blob range as they are read, verified and rebuilt. `Sync` because the HTTP
/// layer's streaming body demands it.
pub type BlobReadStream =
    Pin<Box<dyn Stream<Item = Result<Bytes, PipelineError>> + Send + Sync + 'static>>;

/// The largest blob a single write accepts: S3's limit for one PUT or one part.
pub const MAX_BLOB_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// Bodies up to this size are stored inline in metadata by default.
pub const DEFAULT_INLINE_THRESHOLD: u64 = 16 * 1024;

/// How long a body may send nothing before the write gives up, by default.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The largest chunk a data node stores (its `shard_limits::MAX_CHUNK_SIZE`).
pub const MAX_CHUNK_SIZE: u32 = 4 * 1024 * 1024;

/// The most chunks one shard may have on a data node (its `shard_limits::MAX_SHARD_CHUNKS`);
/// the writer picks chunks large enough that no blob it accepts needs more.
pub const MAX_CHUNKS_PER_SHARD: u64 = 262_144;

/// The most nodes per zone a default layout is built for: `zone_plus_one(z)` has 3z shards and
/// Reed-Solomon over GF(2^8) allows 255.
const MAX_LAYOUT_NODES_PER_ZONE: u32 = 85;

/// How the pipeline cuts and places blobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobStoreConfig {
    /// Bytes per chunk of new blobs (at most [`MAX_CHUNK_SIZE`]).
    pub chunk_size: u32,
    /// Bodies of at most this many bytes are stored inline in metadata, not on data nodes.
    pub inline_threshold: u64,
    /// The layout of new blobs; `None` picks `Layout::zone_plus_one` for the smallest zone.
    pub layout: Option<Layout>,
    /// How long a body may send nothing before the write fails.
    pub body_idle_timeout: Duration,
}

impl Default for BlobStoreConfig {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            inline_threshold: DEFAULT_INLINE_THRESHOLD,
            layout: None,
            body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
        }
    }
}

/// The digests of a whole body (its plaintext, as the client sent it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyDigests {
    /// Body length in bytes.
    pub size: u64,
    /// MD5 of the body (the ETag of a single PUT or part).
    pub md5: [u8; 16],
    /// The requested checksums, in the order asked for.
    pub checksums: Vec<(ChecksumAlgorithm, Vec<u8>)>,
}

impl BodyDigests {
    /// The digest computed with `algorithm`, if it was asked for.
    pub fn checksum(&self, algorithm: ChecksumAlgorithm) -> Option<&[u8]> {
        self.checksums
            .iter()
            .find(|(a, _)| *a == algorithm)
            .map(|(_, d)| d.as_slice())
    }
}

/// The check a write runs on the body's digests once the body ended and before any shard is
/// committed (Content-MD5, `x-amz-checksum-*` from a header or an aws-chunked trailer, which is
/// readable once the body stream ended). A refusal commits nothing.
pub type BodyCheck = Box<dyn FnOnce(&BodyDigests) -> Result<(), BodyRejection> + Send>;

/// What one write must check and compute besides storing the bytes.
pub struct WriteOptions {
    /// The declared (decoded) length; a body of another length fails and stores nothing.
    pub expected_len: Option<u64>,
    /// The longest body accepted; a longer one fails with `EntityTooLarge`.
    pub max_len: u64,
    /// Checksums to compute over the body, returned in this order.
    pub checksums: Vec<ChecksumAlgorithm>,
    /// The write lease held for the write (the caller keeps its guard until the blob is
    /// committed); required unless the body is stored inline.
    pub lease_id: Option<u64>,
    /// Run on the body's digests between the end of the body and the shards' commit.
    pub check: Option<BodyCheck>,
    /// The object and part the blob is sealed for (a read must name the same).
    pub target: SealTarget,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            expected_len: None,
            max_len: MAX_BLOB_SIZE,
            checksums: Vec::new(),
            lease_id: None,
            check: None,
            target: SealTarget::default(),
        }
    }
}

impl std::fmt::Debug for WriteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteOptions")
            .field("expected_len", &self.expected_len)
            .field("max_len", &self.max_len)
            .field("checksums", &self.checksums)
            .field("lease_id", &self.lease_id)
            .field("check", &self.check.is_some())
            .field("target", &self.target)
            .finish()
    }
}

/// A blob that was stored, with the digests of its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenBlob {
    /// Where the bytes are: inline, or which shards on which nodes, with their digests.
    pub blob: Blob,
    /// The body's digests.
    pub digests: BodyDigests,
}

/// Writes bodies as blobs and reads blob ranges back; cheap to clone.
#[derive(Clone, Debug)]
pub struct BlobStore {
    data: DataClient,
    nodes: NodeDirectory,
    config: BlobStoreConfig,
    seals: Arc<dyn Seals>,
    metrics: Arc<PipelineMetrics>,
}

impl BlobStore {
    /// A store writing through `data` to the nodes of `nodes`, storing bytes as sent.
    pub fn new(data: DataClient, nodes: NodeDirectory, config: BlobStoreConfig) -> Self {
        Self::with_seals(data, nodes, config, Arc::new(IdentitySeals))
    }

    /// A store whose blobs are sealed and unsealed by `seals`.
    pub fn with_seals(
        data: DataClient,
        nodes: NodeDirectory,
        config: BlobStoreConfig,
        seals: Arc<dyn Seals>,
    ) -> Self {
        Self {
            data,
            nodes,
            config,
            seals,
            metrics: Arc::new(PipelineMetrics::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BlobStoreConfig {
        &self.config
    }

    /// The node directory the store places shards with.
    pub fn nodes(&self) -> &NodeDirectory {
        &self.nodes
    }

    /// The counters of shard faults met by reads and writes.
    pub fn metrics(&self) -> &Arc<PipelineMetrics> {
        &self.metrics
    }

    /// Streams a body into a blob: never holds more than a few stripes in memory. Fails,
    /// committing nothing, if the body breaks off, idles, differs from `expected_len` or fails
    /// `opts.check`.
    pub async fn write<S>(&self, body: S, opts: WriteOptions) -> Result<WrittenBlob, PipelineError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Send + Unpin,
    {
        write::write_blob(self, body, opts).await
    }

    /// Streams the plaintext bytes `[range.start, range.end)` of `blob`, sealed for `target`
    /// (the range lies within `0..blob.size`), verifying every chunk against the manifest and rebuilding from parity
    /// when copies are missing or do not verify. The stream does no work until first polled,
    /// and must be polled inside a Tokio runtime (it then reads ahead on a task of its own,
    /// stopped on drop).
    pub fn read(&self, blob: &Blob, target: &SealTarget, range: Range<u64>) -> BlobReadStream {
        read::read_blob(self, blob, target, range)
    }

    /// Streams the bytes `range` of an object version across its parts, opening SSE-C parts
    /// with `customer_key`; with [`ReadCheck::WholeParts`], every part read whole is checked
    /// against its stored checksum and its last piece held back until it matched (see
    /// [`plan_object_read`]).
    pub fn read_object(
        &self,
        version: &ObjectVersion,
        range: Range<u64>,
        check: ReadCheck,
        customer_key: Option<&CustomerKey>,
    ) -> BlobReadStream {
        object_read::read_object(self, version, range, check, customer_key.cloned())
    }

    /// [`BlobStore::read_object`], with the first part's read opened now: its data key is
    /// fetched (and a KMS key's state checked) before this returns, so a refusal is an error
    /// here, before a response has begun, not a stream cut after its status line. Later parts
    /// are opened as the stream reaches them.
    pub async fn open_object(
        &self,
        version: &ObjectVersion,
        range: Range<u64>,
        check: ReadCheck,
        customer_key: Option<&CustomerKey>,
    ) -> Result<BlobReadStream, PipelineError> {
        object_read::open_object(self, version, range, check, customer_key.cloned()).await
    }

    /// The layout a write would use now, from the configuration or the membership.
    pub fn current_layout(&self) -> Option<Layout> {
        choose_layout(self.config.layout, &self.nodes.snapshot())
    }
}

/// The configured layout, else `Layout::zone_plus_one` for the smallest zone among all known
/// nodes (up or down, so that a zone outage does not change the layout of new blobs). `None`
/// when no node is known.
fn choose_layout(configured: Option<Layout>, nodes: &[DataNodeView]) -> Option<Layout> {
    if configured.is_some() {
        return configured;
    }
    let mut per_zone: BTreeMap<&ZoneName, u32> = BTreeMap::new();
    for node in nodes {
        *per_zone.entry(&node.zone).or_insert(0) += 1;
    }
    let smallest = per_zone.into_values().min()?;
    Layout::zone_plus_one(smallest.min(MAX_LAYOUT_NODES_PER_ZONE)).ok()
}

#[cfg(test)]
mod layout_tests {
    use super::*;
    use tessera_core::names::NodeId;

    fn nodes(zones: &[(&str, u32)]) -> Vec<DataNodeView> {
        let mut id = 0;
        let mut out = Vec::new();
        for (zone, count) in zones {
            for _ in 0..*count {
                id += 1;
                out.push(DataNodeView {
                    id: NodeId(id),
                    zone: ZoneName((*zone).to_owned()),
                    addr: format!("n{id}:1"),
                    available: id % 2 == 0,
                });
            }
        }
        out
    }

    #[test]
    fn the_default_layout_follows_the_smallest_zone_of_all_known_nodes() {
        let layout = choose_layout(None, &nodes(&[("a", 2), ("b", 2), ("c", 2)]));
        assert_eq!(layout, Layout::new(3, 3).ok());
        let layout = choose_layout(None, &nodes(&[("a", 3), ("b", 5), ("c", 3)]));
        assert_eq!(layout, Layout::new(5, 4).ok());
        assert_eq!(choose_layout(None, &[]), None);
    }

    #[test]
    fn a_configured_layout_wins_and_huge_zones_are_capped() {
        let fixed = Layout::new(4, 2).ok();
        assert_eq!(choose_layout(fixed, &nodes(&[("a", 2)])), fixed);
        let huge = choose_layout(None, &nodes(&[("a", 100), ("b", 100), ("c", 100)]));
        assert!(huge.is_some_and(|l| l.total_shards() <= 255));
    }
}

#[cfg(test)]
mod integrity_test;
#[cfg(test)]
mod pipeline_test;
#[cfg(test)]
mod test_cluster;
