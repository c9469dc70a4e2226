//! The write lease of a gateway or repair daemon: a [`LeaseKeeper`] worker grants a lease at
//! start, renews it every [`RENEW_EVERY`] for [`LEASE_DURATION`], rotates to a fresh lease every
//! [`ROTATE_EVERY`] and releases the old one once no write started under it is in flight; writes
//! take the current lease with [`LeaseHandle::acquire`] and hold it until their
//! [`LeaseGuard`] drops.
//!
//! Invariant: `acquire` hands out a lease only while the keeper's own monotonic estimate says it
//! is live: the last successful grant or renewal was *sent* less than `duration - margin` ago
//! (meta computes the expiry from its clock when the command applies, which is after the send;
//! the margin covers a new leader's clock running ahead). A lease with a write in flight under
//! it stays renewed until the write's guard drops; a lease meta calls expired is dropped at once
//! and a new one granted. Meta stays the judge: a write whose lease ended anyway is refused with
//! `LeaseExpired` when it commits, never accepted.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tessera_core::lease::WriteLease;
use tessera_core::meta_error::MetaRuleError;
use tessera_runtime::shutdown::Shutdown;
use tessera_runtime::worker::{
    StepOutcome, Worker, WorkerError, WorkerHandle, WorkerProgress, WorkerRegistry, WorkerWaker,
    spawn_worker,
};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::meta::{CommandError, MetaClient};

/// How long each grant or renewal extends a lease.
pub const LEASE_DURATION: Duration = Duration::from_secs(60);
/// How often a held lease is renewed.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How long one lease serves new writes before the keeper moves to a fresh one (so a lease's
/// orphans become collectable within a bounded time).
pub const ROTATE_EVERY: Duration = Duration::from_secs(600);
/// How much sooner than `duration` after a renewal the keeper stops handing the lease out.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(10);
/// How soon a failed grant or renewal is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How a keeper paces its lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Who holds it, for operators ("gateway 10.0.0.5:9000").
    pub holder: String,
    /// How long each grant or renewal extends it.
    pub duration: Duration,
    /// How often it is renewed.
    pub renew_every: Duration,
    /// How long a lease serves new writes.
    pub rotate_every: Duration,
    /// How much sooner than `duration` after a renewal it stops being handed out.
    pub safety_margin: Duration,
    /// How soon a failed call is retried.
    pub retry_after: Duration,
}

impl LeaseConfig {
    /// The default pacing for `holder`.
    pub fn new(holder: impl Into<String>) -> LeaseConfig {
        LeaseConfig {
            holder: holder.into(),
            duration: LEASE_DURATION,
            renew_every: RENEW_EVERY,
            rotate_every: ROTATE_EVERY,
            safety_margin: SAFETY_MARGIN,
            retry_after: RETRY_AFTER,
        }
    }

    /// Checks that a renewal always comes before the lease stops being handed out.
    pub fn validate(&self) -> Result<(), LeaseConfigError> {
        let usable = self.duration.saturating_sub(self.safety_margin);
        if usable.is_zero() {
            return Err(LeaseConfigError::MarginTooLarge {
                duration: self.duration,
                margin: self.safety_margin,
            });
        }
        if self.renew_every.is_zero() || self.renew_every + self.retry_after >= usable {
            return Err(LeaseConfigError::RenewTooRare {
                renew_every: self.renew_every,
                usable,
            });
        }
        Ok(())
    }
}

/// A [`LeaseConfig`] that cannot keep a lease live.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseConfigError {
    /// The margin eats the whole duration.
    #[error("lease safety margin {margin:?} is not below its duration {duration:?}")]
    MarginTooLarge {
        /// The duration.
        duration: Duration,
        /// The margin.
        margin: Duration,
    },
    /// Renewals (with one retry) would come after the lease stops being handed out.
    #[error("lease renewal every {renew_every:?} (plus a retry) does not fit in {usable:?}")]
    RenewTooRare {
        /// The renewal interval.
        renew_every: Duration,
        /// Duration minus margin.
        usable: Duration,
    },
}

impl LeaseConfigError {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            LeaseConfigError::MarginTooLarge { .. } => "lease_margin_too_large",
            LeaseConfigError::RenewTooRare { .. } => "lease_renew_too_rare",
        }
    }

    /// Whether trying again could succeed: never, the configuration does not change.
    pub fn is_retryable(&self) -> bool {
        match self {
            LeaseConfigError::MarginTooLarge { .. } | LeaseConfigError::RenewTooRare { .. } => {
                false
            }
        }
    }
}

/// Why a write could not get a lease (the gateway answers 503: try again shortly).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// No lease was granted yet (the keeper just started, or meta is unreachable).
    #[error("no write lease is held yet")]
    NotGranted,
    /// The lease was not renewed in time and may have expired.
    #[error("write lease {lease_id} may have expired: not renewed for {since_renewal:?}")]
    Stale {
        /// The lease.
        lease_id: u64,
        /// Time since its last successful grant or renewal was sent.
        since_renewal: Duration,
    },
}

impl LeaseError {
    /// A stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            LeaseError::NotGranted => "lease_not_granted",
            LeaseError::Stale { .. } => "lease_stale",
        }
    }

    /// Whether a later attempt may succeed: always, once the keeper reaches meta.
    pub fn is_retryable(&self) -> bool {
        match self {
            LeaseError::NotGranted | LeaseError::Stale { .. } => true,
        }
    }
}

/// The lease commands a keeper needs; [`MetaClient`] is the implementation, tests bring a model
/// of meta's lease rules with a controllable clock.
pub trait LeaseService: Send + Sync + 'static {
    /// Grants a new lease for `duration`.
    fn grant(
        &self,
        holder: &str,
        duration: Duration,
    ) -> impl Future<Output = Result<WriteLease, CommandError>> + Send;
    /// Extends a live lease to `duration` from now.
    fn renew(
        &self,
        lease_id: u64,
        duration: Duration,
    ) -> impl Future<Output = Result<WriteLease, CommandError>> + Send;
    /// Ends a lease.
    fn release(&self, lease_id: u64) -> impl Future<Output = Result<(), CommandError>> + Send;
}

impl LeaseService for MetaClient {
    fn grant(
        &self,
        holder: &str,
        duration: Duration,
    ) -> impl Future<Output = Result<WriteLease, CommandError>> + Send {
        self.grant_lease(holder, duration)
    }

    fn renew(
        &self,
        lease_id: u64,
        duration: Duration,
    ) -> impl Future<Output = Result<WriteLease, CommandError>> + Send {
        self.renew_lease(lease_id, duration)
    }

    fn release(&self, lease_id: u64) -> impl Future<Output = Result<(), CommandError>> + Send {
        self.release_lease(lease_id)
    }
}

/// One lease the keeper holds.
#[derive(Clone, Debug)]
struct Held {
    lease_id: u64,
    /// When its grant was sent (rotation counts from here).
    granted_at: Instant,
    /// When its last successful grant or renewal was sent.
    renewed_at: Instant,
    /// Writes started under it whose guards have not dropped.
    in_flight: u64,
}

#[derive(Debug, Default)]
struct LeaseState {
    /// The lease new writes get.
    current: Option<Held>,
    /// Earlier leases kept (and renewed) until their writes finish, then released.
    retiring: Vec<Held>,
}

impl LeaseState {
    fn find(&mut self, lease_id: u64) -> Option<&mut Held> {
        self.current
            .iter_mut()
            .chain(self.retiring.iter_mut())
            .find(|h| h.lease_id == lease_id)
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<LeaseState>,
    /// How long after `renewed_at` a lease is still handed out.
    usable: Duration,
    /// Wakes the keeper when a retiring lease's last write finishes.
    waker: OnceLock<WorkerWaker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, LeaseState> {
        // Every update leaves the state whole, so a panic elsewhere cannot corrupt it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Hands the current lease to writes; cheap to clone.
#[derive(Clone, Debug)]
pub struct LeaseHandle {
    shared: Arc<Shared>,
}

impl LeaseHandle {
    /// The current lease for a write that starts now, counted in flight until the guard drops;
    /// refused when no lease is safely live by the keeper's estimate.
    pub fn acquire(&self) -> Result<LeaseGuard, LeaseError> {
        let now = Instant::now();
        let mut state = self.shared.lock();
        let held = state.current.as_mut().ok_or(LeaseError::NotGranted)?;
        let since_renewal = now.saturating_duration_since(held.renewed_at);
        if since_renewal >= self.shared.usable {
            return Err(LeaseError::Stale {
                lease_id: held.lease_id,
                since_renewal,
            });
        }
        held.in_flight += 1;
        Ok(LeaseGuard {
            shared: Arc::clone(&self.shared),
            lease_id: held.lease_id,
        })
    }

    /// The id of the lease new writes get now, if any (whether or not it is still live).
    pub fn current_lease_id(&self) -> Option<u64> {
        self.shared.lock().current.as_ref().map(|h| h.lease_id)
    }

    /// Writes in flight under all held leases.
    pub fn writes_in_flight(&self) -> u64 {
        let state = self.shared.lock();
        state
            .current
            .iter()
            .chain(state.retiring.iter())
            .map(|h| h.in_flight)
            .sum()
    }
}

/// One write's hold on a lease: the lease stays renewed (and unreleased) until it drops.
#[derive(Debug)]
pub struct LeaseGuard {
    shared: Arc<Shared>,
    lease_id: u64,
}

impl LeaseGuard {
    /// The lease id to write into shard headers and name in the commit.
    pub fn lease_id(&self) -> u64 {
        self.lease_id
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let retiring_done = match state.find(self.lease_id) {
            Some(held) => {
                held.in_flight = held.in_flight.saturating_sub(1);
                held.in_flight == 0
                    && state
                        .current
                        .as_ref()
                        .is_none_or(|c| c.lease_id != self.lease_id)
            }
            // Meta ended it already; nothing to count.
            None => false,
        };
        drop(state);
        if retiring_done && let Some(waker) = self.shared.waker.get() {
            waker.wake();
        }
    }
}

/// What the keeper did, for its worker status.
#[derive(Clone, Debug, Default)]
struct KeeperStats {
    grants: u64,
    renewals: u64,
    releases: u64,
    failures: u64,
    last_failure: Option<String>,
}

/// The worker that keeps a process's write lease; see the module invariant.
pub struct LeaseKeeper<S: LeaseService = MetaClient> {
    service: S,
    config: LeaseConfig,
    shared: Arc<Shared>,
    stats: KeeperStats,
}

impl<S: LeaseService> LeaseKeeper<S> {
    /// A keeper of a lease from `service`, paced by `config`.
    pub fn new(service: S, config: LeaseConfig) -> Result<LeaseKeeper<S>, LeaseConfigError> {
        config.validate()?;
        let usable = config.duration - config.safety_margin;
        Ok(LeaseKeeper {
            service,
            config,
            shared: Arc::new(Shared {
                state: Mutex::new(LeaseState::default()),
                usable,
                waker: OnceLock::new(),
            }),
            stats: KeeperStats::default(),
        })
    }

    /// A handle for writes.
    pub fn handle(&self) -> LeaseHandle {
        LeaseHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Starts the keeper as a worker in `registry` (it grants at once) and returns the handle
    /// for writes and the worker's handle.
    pub fn spawn(
        self,
        registry: &WorkerRegistry,
        shutdown: Shutdown,
    ) -> (LeaseHandle, WorkerHandle) {
        let handle = self.handle();
        let shared = Arc::clone(&self.shared);
        let worker = spawn_worker(self, registry, shutdown);
        let _ = shared.waker.set(worker.waker());
        (handle, worker)
    }

    fn failed(&mut self, what: &'static str, lease_id: u64, error: &CommandError) {
        self.stats.failures += 1;
        self.stats.last_failure = Some(format!("{what} {lease_id}: {error}"));
        warn!(what, lease_id, code = error.code(), error = %error, "write lease call failed");
    }

    /// Grants a lease and makes it current; the previous current lease starts retiring.
    async fn grant(&mut self) -> bool {
        let sent = Instant::now();
        match self
            .service
            .grant(&self.config.holder, self.config.duration)
            .await
        {
            Ok(lease) => {
                self.stats.grants += 1;
                info!(lease_id = lease.lease_id, holder = %self.config.holder, "write lease granted");
                let mut state = self.shared.lock();
                let fresh = Held {
                    lease_id: lease.lease_id,
                    granted_at: sent,
                    renewed_at: sent,
                    in_flight: 0,
                };
                if let Some(old) = state.current.replace(fresh) {
                    state.retiring.push(old);
                }
                true
            }
            Err(e) => {
                self.failed("grant", 0, &e);
                false
            }
        }
    }

    /// Renews one held lease; a lease meta calls expired is dropped.
    async fn renew(&mut self, lease_id: u64) -> bool {
        let sent = Instant::now();
        match self.service.renew(lease_id, self.config.duration).await {
            Ok(_) => {
                self.stats.renewals += 1;
                if let Some(held) = self.shared.lock().find(lease_id) {
                    held.renewed_at = sent;
                }
                true
            }
            Err(CommandError::Rule(MetaRuleError::LeaseExpired { .. })) => {
                warn!(lease_id, "write lease expired in meta, dropping it");
                let mut state = self.shared.lock();
                if state
                    .current
                    .as_ref()
                    .is_some_and(|c| c.lease_id == lease_id)
                {
                    state.current = None;
                }
                state.retiring.retain(|h| h.lease_id != lease_id);
                false
            }
            Err(e) => {
                self.failed("renew", lease_id, &e);
                false
            }
        }
    }

    /// Releases retiring leases that no write holds any more (a failed release is not retried:
    /// the lease ends by itself within its duration).
    async fn release_idle(&mut self) {
        let idle: Vec<u64> = {
            let mut state = self.shared.lock();
            let idle = state
                .retiring
                .iter()
                .filter(|h| h.in_flight == 0)
                .map(|h| h.lease_id)
                .collect();
            state.retiring.retain(|h| h.in_flight > 0);
            idle
        };
        for lease_id in idle {
            match self.service.release(lease_id).await {
                Ok(()) => {
                    self.stats.releases += 1;
                    info!(lease_id, "write lease released");
                }
                Err(CommandError::Rule(MetaRuleError::LeaseExpired { .. })) => {}
                Err(e) => self.failed("release", lease_id, &e),
            }
        }
    }
}

impl<S: LeaseService> Worker for LeaseKeeper<S> {
    fn name(&self) -> String {
        "lease-keeper".to_owned()
    }

    /// Grants, renews, rotates and releases whatever is due, and sleeps until the next thing
    /// is. Failures are retried after `retry_after` rather than returned: the runner's backoff
    /// grows to a minute, longer than a lease lives.
    async fn step(&mut self) -> Result<StepOutcome, WorkerError> {
        let now = Instant::now();
        let (has_current, due_renewals, rotate) = {
            let state = self.shared.lock();
            let due: Vec<u64> = state
                .current
                .iter()
                .chain(state.retiring.iter().filter(|h| h.in_flight > 0))
                .filter(|h| now.saturating_duration_since(h.renewed_at) >= self.config.renew_every)
                .map(|h| h.lease_id)
                .collect();
            let rotate = state.current.as_ref().is_some_and(|c| {
                now.saturating_duration_since(c.granted_at) >= self.config.rotate_every
            });
            (state.current.is_some(), due, rotate)
        };
        let mut ok = true;
        for lease_id in due_renewals {
            ok &= self.renew(lease_id).await;
        }
        let lost_current = has_current && self.shared.lock().current.is_none();
        if !has_current || lost_current || rotate {
            ok &= self.grant().await;
        }
        self.release_idle().await;
        Ok(StepOutcome::Idle(self.next_wait(ok)))
    }

    fn progress(&self) -> WorkerProgress {
        let state = self.shared.lock();
        let mut text = match &state.current {
            Some(h) => format!("lease {} ({} writes in flight)", h.lease_id, h.in_flight),
            None => "no lease".to_owned(),
        };
        if !state.retiring.is_empty() {
            text.push_str(&format!(", {} retiring", state.retiring.len()));
        }
        if let Some(failure) = &self.stats.last_failure {
            text.push_str(&format!(
                "; {} failures, last: {failure}",
                self.stats.failures
            ));
        }
        WorkerProgress {
            text,
            done: self.stats.grants + self.stats.renewals + self.stats.releases,
            ..WorkerProgress::default()
        }
    }
}

impl<S: LeaseService> LeaseKeeper<S> {
    /// How long to sleep: until the next renewal or rotation, sooner after a failure.
    fn next_wait(&self, ok: bool) -> Duration {
        let now = Instant::now();
        let state = self.shared.lock();
        if !ok || state.current.is_none() {
            return self.config.retry_after;
        }
        let renewals = state
            .current
            .iter()
            .chain(state.retiring.iter())
            .map(|h| h.renewed_at + self.config.renew_every);
        let rotation = state
            .current
            .iter()
            .map(|c| c.granted_at + self.config.rotate_every);
        renewals
            .chain(rotation)
            .min()
            .map_or(self.config.renew_every, |at| {
                at.saturating_duration_since(now)
            })
    }
}

#[cfg(test)]
#[path = "lease_test.rs"]
mod tests;
