//! Logging: human-readable text (coloured only when stderr is a terminal, so log files and
//! pipes get plain lines that tools can search), JSON with `--log-format json`; the level comes
//! from `RUST_LOG` (default `info`). Each process opens a root span naming its role, node and
//! zone.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown log format {other:?} (text or json)")),
        }
    }
}

/// The default log filter. openraft 0.9 logs an ERROR from `raft_core` for every linearizable
/// read while a peer is unreachable (about ten lines a second during a zone outage); peer
/// failures stay visible through `openraft::replication`, so that one target is silenced.
pub const DEFAULT_FILTER: &str = "info,openraft=warn,openraft::core::raft_core=off,h2=warn,hyper=warn,tower=warn,aws_smithy=warn";

/// Installs the global subscriber; later calls are ignored (tests start several roles).
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
