//! The gateway's Prometheus metrics: requests by operation and status, their latency, bytes in
//! and out, requests in flight, whole-object checksum failures, and the pipeline's shard
//! faults; served on their own listener (`metrics_listen`).
//!
//! Invariant: every request the server handles is counted exactly once, when its response
//! (body included) is done or dropped: one sample in `requests_total`, one observation in the
//! duration histogram, and the in-flight gauge back down; bytes are counted as they pass.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tessera_runtime::metrics::{Counter, CounterVec, DEFAULT_LATENCY_BUCKETS, Gauge, HistogramVec};

use crate::context::UNROUTED;
use crate::pipeline::PipelineMetrics;

/// The gateway's metrics; one per process, shared.
#[derive(Debug)]
pub struct GatewayMetrics {
    requests: CounterVec,
    duration: HistogramVec,
    bytes_in: Arc<Counter>,
    bytes_out: Arc<Counter>,
    in_flight: Gauge,
    checksum_failures: Counter,
    pipeline: Arc<PipelineMetrics>,
}

impl GatewayMetrics {
    /// Metrics at zero, rendering `pipeline`'s counters with the gateway's own.
    pub fn new(pipeline: Arc<PipelineMetrics>) -> Arc<GatewayMetrics> {
        Arc::new(GatewayMetrics {
            requests: CounterVec::new(
                "tessera_gateway_requests_total",
                "S3 requests answered, by operation and HTTP status.",
                &["operation", "status"],
            ),
            duration: HistogramVec::new(
                "tessera_gateway_request_duration_seconds",
                "Time from a request's arrival to the end of its response body, by operation.",
                &["operation"],
                DEFAULT_LATENCY_BUCKETS,
            ),
            bytes_in: Arc::new(Counter::new(
                "tessera_gateway_received_bytes_total",
                "Request body bytes received, as sent on the wire.",
            )),
            bytes_out: Arc::new(Counter::new(
                "tessera_gateway_sent_bytes_total",
                "Response body bytes sent.",
            )),
            in_flight: Gauge::new(
                "tessera_gateway_requests_in_flight",
                "Requests arrived whose response is not done yet.",
            ),
            checksum_failures: Counter::new(
                "tessera_gateway_object_checksum_failures_total",
                "Whole-object or whole-part reads whose bytes did not match the stored checksum.",
            ),
            pipeline,
        })
    }

    /// A request arrived: it is in flight until the returned record drops.
    pub fn start_request(self: &Arc<Self>) -> RequestRecord {
        self.in_flight.inc();
        RequestRecord {
            metrics: Arc::clone(self),
            started: Instant::now(),
            operation: None,
            status: None,
        }
    }

    /// A whole-object read did not match its stored checksum.
    pub fn checksum_failure(&self) {
        self.checksum_failures.inc();
    }

    /// How many whole-object reads failed their checksum.
    pub fn checksum_failures(&self) -> u64 {
        self.checksum_failures.get()
    }

    /// How many requests of `operation` were answered with `status`.
    pub fn requests(&self, operation: &str, status: u16) -> u64 {
        self.requests.with(&[operation, &status.to_string()]).get()
    }

    /// The counter of request body bytes.
    pub fn bytes_in(&self) -> &Arc<Counter> {
        &self.bytes_in
    }

    /// The counter of response body bytes.
    pub fn bytes_out(&self) -> &Arc<Counter> {
        &self.bytes_out
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.requests.render(&mut out);
        self.duration.render(&mut out);
        self.bytes_in.render(&mut out);
        self.bytes_out.render(&mut out);
        self.in_flight.render(&mut out);
        self.checksum_failures.render(&mut out);
        self.pipeline.render(&mut out);
        out
    }
}

/// One request on its way: counted (status, operation, duration) and taken out of flight when
/// it drops.
#[derive(Debug)]
pub struct RequestRecord {
    metrics: Arc<GatewayMetrics>,
    started: Instant,
    operation: Option<String>,
    status: Option<u16>,
}

impl RequestRecord {
    /// Names what the request was and how it was answered.
    pub fn answered(&mut self, operation: &str, status: u16) {
        self.operation = Some(operation.to_owned());
        self.status = Some(status);
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        let metrics = &self.metrics;
        metrics.in_flight.dec();
        let operation = self.operation.as_deref().unwrap_or(UNROUTED);
        // A request dropped before it was answered (the connection went away) has no status.
        let status = self
            .status
            .map_or_else(|| "none".to_owned(), |s| s.to_string());
        metrics.requests.with(&[operation, &status]).inc();
        metrics
            .duration
            .with(&[operation])
            .observe_duration(self.started.elapsed());
    }
}

/// A body whose data bytes are counted as they pass; it may carry the request's record, so the
/// request is counted done when the body is.
pub struct CountedBody<B> {
    inner: Pin<Box<B>>,
    counter: Arc<Counter>,
    record: Option<RequestRecord>,
}

impl<B> CountedBody<B> {
    /// `inner`, counted into `counter`.
    pub fn new(inner: B, counter: Arc<Counter>) -> Self {
        Self {
            inner: Box::pin(inner),
            counter,
            record: None,
        }
    }

    /// The same, holding `record` until the body is done or dropped.
    pub fn with_record(mut self, record: RequestRecord) -> Self {
        self.record = Some(record);
        self
    }
}

impl<B> Body for CountedBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.counter.inc_by(data.len() as u64);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                // Done: the request counts as answered now, not when hyper drops the body.
                this.record = None;
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn a_request_is_counted_once_when_its_body_is_done() {
        let metrics = GatewayMetrics::new(Arc::new(PipelineMetrics::new()));
        let mut record = metrics.start_request();
        assert_eq!(metrics.in_flight(), 1);
        record.answered("GetObject", 200);
        let body = CountedBody::new(
            Full::new(Bytes::from_static(b"twelve bytes")),
            Arc::clone(metrics.bytes_out()),
        )
        .with_record(record);
        assert_eq!(body.size_hint().exact(), Some(12));
        let collected = body.collect().await.expect("body").to_bytes();
        assert_eq!(collected.len(), 12);
        assert_eq!(metrics.bytes_out().get(), 12);
        assert_eq!(metrics.in_flight(), 0);
        assert_eq!(metrics.requests("GetObject", 200), 1);
        let text = metrics.render();
        assert!(
            text.contains(
                "tessera_gateway_requests_total{operation=\"GetObject\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "tessera_gateway_request_duration_seconds_count{operation=\"GetObject\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("tessera_gateway_sent_bytes_total 12"),
            "{text}"
        );
        assert!(
            text.contains("tessera_gateway_requests_in_flight 0"),
            "{text}"
        );

        tracing::info!("a request dropped unanswered counts with no status");
        drop(metrics.start_request());
        assert_eq!(metrics.in_flight(), 0);
        assert!(
            metrics.render().contains(
                "tessera_gateway_requests_total{operation=\"unrouted\",status=\"none\"} 1"
            )
        );
    }
}
