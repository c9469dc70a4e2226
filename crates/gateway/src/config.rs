//! The gateway's typed config. Credentials are secrets: they never appear in `Debug` output.

use serde::Deserialize;
use std::net::SocketAddr;
use tessera_runtime::Secret;
use tessera_runtime::config::ConfigError;

/// Everything `tessera gateway` needs to start.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where the S3 endpoint listens.
    pub listen: SocketAddr,
    /// Meta nodes to reach (host:port).
    pub meta_endpoints: Vec<String>,
    /// The region this endpoint serves; SigV4 scopes and LocationConstraint must name it.
    #[serde(default = "default_region")]
    pub region: String,
    /// Access key of the root user.
    pub root_access_key: String,
    /// Secret key of the root user.
    pub root_secret_key: Secret<String>,
    /// Bodies up to this size are stored inline in metadata instead of as shards.
    #[serde(default = "default_inline_threshold")]
    pub inline_threshold: u64,
    /// Bytes per shard chunk.
    #[serde(default = "default_chunk_size")]
    pub chunk_size: u32,
    /// Seconds a client may stay silent while sending a body before the request fails.
    #[serde(default = "default_body_idle_secs")]
    pub body_idle_timeout_secs: u64,
    /// Seconds a client has to send a request's headers before the connection is closed.
    #[serde(default = "default_header_read_secs")]
    pub header_read_timeout_secs: u64,
}

fn default_region() -> String {
    "us-east-1".to_string()
}

fn default_inline_threshold() -> u64 {
    16 * 1024
}

fn default_chunk_size() -> u32 {
    tessera_core::stripe::DEFAULT_CHUNK_SIZE
}

fn default_body_idle_secs() -> u64 {
    60
}

fn default_header_read_secs() -> u64 {
    30
}

impl GatewayConfig {
    /// A config with defaults for everything but the required fields.
    pub fn new(
        listen: SocketAddr,
        meta_endpoints: Vec<String>,
        root_access_key: String,
        root_secret_key: Secret<String>,
    ) -> Self {
        Self {
            listen,
            meta_endpoints,
            region: default_region(),
            root_access_key,
            root_secret_key,
            inline_threshold: default_inline_threshold(),
            chunk_size: default_chunk_size(),
            body_idle_timeout_secs: default_body_idle_secs(),
            header_read_timeout_secs: default_header_read_secs(),
        }
    }

    /// Checks the rules that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.meta_endpoints.is_empty() {
            return Err(ConfigError::Invalid(
                "gateway needs at least one meta endpoint".into(),
            ));
        }
        if self.root_access_key.len() < 3 || self.root_secret_key.expose().len() < 8 {
            return Err(ConfigError::Invalid(
                "root access key needs >= 3 characters and secret key >= 8".into(),
            ));
        }
        if self.inline_threshold > 1024 * 1024 {
            return Err(ConfigError::Invalid(
                "inline_threshold must be <= 1 MiB".into(),
            ));
        }
        if !(4096..=4 * 1024 * 1024).contains(&self.chunk_size) {
            return Err(ConfigError::Invalid(
                "chunk_size must be within 4 KiB..=4 MiB".into(),
            ));
        }
        if self.body_idle_timeout_secs == 0 || self.header_read_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "timeouts must be at least 1 second".into(),
            ));
        }
        if self.region.is_empty() {
            return Err(ConfigError::Invalid("region must not be empty".into()));
        }
        Ok(())
    }
}
