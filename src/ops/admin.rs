//! The admin listener of both roles (loopback by default, never the public one): the web
//! inspector at `/`, its live feed at `/live`, `/health`, `/metrics` in Prometheus text
//! format, the events API and the dead-letter API.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Value, json};

use super::access::Access;
use super::inspector;
use super::live::Live;
use crate::config::AdminConfig;
use crate::http::{self, Admission, Head, Request, Response};
use crate::metrics::{ClientMetrics, ServerMetrics};
use crate::ops::dlq::{self, Selection};
use crate::ops::events;
use crate::ops::partitions::{Found, Partitions};
use crate::stream::{Store, StoreError};

/// Most dead letters one `GET /dlq` returns.
const MAX_LIST: usize = 1000;

/// Whose metrics the listener shows.
pub enum Role {
    Server(Arc<ServerMetrics>),
    Client(Arc<ClientMetrics>),
}

/// The admin request handler.
pub struct Admin {
    role: Role,
    parts: Partitions,
    access: Access,
    live: Live,
}

impl Admin {
    pub fn new(role: Role, parts: Partitions, access: Access) -> Admin {
        Admin {
            live: Live::new(parts.clone()),
            role,
            parts,
            access,
        }
    }

    /// The handler of a role's admin listener and its address (`None` when disabled).
    pub fn listener(
        config: Option<&AdminConfig>,
        role: Role,
        stores: Vec<Arc<Store>>,
    ) -> Option<(std::net::SocketAddr, Admin)> {
        let config = config?;
        let parts = Partitions::new(stores);
        Some((config.listen, Admin::new(role, parts, Access::new(config))))
    }

    fn role_name(&self) -> &'static str {
        match self.role {
            Role::Server(_) => "server",
            Role::Client(_) => "client",
        }
    }
}

impl http::Handler for Admin {
    /// A body is read only from a request that may be served.
    fn admit(&self, head: &Head, _: std::net::SocketAddr) -> Admission {
        match self.access.check(head, true) {
            Ok(()) => Admission::Read(None),
            Err(refusal) => Admission::Refuse(refusal),
        }
    }

    async fn handle(&self, req: Request) -> Response {
        let path = req.head.path().to_owned();
        let method = req.head.method.as_str();
        // The page holds no data: it loads without the token, then asks for it.
        let page = path == "/" && matches!(method, "GET" | "HEAD");
        if let Err(refusal) = self.access.check(&req.head, !page) {
            return refusal;
        }
        match (path.as_str(), method) {
            ("/", "GET" | "HEAD") => inspector::page(self.role_name()),
            ("/live", "GET") => self
                .live
                .open(req.head.header_values("last-event-id").next()),
            ("/" | "/live", _) => Response::method_not_allowed("GET"),
            ("/health", "GET" | "HEAD") => super::health(self.parts.stores()).await,
            ("/metrics", "GET" | "HEAD") => self.metrics().await,
            ("/dlq", "GET" | "HEAD") => self.list(&req.head).await,
            ("/dlq/replay", "POST") => self.replay(&req.body).await,
            ("/dlq/replay", _) => Response::method_not_allowed("POST"),
            ("/events", "GET" | "HEAD") => {
                events::api::list(&self.parts, req.head.query().unwrap_or("")).await
            }
            ("/events/redeliver", "POST") => events::api::redeliver(&self.parts, &req.body).await,
            ("/events/redeliver", _) => Response::method_not_allowed("POST"),
            ("/health" | "/metrics" | "/dlq" | "/events", _) => {
                Response::method_not_allowed("GET, HEAD")
            }
            (p, m) if p.starts_with("/events/") => match m {
                "GET" | "HEAD" => events::api::show(&self.parts, &p["/events/".len()..]).await,
                _ => Response::method_not_allowed("GET, HEAD"),
            },
            (p, m) => match p.strip_prefix("/dlq/") {
                Some(id) if m == "GET" || m == "HEAD" => self.show(id).await,
                Some(id) if m == "DELETE" => self.delete(id).await,
                Some(_) => Response::method_not_allowed("GET, HEAD, DELETE"),
                None => Response::error(404, "not found"),
            },
        }
    }
}

impl Admin {
    async fn metrics(&self) -> Response {
        let mut out = String::new();
        crate::metrics::build_info(&mut out);
        let role = match &self.role {
            Role::Server(m) => {
                m.render(&mut out);
                "server"
            }
            Role::Client(m) => {
                m.render(&mut out);
                "client"
            }
        };
        redis_gauges(&self.parts, role, &mut out).await;
        let mut resp = Response::text(200, out);
        resp.headers[0].1 = "text/plain; version=0.0.4; charset=utf-8".into();
        resp
    }

    async fn list(&self, head: &Head) -> Response {
        let limit = head
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix("limit="))
            .map(|v| v.parse::<usize>());
        let limit = match limit {
            None => 50,
            Some(Ok(n)) if (1..=MAX_LIST).contains(&n) => n,
            Some(_) => return Response::error(400, "limit must be 1..1000"),
        };
        match dlq::list(&self.parts, limit).await {
            Ok(entries) => {
                let list: Vec<Value> = entries.iter().map(dlq::summary_json).collect();
                Response::json(200, json!({ "entries": list }).to_string())
            }
            Err(e) => unavailable(&e),
        }
    }

    async fn show(&self, id: &str) -> Response {
        match dlq::get(&self.parts, id).await {
            Ok(Found::One { value, .. }) => {
                Response::json(200, dlq::detail_json(&value).to_string())
            }
            Ok(Found::Nothing) | Err(StoreError::Refused(_)) => {
                Response::error(404, "no such dead letter")
            }
            Ok(Found::Ambiguous(candidates)) => ambiguous(&candidates),
            Err(e) => unavailable(&e),
        }
    }

    async fn replay(&self, body: &[u8]) -> Response {
        let sel = match selection(body) {
            Ok(s) => s,
            Err(why) => return Response::error(400, why),
        };
        match dlq::replay(&self.parts, &sel).await {
            Ok(out) => {
                for (id, new_id) in &out.done {
                    let new_id = new_id.as_deref().unwrap_or("?");
                    log::info!("replayed dead letter {id} as {new_id}");
                }
                let replayed: Vec<Value> = out
                    .done
                    .iter()
                    .map(|(id, n)| json!({"id": id, "new_id": n}))
                    .collect();
                let status = match (out.all_done(), out.unknown.is_empty()) {
                    (true, _) => 200,
                    (false, false) => 404,
                    (false, true) => 409,
                };
                let ambiguous: Vec<Value> = out
                    .ambiguous
                    .iter()
                    .map(|(id, c)| json!({"id": id, "candidates": c}))
                    .collect();
                let body =
                    json!({ "replayed": replayed, "unknown": out.unknown, "ambiguous": ambiguous });
                Response::json(status, body.to_string())
            }
            Err(e) => unavailable(&e),
        }
    }

    async fn delete(&self, id: &str) -> Response {
        match dlq::purge(&self.parts, &Selection::Ids(vec![id.to_owned()])).await {
            Ok(out) if out.all_done() => {
                log::info!("purged dead letter {id}");
                Response::json(200, json!({ "deleted": id }).to_string())
            }
            Ok(out) if !out.ambiguous.is_empty() => ambiguous(&out.ambiguous[0].1),
            Ok(_) => Response::error(404, "no such dead letter"),
            Err(e) => unavailable(&e),
        }
    }
}

/// `{"ids":[…]}` or `{"all":true}`.
fn selection(body: &[u8]) -> Result<Selection, &'static str> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "body must be JSON")?;
    if v["all"] == json!(true) {
        return Ok(Selection::All);
    }
    let ids = v["ids"]
        .as_array()
        .ok_or(r#"expected {"ids":[...]} or {"all":true}"#)?;
    let ids: Option<Vec<String>> = ids.iter().map(|i| i.as_str().map(str::to_owned)).collect();
    match ids {
        Some(ids) if !ids.is_empty() => Ok(Selection::Ids(ids)),
        _ => Err("ids must be a non-empty list of strings"),
    }
}

/// `409`: a plain id that names an entry in several partitions.
fn ambiguous(candidates: &[String]) -> Response {
    let body =
        json!({ "error": "the id names an entry in several partitions", "candidates": candidates });
    Response::json(409, body.to_string())
}

fn unavailable(e: &StoreError) -> Response {
    log::warn!("admin request failed: {}", crate::error::Report(e));
    Response::error(503, "redis unavailable").with_header("Retry-After", "5")
}

/// The gauges read from Redis at scrape time. Both roles' listeners export them, labelled
/// `role`, so that a deployment scraping both does not count them twice (`sum by (role)`, or
/// `{role="server"}`), and one scraping either sees them.
/// With several partitions each gauge is their sum, and left out when a partition cannot be
/// read (a partial sum would look like a real drop).
async fn redis_gauges(parts: &Partitions, role: &str, out: &mut String) {
    let one = |out: &mut String, name: &str, help: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{role=\"{role}\"}} {v}"
        );
    };
    let mut up = true;
    for store in parts.stores() {
        up &= store.ping().await.is_ok();
    }
    one(
        out,
        "relay_redis_up",
        "1 while Redis answers.",
        u64::from(up),
    );
    if !up {
        return;
    }
    // group → (backlog, pending), summed over partitions.
    let mut groups: Option<BTreeMap<String, (u64, u64)>> = Some(BTreeMap::new());
    let (mut len, mut dlq) = (Some(0), Some(0));
    for store in parts.stores() {
        let stream_len = store.len(store.stream()).await.ok();
        len = len.zip(stream_len).map(|(a, b)| a + b);
        dlq = dlq
            .zip(store.len(store.dlq()).await.ok())
            .map(|(a, b)| a + b);
        groups = match (groups, store.groups().await, stream_len) {
            (Some(mut sum), Ok(gs), Some(n)) => {
                for g in gs {
                    let e = sum.entry(g.name.clone()).or_default();
                    *e = (e.0 + g.backlog(n), e.1 + g.pending);
                }
                Some(sum)
            }
            _ => None,
        };
    }
    if let Some(groups) = groups {
        for (name, help, pick) in [
            (
                "relay_backlog",
                "Entries not yet delivered (unread plus pending), per group.",
                (|v: &(u64, u64)| v.0) as fn(&(u64, u64)) -> u64,
            ),
            (
                "relay_pending",
                "Entries read but not yet acknowledged, per group.",
                |v: &(u64, u64)| v.1,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (g, v) in &groups {
                let g = crate::metrics::label(g);
                let _ = writeln!(out, "{name}{{role=\"{role}\",group=\"{g}\"}} {}", pick(v));
            }
        }
    }
    if let Some(n) = dlq {
        one(
            out,
            "relay_dlq_length",
            "Entries in the dead-letter stream.",
            n,
        );
    }
    if let Some(n) = len {
        one(out, "relay_stream_length", "Entries in the main stream.", n);
    }
}
