//! Errors of the meta node, one enum per domain: `StoreError` for the RocksDB store and its
//! snapshot file, `MetaNodeError` for starting and running a node. Each knows whether retrying
//! can help and has a stable code for logs and metrics.

use tessera_runtime::dirlock::DirLockError;

use crate::config::MetaConfigError;
use crate::convert::ConvertError;
use crate::store::SnapshotFileError;

/// A failure of the meta store (RocksDB log, state machine, snapshot file).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB refused an operation.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A column family the store needs is missing from the database.
    #[error("column family {0} is missing")]
    MissingColumnFamily(&'static str),
    /// A stored record is not valid protobuf of its type.
    #[error("stored {what} does not decode: {source}")]
    Decode {
        /// Which record.
        what: &'static str,
        /// Why.
        source: prost::DecodeError,
    },
    /// A stored record decodes but does not convert to its Raft type.
    #[error("stored {what} is invalid: {source}")]
    Convert {
        /// Which record.
        what: &'static str,
        /// Why.
        source: ConvertError,
    },
    /// A stored state-machine record decodes but is not a valid domain record.
    #[error("stored {what} is not a valid record: {source}")]
    InvalidRecord {
        /// Which record.
        what: &'static str,
        /// Why.
        source: tessera_proto::convert::meta::MetaConvertError,
    },
    /// A stored key does not have the layout its column family requires.
    #[error("malformed key in column family {cf}")]
    MalformedKey {
        /// The column family.
        cf: &'static str,
    },
    /// The store was written with a layout this build does not know.
    #[error("store format version {found} is not supported (this build reads {supported})")]
    UnknownFormat {
        /// The version on disk.
        found: u32,
        /// The version this build writes.
        supported: u32,
    },
    /// The store was written by an earlier development build; there is no migration before
    /// 1.0.
    #[error(
        "the meta folder {dir} was written by an earlier development build (store format \
         {found}; this build reads format {supported} and does not migrate before 1.0): move \
         it away and start this node with an empty folder (the leader sends it the current \
         state), or start the whole cluster afresh"
    )]
    EarlierFormat {
        /// The meta folder.
        dir: String,
        /// The version on disk.
        found: u32,
        /// The version this build writes.
        supported: u32,
    },
    /// Another process (or another store in this one) holds the meta folder.
    #[error(transparent)]
    Locked(#[from] DirLockError),
    /// A snapshot file is malformed, truncated, corrupt or of another format.
    #[error("snapshot file {path}: {source}")]
    SnapshotFormat {
        /// The file.
        path: String,
        /// What is wrong with it.
        source: SnapshotFileError,
    },
    /// A snapshot file holds another snapshot than the one it was given as.
    #[error("snapshot file {path} holds snapshot {found}, expected {expected}")]
    SnapshotMismatch {
        /// The file.
        path: String,
        /// The snapshot id it was given as.
        expected: String,
        /// The snapshot id in its header.
        found: String,
    },
    /// The snapshot file could not be read or written.
    #[error("snapshot file {path}: {source}")]
    SnapshotFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A blocking store task panicked or was cancelled.
    #[error("store task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// Whether retrying the same operation can succeed. Store errors mean a broken disk or a
    /// broken file, so none is.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Rocks(_) => "store_rocksdb",
            StoreError::MissingColumnFamily(_) => "store_missing_cf",
            StoreError::Decode { .. } => "store_decode",
            StoreError::Convert { .. } => "store_convert",
            StoreError::InvalidRecord { .. } => "store_invalid_record",
            StoreError::MalformedKey { .. } => "store_malformed_key",
            StoreError::UnknownFormat { .. } => "store_unknown_format",
            StoreError::EarlierFormat { .. } => "store_earlier_format",
            StoreError::Locked(e) => e.code(),
            StoreError::SnapshotFormat { source, .. } => source.code(),
            StoreError::SnapshotMismatch { .. } => "store_snapshot_mismatch",
            StoreError::SnapshotFile { .. } => "store_snapshot_file",
            StoreError::Task(_) => "store_task",
        }
    }
}

/// Why a meta node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum MetaNodeError {
    /// The configuration breaks a rule.
    #[error(transparent)]
    Config(#[from] MetaConfigError),
    /// The store could not be opened or used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data directory could not be created.
    #[error("cannot create {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// openraft refused its configuration or stopped with a fatal error.
    #[error("raft: {0}")]
    Raft(String),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// No root key, an unreadable or malformed one, or not the one this node started with.
    #[error("root key: {0}")]
    RootKey(String),
    /// The mutual-TLS files are incomplete, unreadable or not a meta node's.
    #[error("tls: {0}")]
    Tls(#[from] tessera_runtime::tls::TlsError),
}

impl MetaNodeError {
    /// Whether starting again unchanged can succeed (a port still held, a transient server
    /// failure); configuration and store errors need an operator.
    pub fn is_retryable(&self) -> bool {
        matches!(self, MetaNodeError::Bind { .. } | MetaNodeError::Serve(_))
    }

    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            MetaNodeError::Config(_) => "meta_config",
            MetaNodeError::Store(e) => e.code(),
            MetaNodeError::DataDir { .. } => "meta_data_dir",
            MetaNodeError::Bind { .. } => "meta_bind",
            MetaNodeError::Raft(_) => "meta_raft",
            MetaNodeError::Serve(_) => "meta_serve",
            MetaNodeError::RootKey(_) => "meta_root_key",
            MetaNodeError::Tls(_) => "meta_tls",
        }
    }
}
