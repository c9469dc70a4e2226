//! The data node's typed config. Invariant: a config that passed `validate()` names a node
//! that meta can register and other processes can reach.

use crate::scrub::ScrubConfig;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tessera_runtime::config::ConfigError;

/// The scrubber's default read rate: a 4 TB disk is read in about three days, using a small
/// share of one disk's bandwidth.
pub const DEFAULT_SCRUB_RATE_BYTES_PER_SEC: u64 = 16 * 1024 * 1024;

/// The default pause between the end of one scrub pass and the start of the next.
pub const DEFAULT_SCRUB_INTERVAL_SECS: u64 = 3600;

/// Everything `tessera data` needs to run; unknown fields are rejected.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// This node's id in the cluster; unique among data nodes, never 0.
    pub node_id: u64,
    /// The failure domain (zone) this node belongs to.
    pub zone: String,
    /// Address the gRPC server binds (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Directory holding the shard store.
    pub data_dir: PathBuf,
    /// Meta nodes to register with and send heartbeats to (`host:port`).
    pub meta_endpoints: Vec<String>,
    /// Address other processes use to reach this node, if not `listen` (`host:port`).
    pub advertise: Option<String>,
    /// Average read rate of scheduled scrub passes, bytes per second; 0 = unthrottled.
    pub scrub_rate_bytes_per_sec: u64,
    /// Seconds from the end of one scheduled scrub pass to the start of the next (at least 1).
    pub scrub_interval_secs: u64,
    /// Mutual TLS with meta nodes and clients: the cluster CA, this node's `data` certificate
    /// and key. Without it the node serves plain gRPC, which only in-process tests do; the
    /// `tessera data` command requires it.
    pub tls: tessera_runtime::tls::TlsConfig,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            node_id: 0,
            zone: String::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7101)),
            data_dir: PathBuf::from("data"),
            meta_endpoints: vec!["127.0.0.1:7001".to_owned()],
            advertise: None,
            scrub_rate_bytes_per_sec: DEFAULT_SCRUB_RATE_BYTES_PER_SEC,
            scrub_interval_secs: DEFAULT_SCRUB_INTERVAL_SECS,
            tls: Default::default(),
        }
    }
}

impl DataConfig {
    /// The scrubber's settings.
    pub fn scrub(&self) -> ScrubConfig {
        ScrubConfig {
            rate_bytes_per_sec: self.scrub_rate_bytes_per_sec,
            interval: Duration::from_secs(self.scrub_interval_secs),
        }
    }

    /// Checks the rules serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |why: &str| Err(ConfigError::Invalid(format!("data node: {why}")));
        if self.node_id == 0 {
            return invalid("node_id must be set (and not 0)");
        }
        if !is_zone_name(&self.zone) {
            return invalid("zone must be 1-63 characters of a-z, 0-9 and '-'");
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir must be set");
        }
        if self.meta_endpoints.is_empty() {
            return invalid("meta_endpoints must name at least one meta node");
        }
        if self.scrub_interval_secs == 0 {
            return invalid("scrub_interval_secs must be at least 1");
        }
        if let Some(bad) = self.meta_endpoints.iter().find(|e| !is_host_port(e)) {
            return invalid(&format!("meta endpoint {bad:?} is not host:port"));
        }
        match &self.advertise {
            Some(addr) if !is_host_port(addr) => {
                invalid(&format!("advertise {addr:?} is not host:port"))
            }
            None if self.listen.ip().is_unspecified() => {
                invalid("advertise must be set when listen is a wildcard address")
            }
            Some(_) | None => Ok(()),
        }
    }
}

fn is_zone_name(zone: &str) -> bool {
    (1..=63).contains(&zone.len())
        && zone
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `host:port` with a non-empty host and a numeric port (IPv6 hosts in brackets).
fn is_host_port(addr: &str) -> bool {
    match addr.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty() && !host.contains("://") && port.parse::<u16>().is_ok()
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> DataConfig {
        DataConfig {
            node_id: 4,
            zone: "zone-b".into(),
            ..DataConfig::default()
        }
    }

    /// Asserts that `config` is refused for the rule `why` (the text after "data node: ").
    /// `ConfigError::Invalid` carries only its message, so the message is what tells the
    /// rules apart.
    #[track_caller]
    fn assert_refused(config: &DataConfig, why: &str) {
        match config.validate() {
            Err(ConfigError::Invalid(message)) => assert_eq!(message, format!("data node: {why}")),
            other => panic!("expected Invalid({why:?}), got {other:?}"),
        }
    }

    #[test]
    fn a_complete_config_is_valid() {
        assert!(valid().validate().is_ok());
    }

    #[test]
    fn defaults_need_an_id_and_a_zone() {
        assert_refused(&DataConfig::default(), "node_id must be set (and not 0)");
        let no_zone = DataConfig {
            zone: String::new(),
            ..valid()
        };
        assert_refused(&no_zone, "zone must be 1-63 characters of a-z, 0-9 and '-'");
    }

    #[test]
    fn a_wildcard_listen_needs_an_advertised_address() {
        let wildcard = DataConfig {
            listen: "0.0.0.0:7101".parse().unwrap(),
            ..valid()
        };
        assert_refused(
            &wildcard,
            "advertise must be set when listen is a wildcard address",
        );
        let advertised = DataConfig {
            advertise: Some("node4.example:7101".into()),
            ..wildcard
        };
        assert!(advertised.validate().is_ok());
    }

    #[test]
    fn the_scrub_interval_must_be_positive() {
        let zero = DataConfig {
            scrub_interval_secs: 0,
            ..valid()
        };
        assert_refused(&zero, "scrub_interval_secs must be at least 1");
    }

    #[test]
    fn endpoints_must_be_host_and_port() {
        let bad = DataConfig {
            meta_endpoints: vec!["http://meta:7001".into()],
            ..valid()
        };
        assert_refused(&bad, "meta endpoint \"http://meta:7001\" is not host:port");
        let none = DataConfig {
            meta_endpoints: vec![],
            ..valid()
        };
        assert_refused(&none, "meta_endpoints must name at least one meta node");
    }

    #[test]
    fn a_config_file_is_read_and_unknown_fields_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("data.toml");
        std::fs::write(
            &good,
            "node_id = 9\nzone = \"zone-c\"\nlisten = \"0.0.0.0:7109\"\n\
             data_dir = \"/srv/tessera\"\nmeta_endpoints = [\"m1:7001\", \"m2:7001\"]\n\
             advertise = \"10.0.0.9:7109\"\n",
        )
        .unwrap();
        let config: DataConfig = tessera_runtime::config::load(Some(&good)).unwrap();
        assert_eq!(config.node_id, 9);
        assert_eq!(config.meta_endpoints.len(), 2);
        assert_eq!(config.advertise.as_deref(), Some("10.0.0.9:7109"));
        assert!(config.validate().is_ok());

        assert_eq!(
            config.scrub(),
            ScrubConfig {
                rate_bytes_per_sec: DEFAULT_SCRUB_RATE_BYTES_PER_SEC,
                interval: Duration::from_secs(3600),
            }
        );

        let tuned = dir.path().join("tuned.toml");
        std::fs::write(
            &tuned,
            "node_id = 9\nzone = \"zone-c\"\n\
             scrub_rate_bytes_per_sec = 0\nscrub_interval_secs = 60\n",
        )
        .unwrap();
        let config: DataConfig = tessera_runtime::config::load(Some(&tuned)).unwrap();
        assert_eq!(
            config.scrub(),
            ScrubConfig {
                rate_bytes_per_sec: 0,
                interval: Duration::from_secs(60),
            }
        );
        assert!(config.validate().is_ok());

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "node_id = 9\nzones = \"zone-c\"\n").unwrap();
        match tessera_runtime::config::load::<DataConfig>(Some(&bad)) {
            Err(ConfigError::Parse { path, source }) => {
                assert_eq!(path, bad.display().to_string());
                assert!(
                    source.message().starts_with("unknown field `zones`"),
                    "{source}"
                );
            }
            other => panic!("expected a parse error naming `zones`, got {other:?}"),
        }
    }
}
