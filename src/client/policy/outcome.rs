//! What one delivery attempt's result means: acknowledge, slow down, retry (counted or not),
//! or dead-letter. Pure.

use std::time::Duration;

/// The result of one attempt, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The target answered (also before it had read the whole body).
    Answered {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// Nothing reached the app: connection refused, name not resolved, TLS handshake failed.
    /// Never the webhook's fault.
    Unreachable(String),
    /// The request may have reached the app but no usable answer came back: reset, closed,
    /// timeout, malformed response, or the delivery itself failed.
    Lost(String),
}

impl Attempt {
    /// The HTTP status, when the target answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Attempt::Answered { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The cause in plain words, for dead letters and log lines.
    pub fn describe(&self) -> String {
        match self {
            Attempt::Answered { status, .. } => format!("HTTP {status}"),
            Attempt::Unreachable(e) | Attempt::Lost(e) => e.clone(),
        }
    }
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: acknowledge.
    Delivered,
    /// 429, and 503 with `Retry-After`: backpressure. The whole target waits; never counted.
    Throttled { retry_after: Option<Duration> },
    /// 408, 5xx, or lost: maybe this webhook's fault. Retried; counted with evidence that the
    /// target is up.
    Failed { retry_after: Option<Duration> },
    /// The target is not there: retried, never counted.
    Unreachable,
    /// Other 4xx, 3xx and 1xx: the target will not take it; dead-letter now.
    Rejected,
}

pub fn classify(attempt: &Attempt) -> Verdict {
    match attempt {
        Attempt::Unreachable(_) => Verdict::Unreachable,
        Attempt::Lost(_) => Verdict::Failed { retry_after: None },
        Attempt::Answered {
            status,
            retry_after,
        } => match (*status, *retry_after) {
            (200..=299, _) => Verdict::Delivered,
            (429, ra) | (503, ra @ Some(_)) => Verdict::Throttled { retry_after: ra },
            (408 | 500..=599, ra) => Verdict::Failed { retry_after: ra },
            _ => Verdict::Rejected,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16, ra: Option<u64>) -> Verdict {
        classify(&Attempt::Answered {
            status: s,
            retry_after: ra.map(Duration::from_secs),
        })
    }

    #[test]
    fn statuses_map_to_verdicts() {
        for s in [200, 201, 204, 299] {
            assert_eq!(status(s, None), Verdict::Delivered, "{s}");
        }
        for s in [408, 500, 502, 503, 504, 599] {
            assert_eq!(
                status(s, None),
                Verdict::Failed { retry_after: None },
                "{s}"
            );
        }
        for s in [
            100, 301, 302, 304, 400, 401, 403, 404, 409, 410, 413, 417, 422,
        ] {
            assert_eq!(status(s, None), Verdict::Rejected, "{s}");
        }
        assert_eq!(
            classify(&Attempt::Unreachable("refused".into())),
            Verdict::Unreachable
        );
        assert_eq!(
            classify(&Attempt::Lost("reset".into())),
            Verdict::Failed { retry_after: None }
        );
    }

    #[test]
    fn throttling_is_429_or_503_with_retry_after() {
        let ra = Some(Duration::from_secs(7));
        assert_eq!(status(429, None), Verdict::Throttled { retry_after: None });
        assert_eq!(status(429, Some(7)), Verdict::Throttled { retry_after: ra });
        assert_eq!(status(503, Some(7)), Verdict::Throttled { retry_after: ra });
        assert_eq!(status(500, Some(7)), Verdict::Failed { retry_after: ra });
    }
}
