use super::*;

#[test]
fn a_trace_survives_its_json() {
    let t = Trace {
        state: State::Dead,
        source: "wa".into(),
        attempt: 3,
        status: Some(500),
        error: Some("HTTP 500".into()),
        took_ms: 12,
        at: 1_764_351_234_567,
        answer: Some("{\"error\":\"boom\"}".into()),
        dlq_id: Some("1-0".into()),
        target: None,
    };
    assert_eq!(Trace::decode(t.encode().as_bytes()), Some(t.clone()));
    let delivered = Trace {
        state: State::Delivered,
        status: Some(200),
        error: None,
        answer: None,
        dlq_id: None,
        target: None,
        ..t.clone()
    };
    assert_eq!(
        Trace::decode(delivered.encode().as_bytes()),
        Some(delivered)
    );
    assert_eq!(Trace::decode(b"{\"state\":\"odd\",\"attempt\":1}"), None);
    assert_eq!(Trace::decode(b"not json"), None);
    let message = format!(r#"{{"group":"relay","traces":[["1-0",{}]]}}"#, t.encode());
    let (group, traces) = parse_activity(message.as_bytes());
    assert_eq!(group, "relay");
    assert_eq!(traces, vec![("1-0".to_owned(), t)]);
}
