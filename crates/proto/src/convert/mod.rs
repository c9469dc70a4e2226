//! Conversions between wire types and `tessera-core` types, one module per domain.

pub mod data;
pub mod meta;
pub mod meta_error;
