//! Typed clients for the meta and data services. The gateway and repair reach meta and data
//! only through this crate, so they never link openraft or RocksDB.

pub mod data;
pub mod meta;
pub mod workers;

pub use data::{DataClient, DataClientError};
pub use meta::{MetaClient, MetaClientError};
