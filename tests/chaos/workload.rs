//! The chaos tests' client side: S3 calls recorded in a [`History`] (invocation, completion,
//! outcome) so that `history::check` can judge them, a mixed load of such calls, and final
//! reads of every key.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::ByteStream;

use crate::history::{self, History, OpKind, Outcome, ReadResult, ValueId};

/// Every value id a test writes comes from here, so ids are unique across clients.
#[derive(Debug, Default)]
pub struct Values(AtomicU64);

impl Values {
    /// The next unused value id.
    pub fn next(&self) -> ValueId {
        ValueId(self.0.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

/// How an SDK failure counts: a 4xx answer is a definite rejection, anything else (5xx,
/// timeout, connection cut) may or may not have applied.
fn failure<E: std::fmt::Debug>(
    err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Outcome {
    match err {
        SdkError::ServiceError(e) if (400..500).contains(&e.raw().status().as_u16()) => {
            Outcome::Failed(format!("HTTP {}", e.raw().status().as_u16()))
        }
        SdkError::ServiceError(e) => {
            Outcome::Indeterminate(format!("HTTP {}", e.raw().status().as_u16()))
        }
        SdkError::TimeoutError(_) => Outcome::Indeterminate("timeout".into()),
        SdkError::DispatchFailure(_) => Outcome::Indeterminate("dispatch failure".into()),
        other => Outcome::Indeterminate(format!("{other:?}").chars().take(120).collect()),
    }
}

/// A body size for value `v`: a third small enough to be stored inline, the rest erasure coded.
pub fn size_for(v: ValueId) -> usize {
    if v.0.is_multiple_of(3) {
        2_000
    } else {
        200_000 + (v.0 as usize % 11) * 4_096
    }
}

/// PUT `key` = a new value; recorded. Returns whether it was acknowledged.
pub async fn put(
    s3: &Client,
    h: &History,
    client: u32,
    bucket: &str,
    key: &str,
    v: ValueId,
) -> bool {
    let id = h.invoke(
        client,
        OpKind::Put {
            key: key.to_owned(),
            value: v,
        },
    );
    let body = history::encode_value(v, size_for(v));
    let res = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await;
    let ok = res.is_ok();
    h.complete(
        id,
        match res {
            Ok(_) => Outcome::Ok,
            Err(e) => failure(&e),
        },
    );
    ok
}

/// DELETE `key`; recorded.
pub async fn delete(s3: &Client, h: &History, client: u32, bucket: &str, key: &str) {
    let id = h.invoke(
        client,
        OpKind::Delete {
            key: key.to_owned(),
        },
    );
    let res = s3.delete_object().bucket(bucket).key(key).send().await;
    h.complete(
        id,
        match res {
            Ok(_) => Outcome::Ok,
            Err(e) => failure(&e),
        },
    );
}

/// GET `key`; recorded. Returns the outcome.
pub async fn get(s3: &Client, h: &History, client: u32, bucket: &str, key: &str) -> Outcome {
    let id = h.invoke(
        client,
        OpKind::Get {
            key: key.to_owned(),
        },
    );
    let outcome = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(resp) => match resp.body.collect().await {
            Ok(body) => match history::decode_value(&body.into_bytes()) {
                Ok(v) => Outcome::Read(ReadResult::Value(v)),
                Err(e) => Outcome::Read(ReadResult::Corrupt(e)),
            },
            Err(e) => Outcome::Indeterminate(format!("body: {e}")),
        },
        Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => {
            Outcome::Read(ReadResult::NotFound)
        }
        Err(e) => failure(&e),
    };
    h.complete(id, outcome.clone());
    outcome
}

/// What the load does.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    /// Keys the clients pick from.
    pub keys: u32,
    /// Concurrent clients.
    pub clients: u32,
    /// Percent of operations that are puts.
    pub put: u32,
    /// Percent that are deletes (the rest are gets).
    pub delete: u32,
}

/// A running load; `stop` ends it and returns acknowledged puts per client.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<u64>>,
}

impl Load {
    /// Starts `mix.clients` clients over `mix.keys` keys named `prefix<n>`.
    pub fn start(
        s3: &Client,
        h: &Arc<History>,
        values: &Arc<Values>,
        bucket: &str,
        prefix: &str,
        mix: Mix,
    ) -> Load {
        let (keys, clients) = (mix.keys, mix.clients);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|c| {
                let (s3, h, values, stop) = (s3.clone(), h.clone(), values.clone(), stop.clone());
                let (bucket, prefix) = (bucket.to_owned(), prefix.to_owned());
                tokio::spawn(async move {
                    let mut acked = 0;
                    let mut x: u64 = 0x9E37_79B9 ^ (u64::from(c + 1) * 0x1000_0001);
                    while !stop.load(Ordering::Relaxed) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let key = format!("{prefix}{}", x % u64::from(keys));
                        let roll = ((x >> 32) % 100) as u32;
                        if roll < mix.put {
                            if put(&s3, &h, c, &bucket, &key, values.next()).await {
                                acked += 1;
                            }
                        } else if roll < mix.put + mix.delete {
                            delete(&s3, &h, c, &bucket, &key).await;
                        } else {
                            get(&s3, &h, c, &bucket, &key).await;
                        }
                    }
                    acked
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Stops the load and waits for in-flight calls; returns acknowledged puts.
    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let mut acked = 0;
        for t in self.tasks {
            acked += t.await.expect("load client");
        }
        acked
    }
}

/// Reads every key once more after the faults (retrying reads that fail for up to `patience`),
/// recording them as the history's final reads.
pub async fn final_reads(
    s3: &Client,
    h: &History,
    bucket: &str,
    keys: impl IntoIterator<Item = String>,
    patience: Duration,
) {
    for key in keys {
        let deadline = Instant::now() + patience;
        loop {
            match get(s3, h, 9_999, bucket, &key).await {
                Outcome::Read(_) => break,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "final read of {key} kept failing: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    }
}

/// Every key the history touched.
pub fn keys_of(h: &History) -> Vec<String> {
    let mut keys: Vec<String> = h.ops().iter().map(|o| o.kind.key().to_owned()).collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Checks the history and fails the test with every anomaly found.
pub fn assert_consistent(h: &History) {
    let ops = h.ops();
    let anomalies = history::check(&ops);
    eprintln!("[history] {}", h.summary());
    assert!(
        anomalies.is_empty(),
        "{} anomalies, first: {:#?}",
        anomalies.len(),
        anomalies.iter().take(10).collect::<Vec<_>>()
    );
}

/// Whether the long versions were asked for.
pub fn long() -> bool {
    std::env::var("TESSERA_CHAOS_LONG").is_ok_and(|v| v == "1")
}
