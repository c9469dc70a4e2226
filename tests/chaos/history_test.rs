//! The checker accepts what a per-key read-after-write register allows and flags planted
//! anomalies; test bodies decode only when intact.

use super::*;

/// A history built by hand, with times in milliseconds.
#[derive(Default)]
struct Script {
    ops: Vec<Op>,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn indeterminate() -> Option<Outcome> {
    Some(Outcome::Indeterminate("timeout".to_string()))
}

impl Script {
    fn push(&mut self, kind: OpKind, span: (u64, Option<u64>), outcome: Option<Outcome>) {
        self.ops.push(Op {
            id: OpId(self.ops.len()),
            client: self.ops.len() as u32 % 3,
            kind,
            invoked: ms(span.0),
            completed: span.1.map(ms),
            outcome,
        });
    }

    /// An acknowledged put of `v` to `k` during `[from, to]`.
    fn put(&mut self, k: &str, v: u64, from: u64, to: u64) -> &mut Self {
        self.put_ending(k, v, (from, Some(to)), Some(Outcome::Ok))
    }

    fn put_ending(
        &mut self,
        k: &str,
        v: u64,
        span: (u64, Option<u64>),
        outcome: Option<Outcome>,
    ) -> &mut Self {
        let kind = OpKind::Put {
            key: k.to_string(),
            value: ValueId(v),
        };
        self.push(kind, span, outcome);
        self
    }

    /// An acknowledged delete of `k` during `[from, to]`.
    fn delete(&mut self, k: &str, from: u64, to: u64) -> &mut Self {
        self.delete_ending(k, (from, Some(to)), Some(Outcome::Ok))
    }

    fn delete_ending(
        &mut self,
        k: &str,
        span: (u64, Option<u64>),
        outcome: Option<Outcome>,
    ) -> &mut Self {
        self.push(OpKind::Delete { key: k.to_string() }, span, outcome);
        self
    }

    fn get(&mut self, k: &str, from: u64, to: u64, result: ReadResult) -> &mut Self {
        let kind = OpKind::Get { key: k.to_string() };
        self.push(kind, (from, Some(to)), Some(Outcome::Read(result)));
        self
    }

    fn get_value(&mut self, k: &str, from: u64, to: u64, v: u64) -> &mut Self {
        self.get(k, from, to, ReadResult::Value(ValueId(v)))
    }

    fn kinds(&self) -> Vec<AnomalyKind> {
        let anomalies = check(&self.ops);
        for a in &anomalies {
            // Exercises Display and shows what the checker said when a test fails.
            println!("{a}");
            assert!(!a.key.is_empty() && !a.detail.is_empty());
        }
        anomalies.into_iter().map(|a| a.kind).collect()
    }

    fn assert_clean(&self) {
        assert_eq!(self.kinds(), Vec::<AnomalyKind>::new());
    }
}

#[test]
fn sequential_puts_and_gets_are_clean() {
    Script::default()
        .get("k", 0, 1, ReadResult::NotFound)
        .put("k", 1, 2, 10)
        .get_value("k", 11, 12, 1)
        .put("k", 2, 13, 20)
        .get_value("k", 21, 22, 2)
        .get_value("k", 23, 24, 2)
        .assert_clean();
}

#[test]
fn concurrent_puts_may_end_in_either_order() {
    for final_value in [1, 2] {
        Script::default()
            .put("k", 1, 0, 10)
            .put("k", 2, 5, 15)
            .get_value("k", 20, 21, final_value)
            .assert_clean();
    }
    // Intervals that only touch overlap: "finished before" is strict.
    Script::default()
        .put("k", 1, 0, 10)
        .put("k", 2, 10, 20)
        .get_value("k", 30, 31, 1)
        .assert_clean();
    // A long write overlapping two sequential ones may land last or between them.
    for final_value in [1, 3] {
        Script::default()
            .put("k", 1, 0, 100)
            .put("k", 2, 2, 3)
            .put("k", 3, 4, 5)
            .get_value("k", 200, 201, final_value)
            .assert_clean();
    }
}

#[test]
fn indeterminate_or_pending_write_may_or_may_not_apply() {
    for final_value in [1, 2] {
        Script::default()
            .put("k", 1, 0, 10)
            .put_ending("k", 2, (20, Some(30)), indeterminate())
            .get_value("k", 40, 41, final_value)
            .assert_clean();
        Script::default()
            .put("k", 1, 0, 10)
            .put_ending("k", 2, (20, None), None)
            .get_value("k", 40, 41, final_value)
            .assert_clean();
    }
    // An indeterminate write may apply long after the client gave up, even after a later
    // acknowledged write.
    Script::default()
        .put_ending("k", 1, (0, Some(10)), indeterminate())
        .put("k", 2, 20, 30)
        .get_value("k", 40, 41, 1)
        .assert_clean();
}

#[test]
fn deletes_write_absent() {
    Script::default()
        .put("k", 1, 0, 10)
        .delete("k", 20, 30)
        .get("k", 40, 41, ReadResult::NotFound)
        .put("k", 2, 50, 60)
        .get_value("k", 70, 71, 2)
        .assert_clean();
    Script::default()
        .put("k", 1, 0, 10)
        .delete_ending("k", (20, Some(30)), indeterminate())
        .get("k", 40, 41, ReadResult::NotFound)
        .assert_clean();
}

#[test]
fn reads_concurrent_with_writes_see_old_or_new() {
    Script::default()
        .get("k", 0, 8, ReadResult::NotFound)
        .put("k", 1, 2, 10)
        .get_value("k", 5, 9, 1)
        .put("k", 2, 20, 40)
        .get_value("k", 25, 30, 1)
        .get_value("k", 26, 35, 2)
        .get("k", 30, 50, ReadResult::Value(ValueId(2)))
        .delete("k", 60, 70)
        .get_value("k", 61, 69, 2)
        .get("k", 62, 68, ReadResult::NotFound)
        .get("k", 80, 81, ReadResult::NotFound)
        .assert_clean();
}

#[test]
fn failed_and_indeterminate_reads_carry_no_information() {
    let mut s = Script::default();
    s.put("k", 1, 0, 10);
    s.push(
        OpKind::Get { key: "k".into() },
        (20, Some(21)),
        Some(Outcome::Failed("403 AccessDenied".into())),
    );
    s.push(
        OpKind::Get { key: "k".into() },
        (22, Some(23)),
        indeterminate(),
    );
    s.push(OpKind::Get { key: "k".into() }, (24, None), None);
    s.assert_clean();
}

#[test]
fn final_read_of_an_older_value_is_a_lost_write() {
    let kinds = Script::default()
        .put("k", 1, 0, 10)
        .put("k", 2, 20, 30)
        .get_value("k", 40, 41, 1)
        .kinds();
    assert_eq!(kinds, vec![AnomalyKind::LostWrite]);
}

#[test]
fn final_read_of_a_write_overwritten_by_a_sequential_one_is_lost_despite_overlap() {
    let kinds = Script::default()
        .put("k", 1, 0, 100)
        .put("k", 2, 2, 3)
        .put("k", 3, 4, 5)
        .get_value("k", 200, 201, 2)
        .kinds();
    assert_eq!(kinds, vec![AnomalyKind::LostWrite]);
}

#[test]
fn final_not_found_after_an_acknowledged_put_is_a_lost_write() {
    let kinds = Script::default()
        .put("k", 1, 0, 10)
        .get("k", 20, 21, ReadResult::NotFound)
        .kinds();
    assert_eq!(kinds, vec![AnomalyKind::LostWrite]);
    // A delete that failed outright cannot explain it either.
    let kinds = Script::default()
        .put("k", 1, 0, 10)
        .delete_ending("k", (12, Some(14)), Some(Outcome::Failed("403".into())))
        .get("k", 20, 21, ReadResult::NotFound)
        .kinds();
    assert_eq!(kinds, vec![AnomalyKind::LostWrite]);
    // Nor can a delete that finished before the put began.
    let kinds = Script::default()
        .delete("k", 0, 5)
        .put("k", 1, 10, 20)
        .get("k", 30, 31, ReadResult::NotFound)
        .kinds();
    assert_eq!(kinds, vec![AnomalyKind::LostWrite]);
}

#[test]
fn resurrection_after_an_acknowledged_delete_is_a_lost_write() {
    let kinds = Script::default()
        .put("k", 1, 0, 10)
        .delete("k", 20, 30)
        .get_value("k", 40, 41, 1)
        .kinds();
    assert_eq!(kinds, vec![AnomalyKind::LostWrite]);
}

#[test]
fn read_of_an_overwritten_value_before_the_end_is_stale() {
    let kinds = Script::default()
        .put("k", 1, 0, 10)
        .put("k", 2, 20, 30)
        .get_value("k", 35, 36, 1)
        .get("k", 37, 38, ReadResult::NotFound)
        .put("k", 3, 40, 50)
        .get_value("k", 60, 61, 3)
        .kinds();
    assert_eq!(kinds, vec![AnomalyKind::StaleRead, AnomalyKind::StaleRead]);
}

#[test]
fn value_never_written_is_a_phantom() {
    let kinds = Script::default()
        .put("k", 1, 0, 10)
        .get_value("k", 20, 21, 99)
        .kinds();
    assert_eq!(kinds, vec![AnomalyKind::PhantomRead]);
}

#[test]
fn value_of_a_failed_put_is_a_phantom() {
    let mut s = Script::default();
    s.put("k", 1, 0, 10)
        .put_ending("k", 2, (20, Some(30)), Some(Outcome::Failed("403".into())))
        .get_value("k", 40, 41, 2);
    let anomalies = check(&s.ops);
    assert_eq!(anomalies.len(), 1);
    assert_eq!(anomalies[0].kind, AnomalyKind::PhantomRead);
    assert!(
        anomalies[0].detail.contains("failed (403)"),
        "{}",
        anomalies[0]
    );
}

#[test]
fn value_from_another_key_or_the_future_is_a_phantom() {
    let kinds = Script::default()
        .put("a", 1, 0, 10)
        .get_value("b", 20, 21, 1)
        .get_value("c", 20, 21, 2)
        .put("c", 2, 30, 40)
        .kinds();
    assert_eq!(
        kinds,
        vec![AnomalyKind::PhantomRead, AnomalyKind::PhantomRead]
    );
}

#[test]
fn corrupt_body_is_reported() {
    let kinds = Script::default()
        .put("k", 1, 0, 10)
        .get("k", 20, 21, ReadResult::Corrupt("byte 9 differs".into()))
        .kinds();
    assert_eq!(kinds, vec![AnomalyKind::CorruptRead]);
}

#[test]
fn recorder_times_and_counts_operations_from_many_threads() {
    let history = History::new();
    let threads: Vec<_> = (0..4_u32)
        .map(|client| {
            let history = history.clone();
            std::thread::spawn(move || {
                for n in 0..25_u64 {
                    let key = format!("c{client}");
                    let value = ValueId(u64::from(client) << 32 | n);
                    let put = history.invoke(
                        client,
                        OpKind::Put {
                            key: key.clone(),
                            value,
                        },
                    );
                    history.complete(put, Outcome::Ok);
                    let get = history.invoke(client, OpKind::Get { key });
                    history.complete(get, Outcome::Read(ReadResult::Value(value)));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let pending = history.invoke(9, OpKind::Delete { key: "c0".into() });
    let failed = history.invoke(9, OpKind::Get { key: "c1".into() });
    history.complete(failed, Outcome::Failed("503 SlowDown".into()));
    let ops = history.ops();
    assert_eq!(ops.len(), 202);
    for (i, op) in ops.iter().enumerate() {
        assert_eq!(op.id, OpId(i));
        if op.id != pending {
            assert!(op.completed.expect("completed") >= op.invoked);
        }
    }
    assert!(ops.windows(2).all(|w| w[0].invoked <= w[1].invoked));
    assert_eq!(ops[pending.0].outcome, None);
    assert_eq!(check(&ops), Vec::new());
    let summary = history.summary();
    assert!(summary.starts_with("202 ops"), "{summary}");
    assert!(summary.contains("put: ok 100"), "{summary}");
    assert!(summary.contains("delete: pending 1"), "{summary}");
    assert!(summary.contains("get: failed 1, value 100"), "{summary}");
    assert!(summary.contains("failed x1: 503 SlowDown"), "{summary}");
}

#[test]
#[should_panic(expected = "completed twice")]
fn completing_twice_is_a_test_bug() {
    let history = History::new();
    let id = history.invoke(0, OpKind::Get { key: "k".into() });
    history.complete(id, Outcome::Read(ReadResult::NotFound));
    history.complete(id, Outcome::Indeterminate("again".into()));
}

#[test]
fn outcomes_and_ops_display_their_reasons() {
    let mut s = Script::default();
    s.put_ending("k", 7, (1, Some(2)), indeterminate())
        .put_ending("k", 8, (3, None), None);
    assert_eq!(
        s.ops[0].to_string(),
        "#0 put v7 by client 0 [1ms..2ms] indeterminate (timeout)"
    );
    assert_eq!(
        s.ops[1].to_string(),
        "#1 put v8 by client 1 [3ms..] pending"
    );
    assert_eq!(s.ops[1].kind.key(), "k");
}

#[test]
fn bodies_round_trip() {
    for (v, len) in [(0, MIN_BODY_LEN), (1, 17), (u64::MAX, 1000), (42, 300_001)] {
        let body = encode_value(ValueId(v), len);
        assert_eq!(body.len(), len);
        assert_eq!(body, encode_value(ValueId(v), len), "deterministic");
        assert_eq!(decode_value(&body), Ok(ValueId(v)));
    }
    assert_ne!(encode_value(ValueId(1), 64), encode_value(ValueId(2), 64));
}

#[test]
fn decode_rejects_a_flipped_byte() {
    let body = encode_value(ValueId(5), 4096);
    for at in [0, HEADER_LEN - 1, HEADER_LEN, 2000, 4095] {
        let mut bad = body.clone();
        bad[at] ^= 0x01;
        let err = decode_value(&bad).expect_err("flipped byte");
        if at < HEADER_LEN {
            // The header now names another value, whose fill the body does not carry.
            let named = ValueId(5 ^ (1 << (8 * at)));
            let prefix = format!("body of 4096 bytes names {named} but differs from it at byte ");
            assert!(err.starts_with(&prefix), "{err}");
        } else {
            assert_eq!(
                err,
                format!("body of 4096 bytes names v5 but differs from it at byte {at}")
            );
        }
    }
}

#[test]
fn decode_rejects_a_truncated_body() {
    let body = encode_value(ValueId(5), 4096);
    // The fill depends on the length: a prefix still names v5 but is not v5's body.
    for len in [4095, 2048, MIN_BODY_LEN] {
        let err = decode_value(&body[..len]).expect_err("cut short");
        let prefix = format!("body of {len} bytes names v5 but differs from it at byte ");
        assert!(err.starts_with(&prefix), "cut to {len}: {err}");
    }
    for len in [HEADER_LEN, 3, 0] {
        let err = decode_value(&body[..len]).expect_err("short");
        assert_eq!(
            err,
            format!("body of {len} bytes is shorter than any test body ({MIN_BODY_LEN})")
        );
    }
}

#[test]
fn decode_rejects_a_body_of_another_value() {
    let one = encode_value(ValueId(1), 1024);
    let two = encode_value(ValueId(2), 1024);
    // The header of one value on the fill of another.
    let mut relabelled = two.clone();
    relabelled[..HEADER_LEN].copy_from_slice(&one[..HEADER_LEN]);
    let err = decode_value(&relabelled).expect_err("relabelled");
    assert!(
        err.starts_with("body of 1024 bytes names v1 but differs from it at byte "),
        "{err}"
    );
    // A torn body: the first half of one value, the rest of another.
    let mut torn = one[..512].to_vec();
    torn.extend_from_slice(&two[512..]);
    assert_eq!(
        decode_value(&torn),
        Err("body of 1024 bytes names v1 but differs from it at byte 512".to_owned())
    );
}

/// Runs clients against a simulated register that applies each operation at one instant strictly
/// inside its interval (or, for an indeterminate write, possibly later or never): whatever it
/// returns is linearizable, so the checker must find nothing.
#[test]
fn simulated_linearizable_histories_are_clean() {
    let mut seed = 7_u64;
    let mut random = move |n: u64| {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(seed) % n
    };
    for _ in 0..300 {
        let mut s = Script::default();
        // (linearization instant, op index); the register is replayed in this order.
        let mut applied: Vec<(u64, usize)> = Vec::new();
        let mut next_value = 1;
        let mut end = 0;
        for _client in 0..4 {
            let mut t = random(5);
            for _ in 0..8 {
                let key = ["a", "b"][random(2) as usize];
                let duration = 2 + random(20);
                let (invoked, completed) = (t, t + duration);
                let instant = invoked + 1 + random(duration - 1);
                let fate = random(11);
                let kind = match random(3) {
                    0 => {
                        next_value += 1;
                        OpKind::Put {
                            key: key.into(),
                            value: ValueId(next_value),
                        }
                    }
                    1 => OpKind::Delete { key: key.into() },
                    _ => OpKind::Get { key: key.into() },
                };
                let is_get = matches!(kind, OpKind::Get { .. });
                let (span, outcome, instant) = match fate {
                    _ if is_get || fate < 6 => {
                        ((invoked, Some(completed)), Some(Outcome::Ok), Some(instant))
                    }
                    6 => ((invoked, Some(completed)), indeterminate(), Some(instant)),
                    7 => (
                        (invoked, Some(completed)),
                        indeterminate(),
                        Some(completed + random(50)),
                    ),
                    8 => ((invoked, Some(completed)), indeterminate(), None),
                    9 if random(2) == 0 => ((invoked, None), None, Some(instant)),
                    9 => ((invoked, None), None, None),
                    _ => (
                        (invoked, Some(completed)),
                        Some(Outcome::Failed("409".into())),
                        None,
                    ),
                };
                if let Some(instant) = instant {
                    applied.push((instant, s.ops.len()));
                }
                // Gets get their result in the replay below.
                s.push(kind, span, outcome);
                end = end.max(completed);
                t = completed + random(3);
            }
        }
        for key in ["a", "b"] {
            let kind = OpKind::Get { key: key.into() };
            applied.push((end + 100, s.ops.len()));
            s.push(kind, (end + 99, Some(end + 101)), None);
        }
        // At equal instants the operations overlap, so writes-then-reads is one valid order.
        applied.sort_by_key(|&(instant, i)| (instant, matches!(s.ops[i].kind, OpKind::Get { .. })));
        let mut register: HashMap<String, ValueId> = HashMap::new();
        for (_, i) in applied {
            let op = &mut s.ops[i];
            match &op.kind {
                OpKind::Put { key, value } => {
                    register.insert(key.clone(), *value);
                }
                OpKind::Delete { key } => {
                    register.remove(key);
                }
                OpKind::Get { key } => {
                    let result = register
                        .get(key)
                        .map_or(ReadResult::NotFound, |v| ReadResult::Value(*v));
                    op.outcome = Some(Outcome::Read(result));
                }
            }
        }
        s.assert_clean();
    }
}
