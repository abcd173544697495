//! Spawning tasks, one tokio task type per output type.
//!
//! tokio builds its task machinery (poll, complete, cancel, join, drop: about 1.9 KB of
//! code) once for every future type and scheduler (one-thread and multi-thread). Spawned as
//! they were made, the relay's `async` blocks accounted for most of the binary's 60 copies.
//! Boxed first, they share one type per output (with `block_on`'s copies, 205 KB less), at
//! the cost of one allocation per spawn: per connection, delivery or write batch, never per
//! request on the server.
use std::future::Future;
use std::pin::Pin;
use tokio::runtime::Runtime;
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

/// The one future type spawned for an output `T`.
type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// `tokio::spawn`, boxed.
#[allow(clippy::disallowed_methods)] // the one place that spawns (clippy.toml)
pub fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> JoinHandle<T> {
    tokio::spawn(Box::pin(future) as Boxed<T>)
}

/// `JoinSet::spawn`, boxed.
#[allow(clippy::disallowed_methods)] // the one place that spawns (clippy.toml)
pub fn spawn_in<T: Send + 'static>(
    set: &mut JoinSet<T>,
    future: impl Future<Output = T> + Send + 'static,
) -> AbortHandle {
    set.spawn(Box::pin(future) as Boxed<T>)
}

/// `Runtime::block_on`, boxed: the runtime's entry code (about 4.7 KB) once per output type
/// instead of once per command.
pub fn block_on<'a, T>(runtime: &Runtime, future: impl Future<Output = T> + 'a) -> T {
    runtime.block_on(Box::pin(future) as Pin<Box<dyn Future<Output = T> + 'a>>)
}
