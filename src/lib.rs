//! crm-relay: a public server stores every webhook in a Redis Stream; a private client
//! delivers each one to a local application, at least once.
//!
//! # Layout
//!
//! - [`cli`]: argument parsing and the `--help` text.
//! - [`config`]: configuration from a lookup function, validated at start; `Secret`.
//! - [`error`]: boundary errors and `Report`, which prints a cause chain.
//! - [`shutdown`]: SIGINT ∪ SIGTERM → a watch channel every long loop selects on.
//! - [`http`]: our HTTP/1.1 server side: request heads, body framing, responses,
//!   the connection and accept loops.
//! - [`auth`]: API keys and `X-Hub-Signature-256`, constant-time.
//! - [`stream`]: every Redis command, key and field name; the stored record; the shared
//!   connection with deadlines and reconnects.
//! - [`server`]: routing, ingest, health and the Meta handshake.
#![forbid(unsafe_code)]

pub mod auth;
pub mod backoff;
pub mod breaker;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod http;
pub mod outcome;
pub mod server;
pub mod shutdown;
pub mod stream;
