//! What one delivery attempt's result means: acknowledge, retry, or dead-letter. Pure.

use std::time::Duration;

/// The result of one attempt, as seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The target answered with this status (and `Retry-After`, if it sent one).
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or reset, timeout, malformed response.
    Failed(String),
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: acknowledge.
    Delivered,
    /// Connection errors, timeouts, 408, 429, 5xx: try again later.
    Retry { retry_after: Option<Duration> },
    /// Other 4xx and 3xx (and 1xx): the target will not take it; dead-letter now.
    Reject,
}

pub fn classify(attempt: &Attempt) -> Verdict {
    match attempt {
        Attempt::Failed(_) => Verdict::Retry { retry_after: None },
        Attempt::Status {
            status,
            retry_after,
        } => match status {
            200..=299 => Verdict::Delivered,
            408 | 429 | 500..=599 => Verdict::Retry {
                retry_after: *retry_after,
            },
            _ => Verdict::Reject,
        },
    }
}

/// `Retry-After` as delay-seconds. (HTTP dates are ignored: local apps send seconds.)
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16) -> Verdict {
        classify(&Attempt::Status {
            status: s,
            retry_after: None,
        })
    }

    #[test]
    fn statuses_map_to_verdicts() {
        for s in [200, 201, 204, 299] {
            assert_eq!(status(s), Verdict::Delivered, "{s}");
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(status(s), Verdict::Retry { retry_after: None }, "{s}");
        }
        for s in [
            100, 301, 302, 304, 400, 401, 403, 404, 409, 410, 413, 422, 499,
        ] {
            assert_eq!(status(s), Verdict::Reject, "{s}");
        }
        assert_eq!(
            classify(&Attempt::Failed("refused".into())),
            Verdict::Retry { retry_after: None }
        );
    }

    #[test]
    fn retry_after_travels_with_retryable_statuses() {
        let ra = Some(Duration::from_secs(7));
        let v = classify(&Attempt::Status {
            status: 503,
            retry_after: ra,
        });
        assert_eq!(v, Verdict::Retry { retry_after: ra });
        assert_eq!(parse_retry_after(" 7 "), ra);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
