//! Shard identifiers on the wire (`ShardId`) to and from core's `DataId` and `Generation`.

use crate::data::v1 as pb;
use tessera_core::blob::Generation;
use tessera_core::names::DataId;

/// A wire value that does not make a valid core value.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A data id that is not 16 bytes long.
    #[error("data id must be 16 bytes, got {len}")]
    DataIdLength {
        /// The length received.
        len: usize,
    },
    /// A shard id whose generation is 0 (every stored copy has a nonzero one).
    #[error("shard generation must be nonzero")]
    ZeroGeneration,
    /// A required field was absent.
    #[error("missing field {field}")]
    Missing {
        /// The field's name.
        field: &'static str,
    },
}

impl TryFrom<&[u8]> for DataIdWire {
    type Error = ConvertError;
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        let arr: [u8; 16] = bytes
            .try_into()
            .map_err(|_| ConvertError::DataIdLength { len: bytes.len() })?;
        Ok(DataIdWire(DataId::from_bytes(arr)))
    }
}

/// A data id read off the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataIdWire(pub DataId);

/// Parses a wire data id.
pub fn data_id(bytes: &[u8]) -> Result<DataId, ConvertError> {
    DataIdWire::try_from(bytes).map(|w| w.0)
}

/// Builds a wire shard id naming one generation of a shard.
pub fn shard_id(data_id: DataId, shard_index: u32, generation: Generation) -> pb::ShardId {
    pb::ShardId {
        data_id: data_id.as_bytes().to_vec().into(),
        shard_index,
        generation: generation.get(),
    }
}

/// The generation a wire shard id names.
pub fn generation(id: &pb::ShardId) -> Result<Generation, ConvertError> {
    Generation::new(id.generation).ok_or(ConvertError::ZeroGeneration)
}
