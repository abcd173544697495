//! The integration test crate: real redis-server processes, real sockets, real processes.
// Tests spawn their tasks directly (clippy.toml asks the relay's own code to use its task module).
#![allow(clippy::disallowed_methods)]

mod support;

mod acl;
mod appends;
mod chaos;
mod client_delivery;
mod client_process;
mod delivery;
mod edge;
mod events;
mod faults;
mod ha;
mod http_framing;
mod inspector;
mod operate;
mod partitions;
mod proxy;
mod restart;
mod senders;
mod server_faults;
mod server_ingest;
mod server_process;
mod tls;
