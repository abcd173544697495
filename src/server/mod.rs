//! `crm-relay server`: the public receiver. Routes requests, authenticates webhooks, stores
//! them and answers `200` only once Redis has the entry.

pub mod auth;
pub mod retention;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::config::{Secret, ServerConfig};
use crate::http::{self, Head, Limits, Request, Response};
use crate::metrics::ServerMetrics;
use crate::shutdown::Shutdown;
use crate::stream::{Record, Store, StoreError};
use auth::Authenticator;

/// Seconds a sender is asked to wait before retrying while Redis cannot take entries.
const RETRY_AFTER_SECS: &str = "5";
/// Longest `<source>` in `/webhook/<source>`.
const MAX_SOURCE_LEN: usize = 64;

/// The server's request handler: configuration, credentials and the store.
pub struct Ingest {
    auth: Authenticator,
    verify_token: Option<Secret>,
    store: Arc<Store>,
    metrics: Arc<ServerMetrics>,
    /// Set while the stream holds `RELAY_MAX_STREAM_LEN` entries or more.
    backlog_full: Arc<AtomicBool>,
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
    fn new(
        config: &ServerConfig,
        store: Arc<Store>,
        metrics: Arc<ServerMetrics>,
        backlog_full: Arc<AtomicBool>,
    ) -> Self {
        Ingest {
            auth: Authenticator::new(&config.api_keys, &config.app_secrets),
            verify_token: config.verify_token.clone(),
            store,
            metrics,
            backlog_full,
        }
    }

    async fn ingest(&self, source: &str, req: Request) -> Response {
        let started = Instant::now();
        let resp = self.store_webhook(source, req).await;
        self.metrics.ingest.observe(started.elapsed());
        resp
    }

    async fn store_webhook(&self, source: &str, req: Request) -> Response {
        if let Err(e) = self.auth.authenticate(&req.head.headers, &req.body) {
            log::debug!(
                "unauthenticated remote={} reason={}",
                req.remote,
                e.reason()
            );
            self.metrics.requests.inc("unauthenticated");
            return Response::error(401, e.reason());
        }
        if self.backlog_full.load(Ordering::Relaxed) {
            self.metrics.requests.inc("backlog_full");
            return Response::error(503, "backlog full")
                .with_header("Retry-After", RETRY_AFTER_SECS);
        }
        let mut headers = req.head.headers;
        self.auth.strip_credentials(&mut headers);
        let record = Record {
            received_at: unix_millis(),
            method: req.head.method,
            path: req.head.target,
            source: source.to_owned(),
            remote: req.remote.to_string(),
            headers,
            body: req.body,
        };
        match self.store.append(&record).await {
            Ok(id) => {
                self.metrics.requests.inc("stored");
                Response::json(200, serde_json::json!({ "id": id }).to_string())
            }
            Err(e) => {
                self.metrics.requests.inc("unavailable");
                unavailable(&e, "webhook not stored")
            }
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
        let refusal = self.auth.precheck(&head.headers).err();
        refusal.map(|e| {
            self.metrics.requests.inc("unauthenticated");
            Response::error(401, e.reason())
        })
    }

    fn on_refused(&self, _status: u16) {
        self.metrics.requests.inc("invalid");
    }

    async fn handle(&self, req: Request) -> Response {
        let route = route(req.head.path());
        if let (Route::Webhook(source), "POST") = (&route, req.head.method.as_str()) {
            let source = (*source).to_owned();
            return self.ingest(&source, req).await;
        }
        // Everything that is not a webhook: health, handshake, 404, 405.
        self.metrics.requests.inc("other");
        match (route, req.head.method.as_str()) {
            // Meta calls the callback URL that was registered, with or without a source.
            (Route::Webhook(_), "GET" | "HEAD") => self.handshake(&req.head),
            (Route::Webhook(_), _) => Response::method_not_allowed("GET, HEAD, POST"),
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
/// Alongside: the Redis watch (health, backlog cap) and retention.
pub async fn run(
    listener: TcpListener,
    config: &ServerConfig,
    store: Arc<Store>,
    limits: Limits,
    metrics: Arc<ServerMetrics>,
    shutdown: Shutdown,
) {
    let full = Arc::new(AtomicBool::new(false));
    let handler = Arc::new(Ingest::new(config, store.clone(), metrics, full.clone()));
    let watch = tokio::spawn(watch_redis(
        store.clone(),
        config.max_stream_len,
        full,
        shutdown.clone(),
    ));
    let every = retention::interval(config.retention);
    let trim = tokio::spawn(retention::run(
        store,
        config.retention,
        every,
        shutdown.clone(),
    ));
    http::serve(listener, handler, limits, shutdown).await;
    watch.abort();
    trim.abort();
}

/// How often the backlog is sampled for the cap (it doubles as the health probe). The
/// backlog can exceed the cap by what arrives in this time.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Samples the backlog (entries not yet delivered) so that losing and regaining Redis is
/// logged (and a dead connection replaced) even while no webhook arrives, and sets `full`
/// while `max_len` or more entries wait for delivery.
async fn watch_redis(
    store: Arc<Store>,
    max_len: u64,
    full: Arc<AtomicBool>,
    mut shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let Ok(len) = store.backlog().await else { continue };
                let now_full = len >= max_len;
                if full.swap(now_full, Ordering::Relaxed) != now_full {
                    if now_full {
                        log::warn!("backlog cap reached ({len} >= RELAY_MAX_STREAM_LEN {max_len}): new webhooks get 503 until the client catches up");
                    } else {
                        log::info!("backlog below the cap again ({len} < {max_len}): accepting webhooks");
                    }
                }
            }
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
        StoreError::Refused(_) => log::warn!("{what}: {}", crate::error::Report(e)),
        _ => log::debug!("{what}: {}", crate::error::Report(e)),
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
