//! Key-encryption key versions: added one after the other, never replaced, never malformed.

use tessera_core::sealing::key_wrap::WRAPPED_KEY_LEN;

use super::*;

fn create(name: &str, version: u32, wrapped: Vec<u8>) -> command::Cmd {
    command::Cmd::CreateKek(pb::CreateKek {
        name: name.into(),
        version,
        wrapped,
    })
}

fn newest(sim: &Sim, name: &str) -> Option<pb::KekRecord> {
    crate::records::newest_kek(&sim.kv, name).expect("read")
}

#[test]
fn versions_are_added_one_after_the_other_and_never_replaced() {
    let mut sim = Sim::new();
    assert_eq!(newest(&sim, "sse-s3"), None);
    sim.ok(create("sse-s3", 1, vec![1; WRAPPED_KEY_LEN]));
    let first = newest(&sim, "sse-s3").expect("version 1");
    assert_eq!((first.version, first.wrapped[0]), (1, 1));
    assert!(first.created_ms > 0, "stamped with the meta clock");

    // A concurrent creation of the same version, or a gap, is refused and changes nothing.
    for version in [1, 3, 0] {
        let error = sim.rejected(create("sse-s3", version, vec![2; WRAPPED_KEY_LEN]));
        assert!(is_invalid(&error), "version {version}: {error:?}");
    }
    sim.ok(create("sse-s3", 2, vec![2; WRAPPED_KEY_LEN]));
    assert_eq!(newest(&sim, "sse-s3").map(|k| k.version), Some(2));
    let kept = crate::records::kek(&sim.kv, "sse-s3", 1).expect("read");
    assert_eq!(kept, Some(first), "older versions stay, unchanged");

    // Names are separate: another name starts at 1.
    sim.ok(create("photos-key", 1, vec![3; WRAPPED_KEY_LEN]));
    assert_eq!(newest(&sim, "sse-s3").map(|k| k.version), Some(2));
}

#[test]
fn malformed_names_and_wrapped_keys_are_refused() {
    let mut sim = Sim::new();
    for cmd in [
        create("", 1, vec![1; WRAPPED_KEY_LEN]),
        create("Upper", 1, vec![1; WRAPPED_KEY_LEN]),
        create("a/b", 1, vec![1; WRAPPED_KEY_LEN]),
        create("sse-s3", 1, vec![1; WRAPPED_KEY_LEN - 1]),
        create("sse-s3", 1, Vec::new()),
    ] {
        let error = sim.rejected(cmd);
        assert!(is_invalid(&error), "{error:?}");
    }
}
