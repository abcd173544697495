//! The events on the admin API, as JSON: `GET /events?since=&source=&status=&limit=&before=`
//! (`next` in the answer: the `before` of the following page),
//! `GET /events/<id>`, `POST /events/redeliver` with `{"ids":[…]}` or
//! `{"since":"1h","source":"…","status":"…"}`.

use serde_json::{Value, json};

use super::{Filter, Redeliver};
use crate::http::Response;
use crate::ops::dlq::add_content_json;
use crate::ops::partitions::{Found, Partitions};
use crate::stream::StoreError;

/// Webhooks one API listing looks at (about 0.4 s over 1 KB entries here): a sparse filter
/// answers within that with `complete: false` and `next`, from which the caller goes on.
const API_SCAN: usize = 20_000;

pub async fn list(parts: &Partitions, query: &str) -> Response {
    let pairs = match crate::http::query_pairs(query) {
        Ok(pairs) => pairs,
        Err(why) => return Response::error(400, &why),
    };
    let pairs = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let filter = match Filter::from_pairs(pairs) {
        Ok(f) => Filter {
            max_scan: API_SCAN,
            ..f
        },
        Err(why) => return Response::error(400, &why),
    };
    if let Err(why) = parts.check_before(filter.before.as_ref()) {
        return Response::error(400, &why);
    }
    match super::list(parts, &filter, crate::clock::unix_ms()).await {
        Ok(listing) => {
            let events: Vec<Value> = listing.events.iter().map(super::Event::to_json).collect();
            let next = listing.next.map(|h| h.to_string());
            let body = json!({ "events": events, "complete": listing.complete, "next": next });
            Response::json(200, body.to_string())
        }
        Err(e) => unavailable(&e),
    }
}

pub async fn show(parts: &Partitions, id: &str) -> Response {
    match super::show(parts, id).await {
        Ok(Found::One {
            value: (ev, entry), ..
        }) => {
            let mut v = ev.detail_json();
            add_content_json(&entry, &mut v);
            Response::json(200, v.to_string())
        }
        Ok(Found::Nothing) => Response::error(404, "no such webhook"),
        Ok(Found::Ambiguous(candidates)) => Response::json(
            409,
            json!({ "error": "the id names a webhook in several partitions", "candidates": candidates })
                .to_string(),
        ),
        Err(e) => unavailable(&e),
    }
}

pub async fn redeliver(parts: &Partitions, body: &[u8]) -> Response {
    let what = match selection(body) {
        Ok(w) => w,
        Err(why) => return Response::error(400, &why),
    };
    match super::redeliver(parts, &what, crate::clock::unix_ms()).await {
        Ok(out) => {
            for (id, new_id) in &out.done {
                log::info!("redelivering {id} as {new_id} (admin API)");
            }
            let status = match (out.unknown.is_empty(), out.all_done()) {
                (_, true) => 200,
                (false, _) => 404,
                (true, false) => 409,
            };
            Response::json(status, out.to_json().to_string())
        }
        Err(e) => unavailable(&e),
    }
}

/// `{"ids":[…]}`, or a filter with at least `since`.
fn selection(body: &[u8]) -> Result<Redeliver, String> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "body must be JSON".to_owned())?;
    if let Some(ids) = v.get("ids") {
        let ids: Option<Vec<String>> = ids
            .as_array()
            .map(|a| a.iter().map(|i| i.as_str().map(str::to_owned)).collect())
            .unwrap_or(None);
        return match ids {
            Some(ids) if !ids.is_empty() => Ok(Redeliver::Ids(ids)),
            _ => Err("ids must be a non-empty list of strings".into()),
        };
    }
    let Some(obj) = v.as_object().filter(|o| o.contains_key("since")) else {
        return Err(r#"expected {"ids":[...]} or {"since":"1h",...}"#.into());
    };
    let mut pairs = Vec::new();
    for (k, val) in obj {
        let val = val.as_str().ok_or(format!("{k} must be a string"))?;
        pairs.push((k.as_str(), val));
    }
    Filter::from_pairs(pairs).map(Redeliver::Matching)
}

fn unavailable(e: &StoreError) -> Response {
    log::warn!("admin request failed: {}", crate::error::Report(e));
    Response::error(503, "redis unavailable").with_header("Retry-After", "5")
}
