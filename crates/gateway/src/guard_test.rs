use super::*;

fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (name, value) in pairs {
        h.append(*name, value.parse().expect("header value"));
    }
    h
}

fn code(r: Result<(), Refusal>) -> Result<(), (u16, &'static str)> {
    r.map_err(|r| (r.status, r.code))
}

#[test]
fn sigv2_header_and_query_are_refused() {
    let invalid = Err((400, "InvalidRequest"));
    assert_eq!(
        code(guard(&headers(&[("authorization", "AWS AKID:sig")]), None)),
        invalid
    );
    assert_eq!(
        code(guard(
            &headers(&[]),
            Some("AWSAccessKeyId=a&Signature=b&Expires=1")
        )),
        invalid
    );
    assert_eq!(
        guard(
            &headers(&[("authorization", "AWS4-HMAC-SHA256 Credential=x")]),
            None
        ),
        Ok(())
    );
}

#[test]
fn presigned_expiry_is_capped_at_seven_days() {
    assert_eq!(guard(&headers(&[]), Some("X-Amz-Expires=604800")), Ok(()));
    let r = guard(&headers(&[]), Some("X-Amz-Expires=604801")).expect_err("refused");
    assert_eq!(
        (r.status, r.code, r.message.as_str()),
        (
            400,
            "AuthorizationQueryParametersError",
            "X-Amz-Expires must be less than a week (in seconds) that is 604800"
        )
    );
    assert_eq!(
        code(guard(&headers(&[]), Some("X-Amz-Expires=abc"))),
        Err((400, "AuthorizationQueryParametersError"))
    );
}

fn body_check(
    method: &http::Method,
    path: &str,
    h: &http::HeaderMap,
    query: Option<&str>,
) -> Result<(), (u16, &'static str)> {
    code(guard_body(http::Version::HTTP_11, method, path, h, query))
}

#[test]
fn only_object_uploads_may_carry_large_bodies() {
    let h = headers(&[("content-length", "5000000")]);
    let put = http::Method::PUT;
    let post = http::Method::POST;
    let too_big = Err((400, "MaxMessageLengthExceeded"));
    assert_eq!(body_check(&put, "/b/k", &h, None), Ok(()));
    assert_eq!(
        body_check(&put, "/b/k", &h, Some("partNumber=1&uploadId=x")),
        Ok(())
    );
    assert_eq!(
        body_check(&put, "/b/k", &h, Some("X-Amz-Expires=60&X-Amz-Signature=s")),
        Ok(())
    );
    assert_eq!(body_check(&post, "/b", &h, Some("delete")), too_big);
    assert_eq!(body_check(&put, "/b", &h, Some("versioning")), too_big);
    assert_eq!(body_check(&put, "/b/k", &h, Some("tagging")), too_big);
    assert_eq!(body_check(&post, "/b/k", &h, Some("uploadId=x")), too_big);
    let small = headers(&[("content-length", "1000")]);
    assert_eq!(body_check(&post, "/b", &small, Some("delete")), Ok(()));
    let r =
        guard_body(http::Version::HTTP_11, &post, "/b", &h, Some("delete")).expect_err("too big");
    assert_eq!(r.message, "Your request was too big.");
}

#[test]
fn uploads_over_five_gib_are_refused_before_reading() {
    let put = http::Method::PUT;
    let over = (MAX_UPLOAD_BODY + 1).to_string();
    let r = guard_body(
        http::Version::HTTP_11,
        &put,
        "/b/k",
        &headers(&[("content-length", over.as_str())]),
        None,
    )
    .expect_err("too large");
    assert_eq!((r.status, r.code), (400, "EntityTooLarge"));
    assert_eq!(
        r.elements,
        vec![
            ("ProposedSize", over.clone()),
            ("MaxSizeAllowed", MAX_UPLOAD_BODY.to_string())
        ]
    );
    // aws-chunked: the decoded length is what counts.
    let chunked = headers(&[
        ("content-length", "1000"),
        ("x-amz-decoded-content-length", over.as_str()),
    ]);
    assert_eq!(
        body_check(&put, "/b/k", &chunked, None),
        Err((400, "EntityTooLarge"))
    );
    let exact = MAX_UPLOAD_BODY.to_string();
    assert_eq!(
        body_check(
            &put,
            "/b/k",
            &headers(&[("content-length", exact.as_str())]),
            None
        ),
        Ok(())
    );
}

#[test]
fn an_http1_upload_without_length_or_chunked_coding_is_411() {
    let put = http::Method::PUT;
    let r = guard_body(http::Version::HTTP_11, &put, "/b/k", &headers(&[]), None)
        .expect_err("no length");
    assert_eq!(
        (r.status, r.code, r.message.as_str()),
        (
            411,
            "MissingContentLength",
            "You must provide the Content-Length HTTP header."
        )
    );
    // Chunked transfer coding carries its own framing; HTTP/2 too.
    assert_eq!(
        body_check(
            &put,
            "/b/k",
            &headers(&[("transfer-encoding", "chunked")]),
            None
        ),
        Ok(())
    );
    assert_eq!(
        code(guard_body(
            http::Version::HTTP_2,
            &put,
            "/b/k",
            &headers(&[]),
            None
        )),
        Ok(())
    );
    // Copies have no body and need no length (SDKs send none), parts included.
    let copy = headers(&[("x-amz-copy-source", "src-bucket/src-key")]);
    assert_eq!(body_check(&put, "/b/k", &copy, None), Ok(()));
    assert_eq!(
        body_check(&put, "/b/k", &copy, Some("partNumber=1&uploadId=u")),
        Ok(())
    );
    // Only uploads need a length: a bucket PUT without a body is fine.
    assert_eq!(body_check(&put, "/b", &headers(&[]), None), Ok(()));
}

#[test]
fn body_caps_follow_the_operation() {
    assert_eq!(body_cap(&http::Method::PUT, "/b/k", None), MAX_UPLOAD_BODY);
    assert_eq!(
        body_cap(&http::Method::POST, "/b", Some("delete")),
        MAX_NON_OBJECT_BODY
    );
    assert_eq!(
        body_cap(&http::Method::PUT, "/b/k", Some("tagging")),
        MAX_NON_OBJECT_BODY
    );
}

#[test]
fn credential_scopes_parse() {
    assert_eq!(
        credential_scope("AKID/20240101/eu-west-1/s3/aws4_request"),
        Some(("eu-west-1", "s3"))
    );
    assert_eq!(
        credential_scope("AKID/20240101/us-east-1/sts/aws4_request"),
        Some(("us-east-1", "sts"))
    );
    assert_eq!(credential_scope("AKID/20240101/us-east-1/s3/other"), None);
    assert_eq!(credential_scope("AKID/us-east-1/s3/aws4_request"), None);
    assert_eq!(credential_scope("garbage"), None);
}

fn auth(region: &str, service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKID/20240101/{region}/{service}/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc"
    )
}

#[test]
fn a_header_scope_for_another_region_is_authorization_header_malformed() {
    let h = headers(&[("authorization", auth("eu-west-1", "s3").as_str())]);
    let r = check_scope(&h, None, "/bucket/key", "us-east-1").expect_err("wrong region");
    assert_eq!((r.status, r.code), (400, "AuthorizationHeaderMalformed"));
    assert_eq!(
        r.message,
        "The authorization header is malformed; the region 'eu-west-1' is wrong; expecting 'us-east-1'"
    );
    assert_eq!(r.elements, vec![("Region", "us-east-1".to_string())]);
    assert_eq!(
        r.headers,
        vec![("x-amz-bucket-region", "us-east-1".to_string())]
    );
    // ListBuckets addresses no bucket: no bucket-region header.
    let r = check_scope(&h, None, "/", "us-east-1").expect_err("wrong region");
    assert!(r.headers.is_empty());
    let ok = headers(&[("authorization", auth("us-east-1", "s3").as_str())]);
    assert_eq!(check_scope(&ok, None, "/b", "us-east-1"), Ok(()));
}

#[test]
fn a_header_scope_for_another_service_is_refused_after_the_region() {
    let h = headers(&[("authorization", auth("us-east-1", "sts").as_str())]);
    let r = check_scope(&h, None, "/b", "us-east-1").expect_err("wrong service");
    assert_eq!((r.status, r.code), (400, "AuthorizationHeaderMalformed"));
    assert_eq!(
        r.message,
        "The authorization header is malformed; incorrect service \"sts\". This endpoint belongs to \"s3\"."
    );
    // Both wrong: the region is reported.
    let both = headers(&[("authorization", auth("eu-west-1", "sts").as_str())]);
    let r = check_scope(&both, None, "/b", "us-east-1").expect_err("both wrong");
    assert!(r.message.contains("the region 'eu-west-1' is wrong"));
}

#[test]
fn a_presigned_scope_for_another_region_is_a_query_parameters_error() {
    let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20240101%2Fap-south-1%2Fs3%2Faws4_request&X-Amz-Signature=x";
    let r = check_scope(&headers(&[]), Some(q), "/b/k", "us-east-1").expect_err("wrong region");
    assert_eq!(
        (r.status, r.code),
        (400, "AuthorizationQueryParametersError")
    );
    assert_eq!(
        r.message,
        "Error parsing the X-Amz-Credential parameter; the region 'ap-south-1' is wrong; expecting 'us-east-1'"
    );
    assert_eq!(r.elements, vec![("Region", "us-east-1".to_string())]);
    let q = "X-Amz-Credential=AKID%2F20240101%2Fus-east-1%2Fs4%2Faws4_request";
    let r = check_scope(&headers(&[]), Some(q), "/b/k", "us-east-1").expect_err("service");
    assert_eq!(
        r.message,
        "Error parsing the X-Amz-Credential parameter; incorrect service \"s4\". This endpoint belongs to \"s3\"."
    );
    let q = "X-Amz-Credential=AKID%2F20240101%2Fus-east-1%2Fs3%2Faws4_request";
    assert_eq!(
        check_scope(&headers(&[]), Some(q), "/b/k", "us-east-1"),
        Ok(())
    );
    assert_eq!(
        check_scope(&headers(&[]), None, "/b/k", "us-east-1"),
        Ok(())
    );
}

#[tokio::test]
async fn refusals_render_as_s3_error_documents() {
    use http_body_util::BodyExt;
    let r = Refusal::new(400, "AuthorizationHeaderMalformed", "a < b & c")
        .element("Region", "us-east-1")
        .header("x-amz-bucket-region", "us-east-1");
    let resp = refusal_response(&r, "REQ1");
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/xml");
    assert_eq!(resp.headers()["x-amz-bucket-region"], "us-east-1");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(
        std::str::from_utf8(&body).expect("utf8"),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AuthorizationHeaderMalformed</Code><Message>a &lt; b &amp; c</Message><Region>us-east-1</Region><RequestId>REQ1</RequestId></Error>"
    );
}
