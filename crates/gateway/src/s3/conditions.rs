//! Conditional reads (RFC 9110 as S3 applies it): If-Match, then If-Unmodified-Since (only
//! when If-Match is absent) can fail with 412; If-None-Match, then If-Modified-Since (only when
//! If-None-Match is absent) can answer 304. Pure: the caller passes the object's ETag and
//! modification time.

use crate::error::GatewayError;

/// The conditions of a GET, HEAD or copy source.
#[derive(Debug, Default, Clone)]
pub struct ReadConditions {
    /// If-Match: Some(None) is `*`, Some(Some(tag)) an entity tag.
    pub if_match: Option<Option<String>>,
    /// If-None-Match, likewise.
    pub if_none_match: Option<Option<String>>,
    /// If-Modified-Since, in ms.
    pub if_modified_since_ms: Option<i64>,
    /// If-Unmodified-Since, in ms.
    pub if_unmodified_since_ms: Option<i64>,
}

/// How a failed "not modified" condition is reported: 304 for GET/HEAD, 412 for copy sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionMode {
    /// GET and HEAD.
    Read,
    /// x-amz-copy-source-if-*.
    CopySource,
}

fn tag_matches(cond: &Option<String>, etag: &str) -> bool {
    match cond {
        None => true,
        Some(tag) => tag.trim_matches('"') == etag.trim_matches('"'),
    }
}

/// Evaluates the conditions against an object with `etag` last modified at `modified_ms`.
/// HTTP dates have one-second resolution, so times compare in whole seconds.
pub fn evaluate(
    c: &ReadConditions,
    etag: &str,
    modified_ms: i64,
    mode: ConditionMode,
) -> Result<(), GatewayError> {
    let modified_s = modified_ms.div_euclid(1000);
    if let Some(cond) = &c.if_match {
        if !tag_matches(cond, etag) {
            return Err(GatewayError::PreconditionFailed {
                condition: if mode == ConditionMode::Read {
                    "If-Match"
                } else {
                    "x-amz-copy-source-if-match"
                },
            });
        }
    } else if let Some(since) = c.if_unmodified_since_ms
        && modified_s > since.div_euclid(1000)
    {
        return Err(GatewayError::PreconditionFailed {
            condition: if mode == ConditionMode::Read {
                "If-Unmodified-Since"
            } else {
                "x-amz-copy-source-if-unmodified-since"
            },
        });
    }
    let not_modified = if let Some(cond) = &c.if_none_match {
        tag_matches(cond, etag)
    } else if let Some(since) = c.if_modified_since_ms {
        modified_s <= since.div_euclid(1000)
    } else {
        false
    };
    if not_modified {
        return Err(match mode {
            ConditionMode::Read => GatewayError::NotModified,
            ConditionMode::CopySource => GatewayError::PreconditionFailed {
                condition: if c.if_none_match.is_some() {
                    "x-amz-copy-source-if-none-match"
                } else {
                    "x-amz-copy-source-if-modified-since"
                },
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETAG: &str = "\"abc\"";
    const T: i64 = 1_700_000_000_000;

    fn check(c: ReadConditions) -> Result<(), GatewayError> {
        evaluate(&c, ETAG, T, ConditionMode::Read)
    }

    #[test]
    fn no_conditions_pass() {
        assert!(check(ReadConditions::default()).is_ok());
    }

    #[test]
    fn if_match() {
        let ok = ReadConditions {
            if_match: Some(Some("abc".into())),
            ..Default::default()
        };
        assert!(check(ok).is_ok());
        let any = ReadConditions {
            if_match: Some(None),
            ..Default::default()
        };
        assert!(check(any).is_ok());
        let bad = ReadConditions {
            if_match: Some(Some("\"x\"".into())),
            ..Default::default()
        };
        assert!(matches!(
            check(bad),
            Err(GatewayError::PreconditionFailed { .. })
        ));
    }

    #[test]
    fn if_match_true_overrides_unmodified_since_false() {
        let c = ReadConditions {
            if_match: Some(Some("abc".into())),
            if_unmodified_since_ms: Some(T - 10_000),
            ..Default::default()
        };
        assert!(check(c).is_ok());
        let c = ReadConditions {
            if_unmodified_since_ms: Some(T - 10_000),
            ..Default::default()
        };
        assert!(matches!(
            check(c),
            Err(GatewayError::PreconditionFailed { .. })
        ));
        let c = ReadConditions {
            if_unmodified_since_ms: Some(T + 500),
            ..Default::default()
        };
        assert!(check(c).is_ok());
    }

    #[test]
    fn if_none_match_and_modified_since() {
        let c = ReadConditions {
            if_none_match: Some(Some(ETAG.into())),
            ..Default::default()
        };
        assert!(matches!(check(c), Err(GatewayError::NotModified)));
        let c = ReadConditions {
            if_none_match: Some(Some("zzz".into())),
            ..Default::default()
        };
        assert!(check(c).is_ok());
        let c = ReadConditions {
            if_modified_since_ms: Some(T),
            ..Default::default()
        };
        assert!(matches!(check(c), Err(GatewayError::NotModified)));
        let c = ReadConditions {
            if_modified_since_ms: Some(T - 1_000),
            ..Default::default()
        };
        assert!(check(c).is_ok());
        // If-None-Match false (tag differs) wins over If-Modified-Since.
        let c = ReadConditions {
            if_none_match: Some(Some("zzz".into())),
            if_modified_since_ms: Some(T + 1_000),
            ..Default::default()
        };
        assert!(check(c).is_ok());
    }

    #[test]
    fn copy_source_conditions_fail_with_412() {
        let c = ReadConditions {
            if_none_match: Some(Some(ETAG.into())),
            ..Default::default()
        };
        assert!(matches!(
            evaluate(&c, ETAG, T, ConditionMode::CopySource),
            Err(GatewayError::PreconditionFailed { .. })
        ));
    }
}
