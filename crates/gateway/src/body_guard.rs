//! The request body as s3s receives it: counted against the cap of its operation (also when
//! it arrives with chunked transfer coding and no declared length) and, for aws-chunked
//! uploads, watched by the framing validator. A body that breaks a rule fails at once, before
//! the bytes past the rule are read, and records the S3 error to answer in a [`BodyVerdict`]:
//! s3s and the handlers only see an I/O error, and the server answers with the verdict.

use crate::aws_chunked::{AwsChunkedValidator, FramingError};
use crate::guard::Refusal;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

/// The S3 error a failed body stands for, shared between the body and the server.
#[derive(Debug, Clone, Default)]
pub struct BodyVerdict(Arc<OnceLock<Refusal>>);

impl BodyVerdict {
    /// No verdict yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The refusal recorded by the body, if it failed.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.0.get()
    }

    fn record(&self, refusal: Refusal) {
        // The first failure is the cause; later ones follow from it.
        let _ = self.0.set(refusal);
    }
}

/// Why a guarded body stopped.
#[derive(Debug, thiserror::Error)]
pub enum BodyGuardError {
    /// The body broke a rule; the verdict holds the S3 error.
    #[error("request body refused: {code}: {message}")]
    Refused {
        /// The S3 error code.
        code: &'static str,
        /// The message.
        message: String,
    },
    /// Reading the body from the connection failed.
    #[error("reading the request body failed: {0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What a body that grows past its cap is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverCap {
    /// 400 EntityTooLarge (object uploads).
    EntityTooLarge,
    /// 400 MaxMessageLengthExceeded (everything else).
    MessageTooLong,
}

/// The S3 answer to a framing error of an aws-chunked body.
pub fn framing_refusal(err: &FramingError) -> Refusal {
    match err {
        // S3 names chunk-size errors InvalidChunkSizeError with the chunk and its size; S3
        // itself takes large chunks, so the message says that this endpoint's cap was hit.
        FramingError::ChunkTooLarge { chunk, size, max } => Refusal::new(
            400,
            "InvalidChunkSizeError",
            format!(
                "Chunk {chunk} declares {size} bytes; this endpoint accepts aws-chunked chunks of at most {max} bytes. Send smaller chunks."
            ),
        )
        .element("Chunk", chunk.to_string())
        .element("BadChunkSize", size.to_string()),
        FramingError::TrailerTooLarge => Refusal::new(
            400,
            "MalformedTrailerError",
            "The request contained trailing data that was not well-formed or did not conform to our published schema.",
        ),
        // S3 answers every aws-chunked body it cannot decode with IncompleteBody.
        FramingError::Malformed { .. } | FramingError::Incomplete => Refusal::incomplete_body(),
    }
}

/// A body with bytes already read from it put back in front.
pub struct PrefixedBody<B> {
    prefix: VecDeque<Bytes>,
    inner: B,
}

impl<B> PrefixedBody<B> {
    /// `prefix` is served first, then the rest of `inner`.
    pub fn new(prefix: Vec<Bytes>, inner: B) -> Self {
        Self {
            prefix: prefix.into_iter().filter(|b| !b.is_empty()).collect(),
            inner,
        }
    }
}

impl<B> Body for PrefixedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(bytes) = self.prefix.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let extra: u64 = self.prefix.iter().map(|b| b.len() as u64).sum();
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(extra));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(extra));
        }
        hint
    }
}

/// A request body held to its cap and, for aws-chunked uploads, to the framing rules.
pub struct GuardedBody<B> {
    inner: B,
    cap: u64,
    over_cap: OverCap,
    seen: u64,
    framing: Option<AwsChunkedValidator>,
    verdict: BodyVerdict,
    failed: bool,
}

impl<B> GuardedBody<B> {
    /// Guards `inner`: at most `cap` payload bytes (decoded bytes for aws-chunked bodies).
    pub fn new(
        inner: B,
        cap: u64,
        over_cap: OverCap,
        framing: Option<AwsChunkedValidator>,
        verdict: BodyVerdict,
    ) -> Self {
        Self {
            inner,
            cap,
            over_cap,
            seen: 0,
            framing,
            verdict,
            failed: false,
        }
    }

    fn refuse(&mut self, refusal: Refusal) -> Poll<Option<Result<Frame<Bytes>, BodyGuardError>>> {
        tracing::info!(code = refusal.code, message = %refusal.message, "request body refused");
        let err = BodyGuardError::Refused {
            code: refusal.code,
            message: refusal.message.clone(),
        };
        self.verdict.record(refusal);
        self.failed = true;
        Poll::Ready(Some(Err(err)))
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = BodyGuardError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyGuardError::Read(e.into())))),
            Poll::Ready(Some(Ok(frame))) => {
                let Some(data) = frame.data_ref() else {
                    return Poll::Ready(Some(Ok(frame)));
                };
                let payload = match self.framing.as_mut().map(|v| v.feed(data)) {
                    None => data.len() as u64,
                    Some(Ok(n)) => n,
                    Some(Err(e)) => return self.refuse(framing_refusal(&e)),
                };
                self.seen = self.seen.saturating_add(payload);
                if self.seen > self.cap {
                    let refusal = match self.over_cap {
                        OverCap::EntityTooLarge => Refusal::entity_too_large(None),
                        OverCap::MessageTooLong => Refusal::message_too_long(),
                    };
                    return self.refuse(refusal);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                if let Some(Err(e)) = self.framing.as_mut().map(AwsChunkedValidator::finish) {
                    return self.refuse(framing_refusal(&e));
                }
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // The end of an aws-chunked body is checked when it is polled.
        self.failed || (self.framing.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[path = "body_guard_test.rs"]
mod tests;
