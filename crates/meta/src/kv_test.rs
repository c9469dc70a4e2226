//! The three `KvRead`s agree: the in-memory map, an overlay of pending writes over it, and the
//! RocksDB view, for point reads, prefix scans and seeks, over many pseudo-random states.

use super::*;
use crate::store::{CF_SM, MetaStore};

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Keys over a tiny alphabet (with 0x00 and 0xff), so prefixes collide often.
    fn key(&mut self) -> Vec<u8> {
        const ALPHABET: [u8; 4] = [0x00, b'a', b'b', 0xff];
        let len = 1 + self.below(4) as usize;
        (0..len).map(|_| ALPHABET[self.below(4) as usize]).collect()
    }

    fn writes(&mut self, n: usize) -> WriteSet {
        let mut w = WriteSet::default();
        for _ in 0..n {
            let key = self.key();
            if self.below(3) == 0 {
                w.delete(key);
            } else {
                w.put(key, self.next().to_be_bytes().to_vec());
            }
        }
        w
    }
}

fn prefixes() -> Vec<Vec<u8>> {
    let mut out = vec![Vec::new()];
    for a in [0x00, b'a', b'b', 0xff] {
        out.push(vec![a]);
        for b in [0x00, b'a', 0xff] {
            out.push(vec![a, b]);
        }
    }
    out
}

fn scan(kv: &dyn KvRead, prefix: &[u8]) -> Vec<Entry> {
    let mut cursor = kv.cursor(prefix);
    let mut out = Vec::new();
    while let Some(e) = cursor.next_entry().expect("next") {
        out.push(e);
    }
    // Past the end it stays at the end.
    assert_eq!(cursor.next_entry().expect("next"), None);
    out
}

/// Reads `kv` in every way a rule does: all prefixes, seeks inside and before each prefix,
/// and point reads.
fn observe(kv: &dyn KvRead, rng_seed: u64) -> Vec<String> {
    let mut rng = Rng(rng_seed);
    let mut seen = Vec::new();
    for prefix in prefixes() {
        seen.push(format!("{prefix:?} {:?}", scan(kv, &prefix)));
        let mut cursor = kv.cursor(&prefix);
        for _ in 0..4 {
            let target = rng.key();
            cursor.seek(&target);
            let first = cursor.next_entry().expect("next");
            let second = cursor.next_entry().expect("next");
            seen.push(format!("{prefix:?} seek {target:?}: {first:?} {second:?}"));
        }
    }
    for _ in 0..20 {
        let key = rng.key();
        seen.push(format!("get {key:?}: {:?}", kv.get(&key).expect("get")));
    }
    seen
}

#[test]
fn an_overlay_reads_like_its_writes_applied() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..200 {
        let mut base = MemKv::new();
        base.apply(rng.writes(30));
        let pending = rng.writes(10);
        let mut applied = base.clone();
        applied.apply(pending.clone());
        let mut overlay = Overlay::new(&base);
        overlay.writes_mut().extend(pending);
        assert_eq!(
            observe(&overlay, round + 1),
            observe(&applied, round + 1),
            "round {round}"
        );
    }
}

#[test]
fn rocksdb_views_read_like_the_in_memory_map() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MetaStore::open(dir.path()).expect("open");
    let mut mem = MemKv::new();
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for round in 0..20 {
        let writes = rng.writes(25);
        let sm = store.cf(CF_SM).expect("cf");
        let mut batch = rocksdb::WriteBatch::default();
        for (key, value) in writes.iter() {
            match value {
                Some(v) => batch.put_cf(sm, key, v),
                None => batch.delete_cf(sm, key),
            }
        }
        store.write(batch, false).expect("write");
        mem.apply(writes);
        let latest = store.latest().expect("view");
        assert_eq!(
            observe(&latest, round),
            observe(&mem, round),
            "round {round}"
        );
        let snapshot = store.view().expect("snapshot");
        assert_eq!(
            observe(snapshot.as_ref(), round),
            observe(&mem, round),
            "round {round}"
        );
    }
}

#[test]
fn a_snapshot_view_does_not_see_later_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = MetaStore::open(dir.path()).expect("open");
    let snapshot = store.view().expect("snapshot");
    let mut batch = rocksdb::WriteBatch::default();
    batch.put_cf(store.cf(CF_SM).expect("cf"), b"b/x", b"1");
    store.write(batch, false).expect("write");
    assert_eq!(snapshot.get(b"b/x").expect("get"), None);
    assert_eq!(
        store.latest().expect("view").get(b"b/x").expect("get"),
        Some(b"1".to_vec())
    );
}

#[test]
fn write_sets_keep_the_last_write_of_a_key() {
    let mut w = WriteSet::default();
    w.put(b"k".to_vec(), b"1".to_vec());
    w.delete(b"k".to_vec());
    w.put(b"j".to_vec(), b"2".to_vec());
    let mut later = WriteSet::default();
    later.put(b"j".to_vec(), b"3".to_vec());
    w.extend(later);
    let ops: Vec<(&[u8], Option<&[u8]>)> = w.iter().collect();
    assert_eq!(
        ops,
        [(&b"j"[..], Some(&b"3"[..])), (&b"k"[..], None)],
        "key order, last write wins"
    );
    assert_eq!(w.len(), 2);
    let mut mem = MemKv::new();
    mem.apply(w);
    assert_eq!(mem.len(), 1);
}
