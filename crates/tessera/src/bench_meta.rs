//! `tessera bench meta-snapshot`: three real `tessera meta` processes in a temporary folder load
//! many objects (half inline, half erasure-coded records) through the meta client; then one
//! follower is stopped, its folder wiped, and it is restarted empty: the leader catches it up
//! from a snapshot. Prints the load rate, the snapshot file's size, the catch-up time and the
//! peak resident memory (VmHWM) of the leader and of the caught-up follower, which must stay
//! bounded by batch and chunk sizes, not by the number of objects.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rand::RngCore;
use tessera_client::MetaClient;
use tessera_client::meta::PutVersion;
use tessera_client::tls::ClusterTls;
use tessera_core::names::BucketName;
use tessera_core::object::{Bucket, ObjectVersion, VersioningState};
use tessera_devcluster::{ClusterLayout, ManagedProcess, NodeRole};
use tessera_proto::meta::v1 as pb;

/// Flags of `tessera bench meta-snapshot`.
#[derive(Debug, Args)]
pub struct MetaSnapshotArgs {
    /// Objects to load (half inline, half erasure-coded records).
    #[arg(long, default_value_t = 1_000_000)]
    objects: u64,
    /// Bytes of each inline object.
    #[arg(long, default_value_t = 512)]
    inline_bytes: usize,
    /// Commands in flight while loading.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Folder to run in (default: a new folder in the system's temporary folder, removed
    /// afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the folder (logs, stores) afterwards.
    #[arg(long)]
    keep: bool,
    /// Seconds the wiped follower has to catch up.
    #[arg(long, default_value_t = 1800)]
    catch_up_timeout: u64,
}

const BUCKET: &str = "meta-bench";

/// Peak and current resident memory of a process, in KiB (from /proc/PID/status).
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

/// The command that puts object `i`: even ones inline, odd ones an erasure-coded RS(3,3) blob
/// of 1 MiB with six placements and shard digests, as a gateway would commit it.
fn put_command(i: u64, inline_bytes: usize, lease_id: u64) -> Result<PutVersion> {
    let key = format!("objects/{:03}/{i:09}", i % 997);
    let blob = if i.is_multiple_of(2) {
        let data = random_bytes(inline_bytes);
        pb::Blob {
            size: data.len() as u64,
            stored_size: data.len() as u64,
            storage: Some(pb::blob::Storage::InlineData(data)),
            ..pb::Blob::default()
        }
    } else {
        let size = 1 << 20;
        pb::Blob {
            size,
            stored_size: size,
            storage: Some(pb::blob::Storage::Erasure(pb::ErasureBlob {
                data_id: random_bytes(16),
                data_shards: 3,
                parity_shards: 3,
                chunk_size: 64 * 1024,
                shards: (0..6)
                    .map(|shard_index| pb::ShardPlacement {
                        shard_index,
                        node_id: u64::from(shard_index) + 1,
                        generation: rand::rng().next_u64() | 1,
                    })
                    .collect(),
                shard_digests: (0..6).map(|_| random_bytes(32)).collect(),
                chunks_per_shard: 6,
                ..pb::ErasureBlob::default()
            })),
            ..pb::Blob::default()
        }
    };
    let size = blob.size;
    let version = pb::ObjectVersion {
        bucket: BUCKET.to_owned(),
        key,
        size,
        etag: format!("\"{:032x}\"", u128::from(i)),
        parts: vec![pb::ObjectPart {
            part_number: 1,
            size,
            etag: format!("\"{:032x}\"", u128::from(i)),
            blob: Some(blob),
            checksums: Vec::new(),
        }],
        storage_class: "STANDARD".to_owned(),
        ..pb::ObjectVersion::default()
    };
    Ok(PutVersion {
        version: ObjectVersion::try_from(&version).context("bench record")?,
        precondition: None,
        lease_id,
    })
}

/// How long each grant or renewal of the bench's write lease lasts.
const LEASE_TERM: Duration = Duration::from_secs(600);

/// Grants the bench a write lease (erasure-coded records need a live one) and keeps renewing
/// it until the returned task is aborted.
async fn lease(meta: &MetaClient) -> Result<(u64, tokio::task::JoinHandle<()>)> {
    let lease = meta
        .grant_lease("bench meta-snapshot", LEASE_TERM)
        .await
        .context("granting the bench's write lease")?;
    let (meta, id) = (meta.clone(), lease.lease_id);
    let renewer = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            if let Err(e) = meta.renew_lease(id, LEASE_TERM).await {
                eprintln!("  renewing the bench's lease failed: {e}");
            }
        }
    });
    Ok((id, renewer))
}

/// The last applied index of node `id`, as it reports itself (0 before it knows the group).
async fn applied_of(endpoint: &str, id: u64, tls: &ClusterTls) -> Result<u64> {
    let only = MetaClient::with_tls(vec![endpoint.to_owned()], Some(tls))
        .with_deadline(Duration::from_secs(5));
    let status = only.cluster_status().await?;
    Ok(status
        .meta_nodes
        .iter()
        .find(|n| n.node_id == id)
        .map_or(0, |n| n.last_applied))
}

async fn wait_for_leader(meta: &MetaClient, timeout: Duration) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(status) = meta.cluster_status().await
            && let Some(leader) = status.leader_id
        {
            return Ok(leader);
        }
        if Instant::now() > deadline {
            bail!("no meta leader within {} s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn load(meta: &MetaClient, args: &MetaSnapshotArgs, lease_id: u64) -> Result<Duration> {
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let meta = meta.clone();
        let next = next.clone();
        let done = done.clone();
        let (objects, inline_bytes) = (args.objects, args.inline_bytes);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= objects {
                    return Ok::<(), anyhow::Error>(());
                }
                let put = put_command(i, inline_bytes, lease_id)?;
                if let Err(e) = meta.put_version(&put).await {
                    bail!("object {i} rejected: {e}");
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let progress = {
        let done = done.clone();
        let objects = args.objects;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let n = done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "  loaded {n} of {objects} objects in {secs:.0} s ({:.0}/s)",
                    n as f64 / secs
                );
            }
        })
    };
    for task in tasks {
        task.await.context("loader task")??;
    }
    progress.abort();
    Ok(started.elapsed())
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Runs the benchmark and prints its figures.
pub async fn run(args: MetaSnapshotArgs) -> Result<()> {
    let binary = std::env::current_exe().context("cannot find the tessera binary")?;
    let root = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!(
            "tessera-bench-meta-{}-{}",
            std::process::id(),
            tessera_runtime::clock::now_ms()
        )),
    };
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let result = run_in(&args, &binary, &root).await;
    if args.keep {
        eprintln!("kept {}", root.display());
    } else if let Err(e) = std::fs::remove_dir_all(&root) {
        eprintln!("could not remove {}: {e}", root.display());
    }
    result
}

async fn run_in(args: &MetaSnapshotArgs, binary: &Path, root: &Path) -> Result<()> {
    let mut layout = ClusterLayout::new(root, 0, 1)?;
    layout.nodes.retain(|n| n.role == NodeRole::Meta);
    let logs = root.join("logs");
    let env = vec![("RUST_LOG".to_owned(), "info".to_owned())];
    let mut nodes: Vec<ManagedProcess> = Vec::new();
    for spec in &layout.nodes {
        nodes.push(ManagedProcess::spawn(
            binary, spec, &layout, &logs, &env, true,
        )?);
    }
    let admin = ClusterTls::load(&tessera_devcluster::certs::admin_paths(root))?;
    let outcome = measure(args, binary, &layout, &logs, &env, &mut nodes, &admin).await;
    for node in &mut nodes {
        node.terminate(Duration::from_secs(20)).await;
    }
    if outcome.is_err() {
        for node in &nodes {
            eprintln!("----- {} -----\n{}", node.spec.name(), node.log_tail(30));
        }
    }
    outcome
}

async fn measure(
    args: &MetaSnapshotArgs,
    binary: &Path,
    layout: &ClusterLayout,
    logs: &Path,
    env: &[(String, String)],
    nodes: &mut [ManagedProcess],
    admin: &ClusterTls,
) -> Result<()> {
    let meta = &MetaClient::with_tls(layout.meta_endpoints(), Some(admin));
    wait_for_leader(meta, Duration::from_secs(30)).await?;
    meta.create_bucket(&Bucket {
        name: BucketName::parse(BUCKET).context("bench bucket name")?,
        created_ms: 0,
        versioning: VersioningState::Unversioned,
        owner: "bench".to_owned(),
        region: "us-east-1".to_owned(),
        encryption: None,
    })
    .await
    .context("cannot create the bench bucket")?;
    let (lease_id, renewer) = lease(meta).await?;
    eprintln!(
        "loading {} objects ({} inline of {} bytes, {} erasure-coded records), {} in flight",
        args.objects,
        args.objects.div_ceil(2),
        args.inline_bytes,
        args.objects / 2,
        args.concurrency
    );
    let loaded = load(meta, args, lease_id).await;
    renewer.abort();
    let load_time = loaded?;

    let leader = wait_for_leader(meta, Duration::from_secs(30)).await?;
    let index = |id: u64| (id - 1) as usize;
    let leader_addr = nodes[index(leader)].spec.addr();
    let follower = (1..=3).find(|id| *id != leader).context("no follower")?;
    let follower_spec = nodes[index(follower)].spec.clone();
    let leader_applied = applied_of(&leader_addr, leader, admin).await?;
    eprintln!("loaded; leader meta-{leader} applied {leader_applied}; wiping meta-{follower}");

    nodes[index(follower)]
        .terminate(Duration::from_secs(30))
        .await;
    std::fs::remove_dir_all(&follower_spec.data_dir)
        .with_context(|| format!("wiping {}", follower_spec.data_dir.display()))?;
    let restarted = Instant::now();
    let process = ManagedProcess::spawn(binary, &follower_spec, layout, logs, env, false)?;
    let follower_pid = process.pid().context("restarted follower has no pid")?;
    nodes[index(follower)] = process;
    let deadline = restarted + Duration::from_secs(args.catch_up_timeout);
    let mut follower_peak = 0;
    loop {
        if let Some((peak, _)) = memory_kib(follower_pid) {
            follower_peak = follower_peak.max(peak);
        }
        if let Ok(applied) = applied_of(&follower_spec.addr(), follower, admin).await
            && applied >= leader_applied
        {
            break;
        }
        if !nodes[index(follower)].is_running() {
            bail!("the restarted follower exited");
        }
        if Instant::now() > deadline {
            bail!(
                "meta-{follower} did not catch up within {} s",
                args.catch_up_timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let catch_up = restarted.elapsed();
    if let Some((peak, _)) = memory_kib(follower_pid) {
        follower_peak = follower_peak.max(peak);
    }
    let leader_pid = nodes[index(leader)].pid().context("leader has no pid")?;
    let (leader_peak, leader_rss) = memory_kib(leader_pid).unwrap_or((0, 0));
    let snapshot_of = |id: u64| {
        nodes[index(id)]
            .spec
            .data_dir
            .join("meta")
            .join("snapshot")
            .join("current")
    };
    let leader_snapshot = file_size(&snapshot_of(leader));
    let follower_snapshot = file_size(&snapshot_of(follower));

    println!(
        "meta-snapshot: {} objects ({} inline of {} B, {} erasure-coded records)",
        args.objects,
        args.objects.div_ceil(2),
        args.inline_bytes,
        args.objects / 2
    );
    println!(
        "  load:                {:.1} s ({:.0} objects/s, {} in flight)",
        load_time.as_secs_f64(),
        args.objects as f64 / load_time.as_secs_f64().max(1e-9),
        args.concurrency
    );
    println!("  leader applied:      {leader_applied}");
    println!(
        "  snapshot file:       {:.1} MiB on the leader, {:.1} MiB installed on the follower",
        leader_snapshot as f64 / (1 << 20) as f64,
        follower_snapshot as f64 / (1 << 20) as f64
    );
    println!(
        "  catch-up:            {:.1} s (wiped follower restarted until it applied {leader_applied})",
        catch_up.as_secs_f64()
    );
    println!(
        "  peak RSS (VmHWM):    leader {:.0} MiB (now {:.0} MiB), caught-up follower {:.0} MiB",
        mib(leader_peak),
        mib(leader_rss),
        mib(follower_peak)
    );
    Ok(())
}
