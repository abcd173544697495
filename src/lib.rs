//! crm-relay: a public server stores every webhook in a Redis Stream; a private client
//! delivers each one to a local application, at least once.
//!
//! # Layout
//!
//! - [`cli`]: argument parsing and the `--help` text.
//! - [`command`]: carrying out a command: config, logger, runtime, listeners, exit code.
//! - [`config`]: configuration from a lookup function, validated at start; `Secret`.
//! - [`error`]: boundary errors and `Report`, which prints a cause chain.
//! - [`shutdown`]: SIGINT ∪ SIGTERM → a watch channel every long loop selects on.
//! - [`http`]: our HTTP/1.1 server side: request heads, body framing, responses,
//!   the connection and accept loops.
//! - [`auth`]: API keys and `X-Hub-Signature-256`, constant-time.
//! - [`stream`]: every Redis command, key and field name; the stored record; the shared
//!   connection with deadlines and reconnects.
//! - [`server`]: routing, ingest, health and the Meta handshake, retention, backpressure.
//! - [`client`]: the consumer-group feed, the dispatcher, delivery (pure policy in
//!   `client::jobs`).
//! - [`backoff`], [`breaker`], [`outcome`]: pure retry policy pieces, clock passed in.
//! - [`metrics`]: counters, histograms, Prometheus text.
//! - [`admin`]: the admin listener of both roles: health, metrics, dead-letter API.
//! - [`dlq`]: dead-letter views and operations shared by the CLI and the admin API.
//! - [`retention`]: trimming delivered entries without ever touching undelivered ones.
//! - [`tls`]: rustls client settings (bundled roots plus `RELAY_CA_FILE`).
//! - [`durability`]: what `check` and the server's start report about Redis settings.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod backoff;
pub mod breaker;
pub mod cli;
pub mod client;
pub mod command;
pub mod config;
pub mod dlq;
pub mod durability;
pub mod error;
pub mod http;
pub mod metrics;
pub mod outcome;
pub mod retention;
pub mod server;
pub mod shutdown;
pub mod stream;
pub mod tls;
