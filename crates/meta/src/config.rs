//! The meta role's typed config. A valid config names every voter of the group exactly once
//! (this node included, added from `listen`/`advertise` when the list leaves it out), so that
//! the node told to initialise the group (`initialize`, on one node of a new cluster only) gives
//! it the membership every node expects. Liveness timeouts are positive and a node turns
//! suspect no later than it turns dead.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::liveness::LivenessTimeouts;
use crate::types::MetaNode;

/// Default heartbeat age after which a data node is suspect: three missed one-second beats.
pub const DEFAULT_SUSPECT_AFTER_MS: u64 = 3000;
/// Default heartbeat age after which a data node is dead and its shards are rebuilt: long
/// enough to ride out a process restart or a short network cut without moving data.
pub const DEFAULT_DEAD_AFTER_MS: u64 = 60_000;

fn default_suspect_after_ms() -> u64 {
    DEFAULT_SUSPECT_AFTER_MS
}

fn default_dead_after_ms() -> u64 {
    DEFAULT_DEAD_AFTER_MS
}

/// Configuration of one meta node.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetaConfig {
    /// This node's Raft id; unique in the group.
    pub node_id: u64,
    /// The zone (failure domain) this node runs in.
    pub zone: String,
    /// Address the gRPC server (Raft and MetaService) binds.
    pub listen: SocketAddr,
    /// Address peers and clients use to reach this node, when it differs from `listen`
    /// (e.g. `listen` is 0.0.0.0).
    #[serde(default)]
    pub advertise: Option<String>,
    /// Root data directory; the store lives in `data_dir/meta`.
    pub data_dir: PathBuf,
    /// Every voter of the group, normally this node included.
    pub peers: Vec<MetaPeer>,
    /// Milliseconds without a heartbeat after which a data node is suspect.
    #[serde(default = "default_suspect_after_ms")]
    pub suspect_after_ms: u64,
    /// Milliseconds without a heartbeat after which a data node is dead.
    #[serde(default = "default_dead_after_ms")]
    pub dead_after_ms: u64,
    /// Whether this node, when its store is empty, initialises a new group with `peers` as
    /// voters. Set it on one node, for the very first start of a cluster only: a node with an
    /// empty store that is not told to initialise waits until the group's leader contacts it
    /// (and sends it the state), so a voter whose folder was wiped rejoins instead of founding
    /// a group of its own.
    #[serde(default)]
    pub initialize: bool,
    /// The file holding the root key (64 hex digits) that key-encryption keys are wrapped
    /// under; without it the key is taken from `TESSERA_ROOT_KEY`. Every meta node of a group
    /// needs the same root key.
    #[serde(default)]
    pub root_key_file: Option<PathBuf>,
    /// Mutual TLS with peers and clients: the cluster CA, this node's `meta` certificate and
    /// key. Without it the node serves plain gRPC, which only in-process tests do; the
    /// `tessera meta` command requires it.
    #[serde(default)]
    pub tls: tessera_runtime::tls::TlsConfig,
}

/// One voter of the meta group.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetaPeer {
    /// Its Raft id.
    pub node_id: u64,
    /// Its address ("host:port").
    pub addr: String,
    /// Its zone.
    pub zone: String,
}

/// A rule the meta config breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaConfigError {
    /// The zone is empty.
    #[error("zone must not be empty")]
    EmptyZone,
    /// A peer lacks an address or a zone.
    #[error("peer {node_id} needs an address and a zone")]
    IncompletePeer {
        /// The peer.
        node_id: u64,
    },
    /// Two peers share an id.
    #[error("node id {node_id} appears twice in peers")]
    DuplicatePeer {
        /// The repeated id.
        node_id: u64,
    },
    /// This node's own peer entry names another zone than `zone`.
    #[error("peer entry of this node says zone {peer_zone}, config says {zone}")]
    ZoneMismatch {
        /// The `zone` field.
        zone: String,
        /// The zone in the peer list.
        peer_zone: String,
    },
    /// The liveness timeouts are zero or out of order.
    #[error(
        "liveness timeouts need 0 < suspect ({suspect_after_ms} ms) <= dead ({dead_after_ms} ms)"
    )]
    LivenessTimeouts {
        /// The suspect timeout.
        suspect_after_ms: u64,
        /// The dead timeout.
        dead_after_ms: u64,
    },
}

impl MetaConfigError {
    /// Config errors need an operator; retrying never helps.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            MetaConfigError::EmptyZone => "config_empty_zone",
            MetaConfigError::IncompletePeer { .. } => "config_incomplete_peer",
            MetaConfigError::DuplicatePeer { .. } => "config_duplicate_peer",
            MetaConfigError::ZoneMismatch { .. } => "config_zone_mismatch",
            MetaConfigError::LivenessTimeouts { .. } => "config_liveness_timeouts",
        }
    }
}

impl MetaConfig {
    /// Checks the rules above.
    pub fn validate(&self) -> Result<(), MetaConfigError> {
        if self.zone.is_empty() {
            return Err(MetaConfigError::EmptyZone);
        }
        if self.suspect_after_ms == 0 || self.dead_after_ms < self.suspect_after_ms {
            return Err(MetaConfigError::LivenessTimeouts {
                suspect_after_ms: self.suspect_after_ms,
                dead_after_ms: self.dead_after_ms,
            });
        }
        let mut seen = BTreeSet::new();
        for peer in &self.peers {
            if peer.addr.is_empty() || peer.zone.is_empty() {
                return Err(MetaConfigError::IncompletePeer {
                    node_id: peer.node_id,
                });
            }
            if !seen.insert(peer.node_id) {
                return Err(MetaConfigError::DuplicatePeer {
                    node_id: peer.node_id,
                });
            }
            if peer.node_id == self.node_id && peer.zone != self.zone {
                return Err(MetaConfigError::ZoneMismatch {
                    zone: self.zone.clone(),
                    peer_zone: peer.zone.clone(),
                });
            }
        }
        Ok(())
    }

    /// The address others reach this node at.
    pub fn advertised_addr(&self) -> String {
        if let Some(addr) = &self.advertise {
            return addr.clone();
        }
        if let Some(me) = self.peers.iter().find(|p| p.node_id == self.node_id) {
            return me.addr.clone();
        }
        self.listen.to_string()
    }

    /// The initial voters: every peer, plus this node if the list leaves it out.
    pub fn initial_members(&self) -> std::collections::BTreeMap<u64, MetaNode> {
        let mut members: std::collections::BTreeMap<u64, MetaNode> = self
            .peers
            .iter()
            .map(|p| {
                (
                    p.node_id,
                    MetaNode {
                        addr: p.addr.clone(),
                        zone: p.zone.clone(),
                    },
                )
            })
            .collect();
        members.entry(self.node_id).or_insert_with(|| MetaNode {
            addr: self.advertised_addr(),
            zone: self.zone.clone(),
        });
        members
    }

    /// The liveness timeouts as durations.
    pub fn liveness_timeouts(&self) -> LivenessTimeouts {
        LivenessTimeouts {
            suspect_after: Duration::from_millis(self.suspect_after_ms),
            dead_after: Duration::from_millis(self.dead_after_ms),
        }
    }

    /// Where the store and snapshot live.
    pub fn meta_dir(&self) -> PathBuf {
        self.data_dir.join("meta")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MetaConfig {
        MetaConfig {
            node_id: 1,
            zone: "a".into(),
            listen: "127.0.0.1:7001".parse().expect("addr"),
            advertise: None,
            data_dir: PathBuf::from("/tmp/x"),
            peers: vec![
                MetaPeer {
                    node_id: 1,
                    addr: "10.0.0.1:7001".into(),
                    zone: "a".into(),
                },
                MetaPeer {
                    node_id: 2,
                    addr: "10.0.0.2:7001".into(),
                    zone: "b".into(),
                },
            ],
            suspect_after_ms: DEFAULT_SUSPECT_AFTER_MS,
            dead_after_ms: DEFAULT_DEAD_AFTER_MS,
            initialize: false,
            root_key_file: None,
            tls: Default::default(),
        }
    }

    #[test]
    fn a_valid_config_passes_and_names_its_members() {
        let c = config();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.advertised_addr(), "10.0.0.1:7001");
        let members = c.initial_members();
        assert_eq!(members.len(), 2);
        assert_eq!(members[&2].zone, "b");
    }

    #[test]
    fn this_node_is_added_when_the_peer_list_leaves_it_out() {
        let mut c = config();
        c.peers.remove(0);
        c.advertise = Some("meta-1:7001".into());
        let members = c.initial_members();
        assert_eq!(members[&1].addr, "meta-1:7001");
        assert_eq!(members[&1].zone, "a");
    }

    #[test]
    fn broken_rules_are_reported() {
        let mut c = config();
        c.peers[1].node_id = 1;
        assert_eq!(
            c.validate(),
            Err(MetaConfigError::DuplicatePeer { node_id: 1 })
        );
        let mut c = config();
        c.peers[0].zone = "z".into();
        assert!(matches!(
            c.validate(),
            Err(MetaConfigError::ZoneMismatch { .. })
        ));
        let mut c = config();
        c.peers[1].addr.clear();
        assert_eq!(
            c.validate(),
            Err(MetaConfigError::IncompletePeer { node_id: 2 })
        );
        let mut c = config();
        c.zone.clear();
        assert_eq!(c.validate(), Err(MetaConfigError::EmptyZone));
        let mut c = config();
        c.suspect_after_ms = 0;
        assert!(matches!(
            c.validate(),
            Err(MetaConfigError::LivenessTimeouts { .. })
        ));
        let mut c = config();
        c.dead_after_ms = c.suspect_after_ms - 1;
        assert_eq!(
            c.validate().map_err(|e| e.code()),
            Err("config_liveness_timeouts")
        );
        let mut c = config();
        c.dead_after_ms = c.suspect_after_ms;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let good = "node_id = 1\nzone = \"a\"\nlisten = \"127.0.0.1:7001\"\ndata_dir = \"/d\"\n\
                    [[peers]]\nnode_id = 1\naddr = \"h:1\"\nzone = \"a\"\n";
        let parsed: MetaConfig = toml::from_str(good).expect("valid config");
        assert_eq!(parsed.peers.len(), 1);
        assert_eq!(parsed.advertise, None);
        assert_eq!(parsed.suspect_after_ms, DEFAULT_SUSPECT_AFTER_MS);
        assert_eq!(parsed.dead_after_ms, DEFAULT_DEAD_AFTER_MS);
        assert!(!parsed.initialize, "initialising is never the default");
        let founding: MetaConfig =
            toml::from_str(&format!("initialize = true\n{good}")).expect("initialize");
        assert!(founding.initialize);
        let tuned: MetaConfig = toml::from_str(&format!(
            "suspect_after_ms = 500\ndead_after_ms = 5000\n{good}"
        ))
        .expect("timeouts");
        assert_eq!(
            tuned.liveness_timeouts().dead_after,
            Duration::from_millis(5000)
        );
        let bad = format!("{good}extra = 1\n");
        let err = toml::from_str::<MetaConfig>(&bad).expect_err("an unknown field");
        assert!(err.message().starts_with("unknown field `extra`"), "{err}");
    }
}
