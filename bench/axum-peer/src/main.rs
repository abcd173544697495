//! What a team would write instead of crm-relay's server, doing the same work per webhook:
//! the API-key check, the same record fields (headers as JSON pairs), XADD over one
//! multiplexed redis-rs connection, `200 {"id":…}`. Config: REDIS_URL, RELAY_LISTEN,
//! RELAY_API_KEYS (one key), RELAY_STREAM.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use redis::aio::MultiplexedConnection;

#[derive(Clone)]
struct App {
    redis: MultiplexedConnection,
    key: String,
    stream: String,
}

async fn webhook(
    State(app): State<App>,
    source: Option<Path<String>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = headers.get("x-api-key").map(|v| v.as_bytes());
    if key != Some(app.key.as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            r#"{"error":"missing or invalid API key"}"#,
        )
            .into_response();
    }
    let pairs: Vec<serde_json::Value> = headers
        .iter()
        .filter(|(n, _)| *n != "x-api-key")
        .map(|(n, v)| serde_json::json!([n.as_str(), String::from_utf8_lossy(v.as_bytes())]))
        .collect();
    let received_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut cmd = redis::cmd("XADD");
    cmd.arg(&app.stream)
        .arg("*")
        .arg("v")
        .arg("1")
        .arg("received_at")
        .arg(received_at)
        .arg("method")
        .arg(method.as_str())
        .arg("path")
        .arg(uri.path())
        .arg("source")
        .arg(source.map(|Path(s)| s).unwrap_or_default())
        .arg("remote")
        .arg(remote.ip().to_string())
        .arg("headers")
        .arg(serde_json::Value::Array(pairs).to_string())
        .arg("body")
        .arg(&body[..]);
    let mut conn = app.redis.clone();
    match cmd.query_async::<String>(&mut conn).await {
        Ok(id) => (StatusCode::OK, format!(r#"{{"id":"{id}"}}"#)).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"error":"storage unavailable"}"#,
        )
            .into_response(),
    }
}

#[tokio::main]
async fn main() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
    let client =
        redis::Client::open(env("REDIS_URL", "redis://127.0.0.1:6379")).expect("REDIS_URL");
    let app = App {
        redis: client
            .get_multiplexed_async_connection()
            .await
            .expect("redis"),
        key: env("RELAY_API_KEYS", "bench-key"),
        stream: env("RELAY_STREAM", "bench:axum"),
    };
    let router = Router::new()
        .route("/webhook", post(webhook))
        .route("/webhook/{source}", post(webhook))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(env("RELAY_LISTEN", "127.0.0.1:8090"))
        .await
        .expect("bind");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
    .expect("serve");
}
