//! The client's log lines about deliveries: one INFO line per delivered webhook, a WARN with
//! the cause in plain words on a webhook's first failure (later ones at DEBUG), and a WARN
//! the first time one of its failures is not counted for lack of evidence.

use super::deliver::Attempted;
use super::deliver::body_excerpt;
use super::policy::outcome::Verdict;
use crate::stream::StreamId;

/// Characters of the app's answer quoted in a log line.
const EXCERPT: usize = 120;

/// Logs one finished attempt; `failures`: the webhook's failures in a row after it.
pub fn attempt(a: &Attempted, verdict: Verdict, failures: u32) {
    let source = if a.source.is_empty() { "-" } else { &a.source };
    let ms = a.took.as_millis();
    let nth = match a.attempt {
        1 => String::new(),
        n => format!(" (attempt {n})"),
    };
    let cause = match &a.outcome.answer {
        Some(answer) => {
            let excerpt = body_excerpt(answer, EXCERPT);
            let early = if answer.early {
                " before reading the whole body"
            } else {
                ""
            };
            match excerpt.is_empty() {
                true => format!("HTTP {}{early}", answer.status),
                false => format!("HTTP {}{early}: {excerpt}", answer.status),
            }
        }
        None => a.outcome.attempt.describe(),
    };
    let id = &a.relay_id;
    match verdict {
        Verdict::Delivered => log::info!("delivered {id} src={source} → {cause} in {ms} ms{nth}"),
        Verdict::Rejected => log::warn!(
            "{id} src={source} refused by the app{nth}: {cause}; dead-lettering it (a final answer)"
        ),
        Verdict::Throttled { .. } => {
            log::debug!("{id} src={source} throttled{nth}: {cause}; the target is paused")
        }
        Verdict::Failed { .. } | Verdict::Unreachable if failures == 1 => {
            log::warn!("delivery of {id} src={source} failed{nth}: {cause}; will retry")
        }
        Verdict::Failed { .. } | Verdict::Unreachable => {
            log::debug!("delivery of {id} src={source} failed{nth}: {cause}")
        }
    }
}

/// A failure of `id` was not counted toward `RELAY_MAX_ATTEMPTS`.
pub fn uncounted(id: StreamId, first: bool) {
    if first {
        log::warn!(
            "a failure of {id} is not counted toward RELAY_MAX_ATTEMPTS: no other webhook was delivered around it, so the target may be down rather than the webhook bad; it is retried without limit (set RELAY_TARGET_HEALTH_URL to let a 2xx there count as evidence)"
        );
    } else {
        log::debug!("a failure of {id} is not counted: no evidence the target is up");
    }
}
