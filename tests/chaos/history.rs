//! Operation history for the chaos tests: clients record each S3 call as it is invoked and as it
//! ends, and `check` reports every read that no real-time-consistent order of the writes explains.
//!
//! # Model
//!
//! Each key is a register with read-after-write consistency (what S3 promises per key); a Put
//! writes its value, a Delete writes "absent", and the register starts absent. Every Put writes a
//! value id no other Put uses, and its body is `encode_value(id, len)`, so a read names the write
//! it saw. Writes are classified by outcome:
//!
//! - acknowledged (`Ok`): took effect at some instant between invocation and completion;
//! - possible (`Ok`, `Indeterminate`, or still pending): may have taken effect. An indeterminate
//!   or pending write may still take effect at any later time (a request stuck in the cluster
//!   can land after the client gave up), so it is never "finished" for ordering purposes;
//! - `Failed` (a definite rejection, e.g. 4xx): never took effect.
//!
//! A write `w` is *strictly older* than an acknowledged write `w2` when `w` is acknowledged and
//! completed before `w2` was invoked (the initial state is older than every write). A read `r`
//! may return a possible write invoked before `r` completed (or the initial state, for
//! NotFound), unless that write is strictly older than an acknowledged write that completed
//! before `r` was invoked. The checker reports:
//!
//! - `CorruptRead`: the body decoded to no value the test writes;
//! - `PhantomRead`: the value was never possibly written to this key before the read ended
//!   (never written, written by a Failed put, written to another key, or written later);
//! - `StaleRead`: every write the read could have seen was overwritten before the read began;
//! - `LostWrite`: the same, for a *final* read (invoked after every write of the key with a
//!   recorded completion had completed): the key must hold the value of a possible write that is
//!   strictly older than no acknowledged write. This is slightly stronger than "not older than
//!   the last acknowledged write to complete": with acknowledged writes A `[0,100]`, B `[2,3]`
//!   and C `[4,5]`, B is older than C and cannot be final although it overlaps A.
//!
//! Each read is reported at most once, as the first of Corrupt, Phantom, Lost/Stale that holds.
//!
//! # Limits
//!
//! - The check is per key and per read; it is no linearizability search. Concurrent writes may
//!   take effect in either order, and each read is judged alone, so two reads that disagree on
//!   the order of two concurrent writes, or a read that sees an older value after another read
//!   already saw a newer one, pass.
//! - Reads that themselves failed or are indeterminate carry no information and are skipped.
//! - Value ids must be unique per Put; with a reused id the checker accepts any Put of it.
//! - An outcome that does not fit its kind (a Get that ends `Ok`, a Put that ends `Read`) is
//!   treated as indeterminate for writes and ignored for reads.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes at the start of every test body: the value id, little-endian.
pub const HEADER_LEN: usize = 8;
/// The shortest body `encode_value` makes: header plus one fill word, so that a body cut down to
/// its header alone still fails to decode.
pub const MIN_BODY_LEN: usize = HEADER_LEN + 8;

/// The value one Put writes; unique per Put across a test, and embedded in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValueId(pub u64);

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// Names one recorded operation: its index in the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub usize);

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// PutObject of a body encoding `value`.
    Put {
        /// Object key.
        key: String,
        /// The value the body encodes.
        value: ValueId,
    },
    /// DeleteObject: writes "absent".
    Delete {
        /// Object key.
        key: String,
    },
    /// GetObject.
    Get {
        /// Object key.
        key: String,
    },
}

impl OpKind {
    /// The key the operation touches.
    pub fn key(&self) -> &str {
        match self {
            OpKind::Put { key, .. } | OpKind::Delete { key } | OpKind::Get { key } => key,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            OpKind::Put { .. } => "put",
            OpKind::Delete { .. } => "delete",
            OpKind::Get { .. } => "get",
        }
    }
}

/// What a completed Get saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadResult {
    /// The body decoded to this value.
    Value(ValueId),
    /// NoSuchKey.
    NotFound,
    /// The body decoded to no value the test writes; the string says why.
    Corrupt(String),
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A Put or Delete was acknowledged (2xx).
    Ok,
    /// A Get completed.
    Read(ReadResult),
    /// A definite rejection (4xx): the operation did not apply.
    Failed(String),
    /// Timeout, 5xx, connection error: the operation may or may not have applied, now or later.
    Indeterminate(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Read(ReadResult::Value(_)) => "value",
            Outcome::Read(ReadResult::NotFound) => "not-found",
            Outcome::Read(ReadResult::Corrupt(_)) => "corrupt",
            Outcome::Failed(_) => "failed",
            Outcome::Indeterminate(_) => "indeterminate",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => write!(f, "ok"),
            Outcome::Read(ReadResult::Value(v)) => write!(f, "read {v}"),
            Outcome::Read(ReadResult::NotFound) => write!(f, "read not-found"),
            Outcome::Read(ReadResult::Corrupt(why)) => write!(f, "read corrupt ({why})"),
            Outcome::Failed(why) => write!(f, "failed ({why})"),
            Outcome::Indeterminate(why) => write!(f, "indeterminate ({why})"),
        }
    }
}

/// One recorded operation; times are offsets from the history's creation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Index in the history.
    pub id: OpId,
    /// The client task that issued it.
    pub client: u32,
    /// What was asked.
    pub kind: OpKind,
    /// When the client sent it.
    pub invoked: Duration,
    /// When the client saw it end; `None` while pending.
    pub completed: Option<Duration>,
    /// How it ended; `None` while pending.
    pub outcome: Option<Outcome>,
}

impl Op {
    fn is_write(&self) -> bool {
        matches!(self.kind, OpKind::Put { .. } | OpKind::Delete { .. })
    }

    /// A write that may have taken effect: anything but a definite rejection.
    fn is_possible_write(&self) -> bool {
        self.is_write() && !matches!(self.outcome, Some(Outcome::Failed(_)))
    }

    /// The acknowledged completion time of a write, if it was acknowledged.
    fn acknowledged_at(&self) -> Option<Duration> {
        match self.outcome {
            Some(Outcome::Ok) if self.is_write() => self.completed,
            _ => None,
        }
    }

    fn end(&self) -> WriteEnd {
        self.acknowledged_at().map_or(WriteEnd::Open, WriteEnd::At)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} {}", self.id.0, self.kind.label())?;
        if let OpKind::Put { value, .. } = &self.kind {
            write!(f, " {value}")?;
        }
        write!(f, " by client {} [{:?}..", self.client, self.invoked)?;
        match (&self.completed, &self.outcome) {
            (Some(at), Some(outcome)) => write!(f, "{at:?}] {outcome}"),
            (Some(at), None) => write!(f, "{at:?}] no outcome"),
            (None, Some(outcome)) => write!(f, "?] {outcome}"),
            (None, None) => write!(f, "] pending"),
        }
    }
}

/// Records operations from many client tasks; share it as `Arc<History>`.
#[derive(Debug)]
pub struct History {
    start: Instant,
    ops: Mutex<Vec<Op>>,
}

impl History {
    /// An empty history whose clock starts now.
    pub fn new() -> Arc<History> {
        Arc::new(History {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        })
    }

    /// Time since the history began, on the clock its operations use.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records that `client` is about to send `op`; call `complete` with the returned id.
    pub fn invoke(&self, client: u32, op: OpKind) -> OpId {
        let mut ops = self.ops.lock().expect("history lock");
        // Read the clock under the lock so that ids and invocation times agree in order.
        let invoked = self.start.elapsed();
        let id = OpId(ops.len());
        ops.push(Op {
            id,
            client,
            kind: op,
            invoked,
            completed: None,
            outcome: None,
        });
        id
    }

    /// Records how operation `id` ended. Completing an operation twice is a test bug and panics.
    pub fn complete(&self, id: OpId, outcome: Outcome) {
        let completed = self.start.elapsed();
        let mut ops = self.ops.lock().expect("history lock");
        let op = ops
            .get_mut(id.0)
            .unwrap_or_else(|| panic!("op {} was never invoked", id.0));
        assert!(op.outcome.is_none(), "op {} completed twice", id.0);
        op.completed = Some(completed);
        op.outcome = Some(outcome);
    }

    /// A snapshot of every operation so far, in invocation order.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().expect("history lock").clone()
    }

    /// Counts per kind and outcome, and the distinct failure reasons, for a test log.
    pub fn summary(&self) -> String {
        let ops = self.ops();
        let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        let mut reasons: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for op in &ops {
            let outcome = op.outcome.as_ref().map_or("pending", Outcome::label);
            *counts.entry((op.kind.label(), outcome)).or_default() += 1;
            if let Some(Outcome::Failed(why) | Outcome::Indeterminate(why)) = &op.outcome {
                *reasons.entry((outcome, why.as_str())).or_default() += 1;
            }
        }
        let mut out = format!("{} ops", ops.len());
        for kind in ["put", "delete", "get"] {
            let parts: Vec<String> = counts
                .iter()
                .filter(|((k, _), _)| *k == kind)
                .map(|((_, outcome), n)| format!("{outcome} {n}"))
                .collect();
            if !parts.is_empty() {
                out.push_str(&format!("; {kind}: {}", parts.join(", ")));
            }
        }
        for ((outcome, why), n) in reasons {
            out.push_str(&format!("; {outcome} x{n}: {why}"));
        }
        out
    }
}

/// What `check` found wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnomalyKind {
    /// A final read does not hold the value of the newest acknowledged write(s).
    LostWrite,
    /// A read saw a value already overwritten before it began.
    StaleRead,
    /// A read saw a value never possibly written to its key before it ended.
    PhantomRead,
    /// A read's body decoded to no value.
    CorruptRead,
}

/// One read the model does not explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    /// Which rule it breaks.
    pub kind: AnomalyKind,
    /// The object key.
    pub key: String,
    /// The read and the writes that convict it.
    pub detail: String,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} on {}: {}", self.kind, self.key, self.detail)
    }
}

/// When a write stops being able to take effect, for ordering against later writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteEnd {
    /// The absent initial state: older than every write.
    Initial,
    /// Acknowledged: took effect by this time.
    At(Duration),
    /// Indeterminate or pending: may still take effect at any time.
    Open,
}

impl WriteEnd {
    /// Whether the write had surely taken effect before `t`.
    fn before(self, t: Duration) -> bool {
        match self {
            WriteEnd::Initial => true,
            WriteEnd::At(end) => end < t,
            WriteEnd::Open => false,
        }
    }
}

/// The operations on one key that the checker needs.
struct KeyOps<'a> {
    /// Possible writes (not Failed).
    writes: Vec<&'a Op>,
    /// Possible deletes, the writes a NotFound may have seen.
    deletes: Vec<&'a Op>,
    /// Completed Gets with their result.
    reads: Vec<(&'a Op, Duration, &'a ReadResult)>,
}

/// Acknowledged writes of one key by completion time, each with the latest-invoked
/// acknowledged write among those completed so far: a write that ended before that one began
/// is overwritten for every read invoked after the prefix completed.
struct Overwrites<'a> {
    by_completion: Vec<(Duration, &'a Op)>,
}

impl<'a> Overwrites<'a> {
    fn new(writes: &[&'a Op]) -> Self {
        let mut acked: Vec<(Duration, &Op)> = writes
            .iter()
            .filter_map(|w| w.acknowledged_at().map(|at| (at, *w)))
            .collect();
        acked.sort_by_key(|(at, w)| (*at, w.id));
        let mut latest: Option<&Op> = None;
        let by_completion = acked
            .into_iter()
            .map(|(at, w)| {
                let newest = match latest {
                    Some(l) if l.invoked >= w.invoked => l,
                    _ => w,
                };
                latest = Some(newest);
                (at, newest)
            })
            .collect();
        Overwrites { by_completion }
    }

    /// The latest-invoked acknowledged write that completed before `t`.
    fn newest_before(&self, t: Duration) -> Option<&'a Op> {
        let n = self.by_completion.partition_point(|(at, _)| *at < t);
        n.checked_sub(1).map(|i| self.by_completion[i].1)
    }
}

/// Every anomaly in `ops`, grouped by key, in invocation order within a key. See the module
/// documentation for the model.
pub fn check(ops: &[Op]) -> Vec<Anomaly> {
    let mut by_key: BTreeMap<&str, KeyOps> = BTreeMap::new();
    let mut puts_of: HashMap<ValueId, Vec<&Op>> = HashMap::new();
    for op in ops {
        let entry = by_key.entry(op.kind.key()).or_insert_with(|| KeyOps {
            writes: Vec::new(),
            deletes: Vec::new(),
            reads: Vec::new(),
        });
        if let OpKind::Put { value, .. } = &op.kind {
            puts_of.entry(*value).or_default().push(op);
        }
        if op.is_possible_write() {
            entry.writes.push(op);
            if let OpKind::Delete { .. } = op.kind {
                entry.deletes.push(op);
            }
        } else if let (OpKind::Get { .. }, Some(done), Some(Outcome::Read(result))) =
            (&op.kind, op.completed, &op.outcome)
        {
            entry.reads.push((op, done, result));
        }
    }
    let mut anomalies = Vec::new();
    for (key, key_ops) in &by_key {
        check_key(key, key_ops, &puts_of, &mut anomalies);
    }
    anomalies
}

fn check_key(
    key: &str,
    key_ops: &KeyOps,
    puts_of: &HashMap<ValueId, Vec<&Op>>,
    anomalies: &mut Vec<Anomaly>,
) {
    let overwrites = Overwrites::new(&key_ops.writes);
    let last_write_done = key_ops.writes.iter().filter_map(|w| w.completed).max();
    let mut report = |kind: AnomalyKind, detail: String| {
        anomalies.push(Anomaly {
            kind,
            key: key.to_string(),
            detail,
        })
    };
    for &(read, done, result) in &key_ops.reads {
        // The writes this read could have seen, with `None` for the initial state.
        let candidates: Vec<Option<&Op>> = match result {
            ReadResult::Corrupt(why) => {
                report(AnomalyKind::CorruptRead, format!("{read}: {why}"));
                continue;
            }
            // Indexed by value and by kind so a hot key costs no scan of all its writes per read.
            ReadResult::Value(value) => puts_of
                .get(value)
                .into_iter()
                .flatten()
                .filter(|p| p.kind.key() == key && p.is_possible_write() && p.invoked < done)
                .map(|p| Some(*p))
                .collect(),
            ReadResult::NotFound => std::iter::once(None)
                .chain(
                    key_ops
                        .deletes
                        .iter()
                        .filter(|d| d.invoked < done)
                        .map(|d| Some(*d)),
                )
                .collect(),
        };
        if let (ReadResult::Value(value), true) = (result, candidates.is_empty()) {
            let others: Vec<String> = puts_of
                .get(value)
                .into_iter()
                .flatten()
                .map(|p| format!("{p} to {}", p.kind.key()))
                .collect();
            let known = if others.is_empty() {
                "never put".to_string()
            } else {
                others.join("; ")
            };
            report(
                AnomalyKind::PhantomRead,
                format!(
                    "{read}: no possible put of {value} to this key began before the read ended ({known})"
                ),
            );
            continue;
        }
        let Some(newest) = overwrites.newest_before(read.invoked) else {
            continue;
        };
        let end = |c: &Option<&Op>| c.map_or(WriteEnd::Initial, Op::end);
        if !candidates.iter().all(|c| end(c).before(newest.invoked)) {
            continue;
        }
        let seen: Vec<String> = candidates
            .iter()
            .map(|c| c.map_or("the initial absent state".to_string(), |w| w.to_string()))
            .collect();
        let is_final = last_write_done.is_none_or(|last| last < read.invoked);
        let (kind, what) = if is_final {
            (AnomalyKind::LostWrite, "final read")
        } else {
            (AnomalyKind::StaleRead, "read")
        };
        report(
            kind,
            format!(
                "{what} {read} could only have seen {}, each finished before {newest} began, which was acknowledged before the read began",
                seen.join(" or ")
            ),
        );
    }
}

/// The deterministic body of `value` at `len` bytes: the id in the header, then a fill that
/// depends on both id and length, so a truncated or spliced body fails to decode.
/// Panics if `len < MIN_BODY_LEN`.
pub fn encode_value(value: ValueId, len: usize) -> Vec<u8> {
    assert!(
        len >= MIN_BODY_LEN,
        "test bodies are at least {MIN_BODY_LEN} bytes, asked for {len}"
    );
    let mut body = Vec::with_capacity(len + 8);
    body.extend_from_slice(&value.0.to_le_bytes());
    // SplitMix64: cheap, and any deterministic generator serves; the length is mixed into the
    // seed so that a prefix of a longer body is not itself a valid shorter body.
    let mut state = mix64(value.0 ^ mix64(len as u64 ^ 0x7465_7373_6572_6121));
    while body.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        body.extend_from_slice(&mix64(state).to_le_bytes());
    }
    body.truncate(len);
    body
}

fn mix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The value a body encodes, checked byte for byte against `encode_value(id, body.len())`.
pub fn decode_value(body: &[u8]) -> Result<ValueId, String> {
    if body.len() < MIN_BODY_LEN {
        return Err(format!(
            "body of {} bytes is shorter than any test body ({MIN_BODY_LEN})",
            body.len()
        ));
    }
    let mut header = [0_u8; HEADER_LEN];
    header.copy_from_slice(&body[..HEADER_LEN]);
    let value = ValueId(u64::from_le_bytes(header));
    let expected = encode_value(value, body.len());
    match body.iter().zip(&expected).position(|(a, b)| a != b) {
        None => Ok(value),
        Some(at) => Err(format!(
            "body of {} bytes names {value} but differs from it at byte {at}",
            body.len()
        )),
    }
}

#[cfg(test)]
#[path = "history_test.rs"]
mod tests;
