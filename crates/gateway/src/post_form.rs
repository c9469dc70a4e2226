//! Browser POST uploads (multipart/form-data) before authentication. s3s parses the whole form
//! up to the file part before it checks the signature, buffering up to 20 MiB of fields and
//! re-parsing the buffer after every frame. S3 allows only 20 KB of form before the file
//! (`MaxPostPreDataLengthExceeded`), so the gateway reads at most that much itself, refuses a
//! longer field section at once, and hands s3s the fields as one piece followed by the rest.

use crate::guard::Refusal;
use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;
use std::time::Duration;

/// The most form bytes, up to the end of the file part's headers, before the file (S3's value).
pub const MAX_POST_PRE_DATA: usize = 20 * 1024;

/// 400 MaxPostPreDataLengthExceeded, worded (and spelled) as S3 words it.
pub fn pre_data_too_long() -> Refusal {
    Refusal::new(
        400,
        "MaxPostPreDataLengthExceeded",
        "Your POST request fields preceeding the upload file was too large.",
    )
    .element("MaxPostPreDataLengthBytes", MAX_POST_PRE_DATA.to_string())
}

/// The boundary of a `multipart/form-data` Content-Type; `None` for any other type.
pub fn form_boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let mime = params.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (name, value) = p.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty())
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from >= haystack.len() || needle.is_empty() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Whether a part's header block names the form field `file` (as s3s matches it).
fn names_file(headers: &[u8]) -> bool {
    headers.split(|&b| b == b'\n').any(|line| {
        let line = String::from_utf8_lossy(line);
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        name.trim().eq_ignore_ascii_case("content-disposition")
            && value.split(';').skip(1).any(|param| {
                param.trim().split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("name")
                        && v.trim().trim_matches('"').eq_ignore_ascii_case("file")
                })
            })
    })
}

/// Where the file's content starts: the offset just past the header block of the part named
/// `file`, once `buf` holds it; `None` while it is not (yet) there.
pub fn file_content_offset(buf: &[u8], boundary: &str) -> Option<usize> {
    let delimiter = format!("--{boundary}");
    let mut at = 0;
    while let Some(start) = find(buf, delimiter.as_bytes(), at) {
        let headers_start = start + delimiter.len();
        let headers_end = find(buf, b"\r\n\r\n", headers_start)?;
        if names_file(&buf[headers_start..headers_end]) {
            return Some(headers_end + 4);
        }
        at = headers_end + 4;
    }
    None
}

/// Reads a form's pre-data (everything before the file content) from `body`: at most
/// [`MAX_POST_PRE_DATA`] bytes plus one frame, each frame awaited at most `idle`. Returns the
/// bytes read, to be put back in front of the body: the pre-data as one piece and what
/// followed it in the last frame as another. A form that ends before a file part is returned
/// whole for s3s to refuse.
pub async fn read_pre_data<B>(
    body: &mut B,
    boundary: &str,
    idle: Duration,
) -> Result<Vec<Bytes>, Refusal>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut buf = BytesMut::new();
    loop {
        if let Some(offset) = file_content_offset(&buf, boundary) {
            if offset > MAX_POST_PRE_DATA {
                return Err(pre_data_too_long());
            }
            let pre = buf.split_to(offset).freeze();
            return Ok(vec![pre, buf.freeze()]);
        }
        if buf.len() > MAX_POST_PRE_DATA {
            return Err(pre_data_too_long());
        }
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(Refusal::request_timeout()),
            Ok(None) => return Ok(vec![buf.freeze()]),
            Ok(Some(Err(_))) => return Err(Refusal::incomplete_body()),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Some(data) = frame.data_ref() {
            buf.extend_from_slice(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Frame;
    use http_body_util::StreamBody;

    fn form(fields: &[(&str, &str)], file: &str) -> Vec<u8> {
        let mut out = String::new();
        for (name, value) in fields {
            out.push_str(&format!(
                "--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        out.push_str(&format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n{file}\r\n--XyZ--\r\n"
        ));
        out.into_bytes()
    }

    #[test]
    fn boundaries_come_from_multipart_form_data_only() {
        assert_eq!(
            form_boundary("multipart/form-data; boundary=XyZ").as_deref(),
            Some("XyZ")
        );
        assert_eq!(
            form_boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(form_boundary("multipart/form-data"), None);
        assert_eq!(form_boundary("application/xml; boundary=x"), None);
    }

    #[test]
    fn the_file_part_is_found_after_its_headers() {
        let body = form(&[("key", "k"), ("policy", "p")], "hello");
        let offset = file_content_offset(&body, "XyZ").expect("file part");
        assert!(body[offset..].starts_with(b"hello\r\n--XyZ--"));
        // Not yet: the file part's headers are cut short.
        let cut = offset - 3;
        assert_eq!(file_content_offset(&body[..cut], "XyZ"), None);
        // A field whose value merely mentions name="file" is not the file part.
        let tricky = form(&[("note", "name=\"file\"")], "x");
        let offset = file_content_offset(&tricky, "XyZ").expect("file part");
        assert!(tricky[offset..].starts_with(b"x\r\n"));
        // `filename="file"` alone does not make a part the file part.
        let not_file = b"--XyZ\r\nContent-Disposition: form-data; name=\"key\"; filename=\"file\"\r\n\r\nv\r\n";
        assert_eq!(file_content_offset(not_file, "XyZ"), None);
    }

    type TestBody =
        StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>>;

    fn body_of(bytes: Vec<u8>, piece: usize) -> TestBody {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = bytes
            .chunks(piece)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        StreamBody::new(futures::stream::iter(frames))
    }

    #[tokio::test]
    async fn small_field_sections_are_read_and_split_at_the_file() {
        let bytes = form(
            &[("key", "k"), ("x-amz-signature", "s")],
            &"f".repeat(50_000),
        );
        let mut body = body_of(bytes.clone(), 4096);
        let pieces = read_pre_data(&mut body, "XyZ", Duration::from_secs(5))
            .await
            .expect("pre-data");
        let offset = file_content_offset(&bytes, "XyZ").expect("file");
        assert_eq!(pieces.len(), 2);
        assert_eq!(&pieces[0][..], &bytes[..offset]);
        // Together with what is left of the body, the form is whole again.
        let mut whole = pieces.concat();
        whole.extend(body.collect().await.expect("rest").to_bytes());
        assert_eq!(whole, bytes);
    }

    #[tokio::test]
    async fn field_sections_over_20_kb_are_refused_without_reading_on() {
        let big = "v".repeat(MAX_POST_PRE_DATA);
        let bytes = form(
            &[("key", "k"), ("x-amz-meta-big", &big)],
            &"f".repeat(1 << 20),
        );
        let mut body = body_of(bytes, 1024);
        let r = read_pre_data(&mut body, "XyZ", Duration::from_secs(5))
            .await
            .expect_err("too long");
        assert_eq!(
            (r.status, r.code, r.message.as_str()),
            (
                400,
                "MaxPostPreDataLengthExceeded",
                "Your POST request fields preceeding the upload file was too large."
            )
        );
        assert_eq!(
            r.elements,
            vec![("MaxPostPreDataLengthBytes", "20480".to_string())]
        );
        // It stopped right after the limit: most of the file is still unread.
        let rest = body.collect().await.expect("rest").to_bytes();
        assert!(
            rest.len() > (1 << 20) - 4096,
            "read too far: {} left",
            rest.len()
        );
    }

    #[tokio::test]
    async fn a_field_section_that_never_ends_is_refused_at_the_limit() {
        // No file part at all and no end in sight.
        let bytes = vec![b'a'; 10 * MAX_POST_PRE_DATA];
        let mut body = body_of(bytes, 1000);
        let r = read_pre_data(&mut body, "XyZ", Duration::from_secs(5))
            .await
            .expect_err("refused");
        assert_eq!(r.code, "MaxPostPreDataLengthExceeded");
    }

    #[tokio::test]
    async fn a_form_without_a_file_is_handed_on_whole() {
        let bytes =
            b"--XyZ\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--XyZ--\r\n"
                .to_vec();
        let mut body = body_of(bytes.clone(), 7);
        let pieces = read_pre_data(&mut body, "XyZ", Duration::from_secs(5))
            .await
            .expect("handed on");
        assert_eq!(pieces.concat(), bytes);
    }

    #[tokio::test]
    async fn a_silent_client_times_out() {
        let (_tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let mut body = StreamBody::new(rx);
        let r = read_pre_data(&mut body, "XyZ", Duration::from_millis(100))
            .await
            .expect_err("timeout");
        assert_eq!((r.status, r.code), (400, "RequestTimeout"));
    }
}
