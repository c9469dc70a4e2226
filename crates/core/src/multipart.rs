//! Multipart upload limits and the checks of CompleteMultipartUpload.
//!
//! Invariant: a completion passes `validate_completion` only if its parts are listed in strictly
//! ascending order, each names an uploaded part by its current ETag, and every part but the last
//! is at least `MIN_PART_SIZE` bytes; S3 answers the same request with the same error.

use std::collections::BTreeMap;

use crate::etag::part_etag_matches;

/// The smallest size of any part but the last (5 MiB).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// The largest size of one part, and of one single PUT (5 GiB).
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// The highest part number.
pub const MAX_PART_NUMBER: u32 = 10_000;
/// The most parts one upload may complete with.
pub const MAX_PARTS_PER_UPLOAD: u32 = 10_000;
/// The most parts one ListParts page returns.
pub const MAX_LIST_PARTS: u32 = 1_000;
/// The most uploads one ListMultipartUploads page returns.
pub const MAX_LIST_UPLOADS: u32 = 1_000;

/// Why a part number or a completion request is refused; each maps onto one S3 error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// Part number outside 1..=10000 (`InvalidArgument`).
    #[error("part number {part_number} is not between 1 and {MAX_PART_NUMBER}")]
    InvalidPartNumber {
        /// The number given.
        part_number: i64,
    },
    /// The completion lists no parts (`MalformedXML`).
    #[error("the completion lists no parts")]
    NoParts,
    /// Part numbers are not strictly ascending (`InvalidPartOrder`).
    #[error("parts are not in ascending order")]
    InvalidPartOrder,
    /// A listed part was not uploaded, or its ETag does not match (`InvalidPart`).
    #[error("part {part_number} was not uploaded or its ETag does not match")]
    InvalidPart {
        /// The offending part.
        part_number: u32,
    },
    /// A part other than the last is smaller than `MIN_PART_SIZE` (`EntityTooSmall`).
    #[error("part {part_number} is {size} bytes, below the minimum of {MIN_PART_SIZE}")]
    EntityTooSmall {
        /// The offending part.
        part_number: u32,
        /// Its size.
        size: u64,
    },
}

impl MultipartError {
    /// A stable, short identifier of the error kind for metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            MultipartError::InvalidPartNumber { .. } => "invalid_part_number",
            MultipartError::NoParts => "no_parts",
            MultipartError::InvalidPartOrder => "invalid_part_order",
            MultipartError::InvalidPart { .. } => "invalid_part",
            MultipartError::EntityTooSmall { .. } => "entity_too_small",
        }
    }
}

/// Checks a part number from a request: 1..=10000. Accepts any integer type (s3s passes `i32`).
pub fn validate_part_number<N>(part_number: N) -> Result<u32, MultipartError>
where
    N: TryInto<u32> + TryInto<i64> + Copy,
{
    let as_u32: Option<u32> = part_number.try_into().ok();
    match as_u32 {
        Some(n) if (1..=MAX_PART_NUMBER).contains(&n) => Ok(n),
        _ => {
            let shown: i64 = part_number.try_into().unwrap_or(i64::MAX);
            Err(MultipartError::InvalidPartNumber { part_number: shown })
        }
    }
}

/// Checks a CompleteMultipartUpload request: `requested` is the client's list of
/// (part number, ETag) in request order, `uploaded` maps each uploaded part number to its
/// (size, ETag). The order is checked over the whole list first, then each part in turn.
pub fn validate_completion(
    requested: &[(u32, String)],
    uploaded: &BTreeMap<u32, (u64, String)>,
) -> Result<(), MultipartError> {
    if requested.is_empty() {
        return Err(MultipartError::NoParts);
    }
    if requested.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
        return Err(MultipartError::InvalidPartOrder);
    }
    let last = requested.len() - 1;
    for (position, (part_number, etag)) in requested.iter().enumerate() {
        let part_number = *part_number;
        let (size, stored_etag) = uploaded
            .get(&part_number)
            .ok_or(MultipartError::InvalidPart { part_number })?;
        if !part_etag_matches(etag, stored_etag) {
            return Err(MultipartError::InvalidPart { part_number });
        }
        if position != last && *size < MIN_PART_SIZE {
            return Err(MultipartError::EntityTooSmall {
                part_number,
                size: *size,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn uploaded(parts: &[(u32, u64)]) -> BTreeMap<u32, (u64, String)> {
        parts
            .iter()
            .map(|&(n, size)| (n, (size, format!("\"etag{n}\""))))
            .collect()
    }

    fn req(numbers: &[u32]) -> Vec<(u32, String)> {
        numbers.iter().map(|&n| (n, format!("etag{n}"))).collect()
    }

    #[test]
    fn part_numbers() {
        assert_eq!(validate_part_number(1), Ok(1));
        assert_eq!(validate_part_number(10_000u32), Ok(10_000));
        assert_eq!(validate_part_number(10_000i32), Ok(10_000));
        assert_eq!(
            validate_part_number(0),
            Err(MultipartError::InvalidPartNumber { part_number: 0 })
        );
        assert_eq!(
            validate_part_number(-1i32),
            Err(MultipartError::InvalidPartNumber { part_number: -1 })
        );
        assert_eq!(
            validate_part_number(10_001u32),
            Err(MultipartError::InvalidPartNumber {
                part_number: 10_001
            })
        );
        assert_eq!(
            validate_part_number(u64::MAX),
            Err(MultipartError::InvalidPartNumber {
                part_number: i64::MAX
            })
        );
        assert_eq!(validate_part_number(7usize), Ok(7));
    }

    #[test]
    fn valid_completions() {
        let up = uploaded(&[(1, MIN_PART_SIZE), (2, MIN_PART_SIZE), (3, 1), (7, 0)]);
        assert_eq!(validate_completion(&req(&[1, 2, 3]), &up), Ok(()));
        assert_eq!(validate_completion(&req(&[3]), &up), Ok(()));
        assert_eq!(validate_completion(&req(&[7]), &up), Ok(()));
        // Gaps are fine, and quoted ETags too.
        let quoted = vec![(1, "\"etag1\"".to_owned()), (3, "\"etag3\"".to_owned())];
        assert_eq!(validate_completion(&quoted, &up), Ok(()));
    }

    #[test]
    fn invalid_completions() {
        let up = uploaded(&[(1, MIN_PART_SIZE), (2, MIN_PART_SIZE - 1), (3, 1)]);
        assert_eq!(validate_completion(&[], &up), Err(MultipartError::NoParts));
        assert_eq!(
            validate_completion(&req(&[2, 1]), &up),
            Err(MultipartError::InvalidPartOrder)
        );
        assert_eq!(
            validate_completion(&req(&[1, 1]), &up),
            Err(MultipartError::InvalidPartOrder)
        );
        // Order is checked before existence.
        assert_eq!(
            validate_completion(&req(&[9, 1]), &up),
            Err(MultipartError::InvalidPartOrder)
        );
        assert_eq!(
            validate_completion(&req(&[1, 4]), &up),
            Err(MultipartError::InvalidPart { part_number: 4 })
        );
        let wrong_etag = vec![(1, "etag1".to_owned()), (3, "nope".to_owned())];
        assert_eq!(
            validate_completion(&wrong_etag, &up),
            Err(MultipartError::InvalidPart { part_number: 3 })
        );
        assert_eq!(
            validate_completion(&req(&[1, 2, 3]), &up),
            Err(MultipartError::EntityTooSmall {
                part_number: 2,
                size: MIN_PART_SIZE - 1
            })
        );
        // The small part is fine as the last one.
        assert_eq!(validate_completion(&req(&[1, 2]), &up), Ok(()));
    }

    #[test]
    fn error_codes_are_distinct() {
        let errors = [
            MultipartError::InvalidPartNumber { part_number: 0 },
            MultipartError::NoParts,
            MultipartError::InvalidPartOrder,
            MultipartError::InvalidPart { part_number: 1 },
            MultipartError::EntityTooSmall {
                part_number: 1,
                size: 1,
            },
        ];
        let codes: std::collections::BTreeSet<_> =
            errors.iter().map(MultipartError::code).collect();
        assert_eq!(codes.len(), errors.len());
    }

    proptest! {
        #[test]
        fn part_number_range(n in any::<i32>()) {
            prop_assert_eq!(validate_part_number(n).is_ok(), (1..=10_000).contains(&n));
        }

        #[test]
        fn sorted_big_parts_always_complete(
            numbers in proptest::collection::btree_set(1u32..=MAX_PART_NUMBER, 1..50),
            last_size in 0u64..MIN_PART_SIZE,
        ) {
            let numbers: Vec<u32> = numbers.into_iter().collect();
            let mut parts: Vec<(u32, u64)> = numbers.iter().map(|&n| (n, MIN_PART_SIZE)).collect();
            if let Some(last) = parts.last_mut() {
                last.1 = last_size;
            }
            prop_assert_eq!(validate_completion(&req(&numbers), &uploaded(&parts)), Ok(()));
            if numbers.len() > 1 {
                let mut reversed = numbers.clone();
                reversed.reverse();
                prop_assert_eq!(
                    validate_completion(&req(&reversed), &uploaded(&parts)),
                    Err(MultipartError::InvalidPartOrder)
                );
            }
        }
    }
}
