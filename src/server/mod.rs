//! `crm-relay server`: the public receiver. `Server::new(config)?.run(listener, shutdown)`
//! serves the public listener; alongside, the backlog cap's watch and retention.
//!
//! - [`ingest`]: routing, storing a webhook, health; [`auth`]: who may store one
//!   ([`api_keys`]: the constant-time key comparison); [`handshake`]: Meta's `GET`
//!   verification.
//! - [`backlog`]: the cap on webhooks not yet delivered; [`retention`]: trimming delivered
//!   ones without ever touching undelivered ones.

mod api_keys;
mod auth;
mod backlog;
mod credentials;
mod forwarded;
mod handshake;
mod ingest;
mod retention;
mod route;
mod schemes;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::ServerConfig;
use crate::error::Fatal;
use crate::http::{self, Limits};
use crate::metrics::ServerMetrics;
use crate::ops::admin::{Admin, Role};
use crate::shutdown::Shutdown;
use crate::stream::Store;
use ingest::Ingest;

pub use forwarded::Cidr;
pub use route::valid_source;
pub use schemes::{Scheme, SourceAuth, key_of};

/// The server role: its configuration, HTTP limits, store and metrics.
pub struct Server {
    config: ServerConfig,
    limits: Limits,
    /// One store per partition.
    stores: Vec<Arc<Store>>,
    metrics: Arc<ServerMetrics>,
}

impl Server {
    /// Opens the store (it connects lazily: the server starts while Redis is down).
    pub fn new(config: ServerConfig) -> Result<Server, Fatal> {
        let stores = Store::partitions(&config.common).map_err(|error| Fatal::Store {
            doing: "opening the redis client",
            error,
        })?;
        Ok(Server {
            limits: Limits::new(config.max_body, config.max_connections),
            config,
            stores: stores.into_iter().map(Arc::new).collect(),
            metrics: Arc::default(),
        })
    }

    /// The HTTP limits of SPEC.md with the configured body and connection limits; tests
    /// shorten its timeouts.
    pub fn limits_mut(&mut self) -> &mut Limits {
        &mut self.limits
    }

    pub fn metrics(&self) -> Arc<ServerMetrics> {
        self.metrics.clone()
    }

    /// The admin listener's handler for this role (`None` when it has none).
    pub fn admin(&self) -> Option<(SocketAddr, Admin)> {
        Admin::listener(
            self.config.admin.as_ref(),
            Role::Server(self.metrics.clone()),
            self.stores.clone(),
        )
    }

    /// The first partition's store, for the start-up durability report.
    pub fn store(&self) -> &Store {
        &self.stores[0]
    }

    /// Serves `listener` until `shutdown`, then drains open connections. With `reload`, each
    /// SIGHUP swaps in the credentials of a freshly read configuration.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: Shutdown,
        reload: Option<(tokio::signal::unix::Signal, Reload)>,
    ) {
        let config = &self.config;
        // The backlog cap is shared out: each partition holds its part of it.
        let n = self.stores.len() as u64;
        let cap = config.max_stream_len.div_ceil(n);
        let mut upkeep = tokio::task::JoinSet::new();
        let mut partitions = Vec::new();
        for store in &self.stores {
            let cap = Arc::new(backlog::Cap::new(cap));
            partitions.push((store.clone(), cap.clone()));
            crate::task::spawn_in(
                &mut upkeep,
                backlog::watch(store.clone(), cap, shutdown.clone()),
            );
            crate::task::spawn_in(
                &mut upkeep,
                retention::run(
                    store.clone(),
                    config.retention,
                    retention::interval(config.retention),
                    self.metrics.clone(),
                    shutdown.clone(),
                ),
            );
        }
        let handler = Arc::new(Ingest::new(config, partitions, self.metrics.clone()));
        let reloads = reload.map(|(hangups, reload)| {
            let (keys, started) = (handler.keys.clone(), config.summary());
            crate::task::spawn(reload_on_hangup(hangups, reload, keys, started))
        });
        let logs = crate::task::spawn(async {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
            loop {
                every.tick().await;
                ingest::flush_logs();
            }
        });
        http::serve(listener, handler, self.limits, shutdown).await;
        upkeep.abort_all();
        logs.abort();
        if let Some(r) = reloads {
            r.abort();
        }
    }
}

/// Re-reads the configuration: the environment and the env file, as at start.
pub type Reload = Box<dyn Fn() -> Result<ServerConfig, String> + Send + Sync>;

/// On each SIGHUP: new credentials from a valid configuration (what changed, by count), a
/// warning naming settings that need a restart; an invalid one changes nothing.
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    reload: Reload,
    keys: Arc<credentials::Keyring>,
    started: String,
) {
    while hangups.recv().await.is_some() {
        match reload() {
            Ok(config) => {
                log::info!("SIGHUP: credentials reloaded: {}", keys.replace(&config));
                let rest = credentials::needs_restart(&started, &config.summary());
                if !rest.is_empty() {
                    log::warn!(
                        "SIGHUP: {} changed; restart the server to apply (the running values stay)",
                        rest.join(", ")
                    );
                }
            }
            Err(e) => log::error!(
                "SIGHUP: the configuration is invalid, the running credentials stay: {e}"
            ),
        }
    }
}
