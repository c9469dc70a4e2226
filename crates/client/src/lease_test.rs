use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tessera_runtime::worker::WorkerState;

use super::*;
use crate::meta::{CommandKind, FaultPlan, MetaClientError};
use crate::testing::eventually;
use crate::testing::meta_node::MetaModel;

/// Meta's lease rules on tokio's clock: a lease is live while the clock is below its expiry, a
/// renewal of an ended lease is `LeaseExpired`, a release ends it now.
#[derive(Clone, Default)]
struct LeaseBook(Arc<Mutex<Book>>);

#[derive(Default)]
struct Book {
    next_id: u64,
    expiries: BTreeMap<u64, Instant>,
    grants: Vec<u64>,
    renewals: Vec<u64>,
    releases: Vec<u64>,
    /// Every call fails as if meta were unreachable.
    unreachable: bool,
}

impl LeaseBook {
    fn lock(&self) -> MutexGuard<'_, Book> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn live(&self, lease_id: u64) -> bool {
        self.lock()
            .expiries
            .get(&lease_id)
            .is_some_and(|at| Instant::now() < *at)
    }

    fn down() -> CommandError {
        CommandError::Client(MetaClientError::Unavailable {
            attempts: 3,
            last: "meta down".into(),
        })
    }

    fn lease(lease_id: u64) -> WriteLease {
        WriteLease {
            lease_id,
            holder: "test".into(),
            granted_ms: 0,
            expires_ms: 0,
        }
    }
}

impl LeaseService for LeaseBook {
    async fn grant(&self, _holder: &str, duration: Duration) -> Result<WriteLease, CommandError> {
        let mut book = self.lock();
        if book.unreachable {
            return Err(LeaseBook::down());
        }
        book.next_id += 1;
        let id = book.next_id;
        book.expiries.insert(id, Instant::now() + duration);
        book.grants.push(id);
        Ok(LeaseBook::lease(id))
    }

    async fn renew(&self, lease_id: u64, duration: Duration) -> Result<WriteLease, CommandError> {
        if self.lock().unreachable {
            return Err(LeaseBook::down());
        }
        if !self.live(lease_id) {
            return Err(CommandError::Rule(MetaRuleError::LeaseExpired { lease_id }));
        }
        let mut book = self.lock();
        book.expiries.insert(lease_id, Instant::now() + duration);
        book.renewals.push(lease_id);
        Ok(LeaseBook::lease(lease_id))
    }

    async fn release(&self, lease_id: u64) -> Result<(), CommandError> {
        let mut book = self.lock();
        if book.unreachable {
            return Err(LeaseBook::down());
        }
        book.expiries.insert(lease_id, Instant::now());
        book.releases.push(lease_id);
        Ok(())
    }
}

fn start(book: &LeaseBook) -> (LeaseHandle, WorkerHandle, WorkerRegistry, Shutdown) {
    let registry = WorkerRegistry::new();
    let shutdown = Shutdown::new();
    let keeper = LeaseKeeper::new(book.clone(), LeaseConfig::new("gateway test")).expect("config");
    let (handle, worker) = keeper.spawn(&registry, shutdown.clone());
    (handle, worker, registry, shutdown)
}

async fn sleep(secs: f64) {
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn grants_at_start_and_renews_every_ten_seconds() {
    let book = LeaseBook::default();
    let (handle, worker, registry, shutdown) = start(&book);
    sleep(0.001).await;
    let guard = handle.acquire().expect("granted at start");
    assert_eq!(guard.lease_id(), 1);
    assert_eq!(handle.current_lease_id(), Some(1));
    assert_eq!(handle.writes_in_flight(), 1);
    drop(guard);
    assert_eq!(handle.writes_in_flight(), 0);

    sleep(35.0).await;
    assert_eq!(book.lock().renewals, [1, 1, 1], "at 10, 20 and 30 s");
    // Well past the first grant's 60 s: renewals keep it live and handed out.
    sleep(60.0).await;
    assert!(book.live(1));
    assert_eq!(handle.acquire().expect("live").lease_id(), 1);
    assert_eq!(book.lock().grants, [1]);

    let status = registry.get("lease-keeper").expect("listed as a worker");
    assert_eq!(status.state, WorkerState::Idle);
    assert!(
        status.progress.text.starts_with("lease 1"),
        "{:?}",
        status.progress
    );
    shutdown.trigger();
    worker.stopped().await;
}

#[tokio::test(start_paused = true)]
async fn no_lease_is_handed_out_before_the_first_grant() {
    let book = LeaseBook::default();
    book.lock().unreachable = true;
    let (handle, _worker, registry, _shutdown) = start(&book);
    sleep(0.5).await;
    let err = handle.acquire().expect_err("nothing granted");
    assert_eq!(err, LeaseError::NotGranted);
    assert_eq!(err.code(), "lease_not_granted");
    assert!(err.is_retryable());
    let status = registry.get("lease-keeper").expect("listed");
    assert!(
        status.progress.text.contains("meta down"),
        "{:?}",
        status.progress
    );

    book.lock().unreachable = false;
    sleep(1.0).await;
    assert_eq!(handle.acquire().expect("granted on retry").lease_id(), 1);
}

#[tokio::test(start_paused = true)]
async fn writes_are_refused_once_the_lease_may_have_expired() {
    let book = LeaseBook::default();
    let (handle, _worker, _registry, _shutdown) = start(&book);
    sleep(0.001).await;
    book.lock().unreachable = true;
    // The grant was sent at 0: handed out until 60 s - 10 s of margin.
    sleep(49.9).await;
    assert!(handle.acquire().is_ok());
    sleep(0.2).await;
    let err = handle.acquire().expect_err("stale");
    assert!(
        matches!(err, LeaseError::Stale { lease_id: 1, since_renewal } if since_renewal >= Duration::from_secs(50)),
        "{err:?}"
    );
    assert_eq!(err.code(), "lease_stale");

    // Meta returns before the lease ended: the renewal brings it back.
    book.lock().unreachable = false;
    sleep(1.0).await;
    assert_eq!(handle.acquire().expect("renewed").lease_id(), 1);
    assert_eq!(book.lock().grants, [1]);
}

#[tokio::test(start_paused = true)]
async fn a_lease_meta_calls_expired_is_dropped_and_a_new_one_granted() {
    let book = LeaseBook::default();
    let (handle, _worker, _registry, _shutdown) = start(&book);
    sleep(0.001).await;
    let old = handle.acquire().expect("granted");
    // Meta ends it (a clock jump, an operator): the next renewal learns so.
    book.lock().expiries.insert(1, Instant::now());
    sleep(10.5).await;
    assert_eq!(book.lock().grants, [1, 2]);
    assert_eq!(handle.acquire().expect("new lease").lease_id(), 2);
    drop(old);
    sleep(30.0).await;
    assert!(
        !book.lock().renewals.contains(&1),
        "an expired lease is never renewed again"
    );
}

#[tokio::test(start_paused = true)]
async fn rotation_keeps_the_old_lease_renewed_until_its_last_write_then_releases_it() {
    let book = LeaseBook::default();
    let (handle, _worker, _registry, _shutdown) = start(&book);
    sleep(0.001).await;
    let long_write = handle.acquire().expect("granted");
    let short_write = handle.acquire().expect("granted");
    assert_eq!((long_write.lease_id(), short_write.lease_id()), (1, 1));
    drop(short_write);

    sleep(600.5).await;
    assert_eq!(book.lock().grants, [1, 2], "rotated after 10 minutes");
    assert_eq!(handle.acquire().expect("new writes").lease_id(), 2);
    assert!(
        book.lock().releases.is_empty(),
        "a write still holds lease 1"
    );
    assert_eq!(handle.writes_in_flight(), 1);

    // The old lease outlives its last grant's duration because it keeps being renewed.
    sleep(120.0).await;
    assert!(book.live(1));
    let renewed_after_rotation = book.lock().renewals.iter().filter(|id| **id == 1).count();
    assert!(renewed_after_rotation > 60, "{renewed_after_rotation}");

    drop(long_write);
    sleep(0.001).await;
    assert_eq!(
        book.lock().releases,
        [1],
        "released once its last write ended"
    );
    assert!(!book.live(1));
    assert!(book.live(2));
    sleep(30.0).await;
    assert_eq!(book.lock().releases, [1]);
}

#[test]
fn configurations_that_cannot_keep_a_lease_are_refused() {
    let good = LeaseConfig::new("g");
    assert_eq!(good.validate(), Ok(()));
    let margin = LeaseConfig {
        safety_margin: Duration::from_secs(60),
        ..good.clone()
    };
    assert_eq!(
        margin.validate(),
        Err(LeaseConfigError::MarginTooLarge {
            duration: good.duration,
            margin: Duration::from_secs(60),
        })
    );
    assert_eq!(
        margin.validate().map_err(|e| e.code()),
        Err("lease_margin_too_large")
    );
    let usable = good.duration - good.safety_margin;
    let rare = LeaseConfig {
        renew_every: Duration::from_secs(49),
        ..good
    };
    let err = rare.validate().expect_err("renewal after the margin");
    let too_rare = LeaseConfigError::RenewTooRare {
        renew_every: Duration::from_secs(49),
        usable,
    };
    assert_eq!(err, too_rare);
    assert_eq!(err.code(), "lease_renew_too_rare");
    assert!(!err.is_retryable());
    assert_eq!(
        LeaseKeeper::new(LeaseBook::default(), rare).err(),
        Some(too_rare)
    );
}

#[tokio::test]
async fn the_keeper_holds_a_lease_through_the_meta_client() {
    let model = MetaModel::default();
    let meta = MetaClient::new(vec![model.serve().await]).with_fault(FaultPlan::none());
    let config = LeaseConfig {
        duration: Duration::from_millis(1500),
        renew_every: Duration::from_millis(100),
        safety_margin: Duration::from_millis(300),
        retry_after: Duration::from_millis(50),
        ..LeaseConfig::new("gateway 127.0.0.1:9000")
    };
    let keeper = LeaseKeeper::new(meta, config).expect("config");
    let registry = WorkerRegistry::new();
    let shutdown = Shutdown::new();
    let (handle, worker) = keeper.spawn(&registry, shutdown.clone());
    assert!(eventually(Duration::from_secs(5), || handle.acquire().is_ok()).await);
    let guard = handle.acquire().expect("granted");
    assert!(
        eventually(Duration::from_secs(5), || {
            model.lock().received_of(CommandKind::RenewLease).len() >= 2
        })
        .await
    );
    let holder = model
        .lock()
        .leases
        .get(&guard.lease_id())
        .map(|lease| lease.holder.clone());
    assert_eq!(holder.as_deref(), Some("gateway 127.0.0.1:9000"));
    shutdown.trigger();
    worker.stopped().await;
}
