//! Just enough HTTP/1.x for `GET /metrics`: finding the end of a request
//! head, checking it, and writing a whole response. No I/O here.
//!
//! Only the head (request line and header fields) is looked at. A body
//! is never read: every response says `Connection: close`, and the
//! server closes the connection after it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Most bytes of a request head (request line and header fields) that
/// are read. A longer head is answered 431 (or 414 if the request line
/// alone is longer). Curl and Prometheus send about 200.
pub const MAX_HEAD: usize = 8 * 1024;

/// The one path served.
pub const PATH: &str = "/metrics";

/// The Prometheus text exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// An answer other than the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    UriTooLong,
    HeaderFieldsTooLarge,
    ServiceUnavailable,
    VersionNotSupported,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::UriTooLong => 414,
            Status::HeaderFieldsTooLarge => 431,
            Status::ServiceUnavailable => 503,
            Status::VersionNotSupported => 505,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::UriTooLong => "URI Too Long",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

/// A request for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// `HEAD`: the headers of the answer only.
    pub head_only: bool,
}

/// Where the head in `buf` ends (the index after its blank line), if it
/// is complete. `from` is how much of `buf` was searched before (the
/// search resumes a little earlier, so a line end split over two reads is
/// found). Lines may end in `\r\n` or, leniently, `\n`.
pub fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let mut i = start;
    while let Some(pos) = memchr::memchr(b'\n', &buf[i..]) {
        let nl = i + pos;
        let rest = &buf[nl + 1..];
        if rest.starts_with(b"\n") {
            return Some(nl + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

/// Why a head of [`MAX_HEAD`] bytes without its end is refused: 414 if
/// even the request line has not ended, else 431.
pub fn too_large(buf: &[u8]) -> Status {
    let line_start = buf.iter().position(|&b| b != b'\r' && b != b'\n');
    match line_start {
        Some(s) if memchr::memchr(b'\n', &buf[s..]).is_some() => Status::HeaderFieldsTooLarge,
        _ => Status::UriTooLong,
    }
}

/// Checks a complete head (as delimited by [`head_end`]).
pub fn parse(head: &[u8]) -> Result<Request, Status> {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        // Empty lines before the request line are allowed (RFC 9112 2.2).
        .skip_while(|l| l.is_empty());
    let line = lines.next().ok_or(Status::BadRequest)?;
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Status::BadRequest);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(Status::BadRequest);
    }
    let minor = match version {
        b"HTTP/1.0" => 0,
        b"HTTP/1.1" => 1,
        v if v.starts_with(b"HTTP/") && v.len() == 8 && v[5].is_ascii_digit() => {
            return Err(Status::VersionNotSupported);
        }
        _ => return Err(Status::BadRequest),
    };
    let path = origin_path(target).ok_or(Status::BadRequest)?;
    let mut hosts = 0;
    for field in lines {
        if field.is_empty() {
            break;
        }
        // No folded lines (obsolete) and no space before the colon.
        let colon = memchr::memchr(b':', field).ok_or(Status::BadRequest)?;
        let name = &field[..colon];
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(Status::BadRequest);
        }
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        }
    }
    // HTTP/1.1 requires exactly one Host field (RFC 9112 3.2).
    if hosts > 1 || (minor == 1 && hosts == 0) {
        return Err(Status::BadRequest);
    }
    if path != PATH.as_bytes() {
        return Err(Status::NotFound);
    }
    match method {
        b"GET" => Ok(Request { head_only: false }),
        b"HEAD" => Ok(Request { head_only: true }),
        _ => Err(Status::MethodNotAllowed),
    }
}

/// The path of a request target in origin form (`/metrics?x=1`) or
/// absolute form (`http://host:port/metrics`), without its query.
fn origin_path(target: &[u8]) -> Option<&[u8]> {
    let path = if target.starts_with(b"/") {
        target
    } else {
        let lower = target.get(..7)?.to_ascii_lowercase();
        if lower != b"http://" {
            return None;
        }
        let rest = &target[7..];
        match memchr::memchr(b'/', rest) {
            Some(i) => &rest[i..],
            None => b"/",
        }
    };
    let end = memchr::memchr2(b'?', b'#', path).unwrap_or(path.len());
    let path = &path[..end];
    path.iter().all(|&b| b.is_ascii_graphic()).then_some(path)
}

/// A token character (RFC 9110 5.6.2): methods and field names.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A whole response: status line, headers, and `body` unless `head_only`.
pub fn response(
    code: u16,
    reason: &str,
    content_type: &str,
    extra: &str,
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nDate: {}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        http_date(SystemTime::now()),
        body.len()
    );
    let mut out = Vec::with_capacity(head.len() + if head_only { 0 } else { body.len() });
    out.extend_from_slice(head.as_bytes());
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// The response for an error `status`: a one-line text body.
pub fn error_response(status: Status) -> Vec<u8> {
    let body = format!("{} {}\n", status.code(), status.reason());
    let extra = match status {
        Status::MethodNotAllowed => "Allow: GET, HEAD\r\n",
        _ => "",
    };
    response(
        status.code(),
        status.reason(),
        "text/plain; charset=utf-8",
        extra,
        body.as_bytes(),
        false,
    )
}

/// An HTTP date (IMF-fixdate, RFC 9110 5.6.7): `Sun, 06 Nov 1994 08:49:37
/// GMT`.
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parsed(head: &str) -> Result<Request, Status> {
        let end = head_end(head.as_bytes(), 0).expect("complete head");
        assert_eq!(end, head.len(), "{head:?}");
        parse(&head.as_bytes()[..end])
    }

    #[test]
    fn finds_the_end_of_a_head_across_reads() {
        let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        for split in 0..head.len() {
            let seen = head_end(&head[..split], 0);
            assert_eq!(seen, None, "{split}");
            assert_eq!(head_end(head, split), Some(head.len()), "{split}");
        }
        assert_eq!(head_end(b"GET / HTTP/1.0\n\nrest", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.0\r\n", 0), None);
    }

    #[test]
    fn accepts_get_and_head_of_metrics() {
        let get = Ok(Request { head_only: false });
        assert_eq!(parsed("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), get);
        assert_eq!(parsed("GET /metrics HTTP/1.0\r\n\r\n"), get);
        assert_eq!(parsed("\r\nGET /metrics?name=x HTTP/1.0\n\n"), get);
        assert_eq!(
            parsed("GET http://h:9/metrics HTTP/1.1\r\nhost: h:9\r\nAccept: */*\r\n\r\n"),
            get
        );
        assert_eq!(
            parsed("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(Request { head_only: true })
        );
    }

    #[test]
    fn refuses_the_rest_with_the_right_status() {
        use Status::*;
        let cases = [
            (
                "POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                MethodNotAllowed,
            ),
            ("DELETE /metrics HTTP/1.0\r\n\r\n", MethodNotAllowed),
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", NotFound),
            ("POST /other HTTP/1.1\r\nHost: x\r\n\r\n", NotFound),
            ("GET /metrics/ HTTP/1.0\r\n\r\n", NotFound),
            ("GET /metrics HTTP/1.1\r\n\r\n", BadRequest), // no Host
            (
                "GET /metrics HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                BadRequest,
            ),
            ("GET /metrics HTTP/2.0\r\n\r\n", VersionNotSupported),
            ("GET /metrics FOO/1.0\r\n\r\n", BadRequest),
            ("GET /metrics\r\n\r\n", BadRequest),
            ("GET  /metrics HTTP/1.0\r\n\r\n", BadRequest),
            ("GET metrics HTTP/1.0\r\n\r\n", BadRequest),
            ("G(T /metrics HTTP/1.0\r\n\r\n", BadRequest),
            ("GET /metrics HTTP/1.0\r\nno colon\r\n\r\n", BadRequest),
            ("GET /metrics HTTP/1.0\r\nName : v\r\n\r\n", BadRequest),
            (
                "GET /metrics HTTP/1.0\r\nA: b\r\n folded\r\n\r\n",
                BadRequest,
            ),
            ("PING\n\n", BadRequest),
        ];
        for (head, want) in cases {
            assert_eq!(parsed(head), Err(want), "{head:?}");
        }
    }

    #[test]
    fn an_overlong_head_is_414_or_431() {
        let mut long_line = b"GET /".to_vec();
        long_line.resize(MAX_HEAD, b'a');
        assert_eq!(too_large(&long_line), Status::UriTooLong);
        let mut long_fields = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        long_fields.resize(MAX_HEAD, b'a');
        assert_eq!(too_large(&long_fields), Status::HeaderFieldsTooLarge);
    }

    #[test]
    fn responses_are_complete_and_close() {
        let r = String::from_utf8(error_response(Status::MethodNotAllowed)).unwrap();
        assert!(
            r.starts_with("HTTP/1.1 405 Method Not Allowed\r\nDate: "),
            "{r}"
        );
        assert!(r.contains("\r\nAllow: GET, HEAD\r\n"), "{r}");
        assert!(r.contains("\r\nContent-Length: 23\r\n"), "{r}");
        assert!(r.ends_with("\r\nConnection: close\r\n\r\n405 Method Not Allowed\n"));
        let head = response(200, "OK", CONTENT_TYPE, "", b"abc", true);
        let head = String::from_utf8(head).unwrap();
        assert!(head.contains("Content-Length: 3\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
    }

    #[test]
    fn dates_are_imf_fixdate() {
        let at = |s| http_date(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(1_798_761_599), "Thu, 31 Dec 2026 23:59:59 GMT");
    }
}
