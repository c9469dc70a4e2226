//! A whole dev cluster: started from its persisted layout (the start that creates the layout is
//! the only one that passes `--init`, to meta node 1), ready only when meta has a leader,
//! every data node heartbeats and the gateway answers HTTP. Named faults (`kill_zone`,
//! `restart_zone`, `kill_node`) act on processes by PID. Dropping a `DevCluster` kills every
//! child it started.

use crate::layout::{ClusterLayout, LayoutError, NodeRole, write_private};
use crate::process::ManagedProcess;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_client::tls::ClusterTls;
use tessera_client::{DataClient, MetaClient};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A TLS connector that trusts only the CA in `ca` (PEM).
fn https_connector(ca: &std::path::Path) -> Option<tokio_rustls::TlsConnector> {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(ca).ok()?;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.ok()?).ok()?;
    }
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Whether an HTTP/1.1 server answers a request on `stream`.
async fn http_answers<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> Option<bool> {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut buf = [0_u8; 12];
    stream.read_exact(&mut buf).await.ok()?;
    Some(buf.starts_with(b"HTTP/1.1"))
}

/// How to start a dev cluster.
#[derive(Debug, Clone)]
pub struct DevClusterSpec {
    /// The cluster's folder: layout, node folders, logs, dev.env, cluster.json.
    pub root: PathBuf,
    /// The `tessera` binary.
    pub binary: PathBuf,
    /// Gateway port on 127.0.0.1 (0 = any free port). Used only when the layout is created.
    pub gateway_port: u16,
    /// Data nodes per zone. Used only when the layout is created.
    pub data_per_zone: u32,
    /// How long start-up may take.
    pub ready_timeout: Duration,
    /// Extra environment for every child (e.g. RUST_LOG).
    pub extra_env: Vec<(String, String)>,
    /// Extra environment for single children, after `extra_env` (tests skew one node's clock
    /// or give one process a fault hook).
    pub node_env: Vec<NodeEnv>,
    /// Whether the S3 endpoint serves HTTPS (from the cluster's local CA) rather than plain
    /// HTTP. Node-to-node traffic uses mutual TLS either way.
    pub https: bool,
}

/// One environment variable for one child of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEnv {
    /// The child's role.
    pub role: NodeRole,
    /// The child's node id within its role.
    pub node_id: u64,
    /// The variable.
    pub key: String,
    /// Its value.
    pub value: String,
}

/// Why a dev cluster could not start or act.
#[derive(Debug, thiserror::Error)]
pub enum DevClusterError {
    /// The layout could not be read or written.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A process could not be started.
    #[error("cannot start {name}: {source}")]
    Spawn {
        /// The process.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// The cluster did not become ready in time.
    #[error("cluster not ready after {secs} s: {waiting_for}")]
    NotReady {
        /// The timeout.
        secs: u64,
        /// What was still missing.
        waiting_for: String,
    },
    /// Writing dev.env or cluster.json failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No process matches.
    #[error("no process {0}")]
    NoSuchProcess(String),
    /// The TLS material could not be made or read.
    #[error("tls: {0}")]
    Certs(#[from] tessera_runtime::tls::CaError),
    /// The operator's certificate is unusable.
    #[error("tls: {0}")]
    Tls(#[from] tessera_runtime::tls::TlsError),
}

/// One line of cluster.json.
#[derive(Debug, Serialize)]
struct ProcessEntry {
    role: NodeRole,
    node_id: u64,
    zone: Option<String>,
    pid: Option<u32>,
    listen: String,
    data_dir: String,
    log: String,
}

/// A running dev cluster.
pub struct DevCluster {
    spec: DevClusterSpec,
    layout: ClusterLayout,
    processes: Vec<ManagedProcess>,
    admin_tls: ClusterTls,
}

impl DevCluster {
    /// Starts (or restarts, from its layout) the cluster and waits until it is ready.
    pub async fn start(spec: DevClusterSpec) -> Result<Self, DevClusterError> {
        std::fs::create_dir_all(&spec.root).map_err(|source| DevClusterError::Write {
            path: spec.root.clone(),
            source,
        })?;
        let layout_path = spec.root.join("layout.json");
        crate::layout::ensure_root_key(&spec.root).map_err(|source| DevClusterError::Write {
            path: crate::layout::root_key_path(&spec.root),
            source,
        })?;
        // Only the start that creates the layout founds the meta group (`--init` on meta 1).
        let first_start = !layout_path.exists();
        let mut layout = if !first_start {
            ClusterLayout::load(&layout_path)?
        } else {
            ClusterLayout::new(&spec.root, spec.gateway_port, spec.data_per_zone)?
        };
        layout.https = spec.https;
        layout.save(&layout_path)?;
        crate::certs::ensure(&spec.root, &layout.nodes)?;
        let admin_tls = ClusterTls::load(&crate::certs::admin_paths(&spec.root))?;
        let mut cluster = Self {
            spec,
            layout,
            processes: Vec::new(),
            admin_tls,
        };
        let order = [
            NodeRole::Meta,
            NodeRole::Data,
            NodeRole::Gateway,
            NodeRole::Repair,
        ];
        for role in order {
            let specs: Vec<_> = cluster
                .layout
                .nodes
                .iter()
                .filter(|n| n.role == role)
                .cloned()
                .collect();
            for node in specs {
                cluster.spawn(&node, first_start)?;
            }
            // The gateway chooses the erasure layout from the data nodes it knows when it
            // starts; started before every data node registered, its first writes would take
            // the layout of a smaller cluster (RS(1,2) instead of RS(3,3)) until its next
            // refresh. So it starts once every data node is registered and healthy.
            if role == NodeRole::Data {
                cluster.wait_ready(cluster.spec.ready_timeout).await?;
            }
        }
        cluster.wait_ready(cluster.spec.ready_timeout).await?;
        cluster.write_files()?;
        Ok(cluster)
    }

    fn spawn(
        &mut self,
        node: &crate::layout::NodeSpec,
        first_start: bool,
    ) -> Result<(), DevClusterError> {
        let mut env = self.spec.extra_env.clone();
        env.extend(
            self.spec
                .node_env
                .iter()
                .filter(|e| e.role == node.role && e.node_id == node.node_id)
                .map(|e| (e.key.clone(), e.value.clone())),
        );
        let p = ManagedProcess::spawn(
            &self.spec.binary,
            node,
            &self.layout,
            &self.spec.root.join("logs"),
            &env,
            first_start,
        )
        .map_err(|source| DevClusterError::Spawn {
            name: node.name(),
            source,
        })?;
        self.processes.retain(|q| q.spec != p.spec);
        self.processes.push(p);
        Ok(())
    }

    /// The S3 endpoint.
    pub fn endpoint(&self) -> String {
        let port = self.layout.gateway().map(|g| g.port).unwrap_or(0);
        let scheme = if self.layout.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{port}")
    }

    /// The CA certificate S3 clients must trust for the endpoint, when it serves HTTPS.
    pub fn https_ca(&self) -> Option<PathBuf> {
        self.layout
            .https
            .then(|| crate::certs::https_ca_path(&self.spec.root))
    }

    /// The operator's mutual-TLS identity (an `admin` certificate from the cluster CA): what
    /// `tessera admin` and tests use to reach nodes the way nodes do.
    pub fn admin_tls(&self) -> &ClusterTls {
        &self.admin_tls
    }

    /// The root credentials (access key, secret key).
    pub fn credentials(&self) -> (&str, &str) {
        (&self.layout.access_key, &self.layout.secret_key)
    }

    /// The region the gateway serves.
    pub fn region(&self) -> &str {
        &self.layout.region
    }

    /// The persisted layout.
    pub fn layout(&self) -> &ClusterLayout {
        &self.layout
    }

    /// The cluster's folder.
    pub fn root(&self) -> &std::path::Path {
        &self.spec.root
    }

    /// A client for the meta nodes.
    pub fn meta_client(&self) -> MetaClient {
        MetaClient::with_tls(self.layout.meta_endpoints(), Some(&self.admin_tls))
    }

    /// The mutual-TLS identity of one process of the cluster (tests act as a gateway or a data
    /// node with it).
    pub fn tls_of(&self, role: NodeRole, node_id: u64) -> Result<ClusterTls, DevClusterError> {
        let spec = self
            .layout
            .nodes
            .iter()
            .find(|n| n.role == role && n.node_id == node_id)
            .ok_or_else(|| DevClusterError::NoSuchProcess(format!("{role:?} {node_id}")))?;
        Ok(ClusterTls::load(&crate::certs::node_paths(
            &self.spec.root,
            spec,
        ))?)
    }

    /// A client for the data nodes, as the operator.
    pub fn data_client(&self) -> DataClient {
        DataClient::with_tls(Some(self.admin_tls.clone()))
    }

    /// Waits until meta has a leader, every live data node is healthy and the gateway answers.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), DevClusterError> {
        let deadline = Instant::now() + timeout;
        let meta = self.meta_client();
        let running_data = self
            .processes
            .iter_mut()
            .filter(|p| p.spec.role == NodeRole::Data)
            .filter_map(|p| p.is_running().then_some(p.spec.node_id))
            .collect::<Vec<_>>();
        let gateway_running = self
            .processes
            .iter_mut()
            .any(|p| p.spec.role == NodeRole::Gateway && p.is_running());
        let mut waiting_for = String::from("meta leader");
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(3), meta.cluster_status()).await {
                Ok(Ok(status)) if status.leader_id.is_some() => {
                    let healthy: Vec<u64> = status
                        .data_nodes
                        .iter()
                        .filter(|d| d.healthy)
                        .filter_map(|d| d.node.as_ref().map(|n| n.node_id))
                        .collect();
                    let missing: Vec<u64> = running_data
                        .iter()
                        .copied()
                        .filter(|id| !healthy.contains(id))
                        .collect();
                    if !missing.is_empty() {
                        waiting_for = format!("data nodes {missing:?}");
                    } else if gateway_running && !self.gateway_answers().await {
                        waiting_for = "gateway".into();
                    } else {
                        return Ok(());
                    }
                }
                _ => waiting_for = "meta leader".into(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(DevClusterError::NotReady {
            secs: timeout.as_secs(),
            waiting_for,
        })
    }

    async fn gateway_answers(&self) -> bool {
        let Some(g) = self.layout.gateway() else {
            return false;
        };
        let https = self.https_ca();
        let attempt = async {
            let tcp = tokio::net::TcpStream::connect(g.addr()).await.ok()?;
            match https {
                Some(ca) => {
                    let connector = https_connector(&ca)?;
                    let name = rustls_pki_types::ServerName::try_from("localhost").ok()?;
                    let tls = connector.connect(name, tcp).await.ok()?;
                    http_answers(tls).await
                }
                None => http_answers(tcp).await,
            }
        };
        tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }

    /// Writes dev.env (endpoint and credentials, the CA to trust, the operator's certificate;
    /// mode 0600) and cluster.json (every process).
    pub fn write_files(&mut self) -> Result<(), DevClusterError> {
        let admin = crate::certs::admin_paths(&self.spec.root);
        let mut env = format!(
            "AWS_ENDPOINT_URL={}\nAWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\nAWS_REGION={}\nAWS_DEFAULT_REGION={}\nTESSERA_META={}\nTESSERA_TLS_CA={}\nTESSERA_TLS_CERT={}\nTESSERA_TLS_KEY={}\n",
            self.endpoint(),
            self.layout.access_key,
            self.layout.secret_key,
            self.layout.region,
            self.layout.region,
            self.layout.meta_endpoints().join(","),
            admin.ca.display(),
            admin.cert.display(),
            admin.key.display(),
        );
        if let Some(ca) = self.https_ca() {
            env.push_str(&format!("AWS_CA_BUNDLE={}\n", ca.display()));
        }
        let env_path = self.spec.root.join("dev.env");
        write_private(&env_path, env.as_bytes()).map_err(|source| DevClusterError::Write {
            path: env_path,
            source,
        })?;
        let entries: Vec<ProcessEntry> = self
            .processes
            .iter_mut()
            .map(|p| {
                let running = p.is_running();
                ProcessEntry {
                    role: p.spec.role,
                    node_id: p.spec.node_id,
                    zone: p.spec.zone.clone(),
                    pid: if running { p.pid() } else { None },
                    listen: p.spec.addr(),
                    data_dir: p.spec.data_dir.display().to_string(),
                    log: p.log_path.display().to_string(),
                }
            })
            .collect();
        let json = serde_json::to_string_pretty(&entries).unwrap_or_else(|_| "[]".into());
        let path = self.spec.root.join("cluster.json");
        write_private(&path, json.as_bytes())
            .map_err(|source| DevClusterError::Write { path, source })
    }

    /// SIGKILLs every process of `zone` (its meta node and its data nodes).
    pub async fn kill_zone(&mut self, zone: &str) -> Result<(), DevClusterError> {
        let mut found = false;
        for p in self
            .processes
            .iter_mut()
            .filter(|p| p.spec.zone.as_deref() == Some(zone))
        {
            p.kill().await;
            found = true;
        }
        if !found {
            return Err(DevClusterError::NoSuchProcess(zone.to_string()));
        }
        self.write_files()
    }

    /// Starts again every process of `zone`.
    pub async fn restart_zone(&mut self, zone: &str) -> Result<(), DevClusterError> {
        let specs: Vec<_> = self
            .layout
            .nodes
            .iter()
            .filter(|n| n.zone.as_deref() == Some(zone))
            .cloned()
            .collect();
        if specs.is_empty() {
            return Err(DevClusterError::NoSuchProcess(zone.to_string()));
        }
        for s in specs {
            self.spawn(&s, false)?;
        }
        self.write_files()
    }

    /// SIGKILLs one process.
    pub async fn kill_node(&mut self, role: NodeRole, node_id: u64) -> Result<(), DevClusterError> {
        let p = self
            .processes
            .iter_mut()
            .find(|p| p.spec.role == role && p.spec.node_id == node_id)
            .ok_or_else(|| DevClusterError::NoSuchProcess(format!("{role:?} {node_id}")))?;
        p.kill().await;
        self.write_files()
    }

    /// Starts one process again.
    pub async fn restart_node(
        &mut self,
        role: NodeRole,
        node_id: u64,
    ) -> Result<(), DevClusterError> {
        let spec = self
            .layout
            .nodes
            .iter()
            .find(|n| n.role == role && n.node_id == node_id)
            .cloned()
            .ok_or_else(|| DevClusterError::NoSuchProcess(format!("{role:?} {node_id}")))?;
        self.spawn(&spec, false)?;
        self.write_files()
    }

    /// Adds a new, empty data node to `zone` (kept in the layout, so restarts keep it) and
    /// starts it; returns its id.
    pub fn add_data_node(&mut self, zone: &str) -> Result<u64, DevClusterError> {
        let id = self
            .layout
            .nodes
            .iter()
            .filter(|n| n.role == NodeRole::Data)
            .map(|n| n.node_id)
            .max()
            .unwrap_or(0)
            + 1;
        let spec = crate::layout::NodeSpec {
            role: NodeRole::Data,
            node_id: id,
            zone: Some(zone.to_string()),
            port: crate::layout::free_port()?,
            data_dir: self.spec.root.join(format!("data-{id}")),
            metrics_port: None,
        };
        self.layout.nodes.push(spec.clone());
        self.layout.save(&self.spec.root.join("layout.json"))?;
        self.spawn(&spec, false)?;
        self.write_files()?;
        Ok(id)
    }

    /// Starts one more repair daemon, `repair-<id>`, beside the layout's (not kept in the
    /// layout); stopped with the cluster.
    pub fn start_extra_repair(&mut self, id: u64) -> Result<(), DevClusterError> {
        let spec = crate::layout::NodeSpec {
            role: NodeRole::Repair,
            node_id: id,
            zone: None,
            port: crate::layout::free_port()?,
            data_dir: self.spec.root.join(format!("repair-{id}")),
            metrics_port: None,
        };
        self.spawn(&spec, false)
    }

    /// Role and id of every process that is running now.
    pub fn running(&mut self) -> Vec<(NodeRole, u64)> {
        self.processes
            .iter_mut()
            .filter_map(|p| p.is_running().then_some((p.spec.role, p.spec.node_id)))
            .collect()
    }

    /// Names of processes that are not running.
    pub fn exited(&mut self) -> Vec<String> {
        self.processes
            .iter_mut()
            .filter_map(|p| (!p.is_running()).then(|| p.spec.name()))
            .collect()
    }

    /// The last lines of every process's log, for a failing test's report.
    pub fn log_tails(&self, lines: usize) -> String {
        self.processes
            .iter()
            .map(|p| format!("----- {} -----\n{}", p.spec.name(), p.log_tail(lines)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops every process: gateway first, then data, then meta; SIGTERM with a grace period.
    pub async fn stop(&mut self) {
        for role in [
            NodeRole::Repair,
            NodeRole::Gateway,
            NodeRole::Data,
            NodeRole::Meta,
        ] {
            for p in self.processes.iter_mut().filter(|p| p.spec.role == role) {
                p.terminate(Duration::from_secs(10)).await;
            }
        }
    }
}
