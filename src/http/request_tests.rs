use super::*;

const LIMITS: HeadLimits = HeadLimits {
    max_head: 16 * 1024,
    max_headers: 100,
    max_body: 1024,
};

fn parse(raw: &[u8]) -> Result<Option<(Head, usize)>, RequestError> {
    parse_head(raw, &LIMITS)
}

/// Parses `raw` whole and also as every prefix: a prefix must be `Ok(None)` (need more) or
/// the same answer as the whole, never a different one.
fn parse_split(raw: &[u8]) -> Result<(Head, usize), RequestError> {
    let whole = parse(raw);
    for cut in 0..raw.len() {
        match (parse(&raw[..cut]), &whole) {
            (Ok(None), _) => {}
            (Ok(Some(p)), Ok(Some(w))) if p == *w => {}
            (Err(e), Err(w)) if e == *w => {}
            (other, _) => panic!(
                "prefix {cut} of {:?} gave {other:?}",
                String::from_utf8_lossy(raw)
            ),
        }
    }
    whole.map(|o| o.expect("a complete head"))
}

#[test]
fn simple_post_with_length() {
    let raw = b"POST /webhook/wa?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello";
    let (head, used) = parse_split(raw).unwrap();
    assert_eq!(used, raw.len() - 5);
    assert_eq!(head.method, "POST");
    assert_eq!(head.target, "/webhook/wa?x=1");
    assert_eq!(head.path(), "/webhook/wa");
    assert_eq!(head.query(), Some("x=1"));
    assert_eq!(head.framing, Framing::Length(5));
    assert!(head.keep_alive);
    assert!(!head.expect_continue);
    let xa: Vec<&str> = head.header_values("X-A").collect();
    assert_eq!(xa, ["1", "2"]);
    assert_eq!(head.headers[3].0, "x-a", "names keep their case and order");
}

#[test]
fn chunked_expect_and_connection_tokens() {
    let raw = b"POST /webhook HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-Continue\r\nConnection: keep-alive, close\r\n\r\n";
    let (head, _) = parse_split(raw).unwrap();
    assert_eq!(head.framing, Framing::Chunked);
    assert!(head.expect_continue);
    assert!(!head.keep_alive);
}

#[test]
fn http10_defaults_to_close_and_needs_no_host() {
    let (head, _) = parse_split(b"GET /health HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(head.version, Version::Http10);
    assert!(!head.keep_alive);
    assert_eq!(head.framing, Framing::None);
    let (head, _) = parse_split(b"GET /health HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
    assert!(head.keep_alive);
}

#[test]
fn repeated_equal_content_lengths_are_one_length() {
    let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\n";
    assert_eq!(parse_split(raw).unwrap().0.framing, Framing::Length(3));
}

#[test]
fn hostile_framing_is_refused() {
    let bad: &[(&[u8], u16)] = &[
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1_0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\n\r\n", 411),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n", 413),
        (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n", 417),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: a\n\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n folded\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\xff\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: caf\xe9\r\n\r\n", 400),
        (b"GET ftp://example.com/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET http:///nohost HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400),
        (b"G\0T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ];
    for (raw, status) in bad {
        match parse_split(raw) {
            Err(e) => assert_eq!(
                e.status(),
                *status,
                "{:?}: {e}",
                String::from_utf8_lossy(raw)
            ),
            Ok(h) => panic!("accepted {:?}: {h:?}", String::from_utf8_lossy(raw)),
        }
    }
}

/// Values are text after one check of the whole head, or, when some value is not UTF-8,
/// after a check of each: the same fields either way.
#[test]
fn utf8_values_are_text_whether_or_not_the_head_is_all_utf8() {
    let utf8 =
        "GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\u{e9} \u{20ac}\r\nX-E:\r\nX-B: \u{1f600}\r\n\r\n";
    let (head, _) = parse_split(utf8.as_bytes()).unwrap();
    let texts = |head: &Head| -> Vec<(String, Option<String>)> {
        let text = |v: &FieldValue| v.as_str().map(str::to_owned);
        head.headers
            .iter()
            .map(|(n, v)| (n.clone(), text(v)))
            .collect()
    };
    let all = texts(&head);
    assert_eq!(all[1], ("X-A".into(), Some("caf\u{e9} \u{20ac}".into())));
    assert_eq!(all[2], ("X-E".into(), Some(String::new())));
    assert_eq!(all[3], ("X-B".into(), Some("\u{1f600}".into())));
    let mixed = [
        &b"GET / HTTP/1.1\r\nHost: a\r\nX-A: "[..],
        "caf\u{e9} \u{20ac}".as_bytes(),
        b"\r\nX-Latin1: Caf\xe9\r\nX-B: ",
        "\u{1f600}".as_bytes(),
        b"\r\n\r\n",
    ]
    .concat();
    let (head, _) = parse_split(&mixed).unwrap();
    let got = texts(&head);
    assert_eq!(got[2], ("X-Latin1".into(), None));
    assert_eq!((&got[..2], &got[3]), (&all[..2], &all[3]));
}

#[test]
fn obs_text_values_are_kept_as_bytes_and_absolute_targets_reduced() {
    let (head, _) = parse_split(
        b"GET http://relay.test/webhook/x?a=1 HTTP/1.1\r\nHost: a\r\nX-C: Caf\xe9\r\n\r\n",
    )
    .unwrap();
    assert_eq!(head.target, "/webhook/x?a=1");
    assert_eq!(head.headers[1].1, FieldValue::Bytes(b"Caf\xe9".to_vec()));
    assert_eq!(head.header_values("x-c").count(), 0, "not text");
    for (raw, target) in [
        (
            &b"GET HTTPS://relay.test HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            "/",
        ),
        (
            b"GET http://relay.test?q HTTP/1.1\r\nHost: a\r\n\r\n",
            "/?q",
        ),
    ] {
        assert_eq!(parse_split(raw).unwrap().0.target, target);
    }
}

#[test]
fn head_and_header_count_limits_give_431() {
    let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..100 {
        raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    assert_eq!(parse(&raw).unwrap_err(), RequestError::TooManyHeaders);

    let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
    big.resize(16 * 1024, b'a');
    assert_eq!(parse(&big).unwrap_err(), RequestError::HeadTooLarge);
    // Just under the limit and still partial: wait for more.
    assert_eq!(parse(&big[..16 * 1024 - 1]).unwrap(), None);
}

#[test]
fn exactly_100_headers_are_fine() {
    let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..99 {
        raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    assert_eq!(parse_split(&raw).unwrap().0.headers.len(), 100);
}

/// A `\n` without `\r` before it, anywhere in a head of any length (the search runs in
/// vector-sized steps): at the start, in the middle of a long head, as its last byte.
#[test]
fn bare_lf_is_found_anywhere() {
    let line = b"X-Long-Header-Name: a value long enough to span several vector steps\r\n";
    let mut head = b"POST /webhook HTTP/1.1\r\n".to_vec();
    for _ in 0..20 {
        head.extend_from_slice(line);
    }
    head.extend_from_slice(b"\r\n");
    assert!(!has_bare_lf(&head));
    assert!(!has_bare_lf(b""));
    assert!(has_bare_lf(b"\n"));
    for at in [0, 1, 23, 24, 100, 777, head.len() - 1] {
        let mut bad = head.clone();
        bad.insert(at, b'\n');
        if at > 0 && bad[at - 1] == b'\r' {
            continue; // that one is a CRLF
        }
        assert!(has_bare_lf(&bad), "LF inserted at {at}");
    }
    let mut bad = head.clone();
    *bad.last_mut().unwrap() = b'x';
    bad.push(b'\n');
    assert!(has_bare_lf(&bad), "LF as the last byte");
}
