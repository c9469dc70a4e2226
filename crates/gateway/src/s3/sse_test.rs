use super::*;
use tessera_core::blob::Blob;
use tessera_core::names::{BucketName, ObjectKey};
use tessera_core::object::ObjectPart;
use tessera_core::sealing::Sealing;
use tessera_core::sealing::aead::SealKey;
use tessera_core::sealing::customer_key::CustomerKeyError;

fn sse(value: &'static str) -> ServerSideEncryption {
    ServerSideEncryption::from_static(value)
}

fn customer(byte: u8) -> CustomerKey {
    CustomerKey::from_key(SealKey::from_bytes([byte; 32]))
}

/// The headers an SDK sends for `key` (base64 of the raw key and of its MD5).
struct Sent {
    key: String,
    md5: String,
}

fn sent(byte: u8) -> Sent {
    use base64::Engine as _;
    Sent {
        key: base64::engine::general_purpose::STANDARD.encode([byte; 32]),
        md5: customer(byte).key_md5().to_owned(),
    }
}

fn headers(s: &Sent) -> CustomerKeyHeaders<'_> {
    CustomerKeyHeaders {
        algorithm: Some("AES256"),
        key: Some(&s.key),
        key_md5: Some(&s.md5),
    }
}

fn tls() -> std::sync::Arc<RequestContext> {
    RequestContext::new(None, true)
}

fn plain_http() -> std::sync::Arc<RequestContext> {
    RequestContext::new(None, false)
}

/// A one-part version whose blob is sealed as `scheme` (SSE-C with the check of `key`).
fn version(scheme: SealingScheme, key: Option<&CustomerKey>) -> ObjectVersion {
    let mut blob = Blob::inline(vec![0; 8]);
    blob.sealing = Sealing {
        scheme,
        parameters: key.map(|k| k.key_check([5; 16])).unwrap_or_default(),
        ..Sealing::default()
    };
    ObjectVersion {
        parts: vec![ObjectPart {
            part_number: 1,
            size: 8,
            etag: "\"e\"".into(),
            blob,
            checksums: Vec::new(),
        }],
        ..ObjectVersion::new(
            BucketName::parse("bkt").expect("bucket"),
            ObjectKey::parse("k").expect("key"),
        )
    }
}

/// The customer key a new object's headers give (no bucket default).
fn new_object_key(
    req: &SseRequest<'_>,
    ctx: &RequestContext,
    over_http: bool,
) -> Result<Option<CustomerKey>, GatewayError> {
    new_object_sse(req, ctx, over_http, None).map(|s| s.customer)
}

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn sse_s3_is_the_default_and_kms_takes_a_key_and_context() {
    let none = new_object_sse(&SseRequest::default(), &tls(), false, None).expect("default");
    assert!(none.customer.is_none() && none.kms.is_none());
    let aes = sse("AES256");
    let req = SseRequest {
        sse: Some(&aes),
        ..SseRequest::default()
    };
    let got = new_object_sse(&req, &plain_http(), false, None).expect("aes");
    assert!(got.kms.is_none());
    let context = b64(r#"{"project":"x"}"#);
    for (value, dsse) in [("aws:kms", false), ("aws:kms:dsse", true)] {
        let value = sse(value);
        let got = new_object_sse(
            &SseRequest {
                sse: Some(&value),
                kms_key_id: Some("alias/backups"),
                kms_context: Some(&context),
                ..SseRequest::default()
            },
            &tls(),
            false,
            None,
        )
        .expect("kms");
        assert_eq!(
            got.kms,
            Some(KmsTarget {
                key: "alias/backups".to_owned(),
                context: br#"{"project":"x"}"#.to_vec(),
                dsse,
                bucket_key: false,
            })
        );
        let default_key = new_object_sse(
            &SseRequest {
                sse: Some(&value),
                ..SseRequest::default()
            },
            &tls(),
            false,
            None,
        )
        .expect("kms without a key");
        assert_eq!(default_key.kms.expect("kms").key, "");
    }
    let kms = sse("aws:kms");
    for (key, context) in [(Some("not a key!"), None), (None, Some("bm90IGpzb24="))] {
        let err = new_object_sse(
            &SseRequest {
                sse: Some(&kms),
                kms_key_id: key,
                kms_context: context,
                ..SseRequest::default()
            },
            &tls(),
            false,
            None,
        );
        assert!(err.is_err(), "{key:?} {context:?}");
    }
    let bad = sse("AES128");
    assert!(matches!(
        new_object_key(
            &SseRequest {
                sse: Some(&bad),
                ..SseRequest::default()
            },
            &tls(),
            false
        ),
        Err(GatewayError::InvalidArgument { .. })
    ));
    assert!(matches!(
        new_object_key(
            &SseRequest {
                sse: Some(&aes),
                kms_key_id: Some("key"),
                ..SseRequest::default()
            },
            &tls(),
            false
        ),
        Err(GatewayError::InvalidArgument { .. })
    ));
}

#[test]
fn a_bucket_default_applies_only_when_a_request_asks_for_nothing() {
    let default = BucketEncryption {
        algorithm: "aws:kms:dsse".to_owned(),
        kms_key_id: "1234abcd-12ab-34cd-56ef-1234567890ab".to_owned(),
        bucket_key_enabled: false,
    };
    let got = new_object_sse(&SseRequest::default(), &tls(), false, Some(&default))
        .expect("default applies");
    assert_eq!(
        got.kms,
        Some(KmsTarget {
            key: default.kms_key_id.clone(),
            context: Vec::new(),
            dsse: true,
            bucket_key: false,
        })
    );
    let aes = sse("AES256");
    let asked = new_object_sse(
        &SseRequest {
            sse: Some(&aes),
            ..SseRequest::default()
        },
        &tls(),
        false,
        Some(&default),
    )
    .expect("asked for SSE-S3");
    assert!(asked.kms.is_none(), "the request's own choice wins");
    let s = sent(1);
    let customer = new_object_sse(
        &SseRequest {
            customer: headers(&s),
            ..SseRequest::default()
        },
        &tls(),
        false,
        Some(&default),
    )
    .expect("SSE-C");
    assert!(customer.customer.is_some() && customer.kms.is_none());
    let s3_default = BucketEncryption {
        algorithm: "AES256".to_owned(),
        ..default
    };
    let got = new_object_sse(&SseRequest::default(), &tls(), false, Some(&s3_default))
        .expect("SSE-S3 default");
    assert!(got.kms.is_none());
}

#[test]
fn a_bucket_key_is_used_as_the_request_or_else_the_bucket_default_says_never_for_dsse() {
    let kms = sse("aws:kms");
    let dsse = sse("aws:kms:dsse");
    let aes = sse("AES256");
    let with_bucket_keys = BucketEncryption {
        algorithm: "aws:kms".to_owned(),
        kms_key_id: "1234abcd-12ab-34cd-56ef-1234567890ab".to_owned(),
        bucket_key_enabled: true,
    };
    let without = BucketEncryption {
        bucket_key_enabled: false,
        ..with_bucket_keys.clone()
    };
    let bucket_key = |sse: Option<&ServerSideEncryption>,
                      header: Option<bool>,
                      default: Option<&BucketEncryption>|
     -> Option<bool> {
        let got = new_object_sse(
            &SseRequest {
                sse,
                bucket_key: header,
                ..SseRequest::default()
            },
            &tls(),
            false,
            default,
        )
        .expect("accepted");
        got.kms.map(|k| k.bucket_key)
    };
    // The bucket default, by itself or with an explicit aws:kms.
    assert_eq!(bucket_key(None, None, Some(&with_bucket_keys)), Some(true));
    assert_eq!(
        bucket_key(Some(&kms), None, Some(&with_bucket_keys)),
        Some(true)
    );
    assert_eq!(bucket_key(None, None, Some(&without)), Some(false));
    assert_eq!(bucket_key(Some(&kms), None, None), Some(false));
    // The request's header wins either way.
    assert_eq!(
        bucket_key(None, Some(false), Some(&with_bucket_keys)),
        Some(false)
    );
    assert_eq!(
        bucket_key(Some(&kms), Some(true), Some(&without)),
        Some(true)
    );
    assert_eq!(bucket_key(Some(&kms), Some(true), None), Some(true));
    // SSE-S3 has no KMS key to take a bucket key from: the header changes nothing.
    assert_eq!(bucket_key(Some(&aes), Some(true), None), None);
    // DSSE-KMS targets may carry the flag; the sealer and the upload record ignore it.
    assert_eq!(bucket_key(Some(&dsse), Some(true), None), Some(true));
}

#[test]
fn bucket_keyed_blobs_answer_as_sse_kms_with_their_key_and_bucket_key_enabled() {
    let sealing = Sealing {
        scheme: SealingScheme::SseKmsBucketKey,
        key_id: "kms-1234abcd-12ab-34cd-56ef-1234567890ab/1".to_owned(),
        parameters: br#"{"a":"1"}"#.to_vec(),
        ..Sealing::default()
    };
    assert_eq!(
        header_for(SealingScheme::SseKmsBucketKey),
        Some(sse("aws:kms"))
    );
    assert_eq!(
        kms_key_for(&sealing).as_deref(),
        Some("1234abcd-12ab-34cd-56ef-1234567890ab")
    );
    assert_eq!(kms_context_for(&sealing), Some(b64(r#"{"a":"1"}"#)));
    assert_eq!(bucket_key_for(&sealing), Some(true));
    for scheme in SealingScheme::ALL
        .into_iter()
        .filter(|s| *s != SealingScheme::SseKmsBucketKey)
    {
        let other = Sealing {
            scheme,
            ..sealing.clone()
        };
        assert_eq!(bucket_key_for(&other), None, "{scheme:?}");
    }
}

#[test]
fn kms_answers_name_the_key_and_context() {
    let sealing = Sealing {
        scheme: SealingScheme::SseKms,
        key_id: "kms-1234abcd-12ab-34cd-56ef-1234567890ab/1".to_owned(),
        parameters: br#"{"a":"1"}"#.to_vec(),
        ..Sealing::default()
    };
    assert_eq!(
        kms_key_for(&sealing).as_deref(),
        Some("1234abcd-12ab-34cd-56ef-1234567890ab")
    );
    assert_eq!(kms_context_for(&sealing), Some(b64(r#"{"a":"1"}"#)));
    assert_eq!(header_for(SealingScheme::SseKms), Some(sse("aws:kms")));
    assert_eq!(
        header_for(SealingScheme::DsseKms),
        Some(sse("aws:kms:dsse"))
    );
    let s3 = Sealing {
        scheme: SealingScheme::SseS3,
        key_id: "sse-s3/1".to_owned(),
        ..Sealing::default()
    };
    assert_eq!(kms_key_for(&s3), None);
    assert_eq!(kms_context_for(&s3), None);
}

#[test]
fn a_customer_key_is_taken_over_tls_and_refused_over_plain_http_unless_allowed() {
    let s = sent(1);
    let req = SseRequest {
        customer: headers(&s),
        ..SseRequest::default()
    };
    let key = new_object_key(&req, &tls(), false)
        .expect("over tls")
        .expect("a key");
    assert_eq!(key.key().expose(), &[1; 32]);
    assert!(matches!(
        new_object_key(&req, &plain_http(), false),
        Err(GatewayError::CustomerKeyOverHttp)
    ));
    assert!(
        new_object_key(&req, &plain_http(), true)
            .expect("allowed for testing")
            .is_some()
    );
    assert!(matches!(
        request_key(&headers(&s), &plain_http(), false),
        Err(GatewayError::CustomerKeyOverHttp)
    ));
}

#[test]
fn a_customer_key_with_another_encryption_or_broken_headers_is_refused() {
    let s = sent(1);
    let aes = sse("AES256");
    assert!(matches!(
        new_object_key(
            &SseRequest {
                sse: Some(&aes),
                customer: headers(&s),
                ..SseRequest::default()
            },
            &tls(),
            false
        ),
        Err(GatewayError::InvalidArgument { .. })
    ));
    let wrong_md5 = CustomerKeyHeaders {
        key_md5: Some("AAAAAAAAAAAAAAAAAAAAAA=="),
        ..headers(&s)
    };
    assert!(matches!(
        request_key(&wrong_md5, &tls(), false),
        Err(GatewayError::CustomerKey(CustomerKeyError::KeyMd5Mismatch))
    ));
}

#[test]
fn reads_of_sse_c_objects_need_their_key_and_others_refuse_one() {
    let key = customer(1);
    let other = customer(2);
    let sealed = version(SealingScheme::SseC, Some(&key));
    assert!(check_read_key(&sealed, Some(&key)).is_ok());
    assert!(matches!(
        check_read_key(&sealed, Some(&other)),
        Err(GatewayError::CustomerKey(CustomerKeyError::WrongKey))
    ));
    assert!(matches!(
        check_read_key(&sealed, None),
        Err(GatewayError::CustomerKeyRequired)
    ));
    let s3 = version(SealingScheme::SseS3, None);
    assert!(check_read_key(&s3, None).is_ok());
    assert!(matches!(
        check_read_key(&s3, Some(&key)),
        Err(GatewayError::InvalidRequest { .. })
    ));
    assert!(is_customer_keyed(&sealed));
    assert!(!is_customer_keyed(&s3));
}

#[test]
fn parts_of_an_sse_c_upload_need_the_uploads_key() {
    let key = customer(1);
    let check = key.key_check([3; 16]);
    assert!(check_upload_key(&check, Some(&key)).is_ok());
    assert!(matches!(
        check_upload_key(&check, Some(&customer(2))),
        Err(GatewayError::CustomerKey(CustomerKeyError::WrongKey))
    ));
    assert!(matches!(
        check_upload_key(&check, None),
        Err(GatewayError::InvalidRequest { .. })
    ));
    assert!(check_upload_key(&[], None).is_ok());
    assert!(matches!(
        check_upload_key(&[], Some(&key)),
        Err(GatewayError::InvalidRequest { .. })
    ));
}

#[test]
fn answers_name_aes256_for_sse_s3_and_the_key_md5_for_sse_c() {
    assert_eq!(header_for(SealingScheme::None), None);
    assert_eq!(header_for(SealingScheme::SseC), None);
    assert_eq!(
        header_for(SealingScheme::SseS3).map(|s| s.as_str().to_owned()),
        Some("AES256".to_owned())
    );
    let key = customer(1);
    assert_eq!(
        customer_answer(Some(&key)),
        (Some("AES256".to_owned()), Some(key.key_md5().to_owned()))
    );
    assert_eq!(customer_answer(None), (None, None));
    let md5 = [7; 16];
    assert_eq!(etag_md5(&md5, None), md5);
    assert_ne!(etag_md5(&md5, Some(&key)), md5);
}
