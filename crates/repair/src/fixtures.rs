//! Builders of manifests, listings and cluster views for the unit tests. Digests are real: each
//! shard's chunks are computed bytes, hashed and digested with core's shard-file functions, so a
//! shard of another blob or index has another digest exactly as on a data node.

use tessera_client::ShardId;
use tessera_client::data::ListedShard;
use tessera_client::meta::{BlobFamily, BlobRef};
use tessera_core::blob::{ErasureBlob, Generation, ShardCopy};
use tessera_core::layout::Layout;
use tessera_core::names::{DataId, NodeId};
use tessera_core::shard_file::{ShardDigest, ShardDigester, chunk_hash};
use tessera_proto::meta::v1 as pb;

use crate::view::ClusterView;

/// Chunks in every shard of a fixture blob.
pub const CHUNKS: u64 = 2;
/// Bytes per chunk of a fixture blob.
pub const CHUNK_SIZE: u32 = 64;

/// A data id made of one repeated byte.
pub fn data_id(byte: u8) -> DataId {
    DataId::from_bytes([byte; 16])
}

/// A nonzero generation.
pub fn generation(value: u64) -> Generation {
    Generation::new(value).expect("fixture generations are nonzero")
}

/// Copy of shard `index` on `node`, written as `written_as`.
pub fn copy(index: u32, node: u64, written_as: u64) -> ShardCopy {
    ShardCopy {
        shard_index: index,
        node: NodeId(node),
        generation: generation(written_as),
    }
}

/// The digest of shard `index` of blob `id` whose chunk `c` is `CHUNK_SIZE` bytes of
/// `index + c`.
pub fn digest(id: &DataId, index: u32) -> ShardDigest {
    let mut digester = ShardDigester::new(id, index);
    for c in 0..CHUNKS {
        let byte = u8::try_from((u64::from(index) + c) % 256).unwrap_or(0);
        let data = vec![byte; CHUNK_SIZE as usize];
        digester.push(&chunk_hash(id, index, c, &data));
    }
    digester.finish()
}

/// An RS(k, m) blob `id` with `copies`, placed at log index `placed_at_index`.
pub fn blob(
    id: DataId,
    k: u32,
    m: u32,
    copies: Vec<ShardCopy>,
    placed_at_index: u64,
) -> ErasureBlob {
    let layout = Layout::new(k, m).expect("fixture layout");
    let mut shards = copies;
    shards.sort_unstable();
    let blob = ErasureBlob {
        data_id: id,
        layout,
        chunk_size: CHUNK_SIZE,
        chunks_per_shard: CHUNKS,
        shards,
        shard_digests: (0..layout.total_shards()).map(|i| digest(&id, i)).collect(),
        degraded: false,
        placed_at_index,
    };
    blob.validate().expect("fixture blob valid");
    blob
}

/// RS(3, 3) blob `id` with shard i on node i + 1 (generation 100 + i), placed at index 5.
pub fn spread_blob(id: DataId) -> ErasureBlob {
    let copies = (0..6)
        .map(|i| copy(i, u64::from(i) + 1, 100 + u64::from(i)))
        .collect();
    blob(id, 3, 3, copies, 5)
}

/// A version record holding `blob`.
pub fn blob_ref(blob: ErasureBlob, size: u64, time_ms: i64) -> BlobRef {
    BlobRef {
        family: BlobFamily::Versions,
        record_key: format!("v/{}", blob.data_id).into_bytes(),
        part_index: 0,
        bucket: "b".to_owned(),
        key: "k".to_owned(),
        version_id: String::new(),
        upload_id: String::new(),
        part_number: 0,
        size,
        blob,
        time_ms,
    }
}

/// What an honest node lists for the placed copy `copy` of `blob`, written under `lease_id`.
pub fn listed(blob: &ErasureBlob, copy: &ShardCopy, lease_id: u64) -> ListedShard {
    ListedShard {
        id: ShardId::of_copy(blob.data_id, copy),
        lease_id,
        chunks: blob.chunks_per_shard,
        bytes: 4096,
        digest: digest(&blob.data_id, copy.shard_index),
    }
}

/// A status naming `nodes` as (id, zone, liveness, state), answered at `applied_index`.
pub fn status(
    nodes: &[(u64, &str, pb::Liveness, pb::NodeState)],
    applied_index: u64,
) -> pb::ClusterStatusResponse {
    pb::ClusterStatusResponse {
        data_nodes: nodes
            .iter()
            .map(|&(id, zone, liveness, state)| pb::DataNodeStatus {
                node: Some(pb::DataNode {
                    node_id: id,
                    zone: zone.to_owned(),
                    addr: format!("127.0.0.1:{}", 7100 + id),
                    registered_ms: 0,
                    state: state as i32,
                }),
                last_heartbeat_ms_ago: Some(0),
                healthy: liveness == pb::Liveness::Alive,
                liveness: liveness as i32,
            })
            .collect(),
        applied_index,
        ..pb::ClusterStatusResponse::default()
    }
}

/// Nodes 1..=6, two per zone (a, b, c), all alive and active; applied index 10; every node
/// listed what `blobs` place on it, honestly.
pub fn healthy_view(blobs: &[&ErasureBlob]) -> ClusterView {
    let nodes: Vec<(u64, &str, pb::Liveness, pb::NodeState)> = (1..=6)
        .map(|id| {
            let zone = ["zone-a", "zone-b", "zone-c"][((id - 1) / 2) as usize];
            (id, zone, pb::Liveness::Alive, pb::NodeState::Active)
        })
        .collect();
    let mut view = ClusterView::from_status(&status(&nodes, 10));
    for id in 1..=6 {
        let shards = blobs
            .iter()
            .flat_map(|b| {
                b.shards
                    .iter()
                    .filter(move |c| c.node == NodeId(id))
                    .map(move |c| listed(b, c, 7))
            })
            .collect();
        view.add_listing(NodeId(id), shards);
    }
    view
}
