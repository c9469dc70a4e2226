//! The data node process: opens the shard store, starts the scrubber, serves `DataService`,
//! registers with meta and sends heartbeats until shutdown.
//!
//! Invariant: serving never waits for meta. Registration retries with backoff in the
//! background (meta may start after us), and heartbeats begin once it succeeded.

use crate::config::DataConfig;
use crate::scrub::Scrubber;
use crate::service::{DataServiceImpl, server_builder};
use crate::store::{ShardStore, now_ms};
use crate::store_error::ShardStoreError;
use std::net::SocketAddr;
use std::time::Duration;
use tessera_client::MetaClient;
use tessera_proto::meta::v1 as meta_pb;
use tessera_proto::meta::v1::command::Cmd;
use tessera_proto::meta::v1::command_result::Result as CommandOutcome;
use tessera_runtime::Shutdown;
use tessera_runtime::config::ConfigError;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tracing::{Instrument, debug, info, info_span, warn};

/// How often a registered node reports its usage to meta.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// How long in-flight streams may run on after shutdown before the server is dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

const REGISTER_BACKOFF_FIRST: Duration = Duration::from_millis(100);
const REGISTER_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why a data node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DataNodeError {
    /// The config breaks a rule.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The shard store could not be opened.
    #[error("shard store: {0}")]
    Store(#[from] ShardStoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("data service failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

impl DataNodeError {
    /// Whether starting again may succeed without changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Config(_) => false,
            Self::Store(e) => e.is_retryable(),
            Self::Bind { .. } | Self::Serve(_) => true,
        }
    }

    /// A stable name for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Config(_) => "data_config_invalid",
            Self::Store(e) => e.code(),
            Self::Bind { .. } => "data_bind_failed",
            Self::Serve(_) => "data_serve_failed",
        }
    }
}

/// Runs a data node until `shutdown` trips: binds `config.listen`, then as [`run_on`].
pub async fn run(config: DataConfig, shutdown: Shutdown) -> Result<(), DataNodeError> {
    config.validate()?;
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| DataNodeError::Bind {
                addr: config.listen,
                source,
            })?;
    run_on(config, listener, shutdown).await
}

/// Runs a data node on an already bound listener (tests and harnesses bind port 0 first).
/// Without `advertise`, the node registers the listener's actual address.
pub async fn run_on(
    config: DataConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), DataNodeError> {
    config.validate()?;
    let span = info_span!("data_node", node_id = config.node_id, zone = %config.zone);
    serve(config, listener, shutdown).instrument(span).await
}

async fn serve(
    config: DataConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), DataNodeError> {
    let store = ShardStore::open(&config.data_dir).await?;
    let local = listener
        .local_addr()
        .map_err(|source| DataNodeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = config
        .advertise
        .clone()
        .unwrap_or_else(|| local.to_string());
    let (scrubber, scrub) = Scrubber::open(store.clone(), config.scrub()).await?;
    let scrubbing = tokio::spawn(
        scrubber
            .run(shutdown.clone())
            .instrument(info_span!("worker", worker = "scrubber")),
    );
    let service = DataServiceImpl::new(store.clone(), scrub, config.node_id, config.zone.clone());
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(30)));

    let node = meta_pb::DataNode {
        node_id: config.node_id,
        zone: config.zone.clone(),
        addr: addr.clone(),
        registered_ms: 0,
        // Registration keeps the state meta holds for a known node; a new node is active.
        state: meta_pb::NodeState::Active.into(),
    };
    let meta = MetaClient::new(config.meta_endpoints.clone());
    let membership = tokio::spawn(
        membership(meta, node, store, shutdown.clone()).instrument(tracing::Span::current()),
    );

    info!(
        node_id = config.node_id,
        zone = %config.zone,
        addr = %addr,
        listen = %local,
        "data node serving"
    );
    let stop = shutdown.clone();
    let server = server_builder()
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(incoming, async move { stop.wait().await });
    let result = tokio::select! {
        result = server => result,
        () = async { shutdown.wait().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            warn!(grace_s = SHUTDOWN_GRACE.as_secs(), "streams still open after shutdown grace; dropping them");
            Ok(())
        }
    };
    membership.abort();
    // The task was aborted or finished; either way there is nothing left to report.
    let _ = membership.await;
    if !shutdown.is_triggered() {
        // The server failed on its own; on shutdown the scrubber saves its cursor and stops.
        scrubbing.abort();
    }
    // Finished or aborted; the scrubber logs its own failures.
    let _ = scrubbing.await;
    result?;
    info!("data node stopped");
    Ok(())
}

/// Registers the node with meta (retrying), then heartbeats until shutdown.
async fn membership(
    meta: MetaClient,
    node: meta_pb::DataNode,
    store: ShardStore,
    shutdown: Shutdown,
) {
    let node = tokio::select! {
        () = shutdown.wait() => return,
        node = register(&meta, node) => node,
    };
    let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        let usage = store.usage();
        let request = meta_pb::HeartbeatRequest {
            node: Some(node.clone()),
            shards: usage.shards,
            used_bytes: usage.bytes,
        };
        tokio::select! {
            () = shutdown.wait() => return,
            () = meta.heartbeat_all(request) => {}
        }
    }
}

/// Sends `RegisterDataNode` until meta accepts it; returns the node as registered.
async fn register(meta: &MetaClient, mut node: meta_pb::DataNode) -> meta_pb::DataNode {
    let mut delay = REGISTER_BACKOFF_FIRST;
    let mut attempt: u64 = 0;
    loop {
        attempt += 1;
        node.registered_ms = now_ms();
        let command = meta_pb::Command {
            cmd: Some(Cmd::RegisterDataNode(meta_pb::RegisterDataNode {
                node: Some(node.clone()),
            })),
            ..meta_pb::Command::default()
        };
        match meta.execute(command).await {
            Ok(meta_pb::CommandResult {
                result: Some(CommandOutcome::Error(refusal)),
            }) => warn!(
                attempt,
                code = refusal.code,
                message = %refusal.message,
                "data node registration refused"
            ),
            Ok(_) => {
                info!(attempt, addr = %node.addr, "data node registered");
                return node;
            }
            Err(e) if attempt < 5 => {
                debug!(attempt, error = %e, "meta not reachable yet; registration retried");
            }
            Err(e) => warn!(attempt, error = %e, "data node registration failed; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(REGISTER_BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tessera_client::DataClient;

    #[tokio::test]
    async fn an_invalid_config_is_refused_before_binding() {
        let err = run(DataConfig::default(), Shutdown::new())
            .await
            .unwrap_err();
        assert!(matches!(err, DataNodeError::Config(_)), "{err}");
        assert_eq!(err.code(), "data_config_invalid");
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn the_node_serves_while_meta_is_unreachable_and_stops_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let unreachable_meta = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = DataConfig {
            node_id: 3,
            zone: "zone-c".into(),
            listen: addr,
            data_dir: dir.path().join("data"),
            meta_endpoints: vec![unreachable_meta],
            ..DataConfig::default()
        };
        let shutdown = Shutdown::new();
        let node = tokio::spawn(run_on(config, listener, shutdown.clone()));

        let client = DataClient::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let ping = loop {
            match client.ping(&addr.to_string()).await {
                Ok(ping) => break ping,
                Err(e) => {
                    assert!(Instant::now() < deadline, "node never answered: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        assert_eq!((ping.node_id, ping.zone.as_str()), (3, "zone-c"));
        assert!(dir.path().join("data").join("FORMAT").exists());

        // The scrubber runs from the start and answers for a requested pass.
        let pass = client.start_scrub(&addr.to_string()).await.unwrap().pass;
        assert!(pass >= 1);
        loop {
            let status = client.scrub_status(&addr.to_string()).await.unwrap();
            if status.passes_completed >= pass {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "scrub pass {pass} never ended: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(dir.path().join("data").join("scrub.state").exists());

        shutdown.trigger();
        let stopped = tokio::time::timeout(Duration::from_secs(5), node).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
    }
}
