use super::*;
use tessera_core::lease::{MAX_GC_GRACE_MS, MIN_GC_GRACE_MS};

#[test]
fn defaults_are_valid_and_bad_values_are_refused() {
    RepairConfig::default().validate().expect("defaults");
    let cases = [
        (
            RepairConfig {
                id: String::new(),
                ..RepairConfig::default()
            },
            RepairConfigError::EmptyId,
        ),
        (
            RepairConfig {
                meta_endpoints: Vec::new(),
                ..RepairConfig::default()
            },
            RepairConfigError::NoMetaEndpoints,
        ),
        (
            RepairConfig {
                concurrency: 0,
                ..RepairConfig::default()
            },
            RepairConfigError::Concurrency,
        ),
        (
            RepairConfig {
                page_size: 0,
                ..RepairConfig::default()
            },
            RepairConfigError::PageSize,
        ),
        (
            RepairConfig {
                scan_interval_ms: 0,
                ..RepairConfig::default()
            },
            RepairConfigError::ScanInterval,
        ),
    ];
    for (config, expected) in cases {
        assert_eq!(config.validate(), Err(expected), "{config:?}");
    }
}

fn with_grace(grace_secs: u64) -> RepairConfig {
    RepairConfig {
        gc_grace_secs: grace_secs,
        ..RepairConfig::default()
    }
}

#[test]
fn a_grace_below_thirty_seconds_is_refused_and_thirty_is_accepted() {
    assert_eq!(
        with_grace(0).validate(),
        Err(RepairConfigError::GcGrace {
            grace_secs: 0,
            source: GraceError::TooShort { grace_ms: 0 },
        })
    );
    let refused = with_grace(29).validate();
    assert_eq!(
        refused,
        Err(RepairConfigError::GcGrace {
            grace_secs: 29,
            source: GraceError::TooShort { grace_ms: 29_000 },
        })
    );
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        message,
        "invalid repair config: gc_grace_secs = 29: grace period 29000 ms is below the \
         minimum of 30000 ms"
    );
    assert_eq!(with_grace(30).validate(), Ok(()));
    assert_eq!(with_grace(30).gc_grace_ms(), MIN_GC_GRACE_MS);
}

#[test]
fn a_grace_above_the_maximum_is_refused_even_when_it_overflows() {
    assert_eq!(with_grace(MAX_GC_GRACE_MS / 1000).validate(), Ok(()));
    let code = |c: RepairConfig| c.validate().err().map(|e| e.code());
    assert_eq!(
        code(with_grace(MAX_GC_GRACE_MS / 1000 + 1)),
        Some("grace_too_long")
    );
    assert_eq!(code(with_grace(u64::MAX)), Some("grace_too_long"));
}

#[test]
fn a_file_sets_some_fields_and_unknown_fields_are_refused() {
    let parsed: RepairConfig = toml::from_str(
        "id = \"r9\"\nmeta_endpoints = [\"a:1\"]\ngc_grace_secs = 45\nconcurrency = 2\n",
    )
    .expect("parses");
    assert_eq!((parsed.id.as_str(), parsed.gc_grace_secs), ("r9", 45));
    assert_eq!(parsed.page_size, RepairConfig::default().page_size);
    parsed.validate().expect("valid");
    let unknown = toml::from_str::<RepairConfig>("gc_grace_ms = 1000\n")
        .expect_err("an unknown field was accepted");
    assert!(
        unknown.message().starts_with("unknown field `gc_grace_ms`"),
        "{unknown}"
    );
}
