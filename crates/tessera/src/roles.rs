//! The long-running roles: flags (or a TOML config file, which flags and `TESSERA_*`
//! variables override) become each role's typed config, then the role runs until SIGTERM or
//! Ctrl-C.

use anyhow::{Context, Result, bail};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use tessera_runtime::{Secret, Shutdown};
use tracing::Instrument;

/// Mutual TLS between nodes, shared by every role and `tessera admin`: the cluster CA and
/// this process's certificate and key (`tessera admin ca` makes them). Required.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// The cluster CA certificate (PEM).
    #[arg(long = "tls-ca", env = "TESSERA_TLS_CA")]
    pub ca: Option<PathBuf>,
    /// This process's certificate (PEM), issued by the cluster CA for its role.
    #[arg(long = "tls-cert", env = "TESSERA_TLS_CERT")]
    pub cert: Option<PathBuf>,
    /// This process's private key (PEM).
    #[arg(long = "tls-key", env = "TESSERA_TLS_KEY")]
    pub key: Option<PathBuf>,
}

impl TlsArgs {
    /// `config` with the flags applied over it; an error when the result lacks any file.
    pub fn apply(
        &self,
        config: tessera_runtime::tls::TlsConfig,
    ) -> Result<tessera_runtime::tls::TlsConfig> {
        let config = config.overridden(self.ca.clone(), self.cert.clone(), self.key.clone());
        config.required()?;
        Ok(config)
    }
}

/// Flags of `tessera meta`.
#[derive(Debug, Args)]
pub struct MetaArgs {
    /// TOML config file (flags override it).
    #[arg(long, env = "TESSERA_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
    /// This node's Raft id.
    #[arg(long, env = "TESSERA_NODE_ID")]
    id: Option<u64>,
    /// This node's zone.
    #[arg(long, env = "TESSERA_ZONE")]
    zone: Option<String>,
    /// gRPC listen address.
    #[arg(long, env = "TESSERA_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address other nodes use to reach this one (default: --listen).
    #[arg(long, env = "TESSERA_ADVERTISE")]
    advertise: Option<String>,
    /// Folder for the Raft log and state machine.
    #[arg(long, env = "TESSERA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Every voter, this one included: ID=HOST:PORT@ZONE (repeat the flag).
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Milliseconds without a heartbeat before a data node is suspect (default 3000).
    #[arg(long, env = "TESSERA_SUSPECT_AFTER_MS")]
    suspect_after_ms: Option<u64>,
    /// Milliseconds without a heartbeat before a data node is dead (default 60000).
    #[arg(long, env = "TESSERA_DEAD_AFTER_MS")]
    dead_after_ms: Option<u64>,
    /// Found a new group with the --peer voters if this node's store is empty. Give it to one
    /// node, on the very first start of a cluster only: without it a node with an empty store
    /// waits to be contacted by the group's leader (a wiped voter rejoins that way).
    #[arg(long = "init", env = "TESSERA_META_INIT")]
    init: bool,
    /// File holding the root key (64 hex digits) that key-encryption keys are wrapped under;
    /// without it the key is read from TESSERA_ROOT_KEY. Every meta node needs the same key,
    /// and a node refuses to start with another key than the one it first started with.
    #[arg(long, env = "TESSERA_ROOT_KEY_FILE")]
    root_key_file: Option<PathBuf>,
}

/// Flags of `tessera data`.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// TOML config file (flags override it).
    #[arg(long, env = "TESSERA_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
    /// This node's id.
    #[arg(long, env = "TESSERA_NODE_ID")]
    id: Option<u64>,
    /// This node's zone (failure domain).
    #[arg(long, env = "TESSERA_ZONE")]
    zone: Option<String>,
    /// gRPC listen address.
    #[arg(long, env = "TESSERA_LISTEN")]
    listen: Option<SocketAddr>,
    /// Address the gateway uses to reach this node (default: --listen).
    #[arg(long, env = "TESSERA_ADVERTISE")]
    advertise: Option<String>,
    /// Folder for shard files.
    #[arg(long, env = "TESSERA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Meta nodes, comma-separated HOST:PORT.
    #[arg(long, env = "TESSERA_META", value_delimiter = ',')]
    meta: Vec<String>,
    /// Scrubber read rate in bytes per second (0 = unthrottled).
    #[arg(long, env = "TESSERA_SCRUB_RATE_BYTES")]
    scrub_rate_bytes: Option<u64>,
    /// Seconds between the end of one scrub pass and the start of the next.
    #[arg(long, env = "TESSERA_SCRUB_INTERVAL_SECS")]
    scrub_interval_secs: Option<u64>,
}

/// Flags of `tessera gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// TOML config file (flags override it).
    #[arg(long, env = "TESSERA_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
    /// S3 listen address.
    #[arg(long, env = "TESSERA_LISTEN")]
    listen: Option<SocketAddr>,
    /// Meta nodes, comma-separated HOST:PORT.
    #[arg(long, env = "TESSERA_META", value_delimiter = ',')]
    meta: Vec<String>,
    /// Region served.
    #[arg(long, env = "TESSERA_REGION")]
    region: Option<String>,
    /// Root access key (prefer the environment variable).
    #[arg(long, env = "TESSERA_ROOT_ACCESS_KEY", hide_env_values = true)]
    root_access_key: Option<String>,
    /// Root secret key; only from the environment or the config file, never a flag.
    #[arg(skip)]
    _secret: (),
    /// Seconds a client may stay silent mid-body before the request fails (default 60).
    #[arg(long, env = "TESSERA_BODY_IDLE_TIMEOUT_SECS")]
    body_idle_timeout_secs: Option<u64>,
    /// Seconds a client has to send its request headers (default 30).
    #[arg(long, env = "TESSERA_HEADER_READ_TIMEOUT_SECS")]
    header_read_timeout_secs: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics (off when unset).
    #[arg(long, env = "TESSERA_GATEWAY_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Serve the S3 endpoint over HTTPS with this certificate chain (PEM; read again when it
    /// changes). Plain HTTP without it.
    #[arg(long, env = "TESSERA_HTTPS_CERT", requires = "https_key")]
    https_cert: Option<PathBuf>,
    /// The HTTPS certificate's private key (PEM).
    #[arg(long, env = "TESSERA_HTTPS_KEY", requires = "https_cert")]
    https_key: Option<PathBuf>,
    /// Take SSE-C (customer key) requests over plain HTTP, which S3 refuses because the key
    /// would travel in clear. For local testing with tools that cannot use HTTPS only.
    #[arg(long, env = "TESSERA_SSE_C_OVER_HTTP")]
    sse_c_over_http: bool,
}

/// Flags of `tessera repair`.
#[derive(Debug, Args)]
pub struct RepairArgs {
    /// TOML config file (flags override it).
    #[arg(long, env = "TESSERA_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
    /// Name of this daemon in repair reports (unique per daemon; default repair-1).
    #[arg(long, env = "TESSERA_REPAIR_ID")]
    id: Option<String>,
    /// Meta nodes, comma-separated HOST:PORT.
    #[arg(long, env = "TESSERA_META", value_delimiter = ',')]
    meta: Vec<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = "TESSERA_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Milliseconds between passes when there is nothing to repair (default 10000).
    #[arg(long, env = "TESSERA_REPAIR_INTERVAL_MS")]
    scan_interval_ms: Option<u64>,
    /// Seconds before garbage and orphaned shards are deleted (default 3600).
    #[arg(long, env = "TESSERA_GC_GRACE_SECS")]
    gc_grace_secs: Option<u64>,
    /// Blobs rebuilt at the same time (default 16).
    #[arg(long, env = "TESSERA_REPAIR_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Cap on rebuilt bytes per second (0 = no cap, the default).
    #[arg(long, env = "TESSERA_REPAIR_RATE_BYTES")]
    rate_bytes_per_sec: Option<u64>,
}

fn parse_peer(s: &str) -> Result<tessera_meta::MetaPeer> {
    let (id, rest) = s
        .split_once('=')
        .context("peer must be ID=HOST:PORT@ZONE")?;
    let (addr, zone) = rest
        .split_once('@')
        .context("peer must be ID=HOST:PORT@ZONE")?;
    Ok(tessera_meta::MetaPeer {
        node_id: id.parse().context("peer id must be a number")?,
        addr: addr.to_string(),
        zone: zone.to_string(),
    })
}

fn shutdown_on_signals() -> Shutdown {
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    shutdown
}

/// Runs a meta node.
pub async fn run_meta(args: MetaArgs) -> Result<()> {
    let mut config: tessera_meta::MetaConfig = match &args.config {
        Some(path) => tessera_runtime::config::load_required(path)?,
        None => tessera_meta::MetaConfig {
            node_id: args.id.context("--id is required")?,
            zone: args.zone.clone().context("--zone is required")?,
            listen: args.listen.context("--listen is required")?,
            advertise: None,
            data_dir: args.data_dir.clone().context("--data-dir is required")?,
            peers: Vec::new(),
            suspect_after_ms: tessera_meta::config::DEFAULT_SUSPECT_AFTER_MS,
            dead_after_ms: tessera_meta::config::DEFAULT_DEAD_AFTER_MS,
            initialize: false,
            root_key_file: None,
            tls: Default::default(),
        },
    };
    if args.init {
        config.initialize = true;
    }
    if let Some(id) = args.id {
        config.node_id = id;
    }
    if let Some(zone) = args.zone {
        config.zone = zone;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if args.advertise.is_some() {
        config.advertise = args.advertise;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if args.root_key_file.is_some() {
        config.root_key_file = args.root_key_file;
    }
    if let Some(ms) = args.suspect_after_ms {
        config.suspect_after_ms = ms;
    }
    if let Some(ms) = args.dead_after_ms {
        config.dead_after_ms = ms;
    }
    if !args.peers.is_empty() {
        config.peers = args
            .peers
            .iter()
            .map(|p| parse_peer(p))
            .collect::<Result<_>>()?;
    }
    config.tls = args.tls.apply(config.tls)?;
    config.validate()?;
    let span =
        tracing::info_span!("node", role = "meta", node_id = config.node_id, zone = %config.zone);
    tessera_meta::run(config, shutdown_on_signals())
        .instrument(span)
        .await?;
    Ok(())
}

/// Runs a data node.
pub async fn run_data(args: DataArgs) -> Result<()> {
    let mut config: tessera_data::DataConfig = match &args.config {
        Some(path) => tessera_runtime::config::load_required(path)?,
        None => tessera_data::DataConfig {
            node_id: args.id.context("--id is required")?,
            zone: args.zone.clone().context("--zone is required")?,
            listen: args.listen.context("--listen is required")?,
            data_dir: args.data_dir.clone().context("--data-dir is required")?,
            meta_endpoints: Vec::new(),
            ..tessera_data::DataConfig::default()
        },
    };
    if let Some(id) = args.id {
        config.node_id = id;
    }
    if let Some(zone) = args.zone {
        config.zone = zone;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if args.advertise.is_some() {
        config.advertise = args.advertise;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if !args.meta.is_empty() {
        config.meta_endpoints = args.meta;
    }
    if let Some(rate) = args.scrub_rate_bytes {
        config.scrub_rate_bytes_per_sec = rate;
    }
    if let Some(secs) = args.scrub_interval_secs {
        config.scrub_interval_secs = secs;
    }
    config.tls = args.tls.apply(config.tls)?;
    config.validate()?;
    let span =
        tracing::info_span!("node", role = "data", node_id = config.node_id, zone = %config.zone);
    tessera_data::run(config, shutdown_on_signals())
        .instrument(span)
        .await?;
    Ok(())
}

/// Runs the gateway.
pub async fn run_gateway(args: GatewayArgs) -> Result<()> {
    let secret = std::env::var("TESSERA_ROOT_SECRET_KEY")
        .ok()
        .map(Secret::new);
    let mut config: tessera_gateway::GatewayConfig = match &args.config {
        Some(path) => tessera_runtime::config::load_required(path)?,
        None => tessera_gateway::GatewayConfig::new(
            args.listen.context("--listen is required")?,
            args.meta.clone(),
            args.root_access_key
                .clone()
                .context("TESSERA_ROOT_ACCESS_KEY is required")?,
            secret
                .clone()
                .context("TESSERA_ROOT_SECRET_KEY is required")?,
        ),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if !args.meta.is_empty() {
        config.meta_endpoints = args.meta;
    }
    if let Some(region) = args.region {
        config.region = region;
    }
    if let Some(key) = args.root_access_key {
        config.root_access_key = key;
    }
    if let Some(secret) = secret {
        config.root_secret_key = secret;
    }
    if let Some(secs) = args.body_idle_timeout_secs {
        config.body_idle_timeout_secs = secs;
    }
    if let Some(secs) = args.header_read_timeout_secs {
        config.header_read_timeout_secs = secs;
    }
    if let Some(addr) = args.metrics_listen {
        config.metrics_listen = Some(addr);
    }
    if let (Some(cert), Some(key)) = (args.https_cert, args.https_key) {
        config.https = Some(tessera_gateway::config::HttpsConfig { cert, key });
    }
    if args.sse_c_over_http {
        config.sse_c_over_http = true;
    }
    if config.meta_endpoints.is_empty() {
        bail!("--meta is required");
    }
    config.tls = args.tls.apply(config.tls)?;
    let span = tracing::info_span!("node", role = "gateway", node_id = 1_u64);
    tessera_gateway::run(config, shutdown_on_signals())
        .instrument(span)
        .await?;
    Ok(())
}

/// Runs the repair daemon.
pub async fn run_repair(args: RepairArgs) -> Result<()> {
    let mut config: tessera_repair::RepairConfig = match &args.config {
        Some(path) => tessera_runtime::config::load_required(path)?,
        None => tessera_repair::RepairConfig::default(),
    };
    if let Some(id) = args.id {
        config.id = id;
    }
    if !args.meta.is_empty() {
        config.meta_endpoints = args.meta;
    } else if args.config.is_none() {
        bail!("--meta is required");
    }
    if args.metrics_listen.is_some() {
        config.metrics_listen = args.metrics_listen;
    }
    if let Some(ms) = args.scan_interval_ms {
        config.scan_interval_ms = ms;
    }
    if let Some(secs) = args.gc_grace_secs {
        config.gc_grace_secs = secs;
    }
    if let Some(n) = args.concurrency {
        config.concurrency = n;
    }
    if let Some(rate) = args.rate_bytes_per_sec {
        config.rate_bytes_per_sec = rate;
    }
    config.tls = args.tls.apply(config.tls)?;
    config.validate()?;
    let span = tracing::info_span!("node", role = "repair", id = %config.id);
    tessera_repair::run(config, shutdown_on_signals())
        .instrument(span)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy")
            .join(name)
    }

    #[test]
    fn deploy_templates_are_valid_role_configs() {
        let meta: tessera_meta::MetaConfig =
            tessera_runtime::config::load_required(&template("meta.toml")).expect("meta.toml");
        meta.validate().expect("meta config valid");
        assert_eq!(meta.peers.len(), 3);
        assert_eq!((meta.suspect_after_ms, meta.dead_after_ms), (3000, 60_000));
        assert!(
            !meta.initialize,
            "the template must not initialise on every start"
        );
        let data: tessera_data::DataConfig =
            tessera_runtime::config::load_required(&template("data.toml")).expect("data.toml");
        data.validate().expect("data config valid");
        let mut gateway: tessera_gateway::GatewayConfig =
            tessera_runtime::config::load_required(&template("gateway.toml"))
                .expect("gateway.toml");
        assert!(
            !format!("{gateway:?}").contains("CHANGE-ME-SECRET"),
            "secret leaked in Debug"
        );
        // The template's placeholder credentials are refused until an operator replaces them.
        match gateway.validate() {
            Err(tessera_runtime::config::ConfigError::Invalid(why)) => {
                assert!(why.contains("CHANGE-ME placeholder"), "{why}");
            }
            other => panic!("template credentials must be refused, got {other:?}"),
        }
        assert_eq!(gateway.http, tessera_gateway::config::HttpLimits::default());
        assert_eq!(gateway.max_aws_chunk_size, 16 * 1024 * 1024);
        gateway.root_access_key = "TESSREALKEY".into();
        gateway.root_secret_key = Secret::new("a-real-secret-key-0123".into());
        gateway
            .validate()
            .expect("gateway config valid once credentials are set");
        let repair: tessera_repair::RepairConfig =
            tessera_runtime::config::load_required(&template("repair.toml")).expect("repair.toml");
        repair.validate().expect("repair config valid");
        // Every template configures mutual TLS (it is required), the gateway HTTPS too.
        for tls in [&meta.tls, &data.tls, &gateway.tls, &repair.tls] {
            tls.required()
                .expect("the template names all three TLS files");
        }
        let https = gateway
            .https
            .as_ref()
            .expect("the gateway template serves HTTPS");
        assert!(https.cert.ends_with("s3.pem") && https.key.ends_with("s3.key"));
        assert_eq!(repair.meta_endpoints.len(), 3);
        assert!(
            !format!("{gateway:?}").contains("a-real-secret-key-0123"),
            "secret leaked in Debug"
        );
    }

    #[test]
    fn peers_parse_and_bad_peers_are_rejected() {
        let p = parse_peer("2=meta-b:7001@zone-b").expect("peer");
        assert_eq!(
            (p.node_id, p.addr.as_str(), p.zone.as_str()),
            (2, "meta-b:7001", "zone-b")
        );
        // The peer is an anyhow error for the command line: its message is what the operator
        // reads, so the message is what is asserted.
        let no_id = parse_peer("meta-b:7001@zone-b").expect_err("no ID=");
        assert_eq!(no_id.to_string(), "peer must be ID=HOST:PORT@ZONE");
        let no_zone = parse_peer("2=meta-b:7001").expect_err("no @ZONE");
        assert_eq!(no_zone.to_string(), "peer must be ID=HOST:PORT@ZONE");
        let bad_id = parse_peer("x=meta-b:7001@zone-b").expect_err("id x");
        assert_eq!(bad_id.to_string(), "peer id must be a number");
        assert!(
            bad_id.downcast_ref::<std::num::ParseIntError>().is_some(),
            "the cause is the id's parse error: {bad_id:?}"
        );
    }
}
