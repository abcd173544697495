//! What arrived and what became of it, shared by `crm-relay events`, `events show`,
//! `redeliver` and the admin API: the webhooks in the stream (retention window), each with
//! its status from the client's outcome records and the group's pending list.

use std::time::Duration;

use serde_json::{Value, json};

use crate::config::parse_duration;
use crate::ops::partitions::Handle;
use crate::stream::{State, Summary, Trace};

pub mod api;
mod lookup;
mod redeliver;
mod text;

pub use lookup::{list, list_one, show, show_one};
pub use redeliver::{Redeliver, Redelivered, redeliver};
pub use text::{show_text, table};

/// Webhooks read per round trip.
pub(super) const PAGE: usize = 500;
/// At most this many webhooks are looked at for one listing on the command line (filters
/// can be sparse; about 4 s over a million 1 KB entries here).
pub const MAX_SCAN: usize = 200_000;
/// Most events one listing returns.
pub const MAX_LIMIT: usize = 10_000;

/// Where a webhook stands for the configured group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not yet read, or read and its first attempt not finished.
    Pending,
    /// Its last attempt failed; it will be tried again.
    Retrying,
    /// The app answered `2xx`.
    Delivered,
    /// Moved to the dead-letter stream.
    Dead,
    /// Acknowledged without an outcome record (delivered by an older version, by a client
    /// of another deployment, or the record was lost): done, details unknown.
    Acknowledged,
}

impl Status {
    pub const NAMES: &'static str = "pending, retrying, delivered, dead, acknowledged";

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Retrying => "retrying",
            Status::Delivered => "delivered",
            Status::Dead => "dead",
            Status::Acknowledged => "acknowledged",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Pending,
            Status::Retrying,
            Status::Delivered,
            Status::Dead,
            Status::Acknowledged,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Whether a redelivery makes sense: the webhook is no longer being delivered.
    pub fn finished(self) -> bool {
        matches!(
            self,
            Status::Delivered | Status::Dead | Status::Acknowledged
        )
    }
}

/// A webhook's status from its outcome record, whether the group holds it, and whether
/// the group has read it at all. Pure.
pub fn status_of(trace: Option<&Trace>, pending: bool, unread: bool) -> Status {
    match trace.map(|t| t.state) {
        Some(State::Delivered) => Status::Delivered,
        Some(State::Dead) => Status::Dead,
        Some(State::Retrying) if pending => Status::Retrying,
        _ if pending || unread => Status::Pending,
        _ => Status::Acknowledged,
    }
}

/// Which webhooks a listing (or a redelivery by filter) covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Only those received within this long before now (`None`: the whole stream).
    pub since: Option<Duration>,
    pub source: Option<String>,
    pub status: Option<Status>,
    pub limit: usize,
    /// Only webhooks after this one, newest first: the next page of a listing (its `next`;
    /// labelled `<p>/<id>` over several partitions, see `Handle::resume_in`).
    pub before: Option<Handle>,
    /// At most this many webhooks are looked at (a sparse filter over a full stream).
    pub max_scan: usize,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            since: None,
            source: None,
            status: None,
            limit: 50,
            before: None,
            max_scan: MAX_SCAN,
        }
    }
}

impl Filter {
    /// From `name=value` pairs (`since`, `source`, `status`, `limit`, `before`): the admin API's query
    /// and the command line's options alike.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Filter, String> {
        let mut f = Filter::default();
        for (name, value) in pairs {
            match name {
                "since" => {
                    let d = parse_duration(value)
                        .map_err(|_| format!("since {value:?}: expected a duration like 1h"))?;
                    f.since = Some(d);
                }
                "source" => f.source = Some(value.to_owned()),
                "status" => {
                    f.status = Some(Status::parse(value).ok_or_else(|| {
                        format!("status {value:?}: expected one of {}", Status::NAMES)
                    })?);
                }
                "limit" => {
                    f.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| format!("limit {value:?}: expected 1..{MAX_LIMIT}"))?;
                }
                "before" => {
                    f.before = Some(
                        value
                            .parse()
                            .map_err(|_| format!("before {value:?}: expected an id like 1718000000000-0 or 2/1718000000000-0"))?,
                    );
                }
                other => return Err(format!("unknown filter {other:?}")),
            }
        }
        Ok(f)
    }

    fn matches(&self, s: &Summary, status: Status) -> bool {
        self.source.as_ref().is_none_or(|src| *src == s.source)
            && self.status.is_none_or(|st| st == status)
    }
}

/// One webhook and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub summary: Summary,
    pub status: Status,
    pub trace: Option<Trace>,
    /// The records of the attempts before the last, oldest first (filled by `show` only).
    pub earlier: Vec<Trace>,
}

impl Event {
    pub fn to_json(&self) -> Value {
        let s = &self.summary;
        json!({
            "id": s.id,
            "relay_id": s.relay_id,
            "received_at": s.received_at,
            "source": s.source,
            "method": s.method,
            "path": s.path,
            "remote": s.remote,
            "size": s.size,
            "redelivery_of": (!s.redelivery_of.is_empty()).then_some(&s.redelivery_of),
            "replay_of": (!s.replay_of.is_empty()).then_some(&s.replay_of),
            "status": self.status.as_str(),
            "outcome": self.trace.as_ref().map(Trace::to_json),
        })
    }

    /// `to_json` with `attempts`: every recorded attempt, oldest first (the last one is
    /// `outcome`).
    pub fn detail_json(&self) -> Value {
        let mut v = self.to_json();
        let attempts: Vec<Value> = self
            .earlier
            .iter()
            .chain(&self.trace)
            .map(Trace::to_json)
            .collect();
        v["attempts"] = Value::from(attempts);
        v
    }
}

/// A listing, newest first; `complete` is false when `MAX_SCAN` stopped it early. `next`:
/// where the following page starts (`before`), when there may be more.
pub struct Listing {
    pub events: Vec<Event>,
    pub complete: bool,
    pub next: Option<Handle>,
}

#[cfg(test)]
mod tests;
