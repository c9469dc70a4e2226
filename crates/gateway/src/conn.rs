//! Connection limits of the S3 endpoint: at most `max_connections` client connections are open
//! at once (one over the limit waits briefly for a slot, then is answered 503 SlowDown and
//! closed), and a connection without a request in flight for its idle timeout is shut down
//! gracefully (HTTP/1 keep-alive and HTTP/2 alike; HTTP/2 pings do not count as activity).
//! Until its first request a connection counts as HTTP/1 (the protocol is known from the
//! request). A response body still streaming when the idle time is up is not cut: graceful
//! shutdown lets it finish and only ends keep-alive.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Slots for open client connections.
#[derive(Debug)]
pub struct ConnectionSlots {
    semaphore: Arc<Semaphore>,
    max: usize,
    queue: Duration,
}

impl ConnectionSlots {
    /// `max` slots; a connection waits at most `queue` for one.
    pub fn new(max: usize, queue: Duration) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(max)),
            max,
            queue,
        }
    }

    /// A slot for a new connection, waiting at most the queue time; `None` when all stay taken.
    pub async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.semaphore.clone().try_acquire_owned() {
            return Some(permit);
        }
        if self.queue.is_zero() {
            return None;
        }
        tokio::time::timeout(self.queue, self.semaphore.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.semaphore.available_permits()
    }

    /// Waits until every connection has closed, at most `within`; whether they all did.
    pub async fn drained(&self, within: Duration) -> bool {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        tokio::time::timeout(within, self.semaphore.acquire_many(all))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// The 503 SlowDown answer to a connection over the limit. Written before the request is read
/// (HTTP/1.1 allows an early response), with `Connection: close`.
pub fn over_limit_response(request_id: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>{request_id}</RequestId></Error>"
    );
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\nx-amz-request-id: {request_id}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers a connection over the limit and closes it, within about a second.
pub async fn refuse<S>(mut stream: S, request_id: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let answer = over_limit_response(request_id);
    let write = async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    };
    if tokio::time::timeout(Duration::from_millis(500), write)
        .await
        .is_ok_and(|r| r.is_ok())
    {
        // Read a little of the request the client already sent, so that closing does not
        // reset the connection before the client has read the answer.
        let mut sink = [0_u8; 16 * 1024];
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Ok(n) = stream.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
}

#[derive(Debug)]
struct Activity {
    in_flight: usize,
    idle_since: Instant,
    http2: bool,
}

/// Requests in flight on one connection and since when it has had none.
#[derive(Debug)]
pub struct ActivityClock {
    state: Mutex<Activity>,
}

/// One request in flight; dropping it ends the request.
#[derive(Debug)]
pub struct RequestActivity {
    clock: Arc<ActivityClock>,
}

impl Drop for RequestActivity {
    fn drop(&mut self) {
        let mut s = self.clock.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
        }
    }
}

impl ActivityClock {
    /// A clock for a connection just opened (idle since now).
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(Activity {
                in_flight: 0,
                idle_since: Instant::now(),
                http2: false,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks a request as started; `http2` tells which idle timeout applies.
    pub fn begin(self: &Arc<Self>, http2: bool) -> RequestActivity {
        let mut s = self.lock();
        s.in_flight += 1;
        s.http2 |= http2;
        drop(s);
        RequestActivity {
            clock: Arc::clone(self),
        }
    }

    /// When the connection will have been idle for its timeout; `None` while a request is in
    /// flight.
    pub fn idle_deadline(&self, http1_idle: Duration, http2_idle: Duration) -> Option<Instant> {
        let s = self.lock();
        (s.in_flight == 0).then(|| s.idle_since + if s.http2 { http2_idle } else { http1_idle })
    }

    /// Resolves once the connection has had no request in flight for its idle timeout.
    pub async fn wait_idle(&self, http1_idle: Duration, http2_idle: Duration) {
        loop {
            match self.idle_deadline(http1_idle, http2_idle) {
                Some(deadline) if deadline <= Instant::now() => return,
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => tokio::time::sleep(http1_idle.min(http2_idle)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_admit_up_to_the_limit_then_queue_briefly() {
        let slots = ConnectionSlots::new(2, Duration::from_millis(50));
        let a = slots.admit().await.expect("first");
        let _b = slots.admit().await.expect("second");
        assert_eq!(slots.open(), 2);
        let started = std::time::Instant::now();
        assert!(slots.admit().await.is_none(), "third is refused");
        assert!(
            started.elapsed() >= Duration::from_millis(45),
            "it waited first"
        );
        // A slot freed while one waits is taken by the waiter.
        let slots = Arc::new(slots);
        let waiter = {
            let slots = Arc::clone(&slots);
            tokio::spawn(async move { slots.admit().await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(a);
        assert!(waiter.await.expect("join"), "queued connection admitted");
    }

    #[tokio::test]
    async fn zero_queue_refuses_at_once_and_drain_waits_for_all() {
        let slots = ConnectionSlots::new(1, Duration::ZERO);
        let permit = slots.admit().await.expect("first");
        assert!(slots.admit().await.is_none());
        assert!(!slots.drained(Duration::from_millis(20)).await);
        drop(permit);
        assert!(slots.drained(Duration::from_millis(20)).await);
    }

    #[test]
    fn the_over_limit_answer_is_an_s3_slow_down() {
        let text = String::from_utf8(over_limit_response("R1")).expect("utf8");
        assert!(text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(text.contains("\r\nconnection: close\r\n"));
        let body = text.split("\r\n\r\n").nth(1).expect("body");
        assert!(text.contains(&format!("content-length: {}\r\n", body.len())));
        assert!(body.contains("<Code>SlowDown</Code>"));
    }

    #[tokio::test]
    async fn idle_time_counts_only_without_requests_in_flight() {
        let h1 = Duration::from_millis(40);
        let h2 = Duration::from_millis(400);
        let clock = ActivityClock::new();
        let opened = Instant::now();
        let deadline = clock.idle_deadline(h1, h2).expect("idle");
        assert!(
            deadline >= opened + h1 - Duration::from_millis(5)
                && deadline <= opened + h1 + Duration::from_millis(5)
        );
        let request = clock.begin(false);
        assert_eq!(clock.idle_deadline(h1, h2), None, "busy");
        // While a request is in flight, wait_idle does not return.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), clock.wait_idle(h1, h2))
                .await
                .is_err()
        );
        drop(request);
        let ended = Instant::now();
        tokio::time::timeout(Duration::from_millis(500), clock.wait_idle(h1, h2))
            .await
            .expect("idle after the request");
        assert!(ended.elapsed() >= h1 - Duration::from_millis(5));
        // An HTTP/2 connection gets its own timeout.
        drop(clock.begin(true));
        let d = clock.idle_deadline(h1, h2).expect("idle");
        assert!(d >= Instant::now() + h2 - Duration::from_millis(50));
    }
}
