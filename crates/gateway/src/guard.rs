//! Checks of a request's head that run before s3s sees it, for what s3s 0.14.1 leaves open:
//! SigV2 is refused, presigned URLs live at most 7 days, the SigV4 credential scope must name
//! this endpoint's region and the `s3` service, a body's declared size must fit its
//! operation, and an object upload must declare its length. Every refusal is the error AWS S3
//! answers for the same request (status, `<Code>`, extra elements and headers). Pure: no I/O.

/// The longest a presigned URL may be valid, as in S3.
pub const MAX_PRESIGNED_EXPIRY_SECS: u64 = 7 * 24 * 3600;

/// The largest body of a request that is not an object upload (XML configurations, batch
/// deletes, CompleteMultipartUpload with 10,000 parts).
pub const MAX_NON_OBJECT_BODY: u64 = 4 * 1024 * 1024;

/// The largest body of one PutObject or UploadPart, as in S3.
pub const MAX_UPLOAD_BODY: u64 = 5 * 1024 * 1024 * 1024;

/// A request refused by the gateway itself, rendered as an S3 error document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub status: u16,
    /// S3 error code.
    pub code: &'static str,
    /// Message.
    pub message: String,
    /// Further elements of the `<Error>` document S3 adds for this code, in order.
    pub elements: Vec<(&'static str, String)>,
    /// Response headers S3 adds for this code.
    pub headers: Vec<(&'static str, String)>,
}

impl Refusal {
    /// A refusal with only a status, a code and a message.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            elements: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Adds an element to the error document.
    #[must_use]
    pub fn element(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.elements.push((name, value.into()));
        self
    }

    /// Adds a response header.
    #[must_use]
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// 400 MaxMessageLengthExceeded: a body too large for an operation that is not an upload.
    pub fn message_too_long() -> Self {
        Self::new(400, "MaxMessageLengthExceeded", "Your request was too big.")
            .element("MaxMessageLengthBytes", MAX_NON_OBJECT_BODY.to_string())
    }

    /// 400 EntityTooLarge: an upload over the 5 GiB limit of one PUT; the proposed size is
    /// known when it was declared, not while a chunked body streams past the limit.
    pub fn entity_too_large(proposed: Option<u64>) -> Self {
        let r = Self::new(
            400,
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed size",
        );
        match proposed {
            Some(size) => r.element("ProposedSize", size.to_string()),
            None => r,
        }
        .element("MaxSizeAllowed", MAX_UPLOAD_BODY.to_string())
    }

    /// 400 IncompleteBody: what S3 answers for any aws-chunked body it cannot decode.
    pub fn incomplete_body() -> Self {
        Self::new(
            400,
            "IncompleteBody",
            "The request body terminated unexpectedly",
        )
    }

    /// 400 RequestTimeout: the client stopped sending.
    pub fn request_timeout() -> Self {
        Self::new(
            400,
            "RequestTimeout",
            "Your socket connection to the server was not read from or written to within the timeout period.",
        )
    }
}

/// Whether a request may carry an object-sized body: PutObject or UploadPart (also presigned).
pub fn is_object_upload(method: &http::Method, path: &str, query: Option<&str>) -> bool {
    let has_key = path
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty());
    let plain_query = form_pairs(query.unwrap_or("")).all(|(k, _)| {
        k == "partNumber" || k == "uploadId" || k == "x-id" || k.starts_with("X-Amz-")
    });
    method == http::Method::PUT && has_key && plain_query
}

/// The most body bytes a request may carry: 5 GiB for uploads, 4 MiB for anything else.
pub fn body_cap(method: &http::Method, path: &str, query: Option<&str>) -> u64 {
    if is_object_upload(method, path, query) {
        MAX_UPLOAD_BODY
    } else {
        MAX_NON_OBJECT_BODY
    }
}

fn header_u64(headers: &http::HeaderMap, name: impl http::header::AsHeaderName) -> Option<u64> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Whether the body arrives with HTTP/1.1 chunked transfer coding (its length unknown).
pub fn is_transfer_chunked(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
}

/// Refuses, before anything is read, a body whose declared size is over the cap of its
/// operation, and an HTTP/1 object upload that declares no length at all (S3 answers 411).
pub fn guard_body(
    version: http::Version,
    method: &http::Method,
    path: &str,
    headers: &http::HeaderMap,
    query: Option<&str>,
) -> Result<(), Refusal> {
    let upload = is_object_upload(method, path, query);
    let declared = header_u64(headers, http::header::CONTENT_LENGTH);
    if !upload {
        return match declared {
            Some(len) if len > MAX_NON_OBJECT_BODY => Err(Refusal::message_too_long()),
            _ => Ok(()),
        };
    }
    // HTTP/2 frames its bodies itself; an HTTP/1 PUT with neither a length nor chunked coding
    // has, by the protocol, an empty body the client surely did not mean. CopyObject and
    // UploadPartCopy carry no body, and SDKs send them without a length.
    let http1 = version < http::Version::HTTP_2;
    let copy = headers.contains_key("x-amz-copy-source");
    if http1 && !copy && declared.is_none() && !is_transfer_chunked(headers) {
        return Err(Refusal::new(
            411,
            "MissingContentLength",
            "You must provide the Content-Length HTTP header.",
        ));
    }
    let decoded = header_u64(headers, "x-amz-decoded-content-length");
    match decoded.or(declared) {
        Some(len) if len > MAX_UPLOAD_BODY => Err(Refusal::entity_too_large(Some(len))),
        _ => Ok(()),
    }
}

/// Checks what s3s does not: signature version 2 and presigned expiry.
pub fn guard(headers: &http::HeaderMap, query: Option<&str>) -> Result<(), Refusal> {
    let sigv2 = || {
        Refusal::new(
            400,
            "InvalidRequest",
            "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.",
        )
    };
    if let Some(auth) = headers.get(http::header::AUTHORIZATION)
        && auth.as_bytes().starts_with(b"AWS ")
    {
        return Err(sigv2());
    }
    let Some(query) = query else { return Ok(()) };
    let mut has_v2_key = false;
    let mut has_v2_sig = false;
    for (name, value) in form_pairs(query) {
        match name.as_str() {
            "AWSAccessKeyId" => has_v2_key = true,
            "Signature" => has_v2_sig = true,
            "X-Amz-Expires" => {
                let secs: u64 = value.parse().map_err(|_| {
                    Refusal::new(
                        400,
                        "AuthorizationQueryParametersError",
                        "X-Amz-Expires should be a number",
                    )
                })?;
                if secs > MAX_PRESIGNED_EXPIRY_SECS {
                    return Err(Refusal::new(
                        400,
                        "AuthorizationQueryParametersError",
                        "X-Amz-Expires must be less than a week (in seconds) that is 604800",
                    ));
                }
            }
            _ => {}
        }
    }
    if has_v2_key && has_v2_sig {
        return Err(sigv2());
    }
    Ok(())
}

/// The `REGION` and `SERVICE` of a SigV4 credential `AK/DATE/REGION/SERVICE/aws4_request`;
/// `None` when it does not have that shape (s3s then refuses it as malformed).
pub fn credential_scope(credential: &str) -> Option<(&str, &str)> {
    let mut parts = credential.rsplitn(5, '/');
    let terminator = parts.next()?;
    let service = parts.next()?;
    let region = parts.next()?;
    let _date = parts.next()?;
    let _access_key = parts.next()?;
    (terminator == "aws4_request").then_some((region, service))
}

/// The credential of a SigV4 Authorization header (`AWS4-HMAC-SHA256 Credential=…, …`).
fn header_credential(auth: &str) -> Option<&str> {
    let rest = auth.strip_prefix("AWS4-")?;
    let (_, params) = rest.split_once(' ')?;
    params
        .split(',')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("Credential="))
}

/// Refuses a SigV4 request whose credential scope names another region or a service other
/// than `s3`, as S3 does before checking the signature: the region first, then the service.
/// The seed signature of an aws-chunked upload and every chunk signature use the header's
/// scope, so checking the header covers them.
pub fn check_scope(
    headers: &http::HeaderMap,
    query: Option<&str>,
    path: &str,
    region: &str,
) -> Result<(), Refusal> {
    let addresses_bucket = !path.trim_start_matches('/').is_empty();
    let with_bucket_region = |r: Refusal| {
        if addresses_bucket {
            r.header("x-amz-bucket-region", region)
        } else {
            r
        }
    };
    if let Some(credential) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(header_credential)
        && let Some((given_region, service)) = credential_scope(credential)
    {
        if given_region != region {
            return Err(with_bucket_region(
                Refusal::new(
                    400,
                    "AuthorizationHeaderMalformed",
                    format!(
                        "The authorization header is malformed; the region '{given_region}' is wrong; expecting '{region}'"
                    ),
                )
                .element("Region", region),
            ));
        }
        if service != "s3" {
            return Err(with_bucket_region(Refusal::new(
                400,
                "AuthorizationHeaderMalformed",
                format!(
                    "The authorization header is malformed; incorrect service \"{service}\". This endpoint belongs to \"s3\"."
                ),
            )));
        }
        return Ok(());
    }
    let Some(query) = query else { return Ok(()) };
    let Some(credential) =
        form_pairs(query).find_map(|(k, v)| (k == "X-Amz-Credential").then_some(v))
    else {
        return Ok(());
    };
    let Some((given_region, service)) = credential_scope(&credential) else {
        return Ok(());
    };
    if given_region != region {
        return Err(with_bucket_region(
            Refusal::new(
                400,
                "AuthorizationQueryParametersError",
                format!(
                    "Error parsing the X-Amz-Credential parameter; the region '{given_region}' is wrong; expecting '{region}'"
                ),
            )
            .element("Region", region),
        ));
    }
    if service != "s3" {
        return Err(with_bucket_region(Refusal::new(
            400,
            "AuthorizationQueryParametersError",
            format!(
                "Error parsing the X-Amz-Credential parameter; incorrect service \"{service}\". This endpoint belongs to \"s3\"."
            ),
        )));
    }
    Ok(())
}

/// The decoded `name=value` pairs of a query string.
pub fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        (decode(k), decode(v))
    })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The S3 error document and headers of a refusal.
pub fn refusal_response(refusal: &Refusal, request_id: &str) -> s3s::HttpResponse {
    let mut body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{}</Code><Message>{}</Message>",
        refusal.code,
        xml_escape(&refusal.message),
    );
    for (name, value) in &refusal.elements {
        body.push_str(&format!("<{name}>{}</{name}>", xml_escape(value)));
    }
    body.push_str(&format!("<RequestId>{request_id}</RequestId></Error>"));
    let mut resp = http::Response::new(s3s::Body::from(body));
    *resp.status_mut() =
        http::StatusCode::from_u16(refusal.status).unwrap_or(http::StatusCode::BAD_REQUEST);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    for (name, value) in &refusal.headers {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            resp.headers_mut()
                .insert(http::HeaderName::from_static(name), v);
        }
    }
    resp
}

#[cfg(test)]
#[path = "guard_test.rs"]
mod tests;
