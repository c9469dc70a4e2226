//! The exactly-once session of one meta client: a random 16-byte client id drawn once, commands
//! numbered 1, 2, 3, ... and the set of numbers still in flight.
//!
//! Invariant: every command carries `first_unacked` = the smallest seq still in flight (its own
//! seq included, so `first_unacked <= seq`); a seq leaves the in-flight set exactly once, when
//! the [`InFlight`] ticket of its call drops (answer delivered, rule error, or given up). So the
//! state machine may forget every result below `first_unacked`: nobody will ask for it again,
//! and a late copy of an abandoned command below it is refused instead of applied.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tessera_proto::meta::v1 as pb;

/// Bytes of a client id.
pub const CLIENT_ID_LEN: usize = 16;

/// One client's numbering of its commands; shared by all clones of a `MetaClient`.
pub(crate) struct Session {
    client_id: [u8; CLIENT_ID_LEN],
    state: Mutex<SessionState>,
}

struct SessionState {
    /// The seq the next command gets.
    next_seq: u64,
    /// Seqs whose calls have not returned.
    in_flight: BTreeSet<u64>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Session")
            .field("client_id", &hex(&self.client_id))
            .field("next_seq", &state.next_seq)
            .field("in_flight", &state.in_flight.len())
            .finish()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Session {
    /// A session with a fresh random client id.
    pub(crate) fn new() -> Session {
        Session::with_id(rand::random())
    }

    /// A session with the given client id (tests).
    pub(crate) fn with_id(client_id: [u8; CLIENT_ID_LEN]) -> Session {
        Session {
            client_id,
            state: Mutex::new(SessionState {
                next_seq: 1,
                in_flight: BTreeSet::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SessionState> {
        // Every update leaves the state whole, so a panic elsewhere cannot corrupt it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The client id.
    pub(crate) fn client_id(&self) -> [u8; CLIENT_ID_LEN] {
        self.client_id
    }

    /// Numbers a new command and counts it in flight until the ticket drops.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        state.in_flight.insert(seq);
        InFlight {
            session: Arc::clone(self),
            seq,
        }
    }

    /// The smallest seq in flight, or the next seq when none is.
    pub(crate) fn first_unacked(&self) -> u64 {
        let state = self.lock();
        state.in_flight.first().copied().unwrap_or(state.next_seq)
    }

    /// How many commands are in flight.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.lock().in_flight.len()
    }
}

/// One command's place in its session, from numbering until its call returns.
#[derive(Debug)]
pub(crate) struct InFlight {
    session: Arc<Session>,
    seq: u64,
}

impl InFlight {
    /// The command's seq.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// The session header to send now (every attempt of the command sends the same seq; its
    /// `first_unacked` may have risen since an earlier attempt, never above the seq).
    pub(crate) fn header(&self) -> pb::CommandSession {
        pb::CommandSession {
            client_id: self.session.client_id.to_vec(),
            seq: self.seq,
            first_unacked: self.session.first_unacked(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.session.lock().in_flight.remove(&self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_numbered_from_one_and_leave_flight_when_their_ticket_drops() {
        let session = Arc::new(Session::with_id([7; CLIENT_ID_LEN]));
        assert_eq!(
            session.first_unacked(),
            1,
            "nothing in flight: the next seq"
        );
        let one = session.begin();
        let two = session.begin();
        let three = session.begin();
        assert_eq!((one.seq(), two.seq(), three.seq()), (1, 2, 3));
        assert_eq!(three.header().first_unacked, 1);
        assert_eq!(three.header().client_id, vec![7; CLIENT_ID_LEN]);
        drop(two);
        assert_eq!(three.header().first_unacked, 1, "1 is still in flight");
        drop(one);
        assert_eq!(three.header().first_unacked, 3);
        assert_eq!(three.header().seq, 3, "a later attempt keeps its seq");
        drop(three);
        assert_eq!(session.first_unacked(), 4);
        assert_eq!(session.in_flight(), 0);
        assert_eq!(session.begin().seq(), 4);
    }

    #[test]
    fn fresh_sessions_draw_distinct_ids() {
        assert_ne!(Session::new().client_id(), Session::new().client_id());
    }
}
