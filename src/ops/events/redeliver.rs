//! `crm-relay redeliver` and `POST /events/redeliver`: a copy of finished webhooks appended
//! to the stream for another delivery (same `X-Relay-Id`; `X-Relay-Redelivery-Of` names the
//! entry copied). Webhooks still being delivered are refused: a copy would only duplicate.

use serde_json::{Value, json};

use super::{Filter, MAX_LIMIT, Status, list, show_one};
use crate::ops::partitions::{Found, Handle, Partitions};
use crate::stream::StoreError;

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
    /// `(id, the partitions' ids it may mean)`: a plain id found in several partitions.
    pub ambiguous: Vec<(String, Vec<String>)>,
}

impl Redelivered {
    pub fn to_json(&self) -> Value {
        json!({
            "redelivered": self.done.iter().map(|(id, new)| json!({"id": id, "new_id": new})).collect::<Vec<_>>(),
            "unknown": self.unknown,
            "refused": self.refused.iter().map(|(id, st)| json!({"id": id, "status": st.as_str()})).collect::<Vec<_>>(),
            "ambiguous": self.ambiguous.iter().map(|(id, c)| json!({"id": id, "candidates": c})).collect::<Vec<_>>(),
        })
    }

    /// Whether every selected webhook was redelivered.
    pub fn all_done(&self) -> bool {
        self.unknown.is_empty() && self.refused.is_empty() && self.ambiguous.is_empty()
    }
}

/// Appends a copy of each selected webhook to its partition's stream for another delivery.
pub async fn redeliver(
    parts: &Partitions,
    what: &Redeliver,
    now_ms: u64,
) -> Result<Redelivered, StoreError> {
    let mut out = Redelivered::default();
    // (as named, partition, id there, status)
    let mut candidates = Vec::new();
    match what {
        Redeliver::Ids(ids) => {
            for raw in ids {
                let found = parts
                    .find(raw, |store, id| async move { show_one(&store, id).await })
                    .await?;
                match found {
                    Found::One { p, id, value } => {
                        candidates.push((raw.clone(), p, id, value.0.status))
                    }
                    Found::Nothing => out.unknown.push(raw.clone()),
                    Found::Ambiguous(c) => out.ambiguous.push((raw.clone(), c)),
                }
            }
        }
        Redeliver::Matching(filter) => {
            let mut f = filter.clone();
            f.limit = MAX_LIMIT;
            let listing = list(parts, &f, now_ms).await?;
            // Oldest first: copies keep the original order.
            for e in listing.events.into_iter().rev() {
                if let Ok(h) = e.summary.id.parse::<Handle>() {
                    let p = h.partition.unwrap_or(0);
                    candidates.push((e.summary.id, p, h.id, e.status));
                }
            }
            candidates.retain(|c| c.3.finished());
        }
    }
    for (raw, p, id, status) in candidates {
        if !status.finished() {
            out.refused.push((raw, status));
            continue;
        }
        match parts.stores()[p].redeliver(id).await? {
            Some(new_id) => out.done.push((raw, parts.label(p, &new_id))),
            None => out.unknown.push(raw),
        }
    }
    Ok(out)
}
