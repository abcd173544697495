use super::*;

fn trace(state: State) -> Trace {
    Trace {
        state,
        source: String::new(),
        attempt: 1,
        status: None,
        error: None,
        took_ms: 0,
        at: 0,
        answer: None,
        dlq_id: None,
        target: None,
    }
}

#[test]
fn status_follows_the_record_then_the_group() {
    let (d, r, x) = (
        trace(State::Delivered),
        trace(State::Retrying),
        trace(State::Dead),
    );
    assert_eq!(status_of(Some(&d), false, false), Status::Delivered);
    assert_eq!(status_of(Some(&x), false, false), Status::Dead);
    assert_eq!(status_of(Some(&r), true, false), Status::Retrying);
    // Retrying once, then finished elsewhere (another consumer): done, details unknown.
    assert_eq!(status_of(Some(&r), false, false), Status::Acknowledged);
    assert_eq!(status_of(None, false, true), Status::Pending);
    assert_eq!(status_of(None, true, false), Status::Pending);
    assert_eq!(status_of(None, false, false), Status::Acknowledged);
}

#[test]
fn filters_parse_with_precise_errors() {
    let f = Filter::from_pairs([("since", "1h"), ("status", "dead"), ("limit", "5")]).unwrap();
    assert_eq!(f.since, Some(Duration::from_secs(3600)));
    assert_eq!(f.status, Some(Status::Dead));
    assert_eq!(f.limit, 5);
    assert!(
        Filter::from_pairs([("status", "done")])
            .unwrap_err()
            .contains("pending")
    );
    assert!(Filter::from_pairs([("limit", "0")]).is_err());
    assert!(Filter::from_pairs([("since", "soon")]).is_err());
    assert!(Filter::from_pairs([("colour", "red")]).is_err());
}
