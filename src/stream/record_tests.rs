use super::*;
use crate::http::FieldValue;

fn bulk(s: &[u8]) -> Value {
    Value::BulkString(s.to_vec())
}

#[test]
fn entries_decode_including_deleted_payloads() {
    let reply = Value::Array(vec![
        Value::Array(vec![
            bulk(b"1-0"),
            Value::Array(vec![
                bulk(b"v"),
                bulk(b"1"),
                bulk(b"body"),
                bulk(b"\xff\x00"),
            ]),
        ]),
        Value::Array(vec![bulk(b"2-0"), Value::Nil]),
    ]);
    let entries = parse_entries(&reply).unwrap();
    assert_eq!(entries[0].id, "1-0");
    assert_eq!(entries[0].field("body"), Some(&b"\xff\x00"[..]));
    assert_eq!(entries[1].fields, None);
    assert_eq!(parse_entries(&Value::Nil).unwrap(), vec![]);
}

#[test]
fn records_round_trip_through_fields() {
    let rec = Record {
        received_at: 17,
        method: "POST".into(),
        path: "/webhook/x?y".into(),
        source: "x".into(),
        remote: "1.2.3.4:5".into(),
        headers: vec![
            ("A".into(), "1".into()),
            ("a".into(), "2".into()),
            ("X-Latin1".into(), FieldValue::Bytes(b"Caf\xe9".to_vec())),
        ],
        body: b"\x00body".to_vec(),
        relay_id: "01ARYZ6S41TSV4RRFFQ69G5FAV".into(),
    };
    let mut cmd = redis::cmd("XADD");
    rec.write_fields(&mut cmd);
    let args: Vec<Vec<u8>> = cmd
        .args_iter()
        .skip(1) // the command name
        .map(|a| match a {
            redis::Arg::Simple(b) => b.to_vec(),
            _ => vec![],
        })
        .collect();
    let fields: Vec<(String, Vec<u8>)> = args
        .chunks(2)
        .map(|p| (String::from_utf8(p[0].clone()).unwrap(), p[1].clone()))
        .collect();
    assert_eq!(Record::from_fields(&fields).unwrap(), rec);
}

#[test]
fn relay_id_prefers_origin_id() {
    let e = Entry {
        id: "5-0".into(),
        fields: Some(vec![("origin_id".into(), b"1-0".to_vec())]),
    };
    assert_eq!(e.relay_id(), "1-0");
    let e = Entry {
        id: "5-0".into(),
        fields: Some(vec![]),
    };
    assert_eq!(e.relay_id(), "5-0");
}

#[test]
fn bad_records_are_errors() {
    assert!(Record::from_fields(&[]).is_err());
    let f = |v: &[u8], h: &[u8]| {
        vec![
            ("v".to_owned(), v.to_vec()),
            ("method".to_owned(), b"POST".to_vec()),
            ("headers".to_owned(), h.to_vec()),
        ]
    };
    assert!(Record::from_fields(&f(b"3", b"[]")).is_err());
    assert!(Record::from_fields(&f(b"2", br#"[["X",{"a":1}]]"#)).is_err());
    assert!(Record::from_fields(&f(b"1", b"{")).is_err());
    assert!(Record::from_fields(&f(b"1", b"[]")).is_ok());
}

#[test]
fn headers_json_is_what_serde_json_writes() {
    let mut texts: Vec<String> = (0u8..0x80).map(|b| format!("a{}b", b as char)).collect();
    texts.extend(["", "\"\\", "x\u{1f}\u{7f}é€😀\r\n\t", "\u{8}\u{c}\u{0}"].map(String::from));
    // The scan tests 8 bytes at a time: every escaped byte at every place of a word, next
    // to bytes just above the escaped ranges and to non-ASCII text.
    for len in [7, 8, 9, 16, 23] {
        for at in 0..len {
            for b in [0x00, 0x0a, 0x1f, b'"', b'\\'] {
                let mut t: Vec<u8> = (0..len).map(|i| [b' ', b'#', b']', b'~'][i % 4]).collect();
                t[at] = b;
                texts.push(String::from_utf8(t).unwrap());
            }
        }
        texts.push("é€".repeat(len));
    }
    let mut headers: Fields = texts
        .iter()
        .map(|t| (format!("N{t}"), FieldValue::Text(t.clone())))
        .collect();
    headers.push((
        "X-Latin1".into(),
        FieldValue::Bytes(b"Caf\xe9\x00".to_vec()),
    ));
    let rec = Record {
        received_at: 0,
        method: "POST".into(),
        path: "/".into(),
        source: String::new(),
        remote: String::new(),
        headers: headers.clone(),
        body: vec![],
        relay_id: String::new(),
    };
    let pairs: Vec<serde_json::Value> = headers
        .iter()
        .map(|(n, v)| match v {
            FieldValue::Text(t) => serde_json::json!([n, t]),
            FieldValue::Bytes(b) => serde_json::json!([n, b]),
        })
        .collect();
    let expected = serde_json::Value::Array(pairs).to_string();
    assert_eq!(String::from_utf8(rec.headers_json()).unwrap(), expected);
    assert_eq!(headers_json::parse(&rec.headers_json()).unwrap(), headers);
    let empty = Record {
        headers: vec![],
        ..rec
    };
    assert_eq!(empty.headers_json(), b"[]");
}

/// The command is sized once: what `write_fields` writes fits in `fields_len`, with little
/// to spare, and the headers written straight into it are `headers_json`.
#[test]
fn fields_fit_the_size_the_command_is_made_with() {
    let rec = Record {
        received_at: u64::MAX,
        method: "POST".into(),
        path: "/webhook/whatsapp?x=1".into(),
        source: "whatsapp".into(),
        remote: "[2001:db8::1]:65535".into(),
        headers: vec![
            ("Host".into(), "relay.example.com".into()),
            ("Content-Type".into(), "application/json".into()),
            ("X-Hub-Signature-256".into(), "sha256=00ff".into()),
        ],
        body: vec![b'x'; 1000],
        relay_id: "01ARYZ6S41TSV4RRFFQ69G5FAV".into(),
    };
    let mut cmd = redis::Cmd::new();
    rec.write_fields(&mut cmd);
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .map(|a| match a {
            redis::Arg::Simple(b) => b,
            _ => &[],
        })
        .collect();
    let written: usize = args.iter().map(|a| a.len()).sum();
    assert!(
        written <= rec.fields_len(),
        "{written} > {}",
        rec.fields_len()
    );
    assert!(rec.fields_len() - written <= 24, "{}", rec.fields_len());
    assert_eq!(args[args.len() - 3], &rec.headers_json()[..]);
}
