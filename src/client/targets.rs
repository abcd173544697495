//! Where webhooks go: the default target (`RELAY_TARGET_URL`) and one per routed source
//! (`RELAY_ROUTES`), each with its own connection pool and signer. The policy keeps each
//! target's breaker, throttling and evidence apart (`Jobs::with_routes`), so one app's outage
//! does not pause another's deliveries.

use std::collections::HashMap;
use std::sync::Arc;

use super::sign::Signer;
use crate::config::ClientConfig;
use crate::http::client::Client as Http;
use crate::metrics::ClientMetrics;
use crate::stream::Entry;

/// The name of the target of `RELAY_TARGET_URL`.
pub const DEFAULT: &str = "default";

/// One target.
pub struct Destination {
    /// `default`, or the routed source.
    pub name: String,
    pub http: Arc<Http>,
    pub signer: Option<Signer>,
}

/// Every target; index 0 is the default one.
pub struct Destinations {
    list: Vec<Destination>,
    by_source: Arc<HashMap<String, usize>>,
}

impl Destinations {
    pub fn new(config: &ClientConfig) -> Destinations {
        let http = |endpoint| {
            Arc::new(Http::new(
                endpoint,
                config.forward_timeout,
                config.concurrency,
            ))
        };
        let mut list = vec![Destination {
            name: DEFAULT.into(),
            http: http(config.target.clone()),
            signer: config.signer.clone(),
        }];
        let mut by_source = HashMap::new();
        for r in &config.routes {
            by_source.insert(r.source.clone(), list.len());
            list.push(Destination {
                name: r.source.clone(),
                http: http(r.target.clone()),
                signer: r.signer.clone(),
            });
        }
        Destinations {
            list,
            by_source: Arc::new(by_source),
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn get(&self, route: usize) -> &Destination {
        &self.list[route.min(self.list.len() - 1)]
    }

    /// The policy's router: an entry's target from its `source` field.
    pub fn router(&self) -> Box<dyn Fn(&Entry) -> usize + Send> {
        let by_source = self.by_source.clone();
        Box::new(move |entry| {
            entry
                .field("source")
                .and_then(|s| std::str::from_utf8(s).ok())
                .and_then(|s| by_source.get(s).copied())
                .unwrap_or(0)
        })
    }

    /// Lists every target in `relay_target_breaker_open`, closed.
    pub fn name_breakers(&self, metrics: &ClientMetrics) {
        *metrics
            .target_breakers
            .lock()
            .unwrap_or_else(|p| p.into_inner()) =
            self.list.iter().map(|d| (d.name.clone(), false)).collect();
    }

    /// `default → http://…, stripe → https://…` for the start line.
    pub fn display(&self) -> String {
        self.list
            .iter()
            .map(|d| format!("{} → {}", d.name, d.http.target().display()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
