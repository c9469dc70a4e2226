//! The data node process: opens (and locks) the shard store, serves `DataService`, and runs its
//! workers until shutdown: the scrubber, the membership worker (registration, then
//! heartbeats) and the reporter that tells every meta node about the node's workers.
//!
//! Invariant: serving never waits for meta (registration retries in the background, as meta
//! may start after us), and two processes never share one data folder (the store holds its
//! lock for the node's whole life). On shutdown the server drains its streams (up to
//! [`SHUTDOWN_GRACE`]) before the workers stop, so the node keeps heartbeating while it still
//! serves.

use crate::config::DataConfig;
use crate::membership::Membership;
use crate::scrub::Scrubber;
use crate::service::{DataServiceImpl, server_builder};
use crate::store::ShardStore;
use crate::store_error::ShardStoreError;
use std::net::SocketAddr;
use std::time::Duration;
use tessera_client::MetaClient;
use tessera_client::tls::{ClusterTls, RoleGuardLayer};
use tessera_client::workers::{ProcessIdentity, WorkerReporter};
use tessera_proto::meta::v1 as meta_pb;
use tessera_runtime::Shutdown;
use tessera_runtime::config::ConfigError;
use tessera_runtime::tls::Role;
use tessera_runtime::worker::{WorkerRegistry, spawn_worker};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tracing::{Instrument, info, info_span, warn};

/// How long in-flight streams may run on after shutdown before the server is dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why a data node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DataNodeError {
    /// The config breaks a rule.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The shard store could not be opened (locked by another process, of an earlier format,
    /// unreadable).
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
    /// The mutual-TLS files are incomplete, unreadable or not a data node's.
    #[error("tls: {0}")]
    Tls(#[from] tessera_runtime::tls::TlsError),
}

impl DataNodeError {
    /// Whether starting again may succeed without changing anything.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Config(_) | Self::Tls(_) => false,
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
            Self::Tls(_) => "data_tls",
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
    run_with_registry(config, listener, shutdown, WorkerRegistry::new()).await
}

/// As [`run_on`], with the node's workers registered in `registry` (so the caller can list
/// them, or export them as metrics).
pub async fn run_with_registry(
    config: DataConfig,
    listener: TcpListener,
    shutdown: Shutdown,
    registry: WorkerRegistry,
) -> Result<(), DataNodeError> {
    config.validate()?;
    let span =
        info_span!("data_node", node_id = config.node_id, zone = %config.zone, role = "data");
    serve(config, listener, shutdown, registry)
        .instrument(span)
        .await
}

async fn serve(
    config: DataConfig,
    listener: TcpListener,
    shutdown: Shutdown,
    registry: WorkerRegistry,
) -> Result<(), DataNodeError> {
    let tls = ClusterTls::optional(&config.tls, Role::Data)?;
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

    // Workers stop only after the server has drained: see the module invariant.
    let workers_stop = Shutdown::new();
    let (scrubber, scrub) = Scrubber::open(store.clone(), config.scrub()).await?;
    let mut workers = vec![scrubber.spawn(&registry, workers_stop.clone())];
    let node = meta_pb::DataNode {
        node_id: config.node_id,
        zone: config.zone.clone(),
        addr: addr.clone(),
        registered_ms: 0,
        // Registration keeps the state meta holds for a known node; a new node is active.
        state: meta_pb::NodeState::Active.into(),
    };
    let meta = MetaClient::with_tls(config.meta_endpoints.clone(), tls.as_ref());
    workers.push(spawn_worker(
        Membership::new(meta.clone(), node, store.clone()),
        &registry,
        workers_stop.clone(),
    ));
    let process = ProcessIdentity {
        role: "data".to_owned(),
        id: config.node_id.to_string(),
        zone: config.zone.clone(),
        addr: addr.clone(),
    };
    workers.push(spawn_worker(
        WorkerReporter::new(meta, process, registry.clone()),
        &registry,
        workers_stop.clone(),
    ));

    let service = DataServiceImpl::new(store, scrub, config.node_id, config.zone.clone());
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(30)));
    info!(
        node_id = config.node_id,
        zone = %config.zone,
        addr = %addr,
        listen = %local,
        "data node serving"
    );
    let stop = shutdown.clone();
    let mut builder = server_builder();
    if let Some(tls) = &tls {
        builder = builder.tls_config(tls.server_config())?;
    }
    let server = builder
        .layer(RoleGuardLayer::new(tls.as_ref()))
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(incoming, async move { stop.wait().await });
    let result = tokio::select! {
        result = server => result,
        () = async { shutdown.wait().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            warn!(grace_s = SHUTDOWN_GRACE.as_secs(), "streams still open after shutdown grace; dropping them");
            Ok(())
        }
    };
    workers_stop.trigger();
    for worker in workers {
        worker.stopped().await;
    }
    result?;
    info!("data node stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tessera_proto::data::v1 as pb;
    use tessera_proto::data::v1::data_service_client::DataServiceClient;
    use tessera_runtime::worker::WorkerStatus;
    use tonic::transport::Channel;

    #[tokio::test]
    async fn an_invalid_config_is_refused_before_binding() {
        let err = run(DataConfig::default(), Shutdown::new())
            .await
            .unwrap_err();
        // The default names no node: the first rule refuses it.
        assert!(
            matches!(
                &err,
                DataNodeError::Config(ConfigError::Invalid(message))
                    if message == "data node: node_id must be set (and not 0)"
            ),
            "{err}"
        );
        assert_eq!(err.code(), "data_config_invalid");
        assert!(!err.is_retryable());
    }

    fn node_config(dir: &std::path::Path, addr: SocketAddr, meta: String) -> DataConfig {
        DataConfig {
            node_id: 3,
            zone: "zone-c".into(),
            listen: addr,
            data_dir: dir.join("data"),
            meta_endpoints: vec![meta],
            ..DataConfig::default()
        }
    }

    fn unreachable_meta() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    /// Polls `registry` until worker `name` satisfies `done` (deadline 15 s).
    async fn worker_until(
        registry: &WorkerRegistry,
        name: &str,
        done: impl Fn(&WorkerStatus) -> bool,
    ) -> WorkerStatus {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = registry.get(name).filter(|s| done(s)) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "worker {name}: {:?}",
                registry.get(name)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn the_node_serves_while_meta_is_unreachable_and_stops_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = node_config(dir.path(), addr, unreachable_meta());
        let shutdown = Shutdown::new();
        let registry = WorkerRegistry::new();
        let node = tokio::spawn(run_with_registry(
            config.clone(),
            listener,
            shutdown.clone(),
            registry.clone(),
        ));

        let deadline = Instant::now() + Duration::from_secs(10);
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        let mut client = DataServiceClient::new(channel);
        let ping = loop {
            match client.ping(pb::PingRequest {}).await {
                Ok(ping) => break ping.into_inner(),
                Err(e) => {
                    assert!(Instant::now() < deadline, "node never answered: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        assert_eq!((ping.node_id, ping.zone.as_str()), (3, "zone-c"));
        let data = dir.path().join("data");
        assert_eq!(
            std::fs::read_to_string(data.join("FORMAT")).unwrap().trim(),
            "tessera-data 2"
        );

        // A second node on the same folder is refused, naming the holder.
        let second = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let second_addr = second.local_addr().unwrap();
        let err = run_on(
            DataConfig {
                node_id: 4,
                ..node_config(dir.path(), second_addr, unreachable_meta())
            },
            second,
            Shutdown::new(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(
                &err,
                DataNodeError::Store(ShardStoreError::Locked {
                    source: tessera_runtime::dirlock::DirLockError::Held { dir, holder },
                }) if *dir == data && *holder == format!("{} data", std::process::id())
            ),
            "{err}"
        );
        assert_eq!(err.code(), "store_locked");
        assert!(
            err.to_string()
                .contains(&format!("{} data", std::process::id())),
            "{err}"
        );

        // The scrubber runs from the start and answers for a requested pass.
        let pass = client
            .start_scrub(pb::StartScrubRequest {})
            .await
            .unwrap()
            .into_inner()
            .pass;
        assert!(pass >= 1);
        loop {
            let status = client
                .scrub_status(pb::ScrubStatusRequest {})
                .await
                .unwrap()
                .into_inner();
            if status.passes_completed >= pass {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "scrub pass {pass} never ended: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(data.join("scrub.state").exists());

        // Every worker is registered: the scrubber, membership (still registering, as meta
        // is unreachable) and the reporter.
        let scrub = worker_until(&registry, "scrub", |s| s.steps > 0).await;
        assert!(scrub.progress.text.starts_with("pass "), "{scrub:?}");
        let heartbeat = worker_until(&registry, "heartbeat", |s| s.steps > 0).await;
        assert!(
            heartbeat.progress.text.starts_with("registering: attempt"),
            "{heartbeat:?}"
        );
        worker_until(&registry, "worker-report", |s| s.steps > 0).await;

        shutdown.trigger();
        let stopped = tokio::time::timeout(Duration::from_secs(5), node).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "{stopped:?}");
        for worker in registry.snapshot() {
            assert_eq!(
                worker.state,
                tessera_runtime::worker::WorkerState::Stopped,
                "{worker:?}"
            );
        }

        // The folder is free again once the node stopped.
        drop(ShardStore::open(&data).await.unwrap());
    }
}
