use super::*;

/// Feeds `raw` split at every offset (two pieces), like a socket would deliver it, and
/// checks every split gives the same result as feeding it whole.
fn decode_split(raw: &[u8], max: u64) -> Result<(Vec<u8>, usize), RequestError> {
    let whole = decode_pieces(&[raw], max);
    for cut in 0..=raw.len() {
        let split = decode_pieces(&[&raw[..cut], &raw[cut..]], max);
        assert_eq!(
            split,
            whole,
            "split at {cut} of {:?}",
            String::from_utf8_lossy(raw)
        );
    }
    whole
}

/// Decodes input arriving in pieces, keeping unconsumed bytes like a connection buffer does.
/// Returns the body and the number of bytes left over after the end of the body.
fn decode_pieces(pieces: &[&[u8]], max: u64) -> Result<(Vec<u8>, usize), RequestError> {
    let mut dec = ChunkedDecoder::new(max);
    let mut buf = Vec::new();
    let mut body = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        if !dec.is_done() {
            let used = dec.decode(&buf, &mut body)?;
            buf.drain(..used);
        }
    }
    if !dec.is_done() {
        return Err(RequestError::Malformed("incomplete (test marker)"));
    }
    Ok((body, buf.len()))
}

#[test]
fn decodes_chunks_extensions_and_trailers() {
    let raw = b"5\r\nhello\r\n6;name=val\r\n world\r\nA \t; x\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
    let (body, rest) = decode_split(raw, 1024).unwrap();
    assert_eq!(body, b"hello world0123456789");
    assert_eq!(rest, 4, "bytes of the next request are left alone");
}

#[test]
fn extensions_follow_the_grammar() {
    let raw = b"2;a=\"q \\\" s\";b=tok ; c\r\nhi\r\n0\r\nX-T: caf\xe9\r\nY:\r\n\r\n";
    assert_eq!(decode_split(raw, 100).unwrap().0, b"hi");
}

#[test]
fn too_many_trailer_fields() {
    let mut raw = b"0\r\n".to_vec();
    for i in 0..101 {
        raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"\r\n");
    assert!(matches!(
        decode_split(&raw, 10),
        Err(RequestError::Malformed(_))
    ));
}

#[test]
fn empty_body_and_uppercase_hex() {
    assert_eq!(decode_split(b"0\r\n\r\n", 10).unwrap(), (vec![], 0));
    let (body, _) = decode_split(b"00B\r\nhello world\r\n0\r\n\r\n", 100).unwrap();
    assert_eq!(body, b"hello world");
}

#[test]
fn binary_data_passes_untouched() {
    let data: Vec<u8> = (0..=255u8).collect();
    let mut raw = b"100\r\n".to_vec();
    raw.extend_from_slice(&data);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    assert_eq!(decode_split(&raw, 1024).unwrap().0, data);
}

#[test]
fn malformed_framing_is_refused() {
    let cases: &[&[u8]] = &[
        b"\r\n",                                // empty size line (httparse would accept it)
        b"x\r\nabc\r\n0\r\n\r\n",               // not hex
        b"-1\r\n",                              // sign
        b"5\nhello\r\n0\r\n\r\n",               // bare LF after size
        b"5;a\nb\r\nhello\r\n0\r\n\r\n",        // bare LF inside an extension
        b"5\r\nhelloX\r\n0\r\n\r\n",            // no CRLF after data
        b"5\r\nhello\n0\r\n\r\n",               // bare LF after data
        b"5 x\r\nhello\r\n0\r\n\r\n",           // junk after size
        b"11111111111111111\r\n",               // 17 hex digits
        b"0\r\nX: y\nZ\r\n\r\n",                // bare LF in trailer
        b"5\r\rhello\r\n0\r\n\r\n",             // bare CR
        b"a \r\n0123456789\r\n0\r\n\r\n",       // whitespace after the size, no extension
        b"2;\r\nhi\r\n0\r\n\r\n",               // empty extension
        b"2;=v\r\nhi\r\n0\r\n\r\n",             // extension without a name
        b"2;a=\r\nhi\r\n0\r\n\r\n",             // extension without a value
        b"2;a b\r\nhi\r\n0\r\n\r\n",            // two names without ';'
        b"2;a=\"open\r\nhi\r\n0\r\n\r\n",       // unterminated quoted string
        b"2;a\x01\r\nhi\r\n0\r\n\r\n",          // control byte in an extension
        b"2;a=b@c\r\nhi\r\n0\r\n\r\n",          // not a token
        b"0\r\nPOST /webhook HTTP/1.1\r\n\r\n", // a request line smuggled as a trailer
        b"0\r\n: no-name\r\n\r\n",              // trailer without a name
        b"0\r\nX-T:\x01\r\n\r\n",               // control byte in a trailer value
    ];
    for raw in cases {
        let result = decode_split(raw, 1024);
        assert!(
            matches!(result, Err(RequestError::Malformed(m)) if !m.contains("test marker")),
            "{:?} gave {result:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn too_large_bodies_and_overlong_lines() {
    assert_eq!(
        decode_split(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 10),
        Err(RequestError::BodyTooLarge)
    );
    let mut long_ext = b"5;".to_vec();
    long_ext.resize(5000, b'a');
    assert!(matches!(
        decode_pieces(&[&long_ext], 1024),
        Err(RequestError::Malformed(_))
    ));
    let mut long_trailer = b"0\r\nX: ".to_vec();
    long_trailer.resize(20_000, b'a');
    assert!(matches!(
        decode_pieces(&[&long_trailer], 1024),
        Err(RequestError::Malformed(_))
    ));
}

#[test]
fn incomplete_input_waits() {
    let mut dec = ChunkedDecoder::new(100);
    let mut body = Vec::new();
    assert_eq!(dec.decode(b"5\r\nhel", &mut body), Ok(6));
    assert_eq!(body, b"hel");
    assert!(!dec.is_done());
    assert_eq!(
        dec.decode(b"lo\r", &mut body),
        Ok(2),
        "a lone CR waits for its LF"
    );
}
