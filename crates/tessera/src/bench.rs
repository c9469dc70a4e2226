//! `tessera bench`: a load generator for any S3 endpoint. The standard suite measures PUT and
//! GET throughput of 1 MiB and 64 MiB objects at concurrency 8 and 4 KiB PUT/GET ops/s at
//! concurrency 32, each with p50 and p99 latency. Credentials come from the usual AWS_*
//! variables (dev.env sets them). `tessera bench meta-snapshot` measures the meta group instead
//! (see `bench_meta`).

use anyhow::{Context, Result, bail};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Flags of `tessera bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A benchmark other than the S3 suite.
    #[command(subcommand)]
    command: Option<BenchCommand>,
    /// S3 endpoint.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint: Option<String>,
    /// Access key.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    access_key: Option<String>,
    /// Secret key (from the environment only).
    #[arg(skip)]
    _secret: (),
    /// Region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// CA certificate (PEM) that an https endpoint's certificate chains to (dev.env sets it
    /// to the dev cluster's CA).
    #[arg(long, env = "AWS_CA_BUNDLE")]
    ca_bundle: Option<PathBuf>,
    /// Bucket to use (created if missing).
    #[arg(long, default_value = "tessera-bench")]
    bucket: String,
    /// Seconds per scenario.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Scenarios to run (comma-separated), or "standard" for the whole suite:
    /// put-1m, get-1m, put-64m, get-64m, put-4k, get-4k. Also available: put-16m, get-16m,
    /// list-1k (8 clients listing 5,000 keys 1,000 a page; its ops/s column counts keys),
    /// put-1g (16 clients each streaming a 1 GiB object from a file, to watch the gateway's
    /// memory), and "compare" (the cases scripts/compare-peer runs: put-1m, get-1m, put-16m,
    /// get-16m, put-4k, get-4k, list-1k).
    #[arg(long, default_value = "standard", value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Clients per scenario instead of the scenario's own (e.g. 1 to see the latency of one
    /// request alone).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Server-side encryption of the objects written: s3 (SSE-S3, what the cluster does when
    /// asked for nothing), kms (SSE-KMS under the default key aws/s3), kms-bucket-key (the same
    /// with an S3 Bucket Key), dsse (DSSE-KMS) or c (SSE-C with a key the bench makes; needs
    /// https or a gateway allowing SSE-C over HTTP).
    #[arg(long, value_enum, default_value_t = SseMode::S3)]
    sse: SseMode,
}

/// The server-side encryption the bench asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SseMode {
    /// SSE-S3 (no header: the default).
    S3,
    /// SSE-KMS under the default KMS key.
    Kms,
    /// SSE-KMS under the default KMS key, with an S3 Bucket Key.
    KmsBucketKey,
    /// DSSE-KMS under the default KMS key.
    Dsse,
    /// SSE-C with a random key of the bench's own.
    C,
}

/// The headers of one SSE mode, applied to every PUT and GET of a run.
#[derive(Debug, Clone)]
struct Sse {
    mode: SseMode,
    /// SSE-C: the key and its MD5, both base64.
    customer: Option<(String, String)>,
}

impl Sse {
    fn new(mode: SseMode) -> Sse {
        use md5::Digest;
        let customer = (mode == SseMode::C).then(|| {
            let key: [u8; 32] = rand::random();
            let md5 = md5::Md5::digest(key);
            (
                tessera_core::checksum::to_base64(&key),
                tessera_core::checksum::to_base64(&md5),
            )
        });
        Sse { mode, customer }
    }

    fn put(
        &self,
        b: aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder,
    ) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
        use aws_sdk_s3::types::ServerSideEncryption as E;
        match (self.mode, &self.customer) {
            (SseMode::Kms, _) => b.server_side_encryption(E::AwsKms),
            (SseMode::KmsBucketKey, _) => {
                b.server_side_encryption(E::AwsKms).bucket_key_enabled(true)
            }
            (SseMode::Dsse, _) => b.server_side_encryption(E::AwsKmsDsse),
            (SseMode::C, Some((key, md5))) => b
                .sse_customer_algorithm("AES256")
                .sse_customer_key(key)
                .sse_customer_key_md5(md5),
            _ => b,
        }
    }

    fn get(
        &self,
        b: aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder,
    ) -> aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder {
        match &self.customer {
            Some((key, md5)) => b
                .sse_customer_algorithm("AES256")
                .sse_customer_key(key)
                .sse_customer_key_md5(md5),
            None => b,
        }
    }
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Three local meta nodes load many objects, then a wiped follower catches up from a
    /// snapshot: prints load rate, snapshot size, catch-up time and peak memory.
    MetaSnapshot(crate::bench_meta::MetaSnapshotArgs),
    /// Seals and opens a buffer with the segment framing on one core (one layer and DSSE's
    /// two) and prints MiB/s both ways: the per-core cost of encryption, no cluster needed.
    Seal(crate::bench_seal::SealArgs),
}

#[derive(Debug, Clone, Copy)]
struct Scenario {
    name: &'static str,
    put: bool,
    size: usize,
    concurrency: usize,
}

/// LIST of a prefix holding [`LIST_KEYS`] keys, 1,000 keys a page, by 8 clients; its line
/// counts pages as operations and keys in the ops/s column.
const LIST: Scenario = Scenario {
    name: "list-1k",
    put: false,
    size: 0,
    concurrency: 8,
};

/// Keys under the LIST scenario's prefix.
const LIST_KEYS: usize = 5000;

/// Scenarios outside the standard suite, by name.
const EXTRA: [Scenario; 4] = [
    Scenario {
        name: "put-16m",
        put: true,
        size: 16 << 20,
        concurrency: 8,
    },
    Scenario {
        name: "get-16m",
        put: false,
        size: 16 << 20,
        concurrency: 8,
    },
    LIST,
    BIG,
];

/// The cases the performance comparison with a peer runs (`--scenarios compare`).
const COMPARE: [&str; 7] = [
    "put-1m", "get-1m", "put-16m", "get-16m", "put-4k", "get-4k", "list-1k",
];

/// 16 clients each uploading 1 GiB, streamed from a file so the client holds no copy.
const BIG: Scenario = Scenario {
    name: "put-1g",
    put: true,
    size: 1 << 30,
    concurrency: 16,
};

const SUITE: [Scenario; 6] = [
    Scenario {
        name: "put-1m",
        put: true,
        size: 1 << 20,
        concurrency: 8,
    },
    Scenario {
        name: "get-1m",
        put: false,
        size: 1 << 20,
        concurrency: 8,
    },
    Scenario {
        name: "put-64m",
        put: true,
        size: 64 << 20,
        concurrency: 8,
    },
    Scenario {
        name: "get-64m",
        put: false,
        size: 64 << 20,
        concurrency: 8,
    },
    Scenario {
        name: "put-4k",
        put: true,
        size: 4 << 10,
        concurrency: 32,
    },
    Scenario {
        name: "get-4k",
        put: false,
        size: 4 << 10,
        concurrency: 32,
    },
];

/// Builds an S3 client for an endpoint with static credentials (path-style addressing); an
/// https endpoint is trusted through the CA certificate in `ca_bundle` (PEM) when given.
pub fn s3_client(
    endpoint: &str,
    access: &str,
    secret: &str,
    region: &str,
    ca_bundle: Option<&std::path::Path>,
) -> Result<aws_sdk_s3::Client> {
    let creds = aws_credential_types::Credentials::new(access, secret, None, None, "tessera");
    let mut conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .endpoint_url(endpoint)
        .region(aws_sdk_s3::config::Region::new(region.to_string()))
        .credentials_provider(creds)
        .force_path_style(true);
    if let Some(ca) = ca_bundle {
        use aws_smithy_http_client::tls;
        let pem = std::fs::read(ca).with_context(|| format!("read {}", ca.display()))?;
        let context = tls::TlsContext::builder()
            .with_trust_store(tls::TrustStore::empty().with_pem_certificate(pem))
            .build()
            .context("CA bundle")?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::AwsLc,
            ))
            .tls_context(context)
            .build_https();
        conf = conf.http_client(http);
    }
    Ok(aws_sdk_s3::Client::from_conf(conf.build()))
}

struct Outcome {
    latencies_us: Vec<u64>,
    errors: u64,
    elapsed: Duration,
}

/// Uploads one object per worker, each streamed from the same file on disk.
async fn run_streamed_puts(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    s: Scenario,
    sse: &Sse,
) -> Result<Outcome> {
    let path = std::env::temp_dir().join(format!(
        "tessera-bench-{}-{}.bin",
        s.size,
        std::process::id()
    ));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&path)?;
        let block: Vec<u8> = (0..1 << 20).map(|i: usize| (i * 31 % 251) as u8).collect();
        for _ in 0..s.size / block.len() {
            f.write_all(&block)?;
        }
    }
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..s.concurrency {
        let client = client.clone();
        let bucket = bucket.to_string();
        let path = path.clone();
        let sse = sse.clone();
        workers.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let body = ByteStream::from_path(&path).await.ok()?;
            sse.put(client.put_object())
                .bucket(&bucket)
                .key(format!("{}/obj-{w}", s.name))
                .body(body)
                .send()
                .await
                .ok()?;
            Some(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX))
        }));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for w in workers {
        match w.await {
            Ok(Some(l)) => latencies_us.push(l),
            _ => errors += 1,
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(Outcome {
        latencies_us,
        errors,
        elapsed: start.elapsed(),
    })
}

async fn run_scenario(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    s: Scenario,
    seconds: u64,
    sse: &Sse,
) -> Outcome {
    let payload = Bytes::from(
        (0..s.size)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let prefix = format!(
        "{}-{}",
        s.name.trim_start_matches("get-").trim_start_matches("put-"),
        s.size
    );
    // GETs read objects written beforehand, one per worker slot.
    if !s.put {
        for i in 0..s.concurrency {
            let _ = sse
                .put(client.put_object())
                .bucket(bucket)
                .key(format!("{prefix}/seed-{i}"))
                .body(ByteStream::from(payload.clone()))
                .send()
                .await;
        }
    }
    let counter = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..s.concurrency {
        let client = client.clone();
        let bucket = bucket.to_string();
        let payload = payload.clone();
        let counter = counter.clone();
        let errors = errors.clone();
        let prefix = prefix.clone();
        let sse = sse.clone();
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t0 = Instant::now();
                let ok = if s.put {
                    sse.put(client.put_object())
                        .bucket(&bucket)
                        .key(format!("{prefix}/obj-{n}"))
                        .body(ByteStream::from(payload.clone()))
                        .send()
                        .await
                        .is_ok()
                } else {
                    match sse
                        .get(client.get_object())
                        .bucket(&bucket)
                        .key(format!("{prefix}/seed-{w}"))
                        .send()
                        .await
                    {
                        Ok(out) => out
                            .body
                            .collect()
                            .await
                            .map(|b| b.into_bytes().len() == payload.len())
                            .unwrap_or(false),
                        Err(_) => false,
                    }
                };
                if ok {
                    lat.push(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let mut latencies_us = Vec::new();
    for w in workers {
        if let Ok(l) = w.await {
            latencies_us.extend(l);
        }
    }
    Outcome {
        latencies_us,
        errors: errors.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    }
}

/// The scenarios `names` asks for: names from the suite or [`EXTRA`], "standard" (the suite)
/// or "compare" ([`COMPARE`]).
fn select_scenarios(names: &[String]) -> Result<Vec<Scenario>> {
    let mut out = Vec::new();
    for name in names {
        match name.as_str() {
            "standard" => out.extend(SUITE),
            "compare" => {
                for case in COMPARE {
                    out.extend(select_scenarios(&[case.to_owned()])?);
                }
            }
            _ => match SUITE.iter().chain(EXTRA.iter()).find(|s| s.name == name) {
                Some(s) => out.push(*s),
                None => bail!("unknown scenario {name}"),
            },
        }
    }
    Ok(out)
}

/// Lists the [`LIST`] prefix over and over for `seconds`, 1,000 keys a page, after filling
/// it with [`LIST_KEYS`] empty objects if it holds fewer; one latency per page, keys counted
/// in `keys`.
async fn run_list(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    s: Scenario,
    seconds: u64,
    keys: &AtomicU64,
) -> Outcome {
    let prefix = "list-1k/";
    let present = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .start_after(format!("{prefix}{:06}", LIST_KEYS - 2))
        .send()
        .await
        .map(|o| o.key_count.unwrap_or(0))
        .unwrap_or(0);
    if present == 0 {
        let next = Arc::new(AtomicU64::new(0));
        let mut fillers = Vec::new();
        for _ in 0..32 {
            let (client, bucket, next) = (client.clone(), bucket.to_owned(), next.clone());
            fillers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= LIST_KEYS as u64 {
                        break;
                    }
                    let _ = client
                        .put_object()
                        .bucket(&bucket)
                        .key(format!("{prefix}{i:06}"))
                        .body(ByteStream::from_static(b""))
                        .send()
                        .await;
                }
            }));
        }
        for f in fillers {
            let _ = f.await;
        }
    }
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..s.concurrency {
        let (client, bucket, errors) = (client.clone(), bucket.to_owned(), errors.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut listed = 0_u64;
            let mut token: Option<String> = None;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                match client
                    .list_objects_v2()
                    .bucket(&bucket)
                    .prefix(prefix)
                    .max_keys(1000)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                {
                    Ok(page) => {
                        lat.push(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
                        listed += page.contents().len() as u64;
                        token = page.next_continuation_token;
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (lat, listed)
        }));
    }
    let mut latencies_us = Vec::new();
    for w in workers {
        if let Ok((l, listed)) = w.await {
            latencies_us.extend(l);
            keys.fetch_add(listed, Ordering::Relaxed);
        }
    }
    Outcome {
        latencies_us,
        errors: errors.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Runs the selected scenarios and prints one line each.
pub async fn run(args: BenchArgs) -> Result<()> {
    match args.command {
        Some(BenchCommand::MetaSnapshot(meta)) => return crate::bench_meta::run(meta).await,
        Some(BenchCommand::Seal(seal)) => return crate::bench_seal::run(seal),
        None => {}
    }
    let endpoint = args
        .endpoint
        .context("--endpoint (or AWS_ENDPOINT_URL) is required")?;
    let access_key = args
        .access_key
        .context("--access-key (or AWS_ACCESS_KEY_ID) is required")?;
    let secret =
        std::env::var("AWS_SECRET_ACCESS_KEY").context("AWS_SECRET_ACCESS_KEY is required")?;
    let selected = select_scenarios(&args.scenarios)?;
    let selected: Vec<Scenario> = match args.concurrency {
        Some(n) => selected
            .into_iter()
            .map(|s| Scenario {
                concurrency: n.max(1),
                ..s
            })
            .collect(),
        None => selected,
    };
    let client = s3_client(
        &endpoint,
        &access_key,
        &secret,
        &args.region,
        args.ca_bundle.as_deref(),
    )?;
    if client
        .head_bucket()
        .bucket(&args.bucket)
        .send()
        .await
        .is_err()
    {
        client
            .create_bucket()
            .bucket(&args.bucket)
            .send()
            .await
            .context("cannot create the bench bucket")?;
    }
    let sse = Sse::new(args.sse);
    println!("sse: {:?}", args.sse);
    println!(
        "{:<9} {:>5} {:>9} {:>7} {:>10} {:>9} {:>9} {:>6}",
        "scenario", "conc", "size", "ops", "MiB/s", "ops/s", "p50 ms", "p99 ms"
    );
    for s in selected {
        let keys = AtomicU64::new(0);
        let mut o = if s.name == BIG.name {
            run_streamed_puts(&client, &args.bucket, s, &sse).await?
        } else if s.name == LIST.name {
            run_list(&client, &args.bucket, s, args.seconds, &keys).await
        } else {
            run_scenario(&client, &args.bucket, s, args.seconds, &sse).await
        };
        o.latencies_us.sort_unstable();
        let secs = o.elapsed.as_secs_f64().max(1e-9);
        let ops = if s.name == LIST.name {
            keys.load(Ordering::Relaxed) as f64
        } else {
            o.latencies_us.len() as f64
        };
        let mib = ops * s.size as f64 / (1024.0 * 1024.0) / secs;
        println!(
            "{:<9} {:>5} {:>9} {:>7} {:>10.1} {:>9.1} {:>9.2} {:>6.1}{}",
            s.name,
            s.concurrency,
            s.size,
            o.latencies_us.len(),
            mib,
            ops / secs,
            percentile(&o.latencies_us, 0.50),
            percentile(&o.latencies_us, 0.99),
            if o.errors > 0 {
                format!("  ({} errors)", o.errors)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_c_runs_send_a_256_bit_key_and_its_md5_and_other_modes_no_key() {
        use md5::Digest;
        let c = Sse::new(SseMode::C);
        let (key, md5) = c.customer.expect("a customer key");
        let key = tessera_core::checksum::from_base64(&key).expect("base64 key");
        assert_eq!(key.len(), 32);
        assert_eq!(
            tessera_core::checksum::from_base64(&md5).expect("base64 md5"),
            md5::Md5::digest(&key).to_vec()
        );
        for mode in [
            SseMode::S3,
            SseMode::Kms,
            SseMode::KmsBucketKey,
            SseMode::Dsse,
        ] {
            assert!(Sse::new(mode).customer.is_none(), "{mode:?}");
        }
    }

    #[test]
    fn scenarios_are_chosen_by_name_and_by_set() {
        let names = |v: &[&str]| -> Vec<&'static str> {
            let owned: Vec<String> = v.iter().map(|s| (*s).to_owned()).collect();
            select_scenarios(&owned)
                .expect("known")
                .iter()
                .map(|s| s.name)
                .collect()
        };
        assert_eq!(names(&["standard"]), SUITE.map(|s| s.name).to_vec());
        assert_eq!(names(&["compare"]), COMPARE.to_vec());
        assert_eq!(names(&["list-1k", "put-1g"]), ["list-1k", "put-1g"]);
        assert!(select_scenarios(&["put-2m".to_owned()]).is_err());
        let list = select_scenarios(&["list-1k".to_owned()]).expect("list");
        assert_eq!((list[0].concurrency, list[0].size), (8, 0));
        let big = select_scenarios(&["get-16m".to_owned()]).expect("16m");
        assert_eq!((big[0].put, big[0].size), (false, 16 << 20));
    }

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
