//! `tessera admin`: cluster inspection. `status` shows every node with its zone, role, health
//! and address, as seen by the meta node that answers.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use tessera_client::MetaClient;

/// Flags of `tessera admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Meta nodes, comma-separated HOST:PORT (dev.env sets TESSERA_META).
    #[arg(long, env = "TESSERA_META", value_delimiter = ',')]
    meta: Vec<String>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Every node with its zone, role, health and address.
    Status,
}

/// Runs an admin command.
pub async fn run(args: AdminArgs) -> Result<()> {
    if args.meta.is_empty() {
        bail!("no meta endpoints: pass --meta or set TESSERA_META (dev.env sets it)");
    }
    let meta = MetaClient::new(args.meta);
    match args.command {
        AdminCommand::Status => status(&meta).await,
    }
}

async fn status(meta: &MetaClient) -> Result<()> {
    let s = meta.cluster_status().await?;
    println!(
        "leader: {}   term: {}   answered by: meta {}",
        s.leader_id
            .map_or("none".to_string(), |l| format!("meta {l}")),
        s.term,
        s.answered_by
    );
    println!();
    println!(
        "{:<8} {:>4}  {:<10} {:<12} {:<22} detail",
        "ROLE", "ID", "ZONE", "HEALTH", "ADDRESS"
    );
    for m in &s.meta_nodes {
        let health = if m.role == "unreachable" {
            "unreachable"
        } else {
            "up"
        };
        println!(
            "{:<8} {:>4}  {:<10} {:<12} {:<22} raft {} (applied {})",
            "meta", m.node_id, m.zone, health, m.addr, m.role, m.last_applied
        );
    }
    for d in &s.data_nodes {
        let Some(n) = &d.node else { continue };
        let health = if d.healthy { "healthy" } else { "down" };
        let beat = d
            .last_heartbeat_ms_ago
            .map_or("no heartbeat".to_string(), |ms| {
                format!("heartbeat {ms} ms ago")
            });
        println!(
            "{:<8} {:>4}  {:<10} {:<12} {:<22} {beat}",
            "data", n.node_id, n.zone, health, n.addr
        );
    }
    Ok(())
}
