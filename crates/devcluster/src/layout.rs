//! The persisted shape of a dev cluster: which node has which id, zone, port and folder, and the
//! root credentials. Written once at first start (`DIR/layout.json`, mode 0600 because it holds
//! the credentials) and reused on restart, so a restarted cluster finds every object again.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The zones of a dev cluster.
pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

/// What a process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// `tessera meta`
    Meta,
    /// `tessera data`
    Data,
    /// `tessera gateway`
    Gateway,
    /// `tessera repair` (its port serves Prometheus metrics)
    Repair,
}

impl NodeRole {
    /// The subcommand that runs this role.
    pub fn subcommand(self) -> &'static str {
        match self {
            Self::Meta => "meta",
            Self::Data => "data",
            Self::Gateway => "gateway",
            Self::Repair => "repair",
        }
    }
}

/// One process of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeSpec {
    /// Its role.
    pub role: NodeRole,
    /// Node id (unique per role).
    pub node_id: u64,
    /// Its zone; the gateway has none.
    pub zone: Option<String>,
    /// Its listen port on 127.0.0.1.
    pub port: u16,
    /// Its data folder.
    pub data_dir: PathBuf,
    /// Where it serves Prometheus metrics on 127.0.0.1, when that is not `port` itself (the
    /// gateway's S3 port serves S3 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<u16>,
}

impl NodeSpec {
    /// A short unique name, used for log files.
    pub fn name(&self) -> String {
        match &self.zone {
            Some(z) => format!("{}-{}-{}", self.role.subcommand(), z, self.node_id),
            None => format!("{}-{}", self.role.subcommand(), self.node_id),
        }
    }

    /// host:port of its listener.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// host:port of its metrics listener, if it has one of its own.
    pub fn metrics_addr(&self) -> Option<String> {
        self.metrics_port.map(|p| format!("127.0.0.1:{p}"))
    }
}

/// Every process of the cluster and its credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterLayout {
    /// Format of this file.
    pub format: u32,
    /// All processes.
    pub nodes: Vec<NodeSpec>,
    /// Root access key.
    pub access_key: String,
    /// Root secret key.
    pub secret_key: String,
    /// Region the gateway serves.
    pub region: String,
    /// Whether the S3 endpoint serves HTTPS (the default) or plain HTTP (`tessera dev --http`).
    #[serde(default = "https_by_default")]
    pub https: bool,
}

fn https_by_default() -> bool {
    true
}

/// A layout that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// File I/O failed.
    #[error("layout file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a layout.
    #[error("layout file {path} is invalid: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// No free port could be found.
    #[error("no free port: {0}")]
    Port(std::io::Error),
}

/// Ports this process has handed out, so two layouts made side by side (parallel tests) never
/// get the same port before their processes bind it.
static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// How many random ports `free_port` tries before it gives up.
const PORT_TRIES: usize = 2000;

/// A port on 127.0.0.1 that nothing listens on now, chosen below the kernel's ephemeral range.
///
/// A port learnt by binding :0 comes from the ephemeral range, the same range outgoing
/// connections take their local port from; between learning it and the node binding it, any
/// connection (another test's client, a node dialling a peer) can take it, and the node fails
/// with "address in use". Ports below that range are never given to outgoing connections.
pub fn free_port() -> Result<u16, LayoutError> {
    let (low, high) =
        listen_range(&std::fs::read_to_string(EPHEMERAL_RANGE_FILE).unwrap_or_default());
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut last_error = None;
    for _ in 0..PORT_TRIES {
        let port = rand::random_range(low..=high);
        if handed.contains(&port) {
            continue;
        }
        match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(_) => {
                handed.insert(port);
                return Ok(port);
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(LayoutError::Port(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("every port of {low}..={high} tried is taken or already handed out"),
        )
    })))
}

/// Where Linux keeps the ephemeral port range ("low high").
const EPHEMERAL_RANGE_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// The range listen ports are drawn from, given the ephemeral range file's text: the 16384
/// ports just below the ephemeral range (never below 1024), or 16384..=32767 when the file is
/// missing or says something else (32768 is where Linux's default range starts).
fn listen_range(ephemeral: &str) -> (u16, u16) {
    const WIDTH: u16 = 16384;
    const FALLBACK: (u16, u16) = (16384, 32767);
    let low = ephemeral
        .split_whitespace()
        .next()
        .and_then(|w| w.parse::<u16>().ok());
    match low {
        Some(low) if low >= 1024 + 1024 => (low.saturating_sub(WIDTH).max(1024), low - 1),
        _ => FALLBACK,
    }
}

impl ClusterLayout {
    /// A fresh layout: 3 meta nodes, `data_per_zone` data nodes per zone, one gateway on
    /// `gateway_port` (0 = any free port), new random credentials.
    pub fn new(root: &Path, gateway_port: u16, data_per_zone: u32) -> Result<Self, LayoutError> {
        let mut nodes = Vec::new();
        for (i, zone) in ZONES.iter().enumerate() {
            let id = i as u64 + 1;
            nodes.push(NodeSpec {
                role: NodeRole::Meta,
                node_id: id,
                zone: Some(zone.to_string()),
                port: free_port()?,
                data_dir: root.join(format!("meta-{id}")),
                metrics_port: None,
            });
        }
        let mut data_id = 1;
        for zone in ZONES {
            for _ in 0..data_per_zone {
                nodes.push(NodeSpec {
                    role: NodeRole::Data,
                    node_id: data_id,
                    zone: Some(zone.to_string()),
                    port: free_port()?,
                    data_dir: root.join(format!("data-{data_id}")),
                    metrics_port: None,
                });
                data_id += 1;
            }
        }
        nodes.push(NodeSpec {
            role: NodeRole::Gateway,
            node_id: 1,
            zone: None,
            port: if gateway_port == 0 {
                free_port()?
            } else {
                gateway_port
            },
            data_dir: root.join("gateway-1"),
            metrics_port: Some(free_port()?),
        });
        nodes.push(repair_spec(root)?);
        Ok(Self {
            format: 1,
            nodes,
            access_key: format!("TESS{}", hex::encode_upper(rand::random::<[u8; 8]>())),
            secret_key: hex::encode(rand::random::<[u8; 20]>()),
            region: "us-east-1".to_string(),
            https: true,
        })
    }

    /// Reads a layout written before; a layout from before the repair daemon existed gets one.
    pub fn load(path: &Path) -> Result<Self, LayoutError> {
        let text = std::fs::read_to_string(path).map_err(|source| LayoutError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut layout: ClusterLayout =
            serde_json::from_str(&text).map_err(|source| LayoutError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        let mut changed = false;
        if !layout.nodes.iter().any(|n| n.role == NodeRole::Repair) {
            let root = path.parent().unwrap_or(Path::new("."));
            layout.nodes.push(repair_spec(root)?);
            changed = true;
        }
        for node in &mut layout.nodes {
            if node.role == NodeRole::Gateway && node.metrics_port.is_none() {
                node.metrics_port = Some(free_port()?);
                changed = true;
            }
        }
        if changed {
            layout.save(path)?;
        }
        Ok(layout)
    }

    /// The repair daemon's spec.
    pub fn repair(&self) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.role == NodeRole::Repair)
    }

    /// Writes the layout readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), LayoutError> {
        let io = |source| LayoutError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|source| LayoutError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        write_private(path, text.as_bytes()).map_err(io)
    }

    /// host:port of every meta node.
    pub fn meta_endpoints(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.role == NodeRole::Meta)
            .map(NodeSpec::addr)
            .collect()
    }

    /// The gateway's spec.
    pub fn gateway(&self) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.role == NodeRole::Gateway)
    }
}

/// The repair daemon of a cluster rooted at `root`; its port serves metrics.
fn repair_spec(root: &Path) -> Result<NodeSpec, LayoutError> {
    Ok(NodeSpec {
        role: NodeRole::Repair,
        node_id: 1,
        zone: None,
        port: free_port()?,
        data_dir: root.join("repair-1"),
        metrics_port: None,
    })
}

/// The file holding the root key of the cluster rooted at `root` (the meta nodes wrap their
/// key-encryption keys under it).
pub fn root_key_path(root: &Path) -> PathBuf {
    root.join("root.key")
}

/// Makes the cluster's root key (64 random hex digits, mode 0600) unless it exists.
pub fn ensure_root_key(root: &Path) -> std::io::Result<PathBuf> {
    let path = root_key_path(root);
    if !path.exists() {
        let key = zeroize::Zeroizing::new(hex::encode(rand::random::<[u8; 32]>()));
        write_private(&path, key.as_bytes())?;
    }
    Ok(path)
}

/// Writes a file with mode 0600 (it may hold credentials), atomically.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_every_role_and_round_trips() {
        let dir = std::env::temp_dir().join(format!("tessera-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let layout = ClusterLayout::new(&dir, 0, 2).expect("layout");
        assert_eq!(
            layout
                .nodes
                .iter()
                .filter(|n| n.role == NodeRole::Meta)
                .count(),
            3
        );
        assert_eq!(
            layout
                .nodes
                .iter()
                .filter(|n| n.role == NodeRole::Data)
                .count(),
            6
        );
        assert!(layout.gateway().is_some());
        assert!(layout.repair().is_some());
        let path = dir.join("layout.json");
        layout.save(&path).expect("save");
        let back = ClusterLayout::load(&path).expect("load");
        assert_eq!(back.nodes, layout.nodes);
        assert_eq!(back.secret_key, layout.secret_key);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn listen_ports_lie_below_the_ephemeral_range() {
        assert_eq!(listen_range("32768\t60999\n"), (16384, 32767));
        assert_eq!(listen_range("10000 65000"), (1024, 9999));
        assert_eq!(listen_range("49152 65535"), (32768, 49151));
        // Too low to leave room below, missing or garbled: the fixed fallback.
        assert_eq!(listen_range("1500 65535"), (16384, 32767));
        assert_eq!(listen_range(""), (16384, 32767));
        assert_eq!(listen_range("low high"), (16384, 32767));
    }

    #[test]
    fn free_ports_are_bindable_and_never_handed_out_twice() {
        let text = std::fs::read_to_string(EPHEMERAL_RANGE_FILE).unwrap_or_default();
        let (low, high) = listen_range(&text);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let port = free_port().expect("free port");
            assert!(
                (low..=high).contains(&port),
                "{port} outside {low}..={high}"
            );
            assert!(seen.insert(port), "port {port} handed out twice");
        }
        let port = free_port().expect("free port");
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("a handed-out port is bindable");
    }
}
