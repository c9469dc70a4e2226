use tessera_client::{LeaseConfig, LeaseKeeper};
use tessera_core::lease::GraceError;

use super::*;

fn worker(meta: MetaClient, config: RepairConfig) -> (RepairWorker, RepairStats) {
    let lease = LeaseKeeper::new(meta.clone(), LeaseConfig::new("repair test"))
        .expect("lease config")
        .handle();
    let stats = RepairStats::default();
    let limiter = SharedRateLimiter::new(config.rate_bytes_per_sec);
    let w = RepairWorker::new(
        config,
        meta,
        DataClient::new(),
        lease,
        limiter,
        stats.clone(),
    );
    (w, stats)
}

/// A pass that cannot read meta's status fails before listing anything and leaves no pass
/// behind: the next step starts again from the status call.
#[tokio::test]
async fn a_pass_without_meta_fails_whole_and_starts_again() {
    let config = RepairConfig {
        rate_bytes_per_sec: 5_000,
        ..RepairConfig::default()
    };
    let (mut w, stats) = worker(MetaClient::new(Vec::new()), config);
    assert_eq!(w.name(), "repair");
    assert_eq!(w.progress().text, "starting");
    for _ in 0..2 {
        let error = w.step().await.expect_err("no meta: the step fails");
        let pass = error.downcast_ref::<PassError>().expect("a pass error");
        assert!(
            matches!(
                pass,
                PassError::Status(MetaClientError::Unavailable { attempts: 0, .. })
            ),
            "{pass:?}"
        );
        assert_eq!(pass.code(), "meta_unavailable");
        assert!(pass.is_retryable());
        assert!(w.pass.is_none());
    }
    let progress = w.progress();
    assert_eq!(progress.text, "starting");
    assert_eq!(progress.rate_limit_bytes_per_sec, 5_000);
    assert!(!progress.throttled);
    assert_eq!(stats.scans_completed(), 0);
}

#[test]
fn the_config_gives_the_claims_their_grace() {
    let config = RepairConfig {
        gc_grace_secs: 45,
        ..RepairConfig::default()
    };
    assert_eq!(config.gc_grace_ms(), 45_000);
    assert_eq!(
        RepairConfig {
            gc_grace_secs: 10,
            ..RepairConfig::default()
        }
        .validate()
        .err()
        .map(|e| e.code()),
        Some(GraceError::TooShort { grace_ms: 10_000 }.code())
    );
}
