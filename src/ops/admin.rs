//! The admin listener of both roles (loopback by default, never the public one): the web
//! inspector at `/`, its live feed at `/live`, `/health`, `/metrics` in Prometheus text
//! format, the events API and the dead-letter API.

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
    /// Every partition's store.
    stores: Vec<Arc<Store>>,
    store: Arc<Store>,
    access: Access,
    live: Live,
}

impl Admin {
    pub fn new(role: Role, stores: Vec<Arc<Store>>, access: Access) -> Admin {
        Admin {
            live: Live::new(stores[0].clone()),
            role,
            store: stores[0].clone(),
            stores,
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
        Some((config.listen, Admin::new(role, stores, Access::new(config))))
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
            ("/health", "GET" | "HEAD") => super::health(&self.stores).await,
            ("/metrics", "GET" | "HEAD") => self.metrics().await,
            ("/dlq", "GET" | "HEAD") => self.list(&req.head).await,
            ("/dlq/replay", "POST") => self.replay(&req.body).await,
            ("/dlq/replay", _) => Response::method_not_allowed("POST"),
            ("/events", "GET" | "HEAD") => {
                events::api::list(&self.store, req.head.query().unwrap_or("")).await
            }
            ("/events/redeliver", "POST") => events::api::redeliver(&self.store, &req.body).await,
            ("/events/redeliver", _) => Response::method_not_allowed("POST"),
            ("/health" | "/metrics" | "/dlq" | "/events", _) => {
                Response::method_not_allowed("GET, HEAD")
            }
            (p, m) if p.starts_with("/events/") => match m {
                "GET" | "HEAD" => events::api::show(&self.store, &p["/events/".len()..]).await,
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
        let up = self.store.ping().await.is_ok();
        redis_gauges(&self.store, role, up, &mut out).await;
        let mut resp = Response::text(200, out);
        resp.headers[0].1 = "text/plain; version=0.0.4; charset=utf-8".to_owned();
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
        match self.store.dlq_list(limit).await {
            Ok(entries) => {
                let list: Vec<Value> = entries.iter().map(dlq::summary_json).collect();
                Response::json(200, json!({ "entries": list }).to_string())
            }
            Err(e) => unavailable(&e),
        }
    }

    async fn show(&self, id: &str) -> Response {
        let Ok(id) = id.parse() else {
            return Response::error(404, "no such dead letter");
        };
        match self.store.dlq_get(id).await {
            Ok(Some(entry)) => Response::json(200, dlq::detail_json(&entry).to_string()),
            Ok(None) => Response::error(404, "no such dead letter"),
            Err(StoreError::Refused(_)) => Response::error(404, "no such dead letter"),
            Err(e) => unavailable(&e),
        }
    }

    async fn replay(&self, body: &[u8]) -> Response {
        let sel = match selection(body) {
            Ok(s) => s,
            Err(why) => return Response::error(400, why),
        };
        match dlq::replay(&self.store, &sel).await {
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
                let status = if out.unknown.is_empty() { 200 } else { 404 };
                Response::json(
                    status,
                    json!({ "replayed": replayed, "unknown": out.unknown }).to_string(),
                )
            }
            Err(e) => unavailable(&e),
        }
    }

    async fn delete(&self, id: &str) -> Response {
        match dlq::purge(&self.store, &Selection::Ids(vec![id.to_owned()])).await {
            Ok(out) if out.unknown.is_empty() => {
                log::info!("purged dead letter {id}");
                Response::json(200, json!({ "deleted": id }).to_string())
            }
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

fn unavailable(e: &StoreError) -> Response {
    log::warn!("admin request failed: {}", crate::error::Report(e));
    Response::error(503, "redis unavailable").with_header("Retry-After", "5")
}

/// The gauges read from Redis at scrape time. Both roles' listeners export them, labelled
/// `role`, so that a deployment scraping both does not count them twice (`sum by (role)`, or
/// `{role="server"}`), and one scraping either sees them.
async fn redis_gauges(store: &Store, role: &str, up: bool, out: &mut String) {
    let one = |out: &mut String, name: &str, help: &str, labels: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{role=\"{role}\"{labels}}} {v}"
        );
    };
    one(
        out,
        "relay_redis_up",
        "1 while Redis answers.",
        "",
        u64::from(up),
    );
    if !up {
        return;
    }
    let len = store.len(store.stream()).await;
    if let (Ok(groups), Ok(len)) = (store.groups().await, &len) {
        let _ = writeln!(
            out,
            "# HELP relay_backlog Entries not yet delivered (unread plus pending), per group.\n# TYPE relay_backlog gauge"
        );
        for g in &groups {
            let _ = writeln!(
                out,
                "relay_backlog{{role=\"{role}\",group=\"{}\"}} {}",
                crate::metrics::label(&g.name),
                g.backlog(*len)
            );
        }
        let _ = writeln!(
            out,
            "# HELP relay_pending Entries read but not yet acknowledged, per group.\n# TYPE relay_pending gauge"
        );
        for g in &groups {
            let _ = writeln!(
                out,
                "relay_pending{{role=\"{role}\",group=\"{}\"}} {}",
                crate::metrics::label(&g.name),
                g.pending
            );
        }
    }
    if let Ok(n) = store.len(store.dlq()).await {
        one(
            out,
            "relay_dlq_length",
            "Entries in the dead-letter stream.",
            "",
            n,
        );
    }
    if let Ok(n) = len {
        one(
            out,
            "relay_stream_length",
            "Entries in the main stream.",
            "",
            n,
        );
    }
}
