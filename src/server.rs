//! `crm-relay server`: the public receiver. Routes requests, authenticates webhooks, stores
//! them and answers `200` only once Redis has the entry.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::config::{Secret, ServerConfig};
use crate::http::{self, Head, Limits, Request, Response};
use crate::shutdown::Shutdown;
use crate::stream::{Record, Store, StoreError};

/// Seconds a sender is asked to wait before retrying while Redis cannot take entries.
const RETRY_AFTER_SECS: &str = "5";
/// Longest `<source>` in `/webhook/<source>`.
const MAX_SOURCE_LEN: usize = 64;

/// The server's request handler: configuration, credentials and the store.
pub struct Ingest {
    auth: Authenticator,
    verify_token: Option<Secret>,
    store: Arc<Store>,
}

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Health,
    /// `/webhook` (source empty) or `/webhook/<source>`.
    Webhook(&'a str),
    NotFound,
}

impl Ingest {
    pub fn new(config: &ServerConfig, store: Arc<Store>) -> Self {
        Ingest {
            auth: Authenticator::new(&config.api_keys, &config.app_secrets),
            verify_token: config.verify_token.clone(),
            store,
        }
    }

    async fn ingest(&self, source: &str, req: Request) -> Response {
        if let Err(e) = self.auth.authenticate(&req.head.headers, &req.body) {
            log::debug!(
                "unauthenticated remote={} reason={}",
                req.remote,
                e.reason()
            );
            return Response::error(401, e.reason());
        }
        let record = Record {
            received_at: unix_millis(),
            method: req.head.method,
            path: req.head.target,
            source: source.to_owned(),
            remote: req.remote.to_string(),
            headers: req.head.headers,
            body: req.body,
        };
        match self.store.append(&record).await {
            Ok(id) => Response::json(200, serde_json::json!({ "id": id }).to_string()),
            Err(e) => unavailable(&e, "webhook not stored"),
        }
    }

    async fn health(&self) -> Response {
        match self.store.ping().await {
            Ok(()) => Response::json(200, r#"{"status":"ok","redis":"ok"}"#),
            Err(_) => Response::json(503, r#"{"status":"degraded","redis":"down"}"#)
                .with_header("Retry-After", RETRY_AFTER_SECS),
        }
    }

    /// Meta's subscription handshake: echo `hub.challenge` when `hub.verify_token` matches.
    fn handshake(&self, head: &Head) -> Response {
        let Some(expected) = &self.verify_token else {
            return Response::error(404, "verification handshake not configured");
        };
        let query = head.query().unwrap_or("");
        let (mut mode, mut token, mut challenge) = (None, None, None);
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            match percent_decode(k).as_deref() {
                Some("hub.mode") => mode = percent_decode(v),
                Some("hub.verify_token") => token = percent_decode(v),
                Some("hub.challenge") => challenge = percent_decode(v),
                _ => {}
            }
        }
        let token_ok =
            token.is_some_and(|t| bool::from(t.as_bytes().ct_eq(expected.expose().as_bytes())));
        match challenge {
            _ if mode.as_deref() != Some("subscribe") || !token_ok => {
                log::warn!("verification handshake refused: wrong mode or token");
                Response::error(403, "verification failed")
            }
            None => Response::error(400, "missing hub.challenge"),
            Some(c) => Response::text(200, c),
        }
    }
}

impl http::Handler for Ingest {
    fn check_head(&self, head: &Head) -> Option<Response> {
        if head.method != "POST" || !matches!(route(head.path()), Route::Webhook(_)) {
            return None;
        }
        self.auth
            .precheck(&head.headers)
            .err()
            .map(|e| Response::error(401, e.reason()))
    }

    async fn handle(&self, req: Request) -> Response {
        let method = req.head.method.as_str();
        match (route(req.head.path()), method) {
            (Route::Webhook(source), "POST") => {
                let source = source.to_owned();
                self.ingest(&source, req).await
            }
            (Route::Webhook(""), "GET" | "HEAD") => self.handshake(&req.head),
            (Route::Webhook(""), _) => Response::method_not_allowed("GET, HEAD, POST"),
            (Route::Webhook(_), _) => Response::method_not_allowed("POST"),
            (Route::Health, "GET" | "HEAD") => self.health().await,
            (Route::Health, _) => Response::method_not_allowed("GET, HEAD"),
            (Route::NotFound, _) => Response::error(404, "not found"),
        }
    }
}

/// The HTTP limits of SPEC.md with the configured body and connection limits.
pub fn limits(config: &ServerConfig) -> Limits {
    Limits::new(config.max_body, config.max_connections)
}

/// Serves the public listener with `limits` until `shutdown`, then drains open connections.
pub async fn run(
    listener: TcpListener,
    config: &ServerConfig,
    store: Arc<Store>,
    limits: Limits,
    shutdown: Shutdown,
) {
    let handler = Arc::new(Ingest::new(config, store.clone()));
    let probe = tokio::spawn(watch_redis(store, shutdown.clone()));
    http::serve(listener, handler, limits, shutdown).await;
    probe.abort();
}

/// Pings Redis every second so that losing and regaining it is logged (and the dead
/// connection replaced) even while no webhook arrives.
async fn watch_redis(store: Arc<Store>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => { let _ = store.ping().await; }
            _ = shutdown.wait() => return,
        }
    }
}

fn route(path: &str) -> Route<'_> {
    match path {
        "/health" => Route::Health,
        "/webhook" => Route::Webhook(""),
        _ => match path.strip_prefix("/webhook/") {
            Some(source) if valid_source(source) => Route::Webhook(source),
            _ => Route::NotFound,
        },
    }
}

/// `<source>`: 1–64 of `A-Za-z0-9_-`.
fn valid_source(s: &str) -> bool {
    (1..=MAX_SOURCE_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `503` with `Retry-After`: the sender keeps the webhook and tries again.
fn unavailable(e: &StoreError, what: &str) -> Response {
    match e {
        StoreError::Refused(_) => log::warn!("{what}: {e}"),
        _ => log::debug!("{what}: {e}"),
    }
    Response::error(503, "storage unavailable").with_header("Retry-After", RETRY_AFTER_SECS)
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Decodes `%XX` escapes and `+` (form encoding); `None` for invalid escapes or non-UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/health"), Route::Health);
        assert_eq!(route("/webhook"), Route::Webhook(""));
        assert_eq!(
            route("/webhook/whatsapp_1-a"),
            Route::Webhook("whatsapp_1-a")
        );
        let long = format!("/webhook/{}", "a".repeat(65));
        for p in [
            "/",
            "/webhook/",
            "/webhook/a/b",
            "/webhook/a.b",
            "/webhooks",
            long.as_str(),
        ] {
            assert_eq!(route(p), Route::NotFound, "{p}");
        }
        assert_eq!(
            route(&format!("/webhook/{}", "a".repeat(64))),
            Route::Webhook(&"a".repeat(64))
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(percent_decode("%7E%7e").as_deref(), Some("~~"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
