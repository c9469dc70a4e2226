//! The state machine's position for `ClusterStatus`: its last applied log index and its meta
//! clock, read from one RocksDB snapshot so the two belong together.
//!
//! Temporary (wt-metanode): the state-machine branch owns the clock record (`c/clock` in `sm`)
//! and provides this function; until it is merged, the clock is decoded here as a message whose
//! field 1 is the clock in milliseconds. Replace the body by a call to theirs when merging.

use prost::Message;

use super::{CF_SM, CF_SM_META, KEY_LAST_APPLIED, MetaStore};
use crate::error::StoreError;

/// The key of the meta clock in `sm`.
const CLOCK_KEY: &[u8] = b"c/clock";

/// The stored clock, as far as this module needs it.
#[derive(Clone, PartialEq, prost::Message)]
struct ClockRecord {
    /// The state machine's clock (milliseconds since the epoch).
    #[prost(int64, tag = "1")]
    clock_ms: i64,
}

/// The state machine's last applied log index (0 before the first entry) and its clock
/// (0 before the first command that carried a leader time).
pub(crate) fn applied_index_and_clock(store: &MetaStore) -> Result<(u64, i64), StoreError> {
    let snap = store.db().snapshot();
    let applied = match snap.get_cf(store.cf(CF_SM_META)?, KEY_LAST_APPLIED)? {
        None => 0,
        Some(bytes) => {
            let id = tessera_proto::raft::v1::LogId::decode(&bytes[..]).map_err(|source| {
                StoreError::Decode {
                    what: "last applied",
                    source,
                }
            })?;
            id.index
        }
    };
    let clock = match snap.get_cf(store.cf(CF_SM)?, CLOCK_KEY)? {
        None => 0,
        Some(bytes) => {
            ClockRecord::decode(&bytes[..])
                .map_err(|source| StoreError::Decode {
                    what: "meta clock",
                    source,
                })?
                .clock_ms
        }
    };
    Ok((applied, clock))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocksdb::WriteBatch;

    #[test]
    fn reads_the_applied_index_and_the_clock_or_zeroes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = MetaStore::open(dir.path()).expect("open");
        assert_eq!(applied_index_and_clock(&store).expect("read"), (0, 0));
        let mut batch = WriteBatch::default();
        let id = tessera_proto::raft::v1::LogId {
            leader_id: Some(tessera_proto::raft::v1::LeaderId {
                term: 2,
                node_id: 1,
            }),
            index: 41,
        };
        batch.put_cf(
            store.cf(CF_SM_META).expect("cf"),
            KEY_LAST_APPLIED,
            id.encode_to_vec(),
        );
        batch.put_cf(
            store.cf(CF_SM).expect("cf"),
            CLOCK_KEY,
            ClockRecord {
                clock_ms: 1_700_000_000_123,
            }
            .encode_to_vec(),
        );
        store.write(batch, true).expect("write");
        assert_eq!(
            applied_index_and_clock(&store).expect("read"),
            (41, 1_700_000_000_123)
        );
    }
}
