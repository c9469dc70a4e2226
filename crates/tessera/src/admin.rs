//! `tessera admin`: cluster inspection and operations. `status` shows every node with its zone,
//! role, health and address, as seen by the meta node that answers; `repair status` the
//! redundancy the repair daemon measured; `scrub` runs the data nodes' scrubbers; `locate`
//! where each shard of an object is and whether it is intact; `node drain` empties a node;
//! `workers` every background worker of every process, as the answering meta node last heard;
//! `kms` the SSE-S3 key-encryption keys and the KMS keys of SSE-KMS (`admin_kms`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tessera_client::tls::ClusterTls;
use tessera_client::{CommandError, DataClient, DataClientError, MetaClient};
use tessera_core::blob::BlobStorage;
use tessera_core::names::{BucketName, NodeId, ObjectKey, VersionId};
use tessera_core::object::NodeState;
use tessera_core::sealing::kek::SSE_S3_KEK;
use tessera_proto::meta::v1 as pb;
use tessera_runtime::clock::now_ms;
use tessera_runtime::tls::Role;

/// Flags of `tessera admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Meta nodes, comma-separated HOST:PORT (dev.env sets TESSERA_META).
    #[arg(long, env = "TESSERA_META", value_delimiter = ',')]
    meta: Vec<String>,
    /// The operator's certificate for mutual TLS (an `admin` one; dev.env sets these).
    #[command(flatten)]
    tls: crate::roles::TlsArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Every node with its zone, role, health and address.
    Status,
    /// Redundancy as the repair daemon measured it.
    Repair {
        #[command(subcommand)]
        command: RepairCommand,
    },
    /// The data nodes' scrubbers.
    Scrub {
        #[command(subcommand)]
        command: ScrubCommand,
    },
    /// Where each shard of an object is, and whether it is intact.
    Locate {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// A version id (default: the current version).
        #[arg(long)]
        version_id: Option<String>,
    },
    /// Data node operations.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// Every background worker of every process (data nodes, gateways, repair daemons, meta),
    /// from the latest reports the answering meta node received.
    Workers,
    /// The key-encryption keys that wrap every object's data key, and the KMS keys of SSE-KMS.
    Kms {
        #[command(subcommand)]
        command: KmsCommand,
    },
    /// The cluster CA: makes it and issues the certificates nodes use for mutual TLS (needs
    /// no running cluster).
    Ca {
        #[command(subcommand)]
        command: crate::ca::CaCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KmsCommand {
    /// Adds a new version of the SSE-S3 key-encryption key: new objects' data keys are wrapped
    /// by it; every older version stays, so every object stays readable.
    Rotate,
    /// Every key-encryption key version and when it was made (never key material).
    List,
    /// The built-in KMS's customer keys (SSE-KMS).
    #[command(flatten)]
    Keys(crate::admin_kms::KmsKeyCommand),
}

#[derive(Debug, Subcommand)]
enum RepairCommand {
    /// Objects and bytes by spare shards, backlog, rebuild rate, oldest degraded version.
    Status {
        /// Wait until a pass that began after this command finds nothing below full
        /// redundancy (exit 1 on timeout).
        #[arg(long)]
        wait_healthy: bool,
        /// Seconds to wait with --wait-healthy.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
enum ScrubCommand {
    /// Runs a full pass on every live data node now, at full speed, and reports when done.
    Start {
        /// Return once the passes are requested.
        #[arg(long)]
        no_wait: bool,
        /// Seconds to wait for the passes.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// Each data node's scrubber progress and findings.
    Status,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Stops new writes to a node and has repair move every shard off it; waits until empty.
    Drain {
        /// Data node id.
        id: u64,
        /// Return once the node is marked draining.
        #[arg(long)]
        no_wait: bool,
        /// Seconds to wait for the node to be empty.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
    /// Takes a node back into service (undoes drain).
    Activate {
        /// Data node id.
        id: u64,
    },
}

/// Runs an admin command.
pub async fn run(args: AdminArgs) -> Result<()> {
    if let AdminCommand::Ca { command } = args.command {
        return crate::ca::run(command);
    }
    if args.meta.is_empty() {
        bail!("no meta endpoints: pass --meta or set TESSERA_META (dev.env sets it)");
    }
    let tls_config = args.tls.apply(Default::default())?;
    let tls = ClusterTls::for_role(&tls_config, Role::Admin)?;
    let meta = MetaClient::with_tls(args.meta, Some(&tls));
    let data = DataClient::with_tls(Some(tls));
    match args.command {
        AdminCommand::Ca { .. } => unreachable!("handled above"),
        AdminCommand::Status => status(&meta).await,
        AdminCommand::Repair {
            command:
                RepairCommand::Status {
                    wait_healthy,
                    timeout,
                },
        } => repair_status(&meta, wait_healthy, Duration::from_secs(timeout)).await,
        AdminCommand::Scrub {
            command: ScrubCommand::Start { no_wait, timeout },
        } => scrub_start(&meta, &data, no_wait, Duration::from_secs(timeout)).await,
        AdminCommand::Scrub {
            command: ScrubCommand::Status,
        } => scrub_status(&meta, &data).await,
        AdminCommand::Locate {
            bucket,
            key,
            version_id,
        } => locate(&meta, &data, bucket, key, version_id).await,
        AdminCommand::Node {
            command:
                NodeCommand::Drain {
                    id,
                    no_wait,
                    timeout,
                },
        } => drain(&meta, id, no_wait, Duration::from_secs(timeout)).await,
        AdminCommand::Node {
            command: NodeCommand::Activate { id },
        } => set_state(&meta, id, NodeState::Active).await,
        AdminCommand::Workers => {
            let listed = meta.list_workers().await?;
            print!("{}", workers_table(&listed));
            Ok(())
        }
        AdminCommand::Kms {
            command: KmsCommand::Rotate,
        } => {
            let id = meta.rotate_kek(SSE_S3_KEK).await?;
            println!("{id}");
            Ok(())
        }
        AdminCommand::Kms {
            command: KmsCommand::List,
        } => {
            let keks = meta.list_keks().await?;
            let now = now_ms();
            println!("{:<24} {:>8}  CREATED", "KEY", "VERSION");
            for k in keks {
                println!(
                    "{:<24} {:>8}  {}",
                    k.name,
                    k.version,
                    age(now, k.created_ms)
                );
            }
            Ok(())
        }
        AdminCommand::Kms {
            command: KmsCommand::Keys(command),
        } => crate::admin_kms::run(&meta, command).await,
    }
}

/// A worker state as operators read it ("active", "backoff").
fn worker_state_name(state: i32) -> String {
    pb::WorkerState::try_from(state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("WORKER_STATE_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| format!("unknown({state})"))
}

/// Cuts `text` to `max` characters, marking the cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let kept: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{kept}…")
    }
}

/// The `admin workers` table: one line per worker of every process, then a summary line.
fn workers_table(listed: &pb::ListWorkersResponse) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:<12} {:<10} {:<20} {:<10} {:<32} {:>13} {:>8} {:>6}  {:<24} {:>8}",
        "ROLE",
        "ID",
        "ZONE",
        "WORKER",
        "STATE",
        "PROGRESS",
        "DONE/TOTAL",
        "STEPS",
        "ERRORS",
        "LAST ERROR",
        "AGE"
    );
    let mut workers = 0;
    for p in &listed.processes {
        let mut id = p.process.clone().unwrap_or_default();
        // Processes without a zone (gateway, repair) show "-" so every row has every column.
        if id.zone.is_empty() {
            id.zone = "-".to_owned();
        }
        let age = format!("{:.1} s", p.age_ms as f64 / 1000.0);
        if p.workers.is_empty() {
            let _ = writeln!(
                out,
                "{:<8} {:<12} {:<10} {:<20} {:<10} {:<32} {:>13} {:>8} {:>6}  {:<24} {:>8}",
                id.role, id.id, id.zone, "-", "-", "", "", "", "", "", age
            );
        }
        for w in &p.workers {
            workers += 1;
            let done = if w.total > 0 {
                format!("{}/{}", w.done, w.total)
            } else {
                format!("{}/?", w.done)
            };
            let _ = writeln!(
                out,
                "{:<8} {:<12} {:<10} {:<20} {:<10} {:<32} {:>13} {:>8} {:>6}  {:<24} {:>8}",
                clip(&id.role, 8),
                clip(&id.id, 12),
                clip(&id.zone, 10),
                clip(&w.name, 20),
                worker_state_name(w.state),
                clip(&w.progress, 32),
                done,
                w.steps,
                w.errors,
                clip(&w.last_error, 24),
                age
            );
        }
    }
    let _ = writeln!(
        out,
        "{workers} workers in {} processes (answered by meta {})",
        listed.processes.len(),
        listed.answered_by
    );
    out
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
        let health = match pb::Liveness::try_from(d.liveness) {
            Ok(pb::Liveness::Alive) => "healthy",
            Ok(pb::Liveness::Suspect) => "suspect",
            _ => "dead",
        };
        let health = if n.state == pb::NodeState::Draining as i32 {
            format!("{health},draining")
        } else {
            health.to_owned()
        };
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

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn age(now: i64, then_ms: i64) -> String {
    if then_ms <= 0 {
        return "never".into();
    }
    format!("{:.1} s ago", (now - then_ms).max(0) as f64 / 1000.0)
}

fn print_report(r: &pb::RepairReport, now: i64) {
    println!(
        "repair daemon {}   report {}",
        r.reporter,
        age(now, r.at_ms)
    );
    println!(
        "  passes: {}   last pass started {}, finished {}",
        r.scans_completed,
        age(now, r.last_scan_started_ms),
        age(now, r.last_scan_finished_ms)
    );
    println!("  {:>6}  {:>10}  {:>12}", "SPARE", "OBJECTS", "BYTES");
    for s in &r.by_spare {
        println!(
            "  {:>6}  {:>10}  {:>12}",
            s.spare,
            s.objects,
            human_bytes(s.bytes)
        );
    }
    println!(
        "  below full redundancy: {}   unreadable: {}   off the full spread: {}   backlog: {}",
        r.below_full, r.unreadable, r.off_spread, r.backlog
    );
    if r.unconfirmed > 0 {
        println!(
            "  {} blobs written just before the pass are judged by the next one",
            r.unconfirmed
        );
    }
    let oldest = if r.oldest_degraded_ms > 0 {
        format!("written {}", age(now, r.oldest_degraded_ms))
    } else {
        "none".into()
    };
    println!("  oldest degraded version: {oldest}");
    println!(
        "  rebuild rate: {}/s   rebuilt: {} shards, {}   failures: {}",
        human_bytes(r.rebuild_bytes_per_sec as u64),
        r.shards_rebuilt_total,
        human_bytes(r.bytes_rebuilt_total),
        r.rebuild_failures_total
    );
    println!(
        "  time below full redundancy: {:.1} s",
        r.below_full_ms_total as f64 / 1000.0
    );
    println!(
        "  garbage records pending: {}   deleted shards: {} garbage, {} orphans",
        r.garbage_records_pending, r.garbage_shards_deleted_total, r.orphan_shards_deleted_total
    );
}

/// True when `r` comes from a pass that started after `since_ms` and found nothing to do.
fn is_healthy_since(r: &pb::RepairReport, since_ms: i64) -> bool {
    r.last_scan_started_ms > since_ms
        && r.last_scan_finished_ms >= r.last_scan_started_ms
        && r.backlog == 0
        && r.below_full == 0
        && r.unreadable == 0
        && r.unconfirmed == 0
}

async fn repair_status(meta: &MetaClient, wait_healthy: bool, timeout: Duration) -> Result<()> {
    let since = now_ms();
    let deadline = Instant::now() + timeout;
    loop {
        let s = meta.cluster_status().await?;
        let now = now_ms();
        if !wait_healthy {
            if s.repair_reports.is_empty() {
                println!("no repair daemon has reported yet");
            }
            for r in &s.repair_reports {
                print_report(r, now);
            }
            return Ok(());
        }
        if let Some(r) = s.repair_reports.iter().find(|r| is_healthy_since(r, since)) {
            print_report(r, now);
            println!("full redundancy: every blob has all its shards on the full spread");
            return Ok(());
        }
        if Instant::now() > deadline {
            for r in &s.repair_reports {
                print_report(r, now);
            }
            bail!("not back to full redundancy within {} s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Alive data nodes: (id, zone, addr).
async fn alive_data_nodes(meta: &MetaClient) -> Result<Vec<(u64, String, String)>> {
    let s = meta.cluster_status().await?;
    Ok(s.data_nodes
        .iter()
        .filter(|d| d.liveness == pb::Liveness::Alive as i32)
        .filter_map(|d| d.node.as_ref())
        .map(|n| (n.node_id, n.zone.clone(), n.addr.clone()))
        .collect())
}

async fn scrub_start(
    meta: &MetaClient,
    data_client: &DataClient,
    no_wait: bool,
    timeout: Duration,
) -> Result<()> {
    let data = data_client.clone();
    let nodes = alive_data_nodes(meta).await?;
    if nodes.is_empty() {
        bail!("no live data node");
    }
    let mut started = Vec::new();
    for (id, zone, addr) in &nodes {
        let before = data
            .scrub_status(addr)
            .await
            .with_context(|| format!("scrub status of data node {id}"))?;
        let pass = data
            .start_scrub(addr)
            .await
            .with_context(|| format!("starting the scrub on data node {id}"))?
            .pass;
        println!("data node {id} ({zone}): scrub pass {pass} started");
        started.push((*id, addr.clone(), pass, before));
    }
    if no_wait {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    let mut total_corrupt = 0;
    for (id, addr, pass, before) in started {
        let status = loop {
            let st = data.scrub_status(&addr).await?;
            if st.passes_completed >= pass {
                break st;
            }
            if Instant::now() > deadline {
                bail!(
                    "data node {id}: scrub pass {pass} not done within {} s",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let corrupt = status.corrupt_shards_found - before.corrupt_shards_found;
        total_corrupt += corrupt;
        println!(
            "data node {id}: pass {pass} done: {} shards, {} checked, {corrupt} corrupt (quarantined; repair rebuilds them)",
            status.shards_checked - before.shards_checked,
            human_bytes(status.bytes_checked - before.bytes_checked),
        );
    }
    println!("scrub complete: {total_corrupt} corrupt shards found");
    Ok(())
}

async fn scrub_status(meta: &MetaClient, data_client: &DataClient) -> Result<()> {
    let data = data_client.clone();
    let now = now_ms();
    for (id, zone, addr) in alive_data_nodes(meta).await? {
        match data.scrub_status(&addr).await {
            Ok(st) => {
                println!(
                    "data node {id} ({zone}): passes {}{}   last pass finished {}   checked {} shards, {}   corrupt {}   rate {}",
                    st.passes_completed,
                    if st.running { " (running)" } else { "" },
                    age(now, st.last_pass_finished_ms),
                    st.shards_checked,
                    human_bytes(st.bytes_checked),
                    st.corrupt_shards_found,
                    if st.rate_bytes_per_sec == 0 {
                        "unthrottled".to_owned()
                    } else {
                        format!("{}/s", human_bytes(st.rate_bytes_per_sec))
                    }
                );
                for c in st.recent_corrupt.iter().rev().take(10) {
                    let id = c.id.as_ref();
                    println!(
                        "    corrupt: {}.{} ({}, chunk {}) {}",
                        id.map(|i| hex::encode(&i.data_id)).unwrap_or_default(),
                        id.map_or(0, |i| i.shard_index),
                        c.reason,
                        c.chunk,
                        age(now, c.found_ms)
                    );
                }
            }
            Err(e) => println!("data node {id} ({zone}): unreachable: {e}"),
        }
    }
    Ok(())
}

async fn locate(
    meta: &MetaClient,
    data_client: &DataClient,
    bucket: String,
    key: String,
    version_id: Option<String>,
) -> Result<()> {
    let bucket_name = BucketName::parse(&bucket).context("invalid bucket name")?;
    let object_key = ObjectKey::parse(&key).context("invalid key")?;
    let version_id = version_id
        .map(|v| VersionId::parse(&v).context("invalid version id"))
        .transpose()?;
    let lookup = meta
        .get_object(&bucket_name, &object_key, version_id.as_ref())
        .await?;
    if lookup.no_such_bucket {
        bail!("bucket {bucket} does not exist");
    }
    let Some(version) = lookup.version else {
        bail!("{bucket}/{key} does not exist");
    };
    println!(
        "{bucket}/{key} version {} ({} bytes, etag {})",
        version.version_id, version.size, version.etag
    );
    if version.delete_marker {
        println!("  a delete marker: no data");
        return Ok(());
    }
    let status = meta.cluster_status().await?;
    let nodes: BTreeMap<u64, (String, String, i32)> = status
        .data_nodes
        .iter()
        .filter_map(|d| {
            d.node
                .as_ref()
                .map(|n| (n.node_id, (n.zone.clone(), n.addr.clone(), d.liveness)))
        })
        .collect();
    let data = data_client.clone();
    let mut unhealthy = 0;
    for (i, part) in version.parts.iter().enumerate() {
        let e = match &part.blob.storage {
            BlobStorage::Inline(_) => {
                println!(
                    "  part {}: {} bytes stored inline in metadata (replicated by Raft)",
                    i + 1,
                    part.blob.stored_size
                );
                continue;
            }
            BlobStorage::Erasure(e) => e,
        };
        println!(
            "  part {}: {} bytes, {}, data id {}{}",
            i + 1,
            part.size,
            e.layout,
            e.data_id,
            if e.degraded {
                ", degraded placement"
            } else {
                ""
            }
        );
        println!(
            "    {:>5}  {:>5}  {:<10} {:<9} path",
            "SHARD", "NODE", "ZONE", "HEALTH"
        );
        let mut copies = e.shards.clone();
        copies.sort();
        for copy in &copies {
            let (zone, addr, liveness) = nodes.get(&copy.node.0).cloned().unwrap_or((
                "?".into(),
                String::new(),
                pb::Liveness::Dead as i32,
            ));
            let health_and_path = if liveness != pb::Liveness::Alive as i32 {
                ("node-down".to_owned(), String::new())
            } else {
                let id = tessera_client::ShardId::of_copy(e.data_id, copy);
                match data.verify_shard(&addr, &id).await {
                    // The node's own checks, then the manifest's word: a copy that is not the
                    // shard the writer wrote there is corrupt, however consistent it is.
                    Ok(st) if st.corrupt_chunks > 0 || st.chunks != e.chunks_per_shard => {
                        ("corrupt".to_owned(), st.path)
                    }
                    Ok(st) if e.digest_of(copy.shard_index) != Some(&st.digest) => {
                        ("wrong".to_owned(), st.path)
                    }
                    Ok(st) => ("ok".to_owned(), st.path),
                    Err(DataClientError::NotFound { .. }) => ("missing".to_owned(), String::new()),
                    Err(DataClientError::Corrupt { .. }) => ("corrupt".to_owned(), String::new()),
                    Err(e) => (format!("error: {}", e.code()), String::new()),
                }
            };
            let (health, path) = health_and_path;
            if health != "ok" {
                unhealthy += 1;
            }
            println!(
                "    {:>5}  {:>5}  {:<10} {:<9} {}",
                copy.shard_index, copy.node.0, zone, health, path
            );
        }
        let n = e.layout.total_shards();
        let placed: std::collections::BTreeSet<u32> =
            e.shards.iter().map(|c| c.shard_index).collect();
        for missing in (0..n).filter(|i| !placed.contains(i)) {
            unhealthy += 1;
            println!(
                "    {missing:>5}  {:>5}  {:<10} {:<9}",
                "-", "-", "unplaced"
            );
        }
    }
    if unhealthy == 0 {
        println!("all shards ok");
    } else {
        println!("{unhealthy} shards not ok (repair rebuilds them)");
    }
    Ok(())
}

async fn set_state(meta: &MetaClient, id: u64, state: NodeState) -> Result<()> {
    match meta.set_data_node_state(NodeId(id), state).await {
        Ok(()) => {}
        Err(CommandError::Rule(e)) => bail!("{e}"),
        Err(e) => return Err(e.into()),
    }
    let name = match state {
        NodeState::Active => pb::NodeState::Active,
        NodeState::Draining => pb::NodeState::Draining,
    }
    .as_str_name();
    println!("data node {id} is now {name}");
    Ok(())
}

async fn drain(meta: &MetaClient, id: u64, no_wait: bool, timeout: Duration) -> Result<()> {
    let since = now_ms();
    set_state(meta, id, NodeState::Draining).await?;
    if no_wait {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    let mut last_printed = None;
    loop {
        let s = meta.cluster_status().await?;
        let fresh = s
            .repair_reports
            .iter()
            .filter(|r| {
                r.last_scan_started_ms > since && r.last_scan_finished_ms >= r.last_scan_started_ms
            })
            .max_by_key(|r| r.last_scan_finished_ms);
        if let Some(r) = fresh {
            let left = r
                .shards_per_node
                .iter()
                .find(|c| c.node_id == id)
                .map_or(0, |c| c.shards);
            if left == 0 {
                println!("data node {id} holds no shards of committed objects; it can be stopped");
                return Ok(());
            }
            if last_printed != Some(left) {
                println!("data node {id}: {left} shards left to move");
                last_printed = Some(left);
            }
        } else if s.repair_reports.is_empty() && Instant::now() > deadline {
            bail!("no repair daemon is reporting; is `tessera repair` running?");
        }
        if Instant::now() > deadline {
            bail!("data node {id} not drained within {} s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workers_table_shows_every_worker_of_every_process() {
        let listed = pb::ListWorkersResponse {
            answered_by: 2,
            processes: vec![
                pb::ProcessWorkers {
                    process: Some(pb::ProcessId {
                        role: "data".into(),
                        id: "4".into(),
                        zone: "zone-b".into(),
                        addr: "127.0.0.1:7104".into(),
                    }),
                    age_ms: 1500,
                    workers: vec![
                        pb::WorkerStatus {
                            name: "scrub".into(),
                            state: pb::WorkerState::Throttled as i32,
                            progress: "pass 3: 120 of 400 shards".into(),
                            done: 120,
                            total: 400,
                            steps: 77,
                            errors: 1,
                            last_error: "shard 9 unreadable".into(),
                            ..pb::WorkerStatus::default()
                        },
                        pb::WorkerStatus {
                            name: "worker-report".into(),
                            state: pb::WorkerState::Idle as i32,
                            done: 5,
                            ..pb::WorkerStatus::default()
                        },
                    ],
                },
                pb::ProcessWorkers {
                    process: Some(pb::ProcessId {
                        role: "repair".into(),
                        id: "repair-1".into(),
                        ..pb::ProcessId::default()
                    }),
                    age_ms: 200,
                    workers: vec![pb::WorkerStatus {
                        name: "gc".into(),
                        state: pb::WorkerState::Backoff as i32,
                        last_error: "x".repeat(100),
                        ..pb::WorkerStatus::default()
                    }],
                },
            ],
        };
        let table = workers_table(&listed);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(lines[0].starts_with("ROLE"));
        for (line, needles) in [
            (
                lines[1],
                &[
                    "data",
                    "zone-b",
                    "scrub",
                    "throttled",
                    "pass 3: 120 of 400 shards",
                    "120/400",
                    "77",
                    "shard 9 unreadable",
                    "1.5 s",
                ][..],
            ),
            (lines[2], &["worker-report", "idle", "5/?"][..]),
            (lines[3], &["repair-1", "gc", "backoff", "0.2 s"][..]),
        ] {
            for needle in needles {
                assert!(line.contains(needle), "{needle:?} missing from {line:?}");
            }
        }
        assert!(
            lines[3].contains('…'),
            "a long error is clipped: {}",
            lines[3]
        );
        assert_eq!(lines[4], "3 workers in 2 processes (answered by meta 2)");
    }
}
