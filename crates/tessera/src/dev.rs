//! `tessera dev`: a whole three-zone cluster on this machine as child processes. It prints the
//! endpoint and credentials when ready, writes DIR/dev.env and DIR/cluster.json, reports any
//! child that exits, and stops every child on Ctrl-C or SIGTERM.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use tessera_devcluster::{DevCluster, DevClusterSpec};
use tessera_runtime::Shutdown;

/// Flags of `tessera dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// The cluster's folder (state survives restarts).
    #[arg(long, default_value = ".tessera/dev")]
    data_dir: PathBuf,
    /// S3 port on 127.0.0.1 (used when the cluster is first created).
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Data nodes per zone (used when the cluster is first created).
    #[arg(long, default_value_t = 2)]
    data_per_zone: u32,
    /// Serve the S3 endpoint over plain HTTP instead of HTTPS, for tools that cannot be given a
    /// CA. Nodes still talk to each other over mutual TLS.
    #[arg(long)]
    http: bool,
}

/// Runs the dev cluster until interrupted.
pub async fn run(args: DevArgs) -> Result<()> {
    let binary = std::env::current_exe().context("cannot find the tessera binary")?;
    let root = if args.data_dir.is_absolute() {
        args.data_dir.clone()
    } else {
        std::env::current_dir()?.join(&args.data_dir)
    };
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    eprintln!("starting a three-zone cluster in {} ...", root.display());
    let mut cluster = DevCluster::start(DevClusterSpec {
        root: root.clone(),
        binary,
        gateway_port: args.port,
        data_per_zone: args.data_per_zone,
        ready_timeout: Duration::from_secs(60),
        extra_env: Vec::new(),
        node_env: Vec::new(),
        https: !args.http,
    })
    .await?;
    let (access, secret) = cluster.credentials();
    println!("Tessera dev cluster is ready.");
    println!();
    println!("  S3 endpoint:       {}", cluster.endpoint());
    println!("  Access key:        {access}");
    println!("  Secret key:        {secret}");
    println!("  Region:            {}", cluster.region());
    if let Some(ca) = cluster.https_ca() {
        println!(
            "  CA certificate:    {} (dev.env sets AWS_CA_BUNDLE to it)",
            ca.display()
        );
    }
    println!(
        "  Cluster TLS:       {} (mutual TLS between nodes; dev.env points tessera admin at its admin certificate)",
        tessera_devcluster::certs::tls_dir(&root).display()
    );
    println!();
    println!("  Environment:       {}", root.join("dev.env").display());
    println!(
        "  Processes:         {}",
        root.join("cluster.json").display()
    );
    println!("  Logs:              {}", root.join("logs").display());
    println!(
        "  Root key:          {} (every object is encrypted under it: keep a copy)",
        tessera_devcluster::layout::root_key_path(&root).display()
    );
    if let Some(metrics) = cluster.layout().gateway().and_then(|g| g.metrics_addr()) {
        println!("  Gateway metrics:   http://{metrics}/metrics");
    }
    if let Some(repair) = cluster.layout().repair() {
        println!("  Repair metrics:    http://{}/metrics", repair.addr());
    }
    println!("  Workers:           tessera admin workers");
    println!();
    println!(
        "  Try:  set -a; . {}; set +a",
        root.join("dev.env").display()
    );
    println!("        aws s3 mb s3://demo && tessera admin status");
    println!();
    println!("Press Ctrl-C to stop every process.");
    let mut reported = std::collections::BTreeSet::new();
    loop {
        tokio::select! {
            () = shutdown.wait() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                for name in cluster.exited() {
                    if reported.insert(name.clone()) {
                        eprintln!("warning: {name} exited; see its log in {}", root.join("logs").display());
                    }
                }
            }
        }
    }
    eprintln!("stopping...");
    cluster.stop().await;
    eprintln!("stopped; state kept in {}", root.display());
    Ok(())
}
