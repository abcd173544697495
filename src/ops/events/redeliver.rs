//! `crm-relay redeliver` and `POST /events/redeliver`: a copy of finished webhooks appended
//! to the stream for another delivery (same `X-Relay-Id`; `X-Relay-Redelivery-Of` names the
//! entry copied). Webhooks still being delivered are refused: a copy would only duplicate.

use serde_json::{Value, json};

use super::{Filter, MAX_LIMIT, Status, list, show};
use crate::stream::{Store, StoreError, StreamId};

/// Which webhooks to redeliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeliver {
    Ids(Vec<String>),
    /// Those a filter selects (only finished ones: delivered, dead or acknowledged).
    Matching(Filter),
}

/// What a redelivery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Redelivered {
    /// `(id, the copy's id)`.
    pub done: Vec<(String, String)>,
    /// Ids not in the stream (or not stream ids).
    pub unknown: Vec<String>,
    /// `(id, status)` of webhooks still being delivered: a copy would only duplicate them.
    pub refused: Vec<(String, Status)>,
}

impl Redelivered {
    pub fn to_json(&self) -> Value {
        json!({
            "redelivered": self.done.iter().map(|(id, new)| json!({"id": id, "new_id": new})).collect::<Vec<_>>(),
            "unknown": self.unknown,
            "refused": self.refused.iter().map(|(id, st)| json!({"id": id, "status": st.as_str()})).collect::<Vec<_>>(),
        })
    }
}

/// Appends a copy of each selected webhook to the stream for another delivery.
pub async fn redeliver(
    store: &Store,
    what: &Redeliver,
    now_ms: u64,
) -> Result<Redelivered, StoreError> {
    let mut out = Redelivered::default();
    let candidates: Vec<(String, Option<Status>)> = match what {
        Redeliver::Ids(ids) => {
            let mut c = Vec::new();
            for raw in ids {
                match raw.parse::<StreamId>() {
                    Ok(id) => match show(store, id).await? {
                        Some((ev, _)) => c.push((raw.clone(), Some(ev.status))),
                        None => out.unknown.push(raw.clone()),
                    },
                    Err(_) => out.unknown.push(raw.clone()),
                }
            }
            c
        }
        Redeliver::Matching(filter) => {
            let mut f = filter.clone();
            f.limit = MAX_LIMIT;
            let listing = list(store, &f, now_ms).await?;
            listing
                .events
                .into_iter()
                .rev() // oldest first: copies keep the original order
                .filter(|e| e.status.finished())
                .map(|e| (e.summary.id, Some(e.status)))
                .collect()
        }
    };
    for (raw, status) in candidates {
        match status {
            Some(st) if !st.finished() => out.refused.push((raw, st)),
            _ => match store.redeliver(raw.parse().expect("checked above")).await? {
                Some(new_id) => out.done.push((raw, new_id)),
                None => out.unknown.push(raw),
            },
        }
    }
    Ok(out)
}
