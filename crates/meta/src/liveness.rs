//! Data-node liveness from heartbeat age: alive up to the suspect timeout, suspect up to the dead
//! timeout, dead after it. The boundaries belong to the better state (an age equal to a timeout
//! has not exceeded it), and a node never heard from ages from the meta process's start, so a
//! restarted meta node does not declare the whole cluster dead at once.

use std::time::Duration;

use tessera_proto::meta::v1::Liveness;

/// The heartbeat ages at which a data node stops being alive, then stops being suspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessTimeouts {
    /// No heartbeat for longer than this: suspect (no new writes, shards not rebuilt yet).
    pub suspect_after: Duration,
    /// No heartbeat for longer than this: dead (its shards count as lost).
    pub dead_after: Duration,
}

impl LivenessTimeouts {
    /// The liveness of a node whose last heartbeat is `age` old.
    pub fn classify(&self, age: Duration) -> Liveness {
        if age <= self.suspect_after {
            Liveness::Alive
        } else if age <= self.dead_after {
            Liveness::Suspect
        } else {
            Liveness::Dead
        }
    }
}

impl Default for LivenessTimeouts {
    fn default() -> Self {
        LivenessTimeouts {
            suspect_after: Duration::from_millis(crate::config::DEFAULT_SUSPECT_AFTER_MS),
            dead_after: Duration::from_millis(crate::config::DEFAULT_DEAD_AFTER_MS),
        }
    }
}

/// The age that counts for a node: since its last heartbeat, or since this process started
/// when it was never heard from.
pub fn heartbeat_age(last_heartbeat: Option<Duration>, since_start: Duration) -> Duration {
    last_heartbeat.unwrap_or(since_start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> LivenessTimeouts {
        LivenessTimeouts {
            suspect_after: Duration::from_millis(3000),
            dead_after: Duration::from_millis(60_000),
        }
    }

    #[test]
    fn ages_map_to_alive_suspect_dead_with_inclusive_bounds() {
        let t = timeouts();
        let ms = Duration::from_millis;
        assert_eq!(t.classify(ms(0)), Liveness::Alive);
        assert_eq!(t.classify(ms(3000)), Liveness::Alive);
        assert_eq!(t.classify(ms(3001)), Liveness::Suspect);
        assert_eq!(t.classify(ms(60_000)), Liveness::Suspect);
        assert_eq!(t.classify(ms(60_001)), Liveness::Dead);
        assert_eq!(t.classify(Duration::MAX), Liveness::Dead);
    }

    #[test]
    fn equal_timeouts_skip_suspect() {
        let t = LivenessTimeouts {
            suspect_after: Duration::from_millis(10),
            dead_after: Duration::from_millis(10),
        };
        assert_eq!(t.classify(Duration::from_millis(10)), Liveness::Alive);
        assert_eq!(t.classify(Duration::from_millis(11)), Liveness::Dead);
    }

    #[test]
    fn a_node_never_heard_from_ages_from_process_start() {
        let t = timeouts();
        let fresh = heartbeat_age(None, Duration::from_millis(500));
        assert_eq!(t.classify(fresh), Liveness::Alive);
        let long_ago = heartbeat_age(None, Duration::from_secs(120));
        assert_eq!(t.classify(long_ago), Liveness::Dead);
        let beat = heartbeat_age(Some(Duration::from_millis(10)), Duration::from_secs(120));
        assert_eq!(t.classify(beat), Liveness::Alive);
        assert_eq!(LivenessTimeouts::default(), timeouts());
    }
}
