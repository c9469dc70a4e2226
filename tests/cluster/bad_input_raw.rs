//! Raw HTTP for bad-input tests: SigV4 header signing, hand-written aws-chunked bodies with
//! real chunk signatures, and requests sent over a plain TCP connection, so a test can send
//! exactly the bytes an SDK would never produce.

use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut block = [0_u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// Now as a SigV4 `x-amz-date` (`YYYYMMDDTHHMMSSZ`).
pub fn amz_date_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Credentials and scope of a signer.
#[derive(Clone)]
pub struct Signer {
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub service: String,
    pub amz_date: String,
}

impl Signer {
    pub fn new(access_key: &str, secret_key: &str, region: &str) -> Self {
        Self {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            region: region.into(),
            service: "s3".into(),
            amz_date: amz_date_now(),
        }
    }

    fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            &self.amz_date[..8],
            self.region,
            self.service
        )
    }

    fn key(&self) -> [u8; 32] {
        let k = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            &self.amz_date.as_bytes()[..8],
        );
        let k = hmac(&k, self.region.as_bytes());
        let k = hmac(&k, self.service.as_bytes());
        hmac(&k, b"aws4_request")
    }

    fn sign(&self, string_to_sign: &str) -> String {
        hex::encode(hmac(&self.key(), string_to_sign.as_bytes()))
    }

    /// The Authorization header of a request with these (lower-case, sorted) signed headers,
    /// and its signature (the seed of an aws-chunked body).
    pub fn authorization(
        &self,
        method: &str,
        path: &str,
        signed: &[(&str, String)],
        payload_hash: &str,
    ) -> (String, String) {
        let canonical_headers: String = signed
            .iter()
            .map(|(n, v)| format!("{n}:{}\n", v.trim()))
            .collect();
        let names: Vec<&str> = signed.iter().map(|(n, _)| *n).collect();
        let signed_names = names.join(";");
        let canonical =
            format!("{method}\n{path}\n\n{canonical_headers}\n{signed_names}\n{payload_hash}");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{}\n{}",
            self.amz_date,
            self.scope(),
            sha256_hex(canonical.as_bytes())
        );
        let signature = self.sign(&to_sign);
        (
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={signed_names}, Signature={signature}",
                self.access_key,
                self.scope()
            ),
            signature,
        )
    }

    /// A presigned `path?query` (query auth, `UNSIGNED-PAYLOAD`, only `host` signed) valid
    /// for five minutes; `query` holds the operation's own parameters, already encoded.
    pub fn presign(&self, method: &str, host: &str, path: &str, query: &[(&str, &str)]) -> String {
        let credential = format!("{}/{}", self.access_key, self.scope()).replace('/', "%2F");
        let mut params: Vec<(String, String)> = vec![
            ("X-Amz-Algorithm".into(), "AWS4-HMAC-SHA256".into()),
            ("X-Amz-Credential".into(), credential),
            ("X-Amz-Date".into(), self.amz_date.clone()),
            ("X-Amz-Expires".into(), "300".into()),
            ("X-Amz-SignedHeaders".into(), "host".into()),
        ];
        params.extend(
            query
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
        );
        params.sort();
        let canonical_query = params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let canonical =
            format!("{method}\n{path}\n{canonical_query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{}\n{}",
            self.amz_date,
            self.scope(),
            sha256_hex(canonical.as_bytes())
        );
        format!(
            "{path}?{canonical_query}&X-Amz-Signature={}",
            self.sign(&to_sign)
        )
    }

    /// The signature of one aws-chunked chunk following `previous`.
    pub fn chunk_signature(&self, previous: &str, data: &[u8]) -> String {
        let to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{previous}\n{}\n{}",
            self.amz_date,
            self.scope(),
            sha256_hex(b""),
            sha256_hex(data)
        );
        self.sign(&to_sign)
    }

    /// A signed aws-chunked body of `chunks`, each with a valid signature, and its final chunk.
    pub fn signed_chunks(&self, seed: &str, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut previous = seed.to_string();
        for data in chunks.iter().copied().chain(std::iter::once(&b""[..])) {
            let sig = self.chunk_signature(&previous, data);
            out.extend(format!("{:x};chunk-signature={sig}\r\n", data.len()).as_bytes());
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
            previous = sig;
        }
        out
    }
}

/// The pieces of a streaming PUT: its head (up to the blank line) is built by
/// [`streaming_put_head`], its body by the caller.
pub struct StreamingPut<'a> {
    pub host: &'a str,
    pub path: &'a str,
    pub content_sha256: &'a str,
    pub decoded_length: u64,
    pub trailer: Option<&'a str>,
    pub content_length: usize,
}

/// The head of a SigV4-signed streaming PUT and its seed signature.
pub fn streaming_put_head(signer: &Signer, put: &StreamingPut<'_>) -> (String, String) {
    let mut signed = vec![
        ("host", put.host.to_string()),
        ("x-amz-content-sha256", put.content_sha256.to_string()),
        ("x-amz-date", signer.amz_date.clone()),
        (
            "x-amz-decoded-content-length",
            put.decoded_length.to_string(),
        ),
    ];
    if let Some(t) = put.trailer {
        signed.push(("x-amz-trailer", t.to_string()));
    }
    let (authorization, seed) = signer.authorization("PUT", put.path, &signed, put.content_sha256);
    let mut head = format!("PUT {} HTTP/1.1\r\n", put.path);
    for (name, value) in &signed {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "authorization: {authorization}\r\ncontent-encoding: aws-chunked\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        put.content_length
    ));
    (head, seed)
}

/// The head of a SigV4-signed request without a payload hash of its body (UNSIGNED-PAYLOAD).
pub fn unsigned_payload_head(
    signer: &Signer,
    method: &str,
    host: &str,
    path: &str,
    extra: &str,
) -> String {
    let signed = vec![
        ("host", host.to_string()),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD".to_string()),
        ("x-amz-date", signer.amz_date.clone()),
    ];
    let (authorization, _) = signer.authorization(method, path, &signed, "UNSIGNED-PAYLOAD");
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in &signed {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "authorization: {authorization}\r\nconnection: close\r\n{extra}\r\n"
    ));
    head
}

/// An HTTP response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawResponse {
    /// The value of a response header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    /// The text of an element of the error document.
    pub fn element(&self, name: &str) -> Option<&str> {
        let open = format!("<{name}>");
        let start = self.body.find(&open)? + open.len();
        let end = self.body[start..].find(&format!("</{name}>"))? + start;
        Some(&self.body[start..end])
    }

    /// The S3 error code.
    pub fn code(&self) -> Option<&str> {
        self.element("Code")
    }
}

/// Sends `request` on a fresh connection and reads the answer until the server closes it or
/// `wait` passes. A reset after the answer (the server closing with request bytes unread) is
/// tolerated.
pub async fn send(addr: &str, request: &[u8], wait: Duration) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The server may answer (and close) before it has read everything: ignore write errors.
    let _ = stream.write_all(request).await;
    read_response(&mut stream, wait).await
}

/// Reads whatever the server sends until it closes, errors, or `wait` passes.
pub async fn read_response(stream: &mut TcpStream, wait: Duration) -> RawResponse {
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        let mut buf = [0_u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    parse_response(&raw)
}

/// Splits raw response bytes into status, head and body.
pub fn parse_response(raw: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_string(), b.to_string()))
        .unwrap_or((text.clone(), String::new()));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    RawResponse { status, head, body }
}

#[test]
fn amz_dates_are_well_formed() {
    let d = amz_date_now();
    assert_eq!(d.len(), 16, "{d}");
    assert!(
        d.starts_with("20") && d.ends_with('Z') && &d[8..9] == "T",
        "{d}"
    );
}

#[test]
fn signing_matches_the_aws_documentation_example() {
    // The signing key example of the SigV4 documentation ("Deriving the signing key").
    let signer = Signer {
        access_key: "AKIDEXAMPLE".into(),
        secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        region: "us-east-1".into(),
        service: "iam".into(),
        amz_date: "20150830T123600Z".into(),
    };
    assert_eq!(
        hex::encode(signer.key()),
        "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
    );
}
