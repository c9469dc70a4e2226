//! One lazily connected gRPC channel per peer address, shared by Raft replication, request
//! forwarding and status probes. A channel reconnects by itself after a peer restarts, so an
//! entry is never evicted; HTTP/2 keep-alives notice a silently dead peer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tessera_client::tls::ClusterTls;
use tessera_runtime::tls::Role;
use tonic::transport::Channel;

/// How long establishing a connection to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest gRPC message meta nodes exchange: inline objects (up to 16 KiB) batched into
/// Raft entries and snapshot chunks (up to 4 MiB) must fit comfortably.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The pool; cheap to clone.
#[derive(Clone, Default)]
pub struct ChannelPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    tls: Option<ClusterTls>,
}

/// A peer address that is not a valid URI.
#[derive(Debug, thiserror::Error)]
#[error("invalid peer address {addr}: {reason}")]
pub struct InvalidAddress {
    /// The address.
    pub addr: String,
    /// Why.
    pub reason: String,
}

impl ChannelPool {
    /// An empty pool whose channels use mutual TLS with `tls` (every meta node of a cluster),
    /// plain HTTP/2 without (in-process tests).
    pub fn with_tls(tls: Option<ClusterTls>) -> Self {
        Self {
            channels: Arc::default(),
            tls,
        }
    }

    /// The channel to `addr` ("host:port"; a scheme is added when missing).
    pub fn get(&self, addr: &str) -> Result<Channel, InvalidAddress> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(channel) = channels.get(addr) {
            return Ok(channel.clone());
        }
        let endpoint =
            tessera_client::tls::endpoint(addr, self.tls.as_ref(), Role::Meta).map_err(|e| {
                InvalidAddress {
                    addr: addr.to_owned(),
                    reason: e.to_string(),
                }
            })?;
        let channel = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true)
            .connect_lazy();
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}
