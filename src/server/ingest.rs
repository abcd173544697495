//! The public listener's request handler: routes, authenticates webhooks, stores them and
//! answers `200` only once Redis has the entry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::auth::{Admit, AuthError};
use super::backlog::Cap;
use super::credentials::Keyring;
use super::forwarded::{self, Cidr};
use super::handshake;
use super::route::{Route, route, without_token};
use crate::config::ServerConfig;
use crate::error::Report;
use crate::http::{self, Admission, Budget, Framing, Head, Request, Response};
use crate::log_limit::LogLimit;
use crate::metrics::ServerMetrics;
use crate::stream::{Record, Store, StoreError, relay_id};

/// Rate-limited warnings about what senders cause, one kind each.
static NO_KEY: LogLimit = LogLimit::new("refused senders: missing or invalid API key");
static BAD_SIGNATURE: LogLimit = LogLimit::new("refused senders: invalid signature");
static STALE: LogLimit =
    LogLimit::new("refused senders: signature timestamps outside the tolerance");
static OVER_BUDGET: LogLimit = LogLimit::new("refused senders: RELAY_UNVERIFIED_BUDGET exhausted");
static NOT_STORED: LogLimit = LogLimit::new("webhooks not stored: redis refused");

/// Reports what the rate-limited warnings suppressed in the last minute.
pub fn flush_logs() {
    for l in [&NO_KEY, &BAD_SIGNATURE, &STALE, &OVER_BUDGET, &NOT_STORED] {
        l.flush();
    }
    handshake::flush_logs();
    crate::stream::flush_logs();
}

/// Seconds a sender is asked to wait before retrying while Redis cannot take entries.
pub const RETRY_AFTER_SECS: &str = "5";

/// The handler: credentials, the store, the backlog cap's flag.
pub struct Ingest {
    /// API keys, app secrets, verify token: replaced on SIGHUP.
    pub keys: Arc<Keyring>,
    /// Each partition's store and backlog cap; webhooks take turns.
    partitions: Vec<(Arc<Store>, Arc<Cap>)>,
    next: AtomicUsize,
    metrics: Arc<ServerMetrics>,
    /// Bodies read before their signature can be checked share this.
    unverified: Budget,
    max_body: u64,
    trusted_proxies: Vec<Cidr>,
}

impl Ingest {
    pub fn new(
        config: &ServerConfig,
        partitions: Vec<(Arc<Store>, Arc<Cap>)>,
        metrics: Arc<ServerMetrics>,
    ) -> Self {
        let unverified = Budget::new(config.unverified_budget, metrics.unverified_bytes.clone());
        Ingest {
            unverified,
            keys: Arc::new(Keyring::new(config)),
            partitions,
            next: AtomicUsize::new(0),
            metrics,
            max_body: config.max_body,
            trusted_proxies: config.trusted_proxies.clone(),
        }
    }

    /// A webhook POST from its head: a valid key reads it; a signature reads it within the
    /// unverified budget; anything else is refused before a byte of the body is read.
    fn admit_webhook(
        &self,
        head: &Head,
        (source, token): (Option<&str>, Option<&str>),
        remote: &dyn Fn() -> String,
    ) -> Admission {
        match self
            .keys
            .current()
            .auth
            .precheck_for(source, token, &head.headers)
        {
            Ok(Admit::Key) => Admission::Vouched,
            Ok(Admit::VerifyBody) => {
                let bytes = match head.framing {
                    Framing::Length(n) => n,
                    _ => self.max_body, // chunked: as much as it may grow to
                };
                match self.unverified.try_reserve(bytes) {
                    Some(r) => Admission::Read(Some(r)),
                    None => {
                        self.metrics.requests.inc("over_budget");
                        OVER_BUDGET.warn(|| {
                            format!(
                                "refused {}: too many signed uploads being read at once (503)",
                                remote()
                            )
                        });
                        Admission::Refuse(
                            Response::error(503, "too many uploads being verified")
                                .with_header("Retry-After", "1"),
                        )
                    }
                }
            }
            Err(e) => Admission::Refuse(self.unauthenticated(e, remote)),
        }
    }

    /// `401`; `remote` is formatted only when the (rate-limited) warning is written.
    fn unauthenticated(&self, e: AuthError, remote: &dyn Fn() -> String) -> Response {
        self.metrics.requests.inc("unauthenticated");
        let limit = match e {
            AuthError::MissingCredentials => &NO_KEY,
            AuthError::BadSignature => &BAD_SIGNATURE,
            AuthError::Stale { .. } => &STALE,
        };
        limit.warn(|| format!("refused {}: {} (401)", remote(), e.explained()));
        Response::error(401, e.reason())
    }

    async fn ingest(&self, source: Option<&str>, token: Option<&str>, req: Request) -> Response {
        let started = req.started;
        let resp = self.store_webhook(source, token, req).await;
        self.metrics.ingest.observe(started.elapsed());
        resp
    }

    async fn store_webhook(
        &self,
        source: Option<&str>,
        token: Option<&str>,
        req: Request,
    ) -> Response {
        let remote = forwarded::remote(req.remote, &req.head.headers, &self.trusted_proxies);
        let keys = self.keys.current();
        // The body is read: this is both the record's time and the signatures' "now".
        let received_at = crate::clock::unix_ms();
        let now = received_at / 1000;
        let checked = keys.auth.authenticate_for(
            source,
            token,
            &req.head.headers,
            &req.body,
            now,
            req.vouched,
        );
        if let Err(e) = checked {
            return self.unauthenticated(e, &|| remote.clone());
        }
        // Slack checks a Request URL by sending a signed challenge it wants echoed: a
        // handshake, like Meta's GET, not a webhook.
        if keys.auth.scheme_of(source) == Some(super::Scheme::Slack)
            && let Some(challenge) = slack_challenge(&req.body)
        {
            self.metrics.requests.inc("other");
            return Response::text(200, challenge);
        }
        let mut headers = req.head.headers;
        keys.auth.strip_credentials_for(source, &mut headers);
        // A URL token is a credential: never stored.
        let path = match token {
            Some(_) => without_token(&req.head.target),
            None => req.head.target,
        };
        let record = Record {
            received_at,
            method: req.head.method,
            path,
            source: source.unwrap_or_default().to_owned(),
            remote,
            headers,
            body: req.body,
            relay_id: relay_id::new(received_at),
        };
        let (store, cap) = match self.partitions.len() {
            1 => &self.partitions[0],
            n => &self.partitions[self.next.fetch_add(1, Ordering::Relaxed) % n],
        };
        let appending = cap.appending();
        let stored = match appending.exact {
            false => store.append(&record).await.map(Some),
            true => store.append_below(&record, cap.max).await,
        };
        match stored {
            Ok(Some(id)) => {
                appending.stored();
                self.metrics.requests.inc("stored");
                self.metrics.stored_by_source.inc(&record.source);
                // Both ids are ASCII letters, digits and `-`: nothing to escape.
                let mut body = String::with_capacity(32 + id.len() + record.relay_id.len());
                for part in [
                    r#"{"id":""#,
                    &id,
                    r#"","relay_id":""#,
                    &record.relay_id,
                    r#""}"#,
                ] {
                    body.push_str(part);
                }
                Response::json(200, body)
            }
            Ok(None) => {
                self.metrics.requests.inc("backlog_full");
                Response::error(503, "backlog full").with_header("Retry-After", RETRY_AFTER_SECS)
            }
            Err(e) => {
                self.metrics.requests.inc("unavailable");
                unavailable(&e, "webhook not stored")
            }
        }
    }
}

impl http::Handler for Ingest {
    /// Only webhook POSTs carry a body worth reading; every other request with one is
    /// answered from its head.
    fn admit(&self, head: &Head, peer: std::net::SocketAddr) -> Admission {
        match (route(head.path()), head.method.as_str()) {
            (Route::Webhook(source, token), "POST") => {
                // The sender's address is only needed to log a refusal: formatted then.
                let remote = || forwarded::remote(peer, &head.headers, &self.trusted_proxies);
                self.admit_webhook(head, (source, token), &remote)
            }
            (route, method) => {
                self.metrics.requests.inc("other");
                Admission::Refuse(without_body(route, method))
            }
        }
    }

    fn on_refused(&self, _status: u16) {
        self.metrics.requests.inc("invalid");
    }

    fn log_path<'a>(&self, path: &'a str) -> std::borrow::Cow<'a, str> {
        match route(path) {
            Route::Webhook(_, Some(_)) => without_token(path).into(),
            _ => path.into(),
        }
    }

    async fn handle(&self, req: Request) -> Response {
        let route = route(req.head.path());
        if let (Route::Webhook(source, token), "POST") = (&route, req.head.method.as_str()) {
            let (source, token) = (source.map(str::to_owned), token.map(str::to_owned));
            return self.ingest(source.as_deref(), token.as_deref(), req).await;
        }
        // Everything that is not a webhook: health, handshake, 404, 405.
        self.metrics.requests.inc("other");
        match (route, req.head.method.as_str()) {
            // Meta calls the callback URL that was registered, with or without a source.
            (Route::Webhook(_, None), "GET" | "HEAD") => {
                handshake::answer(self.keys.current().verify_token.as_ref(), &req.head)
            }
            (Route::Health, "GET" | "HEAD") => {
                let stores: Vec<_> = self.partitions.iter().map(|(s, _)| s.clone()).collect();
                crate::ops::health(&stores).await
            }
            (route, method) => without_body(route, method),
        }
    }
}

/// The answer to a request that is not a webhook POST, health check or handshake.
fn without_body(route: Route<'_>, method: &str) -> Response {
    match (route, method) {
        (Route::Webhook(..), "GET" | "HEAD") | (Route::Health, "GET" | "HEAD") => {
            Response::error(400, "a GET carries no body")
        }
        (Route::Webhook(_, None), _) => Response::method_not_allowed("GET, HEAD, POST"),
        (Route::Webhook(..), _) => Response::method_not_allowed("POST"),
        (Route::Health, _) => Response::method_not_allowed("GET, HEAD"),
        (Route::NotFound, _) => Response::error(404, "not found"),
    }
}

/// `503` with `Retry-After`: the sender keeps the webhook and tries again.
fn unavailable(e: &StoreError, what: &str) -> Response {
    match e {
        StoreError::Refused(_) | StoreError::NotReplicated { .. } => {
            NOT_STORED.warn(|| format!("{what}: {}", Report(e)))
        }
        _ => log::debug!("{what}: {}", Report(e)),
    }
    Response::error(503, "storage unavailable").with_header("Retry-After", RETRY_AFTER_SECS)
}

/// The `challenge` of Slack's `{"type":"url_verification","challenge":…}`.
fn slack_challenge(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    (v["type"] == "url_verification").then(|| v["challenge"].as_str().map(str::to_owned))?
}
