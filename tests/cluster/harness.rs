//! The one cluster harness: every test starts its own real three-zone cluster (separate
//! `tessera` processes on 127.0.0.1 ports drawn below the ephemeral range by `free_port`) in its
//! own temp folder, waits for readiness with a deadline, acts through named faults, and on drop
//! kills every child by PID, prints the processes' log tails if the test failed, and removes the
//! folder.

#![allow(dead_code)]

use aws_sdk_s3::Client;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tessera_client::{DataClient, MetaClient};
use tessera_core::blob::{ErasureBlob, ShardCopy};
use tessera_core::names::{BucketName, DataId, ObjectKey};
use tessera_devcluster::{DevCluster, DevClusterSpec, NodeEnv, NodeRole};
use tessera_proto::meta::v1 as meta_pb;

/// Settings for tests that watch repair: dead after 4 s, a pass every second.
pub const FAST_REPAIR: &[(&str, &str)] = &[
    ("TESSERA_SUSPECT_AFTER_MS", "2000"),
    ("TESSERA_DEAD_AFTER_MS", "4000"),
    ("TESSERA_REPAIR_INTERVAL_MS", "1000"),
    ("TESSERA_GC_GRACE_SECS", "60"),
];

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A running test cluster and an S3 client for it.
pub struct TestCluster {
    pub cluster: DevCluster,
    pub s3: Client,
    dir: Option<tempfile::TempDir>,
}

/// Logs a phase of a test: what must hold next.
pub fn phase(what: &str) {
    eprintln!("[phase] {what}");
}

/// An S3 client with static credentials and path-style addressing; an https endpoint is
/// trusted through the CA certificate `ca` (the dev cluster's `ca.pem`), as `AWS_CA_BUNDLE`
/// makes the aws CLI and boto3 trust it.
pub fn s3_client(
    endpoint: &str,
    access: &str,
    secret: &str,
    region: &str,
    ca: Option<&std::path::Path>,
) -> Client {
    let creds = aws_credential_types::Credentials::new(access, secret, None, None, "test");
    let mut conf = aws_sdk_s3::Config::builder();
    if let Some(ca) = ca {
        use aws_smithy_http_client::tls;
        let pem = std::fs::read(ca).expect("read the CA certificate");
        let context = tls::TlsContext::builder()
            .with_trust_store(tls::TrustStore::empty().with_pem_certificate(pem))
            .build()
            .expect("tls context");
        conf = conf.http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(
                    tls::rustls_provider::CryptoMode::AwsLc,
                ))
                .tls_context(context)
                .build_https(),
        );
    }
    let conf = conf
        .behavior_version_latest()
        .endpoint_url(endpoint)
        .region(aws_sdk_s3::config::Region::new(region.to_string()))
        .credentials_provider(creds)
        .force_path_style(true)
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(60))
                .build(),
        )
        .build();
    Client::from_conf(conf)
}

impl TestCluster {
    /// Starts a cluster with `data_per_zone` data nodes per zone.
    pub async fn start(data_per_zone: u32) -> Self {
        Self::start_with(data_per_zone, Vec::new()).await
    }

    /// Starts a cluster whose S3 endpoint speaks plain HTTP (for raw-socket tests of the HTTP
    /// layer), its processes also getting `env`.
    pub async fn start_http(data_per_zone: u32, env: Vec<(&str, &str)>) -> Self {
        Self::start_opts(ClusterOptions {
            data_per_zone,
            env,
            node_env: Vec::new(),
            http: true,
        })
        .await
    }

    /// A client of the data nodes that acts as the gateway does (its certificate), for tests
    /// that plant shards.
    pub fn data_as_gateway(&self) -> DataClient {
        DataClient::with_tls(Some(
            self.cluster
                .tls_of(NodeRole::Gateway, 1)
                .expect("the gateway's certificate"),
        ))
    }

    /// Starts a cluster whose processes also get `env` (e.g. shorter timeouts).
    pub async fn start_with(data_per_zone: u32, env: Vec<(&str, &str)>) -> Self {
        Self::start_opts(ClusterOptions {
            data_per_zone,
            env,
            node_env: Vec::new(),
            http: false,
        })
        .await
    }

    /// Starts a cluster as `opts` says: every process gets `env`, single processes also get
    /// their `node_env` entries.
    pub async fn start_opts(opts: ClusterOptions<'_>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tessera-test-")
            .tempdir()
            .expect("temp dir");
        let mut spec = spec_for(dir.path(), opts.data_per_zone, &opts.env);
        spec.https = !opts.http;
        spec.node_env = opts
            .node_env
            .iter()
            .map(|(role, node_id, key, value)| NodeEnv {
                role: *role,
                node_id: *node_id,
                key: (*key).to_owned(),
                value: (*value).to_owned(),
            })
            .collect();
        let cluster = match DevCluster::start(spec).await {
            Ok(c) => c,
            Err(e) => {
                let logs = std::fs::read_dir(dir.path().join("logs"))
                    .map(|rd| {
                        rd.filter_map(Result::ok)
                            .map(|f| {
                                let text = std::fs::read_to_string(f.path()).unwrap_or_default();
                                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                                format!(
                                    "--- {:?}\n{}",
                                    f.file_name(),
                                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    })
                    .unwrap_or_default();
                panic!("cluster did not start: {e}\n{logs}");
            }
        };
        let (ak, sk) = cluster.credentials();
        let s3 = s3_client(
            &cluster.endpoint(),
            ak,
            sk,
            cluster.region(),
            cluster.https_ca().as_deref(),
        );
        Self {
            cluster,
            s3,
            dir: Some(dir),
        }
    }

    /// Kills every process of a zone with SIGKILL.
    pub async fn kill_zone(&mut self, zone: &str) {
        phase(&format!("killing zone {zone}"));
        self.cluster.kill_zone(zone).await.expect("kill zone");
    }

    /// Starts a zone's processes again.
    pub async fn restart_zone(&mut self, zone: &str) {
        phase(&format!("restarting zone {zone}"));
        self.cluster.restart_zone(zone).await.expect("restart zone");
    }

    /// Kills one data node.
    pub async fn kill_data_node(&mut self, id: u64) {
        self.cluster
            .kill_node(NodeRole::Data, id)
            .await
            .expect("kill node");
    }

    /// Waits until the whole cluster is ready again.
    pub async fn wait_ready(&mut self) {
        self.cluster
            .wait_ready(Duration::from_secs(60))
            .await
            .expect("cluster ready");
    }

    /// Kills one process of any role with SIGKILL.
    pub async fn kill(&mut self, role: NodeRole, id: u64) {
        phase(&format!("killing {role:?} {id}"));
        self.cluster.kill_node(role, id).await.expect("kill");
    }

    /// Starts one process again.
    pub async fn restart(&mut self, role: NodeRole, id: u64) {
        phase(&format!("restarting {role:?} {id}"));
        self.cluster.restart_node(role, id).await.expect("restart");
    }

    /// A meta client for the cluster.
    pub fn meta(&self) -> MetaClient {
        self.cluster.meta_client()
    }

    /// The current meta leader's id, if one is known.
    pub async fn meta_leader(&self) -> Option<u64> {
        self.meta().cluster_status().await.ok()?.leader_id
    }

    /// (id, zone, address) of every data node in the layout.
    pub fn data_nodes(&self) -> Vec<(u64, String, String)> {
        self.cluster
            .layout()
            .nodes
            .iter()
            .filter(|n| n.role == NodeRole::Data)
            .map(|n| (n.node_id, n.zone.clone().unwrap_or_default(), n.addr()))
            .collect()
    }

    /// A data node's folder.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.cluster
            .layout()
            .nodes
            .iter()
            .find(|n| n.role == NodeRole::Data && n.node_id == id)
            .map(|n| n.data_dir.clone())
            .expect("data node in layout")
    }

    /// Every shard file of a data node.
    pub fn shard_files(&self, id: u64) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let Ok(dirs) = std::fs::read_dir(self.data_dir(id).join("shards")) else {
            return files;
        };
        for dir in dirs.flatten() {
            if let Ok(entries) = std::fs::read_dir(dir.path()) {
                files.extend(entries.flatten().map(|e| e.path()));
            }
        }
        files.sort();
        files
    }

    /// The newest report of any repair daemon.
    pub async fn repair_report(&self) -> Option<meta_pb::RepairReport> {
        let status = self.meta().cluster_status().await.ok()?;
        status
            .repair_reports
            .into_iter()
            .max_by_key(|r| r.last_scan_finished_ms)
    }

    /// Waits until a repair pass that began after this call finds every blob with all its
    /// shards on the full spread; returns that report and how long it took.
    pub async fn wait_full_redundancy(
        &self,
        timeout: Duration,
    ) -> (meta_pb::RepairReport, Duration) {
        let since = now_ms();
        let started = Instant::now();
        let deadline = started + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(status) = self.meta().cluster_status().await {
                for r in status.repair_reports {
                    if r.last_scan_started_ms > since
                        && r.last_scan_finished_ms >= r.last_scan_started_ms
                        && r.backlog == 0
                        && r.below_full == 0
                        && r.unreadable == 0
                        && r.unconfirmed == 0
                    {
                        return (r, started.elapsed());
                    }
                    last = Some(r);
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("not back to full redundancy within {timeout:?}; last report: {last:?}");
    }

    /// Runs a full scrub pass on every running data node and waits for it; returns the
    /// corrupt shards found.
    pub async fn scrub_all(&self) -> u64 {
        let data = self.cluster.data_client();
        let mut found = 0;
        let mut pending = Vec::new();
        for (id, _, addr) in self.data_nodes() {
            let Ok(before) = data.scrub_status(&addr).await else {
                continue;
            };
            let pass = data.start_scrub(&addr).await.expect("start scrub").pass;
            pending.push((id, addr, pass, before.corrupt_shards_found));
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        for (id, addr, pass, before) in pending {
            loop {
                let st = data.scrub_status(&addr).await.expect("scrub status");
                if st.passes_completed >= pass {
                    found += st.corrupt_shards_found - before;
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "scrub of data node {id} did not finish"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        found
    }

    /// The erasure-coded blob of the current version of `bucket/key` (its first part); `None`
    /// when the key does not exist or is stored inline.
    pub async fn erasure_blob(&self, bucket: &str, key: &str) -> Option<ErasureBlob> {
        let bucket = BucketName::parse(bucket).expect("bucket name");
        let key = ObjectKey::parse(key).expect("object key");
        let lookup = self
            .meta()
            .get_object(&bucket, &key, None)
            .await
            .expect("get object");
        let part = lookup.version?.parts.into_iter().next()?;
        part.blob.erasure().cloned()
    }

    /// The erasure placement of the current version of `bucket/key`: its data id, its shard
    /// copies as (index, node), and the chunks each shard holds; `None` when the key does not
    /// exist or is stored inline.
    pub async fn placement(
        &self,
        bucket: &str,
        key: &str,
    ) -> Option<(DataId, Vec<(u32, u64)>, u64)> {
        let e = self.erasure_blob(bucket, key).await?;
        let copies = e.shards.iter().map(|c| (c.shard_index, c.node.0)).collect();
        Some((e.data_id, copies, e.chunks_per_shard))
    }

    /// The file of one shard copy on its data node.
    pub fn shard_path(&self, data_id: &DataId, copy: &ShardCopy) -> PathBuf {
        let hex = data_id.to_string();
        self.data_dir(copy.node.0)
            .join("shards")
            .join(&hex[..2])
            .join(format!("{hex}.{}.{}", copy.shard_index, copy.generation))
    }

    /// Asserts that every shard of `bucket/key` is on its node as the manifest records it: the
    /// exact generation, every chunk's hash intact, the right number of chunks, and the digest
    /// the manifest holds for its index. Returns how many shards it checked.
    pub async fn verify_shards(&self, bucket: &str, key: &str) -> usize {
        let blob = self
            .erasure_blob(bucket, key)
            .await
            .unwrap_or_else(|| panic!("{key} is not erasure coded"));
        let addrs: std::collections::BTreeMap<u64, String> = self
            .data_nodes()
            .into_iter()
            .map(|(node, _, addr)| (node, addr))
            .collect();
        let data = self.cluster.data_client();
        for copy in &blob.shards {
            let (index, node) = (copy.shard_index, copy.node.0);
            let id = tessera_client::ShardId::of_copy(blob.data_id, copy);
            let st = data
                .verify_shard(&addrs[&node], &id)
                .await
                .unwrap_or_else(|e| panic!("{key} shard {index} on node {node}: {e}"));
            assert_eq!(
                st.corrupt_chunks, 0,
                "{key} shard {index} on node {node} is corrupt"
            );
            assert_eq!(
                st.chunks, blob.chunks_per_shard,
                "{key} shard {index} on node {node} has a wrong length"
            );
            let expected = blob.digest_of(index).expect("manifest digest");
            assert_eq!(
                st.digest.as_slice(),
                expected.as_slice(),
                "{key} shard {index} on node {node} is not the shard the manifest names"
            );
        }
        blob.shards.len()
    }

    /// The erasure-coded blobs (first part) of every version of `bucket/key`, newest first;
    /// inline versions and delete markers are skipped.
    pub async fn version_blobs(&self, bucket: &str, key: &str) -> Vec<ErasureBlob> {
        let bucket = BucketName::parse(bucket).expect("bucket name");
        let key = ObjectKey::parse(key).expect("object key");
        self.meta()
            .list_versions(&bucket, &key)
            .await
            .expect("list versions")
            .expect("bucket exists")
            .into_iter()
            .filter_map(|v| v.parts.into_iter().next()?.blob.erasure().cloned())
            .collect()
    }

    /// Damages one stored shard file in a way the named fault describes (see [`Tamper`]).
    pub fn tamper(&self, data_id: &DataId, copy: &ShardCopy, how: &Tamper) {
        let path = self.shard_path(data_id, copy);
        let original =
            std::fs::read(&path).unwrap_or_else(|e| panic!("read shard {}: {e}", path.display()));
        let damaged = match how {
            Tamper::ReplaceWith(other) => {
                std::fs::read(other).unwrap_or_else(|e| panic!("read {}: {e}", other.display()))
            }
            Tamper::SwapFirstTwoChunks => swap_first_two_chunks(&original),
            Tamper::RewriteConsistent { seed } => rewrite_consistent(&original, *seed),
        };
        let tmp = path.with_extension("tamper");
        std::fs::write(&tmp, &damaged).expect("write tampered shard");
        std::fs::rename(&tmp, &path).expect("replace shard");
    }

    /// Runs `tessera admin ARGS` against the cluster's meta nodes; returns its output.
    pub fn admin_output(&self, args: &[&str]) -> std::process::Output {
        let admin = tessera_devcluster::certs::admin_paths(self.cluster.root());
        std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
            .arg("admin")
            .args(args)
            .env(
                "TESSERA_META",
                self.cluster.layout().meta_endpoints().join(","),
            )
            .env("TESSERA_TLS_CA", &admin.ca)
            .env("TESSERA_TLS_CERT", &admin.cert)
            .env("TESSERA_TLS_KEY", &admin.key)
            .output()
            .expect("tessera admin")
    }

    /// Runs `tessera admin ARGS`, which must succeed; returns its standard output.
    pub fn admin_ok(&self, args: &[&str]) -> String {
        let out = self.admin_output(args);
        assert!(
            out.status.success(),
            "admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// The cluster's layout (nodes, ports, folders).
    pub fn cluster_layout(&self) -> tessera_devcluster::ClusterLayout {
        self.cluster.layout().clone()
    }

    /// The cluster's folder.
    pub fn root(&self) -> PathBuf {
        self.cluster.root().to_path_buf()
    }

    /// Stops every process gracefully, keeping the folder (for restart tests).
    pub async fn stop_keep(mut self) -> tempfile::TempDir {
        self.cluster.stop().await;
        self.dir.take().expect("dir")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== cluster logs =====\n{}", self.cluster.log_tails(40));
        }
        // DevCluster's children are killed (by PID) when it drops; the folder goes with `dir`.
    }
}

/// The spec of a test cluster in `root`; `env` is added to every process's environment.
fn spec_for(root: &std::path::Path, data_per_zone: u32, env: &[(&str, &str)]) -> DevClusterSpec {
    DevClusterSpec {
        root: root.to_path_buf(),
        binary: PathBuf::from(env!("CARGO_BIN_EXE_tessera")),
        gateway_port: 0,
        data_per_zone,
        ready_timeout: Duration::from_secs(60),
        extra_env: std::iter::once((
            "RUST_LOG",
            "info,openraft=warn,openraft::core::raft_core=off",
        ))
        .chain(env.iter().copied())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        node_env: Vec::new(),
        https: true,
    }
}

/// How to start a test cluster.
pub struct ClusterOptions<'a> {
    /// Data nodes per zone.
    pub data_per_zone: u32,
    /// Environment of every process.
    pub env: Vec<(&'a str, &'a str)>,
    /// Environment of single processes: (role, node id, variable, value).
    pub node_env: Vec<(NodeRole, u64, &'a str, &'a str)>,
    /// Serve the S3 endpoint over plain HTTP (for tests that write raw HTTP/1.1 on a socket);
    /// HTTPS otherwise.
    pub http: bool,
}

/// Restarts a stopped cluster from its folder (its layout fixes ports and node counts).
pub async fn restart_from(dir: tempfile::TempDir) -> TestCluster {
    let cluster = DevCluster::start(spec_for(dir.path(), 2, &[]))
        .await
        .expect("restart cluster");
    let (ak, sk) = cluster.credentials();
    let s3 = s3_client(
        &cluster.endpoint(),
        ak,
        sk,
        cluster.region(),
        cluster.https_ca().as_deref(),
    );
    TestCluster {
        cluster,
        s3,
        dir: Some(dir),
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The S3 error code of a failed SDK call.
pub fn error_code<E, R>(err: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::fmt::Debug,
    R: std::fmt::Debug,
{
    match err {
        aws_sdk_s3::error::SdkError::ServiceError(e) => e.err().code().unwrap_or("").to_string(),
        other => format!("{other:?}"),
    }
}

/// The HTTP status of a failed SDK call.
pub fn error_status<E>(
    err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> u16 {
    match err {
        aws_sdk_s3::error::SdkError::ServiceError(e) => e.raw().status().as_u16(),
        _ => 0,
    }
}

/// Ways to damage a stored shard so that a node may serve wrong bytes.
#[derive(Debug, Clone)]
pub enum Tamper {
    /// The file is replaced by another shard file (another object's, or an older version's),
    /// byte for byte: its header names another blob.
    ReplaceWith(PathBuf),
    /// The first two chunks trade places, their hash-table entries too, and the footer's digest
    /// is recomputed over the new table: the file is consistent except that each chunk sits at
    /// a position its hash does not name.
    SwapFirstTwoChunks,
    /// The file keeps its header but every chunk is replaced with other bytes whose hashes,
    /// table and digest are recomputed correctly: the node itself finds nothing wrong; only
    /// the manifest's digest tells it is not the shard that was written.
    RewriteConsistent {
        /// Seed of the replacement bytes.
        seed: u64,
    },
}

/// (header, chunk count) of a shard file's bytes.
fn shard_layout(file: &[u8]) -> (tessera_core::shard_file::ShardFileHeader, usize) {
    use tessera_core::shard_file::{ShardFileHeader, chunk_count_from_file_len};
    let header = ShardFileHeader::decode(file).expect("shard header");
    let chunks = chunk_count_from_file_len(header.chunk_size, file.len() as u64).expect("length");
    (header, usize::try_from(chunks).expect("chunks"))
}

/// A complete shard file: header, chunks, their table, a footer with the table's digest.
fn assemble_shard(
    header: &tessera_core::shard_file::ShardFileHeader,
    chunks: &[Vec<u8>],
    table: &[u8],
) -> Vec<u8> {
    use tessera_core::shard_file::{ShardFileFooter, shard_digest};
    let digest = shard_digest(&header.data_id, header.shard_index, table).expect("whole table");
    let footer = ShardFileFooter {
        chunks: chunks.len() as u64,
        digest,
    };
    let mut out = header.encode().to_vec();
    for c in chunks {
        out.extend_from_slice(c);
    }
    out.extend_from_slice(table);
    out.extend_from_slice(&footer.encode());
    out
}

fn swap_first_two_chunks(file: &[u8]) -> Vec<u8> {
    use tessera_core::shard_file::HEADER_LEN;
    let (header, count) = shard_layout(file);
    assert!(count >= 2, "a chunk swap needs two chunks");
    let size = header.chunk_size as usize;
    let start = HEADER_LEN as usize;
    let mut chunks: Vec<Vec<u8>> = (0..count)
        .map(|i| file[start + i * size..start + (i + 1) * size].to_vec())
        .collect();
    let table_at = start + count * size;
    let mut table: Vec<[u8; 32]> = (0..count)
        .map(|i| {
            file[table_at + i * 32..table_at + (i + 1) * 32]
                .try_into()
                .expect("32 bytes")
        })
        .collect();
    chunks.swap(0, 1);
    table.swap(0, 1);
    assemble_shard(&header, &chunks, &table.concat())
}

fn rewrite_consistent(file: &[u8], seed: u64) -> Vec<u8> {
    use tessera_core::shard_file::chunk_hash;
    let (header, count) = shard_layout(file);
    let size = header.chunk_size as usize;
    let chunks: Vec<Vec<u8>> = (0..count)
        .map(|i| pattern(size, seed.wrapping_add(i as u64)))
        .collect();
    let table: Vec<u8> = chunks
        .iter()
        .enumerate()
        .flat_map(|(i, c)| chunk_hash(&header.data_id, header.shard_index, i as u64, c))
        .collect();
    assemble_shard(&header, &chunks, &table)
}
