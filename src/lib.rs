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
//! - [`http`]: our HTTP/1.1: request heads, body framing, responses, the connection and
//!   accept loops, and the client side. Knows nothing of delivery policy.
//! - [`stream`]: every Redis command, key and field name; the stored record; the shared
//!   connection with deadlines and reconnects.
//! - [`server`]: the public role: routing, ingest, authentication (API keys, Meta, and each
//!   source's own scheme), the Meta handshake, retention, backpressure.
//! - [`client`]: the private role: the consumer-group feed, the dispatcher, delivery to
//!   each source's target, signed; `client::policy` holds the pure retry policy (jobs,
//!   backoff, breaker per target, outcome).
//! - [`ops`]: what an operator calls: the admin listener with its web inspector and live
//!   feed, events, dead-letter tools, the durability check.
//! - [`metrics`]: counters, histograms, Prometheus text.
//! - [`task`]: spawning and `block_on` through boxed futures, so tokio's task code is built
//!   once per output type, not once per `async` block.
//! - [`tls`]: rustls client settings (bundled roots plus `RELAY_CA_FILE`); [`clock`]: Unix
//!   milliseconds; [`log_limit`]: rate-limited warnings about what outsiders cause;
//!   [`base64`]: the encoding senders' signatures and secrets use.
#![forbid(unsafe_code)]

pub mod base64;
mod cli;
pub mod client;
mod clock;
pub mod command;
pub mod config;
pub mod error;
pub mod http;
mod log_limit;
pub mod metrics;
pub mod ops;
pub mod server;
pub mod shutdown;
pub mod stream;
mod task;
mod tls;
