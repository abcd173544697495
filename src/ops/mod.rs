//! What an operator calls: the admin listener of both roles (with its web inspector and live
//! feed), dead-letter tools shared by the CLI and the admin API, and the Redis durability
//! check.

pub mod access;
pub mod admin;
pub(crate) mod check;
pub(crate) mod dlq;
pub(crate) mod durability;
pub mod events;
mod inspector;
pub mod live;
pub mod partitions;
pub(crate) mod run;
pub mod tail;

use crate::http::Response;
use crate::stream::Store;

/// The `/health` answer of both listeners: `200` while Redis answers for every partition,
/// else `503` with `Retry-After`.
pub async fn health(stores: &[std::sync::Arc<Store>]) -> Response {
    for store in stores {
        if store.ping().await.is_err() {
            return Response::json(503, r#"{"status":"degraded","redis":"down"}"#)
                .with_header("Retry-After", "5");
        }
    }
    Response::json(200, r#"{"status":"ok","redis":"ok"}"#)
}
