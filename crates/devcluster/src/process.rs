//! One child process of a dev cluster: started with its role's flags, its output appended to a
//! log file, stopped by PID (SIGTERM, then SIGKILL after a grace period; or SIGKILL at once to
//! simulate a crash). A `ManagedProcess` that is dropped kills its child.

use crate::layout::{ClusterLayout, NodeRole, NodeSpec, root_key_path};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// A running (or stopped) child of the cluster.
#[derive(Debug)]
pub struct ManagedProcess {
    /// What it is.
    pub spec: NodeSpec,
    /// Where its output goes.
    pub log_path: PathBuf,
    child: Option<Child>,
}

/// The flags that start `spec` as part of `layout`.
pub fn command_args(spec: &NodeSpec, layout: &ClusterLayout) -> Vec<String> {
    let mut args = vec![spec.role.subcommand().to_string()];
    let meta = layout.meta_endpoints().join(",");
    let root = spec.data_dir.parent().unwrap_or(Path::new("."));
    let tls = crate::certs::node_paths(root, spec);
    args.extend([
        "--tls-ca".into(),
        tls.ca.display().to_string(),
        "--tls-cert".into(),
        tls.cert.display().to_string(),
        "--tls-key".into(),
        tls.key.display().to_string(),
    ]);
    match spec.role {
        NodeRole::Meta => {
            args.extend([
                "--id".into(),
                spec.node_id.to_string(),
                "--zone".into(),
                spec.zone.clone().unwrap_or_default(),
                "--listen".into(),
                spec.addr(),
                "--data-dir".into(),
                spec.data_dir.display().to_string(),
                "--root-key-file".into(),
                root_key_path(spec.data_dir.parent().unwrap_or(Path::new(".")))
                    .display()
                    .to_string(),
            ]);
            for peer in layout.nodes.iter().filter(|n| n.role == NodeRole::Meta) {
                args.push("--peer".into());
                args.push(format!(
                    "{}={}@{}",
                    peer.node_id,
                    peer.addr(),
                    peer.zone.clone().unwrap_or_default()
                ));
            }
        }
        NodeRole::Data => args.extend([
            "--id".into(),
            spec.node_id.to_string(),
            "--zone".into(),
            spec.zone.clone().unwrap_or_default(),
            "--listen".into(),
            spec.addr(),
            "--data-dir".into(),
            spec.data_dir.display().to_string(),
            "--meta".into(),
            meta,
        ]),
        NodeRole::Gateway => {
            args.extend([
                "--listen".into(),
                spec.addr(),
                "--meta".into(),
                meta,
                "--region".into(),
                layout.region.clone(),
            ]);
            if let Some(metrics) = spec.metrics_addr() {
                args.extend(["--metrics-listen".into(), metrics]);
            }
            if layout.https {
                let (cert, key) = crate::certs::https_cert_paths(root);
                args.extend([
                    "--https-cert".into(),
                    cert.display().to_string(),
                    "--https-key".into(),
                    key.display().to_string(),
                ]);
            }
        }
        NodeRole::Repair => args.extend([
            "--id".into(),
            format!("repair-{}", spec.node_id),
            "--meta".into(),
            meta,
            "--metrics-listen".into(),
            spec.addr(),
        ]),
    }
    args
}

/// Flags a process gets on the cluster's very first start only: meta node 1 founds the Raft
/// group (`--init`). Never on a restart: a meta node with an empty folder must wait to be caught
/// up by the group, not found a new one.
pub fn first_start_args(spec: &NodeSpec) -> Vec<String> {
    if spec.role == NodeRole::Meta && spec.node_id == 1 {
        vec!["--init".to_owned()]
    } else {
        Vec::new()
    }
}

impl ManagedProcess {
    /// Starts `spec` from `binary`, logging to `log_dir/<name>.log`; `first_start` adds
    /// [`first_start_args`].
    pub fn spawn(
        binary: &Path,
        spec: &NodeSpec,
        layout: &ClusterLayout,
        log_dir: &Path,
        extra_env: &[(String, String)],
        first_start: bool,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&spec.data_dir)?;
        std::fs::create_dir_all(log_dir)?;
        let root = spec.data_dir.parent().unwrap_or(Path::new("."));
        crate::certs::ensure_node_cert(root, spec).map_err(std::io::Error::other)?;
        let log_path = log_dir.join(format!("{}.log", spec.name()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut cmd = Command::new(binary);
        cmd.args(command_args(spec, layout));
        if first_start {
            cmd.args(first_start_args(spec));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        if spec.role == NodeRole::Gateway {
            // Secrets travel in the environment, never on a command line others can read.
            cmd.env("TESSERA_ROOT_ACCESS_KEY", &layout.access_key)
                .env("TESSERA_ROOT_SECRET_KEY", &layout.secret_key);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn()?;
        tracing::info!(name = %spec.name(), pid = child.id().unwrap_or(0), addr = %spec.addr(), "process started");
        Ok(Self {
            spec: spec.clone(),
            log_path,
            child: Some(child),
        })
    }

    /// The PID while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether the child is still running (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(status))) => {
                tracing::warn!(name = %self.spec.name(), %status, "process exited");
                self.child = None;
                false
            }
            Some(Err(_)) | None => false,
        }
    }

    /// SIGKILL: the process dies at once, as in a crash or power loss.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
            tracing::info!(name = %self.spec.name(), "process killed");
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn terminate(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        tracing::info!(name = %self.spec.name(), "process stopped");
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_meta_node_one_founds_the_group_and_only_on_first_start() {
        let root = tempfile::tempdir().expect("tempdir");
        let layout = ClusterLayout::new(root.path(), 0, 1).expect("layout");
        for spec in &layout.nodes {
            let args = command_args(spec, &layout);
            assert!(
                !args.iter().any(|a| a == "--init"),
                "{} would initialise on every start",
                spec.name()
            );
            let first = first_start_args(spec);
            if spec.role == NodeRole::Meta && spec.node_id == 1 {
                assert_eq!(first, ["--init"]);
            } else {
                assert!(first.is_empty(), "{} founds a group", spec.name());
            }
        }
        assert_eq!(
            layout
                .nodes
                .iter()
                .filter(|s| !first_start_args(s).is_empty())
                .count(),
            1
        );
    }
}
