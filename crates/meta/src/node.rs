//! Starting and stopping a meta node: open the store (which locks the meta folder), start Raft,
//! serve RaftService and MetaService on one gRPC server, and on shutdown stop the server and
//! then Raft, so that when `run` returns nothing holds the store (nor the folder lock) any more.
//!
//! Initialisation is explicit: only a node started with `initialize` (`--init`) and an empty
//! store founds the group, with the configured peers as voters, and not even then if a peer
//! already belongs to a group. Any other node with an empty store waits to be contacted by the
//! leader, which sends it the log or a snapshot: a voter whose folder was wiped rejoins its
//! group rather than founding a second one.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{Config, SnapshotPolicy};
use tessera_client::tls::{ClusterTls, RoleGuardLayer};
use tessera_proto::meta::v1 as meta_pb;
use tessera_proto::meta::v1::meta_service_server::MetaServiceServer;
use tessera_proto::raft::v1::NodeStatusRequest;
use tessera_proto::raft::v1::raft_service_client::RaftServiceClient;
use tessera_proto::raft::v1::raft_service_server::RaftServiceServer;
use tessera_runtime::Shutdown;
use tessera_runtime::tls::Role;
use tessera_runtime::worker::WorkerRegistry;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tracing::{Instrument, info, warn};

use crate::channels::{ChannelPool, MAX_MESSAGE_BYTES};
use crate::config::MetaConfig;
use crate::error::MetaNodeError;
use crate::key_service::{KeyService, check_root_key, load_root_key, record_root_key};
use crate::meta_service::MetaGrpc;
use crate::network::NetworkFactory;
use crate::raft_service::RaftGrpc;
use crate::store::MetaStore;
use crate::types::MetaRaft;

/// Leader heartbeat period.
const HEARTBEAT_MS: u64 = 250;
/// Election timeouts: a follower that hears nothing for 1-2 s starts an election, so losing the
/// leader's zone costs a few seconds of writes at most.
const ELECTION_TIMEOUT_MIN_MS: u64 = 1000;
const ELECTION_TIMEOUT_MAX_MS: u64 = 2000;
/// A snapshot is taken every this many applied entries.
const SNAPSHOT_EVERY: u64 = 10_000;
/// Entries kept after a snapshot, so a briefly lagging follower catches up from the log.
const LOGS_KEPT_AFTER_SNAPSHOT: u64 = 1000;
/// Snapshot chunk size on the wire (and the most of a snapshot either side holds in memory).
const SNAPSHOT_CHUNK_BYTES: u64 = 4 * 1024 * 1024;
/// Time one snapshot chunk may take. The last one includes installing the whole snapshot on
/// the receiver, which for millions of records takes tens of seconds.
const SNAPSHOT_CHUNK_TIMEOUT_MS: u64 = 120_000;
/// How long initialisation waits for each peer to say whether it already belongs to a group.
const INIT_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long shutdown waits for Raft's tasks to release the store.
const STORE_RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Overrides `SNAPSHOT_EVERY` (entries between snapshots) when set to a positive number: for
/// tests that need a snapshot on disk soon, and for tuning.
pub const SNAPSHOT_EVERY_ENV: &str = "TESSERA_META_SNAPSHOT_EVERY";

fn snapshot_every() -> u64 {
    std::env::var(SNAPSHOT_EVERY_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(SNAPSHOT_EVERY)
}

/// The Raft configuration every meta node runs with.
pub fn raft_config() -> Result<Config, MetaNodeError> {
    let config = Config {
        cluster_name: "tessera-meta".to_owned(),
        heartbeat_interval: HEARTBEAT_MS,
        election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every()),
        max_in_snapshot_log_to_keep: LOGS_KEPT_AFTER_SNAPSHOT,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
        install_snapshot_timeout: SNAPSHOT_CHUNK_TIMEOUT_MS,
        ..Config::default()
    };
    config
        .validate()
        .map_err(|e| MetaNodeError::Raft(e.to_string()))
}

/// Runs a meta node on `config.listen` until `shutdown` trips.
pub async fn run(config: MetaConfig, shutdown: Shutdown) -> Result<(), MetaNodeError> {
    config.validate()?;
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| MetaNodeError::Bind {
                addr: config.listen.to_string(),
                source,
            })?;
    serve(config, listener, shutdown).await
}

/// Runs a meta node on an already bound listener (tests bind `:0` first) until `shutdown`
/// trips; `config.listen` is not used.
pub async fn serve(
    config: MetaConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), MetaNodeError> {
    serve_with_raft_config(config, listener, shutdown, raft_config()?).await
}

/// [`serve`] with another Raft configuration, for tests that need snapshots or elections to
/// happen sooner than in production.
pub async fn serve_with_raft_config(
    config: MetaConfig,
    listener: TcpListener,
    shutdown: Shutdown,
    raft_config: Config,
) -> Result<(), MetaNodeError> {
    let span = tracing::info_span!("meta_node", node_id = config.node_id);
    serve_node(config, listener, shutdown, raft_config)
        .instrument(span)
        .await
}

async fn serve_node(
    config: MetaConfig,
    listener: TcpListener,
    shutdown: Shutdown,
    raft_config: Config,
) -> Result<(), MetaNodeError> {
    config.validate()?;
    let dir = config.meta_dir();
    std::fs::create_dir_all(&dir).map_err(|source| MetaNodeError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    let root_key = load_root_key(config.root_key_file.as_deref())?;
    check_root_key(&dir, &root_key)?;
    let store = MetaStore::open(&dir)?;
    record_root_key(&dir, &root_key)?;
    let keys = Arc::new(KeyService::new(root_key, store.clone()));
    let tls = ClusterTls::optional(&config.tls, Role::Meta)?;
    let pool = ChannelPool::with_tls(tls.clone());
    let raft = MetaRaft::new(
        config.node_id,
        Arc::new(raft_config),
        NetworkFactory::new(pool.clone()),
        store.log_store(),
        store.state_machine(),
    )
    .await
    .map_err(|e| MetaNodeError::Raft(e.to_string()))?;

    let raft_service = RaftServiceServer::new(RaftGrpc::new(raft.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let own_process = meta_pb::ProcessId {
        role: "meta".to_owned(),
        id: config.node_id.to_string(),
        zone: config.zone.clone(),
        addr: config.advertised_addr(),
    };
    let meta_service = MetaServiceServer::new(
        MetaGrpc::new(
            config.node_id,
            raft.clone(),
            store.clone(),
            pool.clone(),
            config.liveness_timeouts(),
            keys.clone(),
        )
        .with_own_workers(own_process, WorkerRegistry::new()),
    )
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let local = listener.local_addr().ok();
    info!(
        node_id = config.node_id,
        zone = %config.zone,
        listen = ?local,
        "meta node serving"
    );
    let stop = shutdown.clone();
    // Small answers must not wait for the client's delayed ACK (Nagle): a read answered in
    // two writes would otherwise stall 40 ms.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = Server::builder();
    if let Some(tls) = &tls {
        builder = builder.tls_config(tls.server_config())?;
    }
    let server = builder
        .layer(RoleGuardLayer::new(tls.as_ref()))
        .add_service(raft_service)
        .add_service(meta_service)
        .serve_with_incoming_shutdown(incoming, async move { stop.wait().await });

    let init = tokio::spawn(initialize(raft.clone(), config.clone(), pool).in_current_span());
    let rewrap = tokio::spawn(
        crate::rewrap::run(
            config.node_id,
            raft.clone(),
            store.clone(),
            keys,
            shutdown.clone(),
        )
        .in_current_span(),
    );
    let served = server.await;
    init.abort();
    let _ = init.await;
    rewrap.abort();
    let _ = rewrap.await;
    if let Err(e) = raft.shutdown().await {
        warn!(error = %e, "raft did not stop cleanly");
    }
    drop(raft);
    wait_until_closed(&store).await;
    info!(node_id = config.node_id, "meta node stopped");
    served.map_err(MetaNodeError::from)
}

/// Waits (briefly) until the Raft tasks that still held the store have let go of it, so a node
/// restarted in the same process can open the database again.
async fn wait_until_closed(store: &MetaStore) {
    let deadline = tokio::time::Instant::now() + STORE_RELEASE_TIMEOUT;
    while store.handles() > 1 {
        if tokio::time::Instant::now() >= deadline {
            warn!(
                handles = store.handles(),
                "store still in use after shutdown"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With `initialize` set and no Raft state yet, founds the group with every configured voter,
/// unless a peer already belongs to a group (then this node waits to be contacted, as without
/// `initialize`). openraft accepts the call only on a node that has no log and no vote.
async fn initialize(raft: MetaRaft, config: MetaConfig, pool: ChannelPool) {
    // Give peers a moment to come up, so the first election does not start alone.
    tokio::time::sleep(Duration::from_millis(100)).await;
    match raft.is_initialized().await {
        Ok(true) => return,
        Ok(false) => {}
        Err(e) => {
            warn!(error = %e, "cannot read raft state");
            return;
        }
    }
    if !config.initialize {
        info!(
            node_id = config.node_id,
            "empty store and not told to initialise: waiting for the group's leader to contact this node"
        );
        return;
    }
    if let Some(peer) = peer_in_a_group(&config, &pool).await {
        warn!(
            node_id = config.node_id,
            peer,
            "not initialising: a peer already belongs to a group; waiting to be contacted instead"
        );
        return;
    }
    let members = config.initial_members();
    let voters = members.len();
    match raft.initialize(members).await {
        Ok(()) => info!(node_id = config.node_id, voters, "meta group initialised"),
        Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
            info!(node_id = config.node_id, reason = %e, "meta group already initialised");
        }
        Err(RaftError::APIError(InitializeError::NotInMembers(e))) => {
            warn!(node_id = config.node_id, error = %e, "this node is not a configured voter");
        }
        Err(RaftError::Fatal(e)) => warn!(error = %e, "raft stopped during initialisation"),
    }
}

/// The id of a configured peer that answers with a Raft term above zero (it belongs to an
/// initialised group), if any; peers that do not answer in time count as not in a group.
async fn peer_in_a_group(config: &MetaConfig, pool: &ChannelPool) -> Option<u64> {
    let probes = config
        .peers
        .iter()
        .filter(|p| p.node_id != config.node_id)
        .map(|peer| async move {
            let channel = pool.get(&peer.addr).ok()?;
            let mut client = RaftServiceClient::new(channel);
            let status = tokio::time::timeout(
                INIT_PROBE_TIMEOUT,
                client.node_status(NodeStatusRequest { read_index: false }),
            )
            .await
            .ok()?
            .ok()?
            .into_inner();
            (status.term > 0).then_some(peer.node_id)
        });
    futures::future::join_all(probes)
        .await
        .into_iter()
        .flatten()
        .next()
}
