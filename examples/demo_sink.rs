//! The local app of `scripts/demo.sh`: prints every webhook it receives, checks that Meta's
//! `X-Hub-Signature-256` still verifies over the delivered bytes, and answers `200`, except
//! the first time it sees a body containing `"reject"` (answered `422`, so the demo can show
//! a dead letter and its replay).
//!
//! `cargo run --example demo_sink -- LISTEN APP_SECRET`
// Not shipped: spawns its tasks directly (clippy.toml asks the relay's code to use its task module).
#![allow(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use crm_relay::http::{self, Limits, Request, Response};
use crm_relay::shutdown;
use hmac::{Hmac, Mac};
use sha2::Sha256;

struct Sink {
    secret: String,
    seen: Mutex<HashSet<Vec<u8>>>,
}

impl Sink {
    fn verdict(&self, req: &Request) -> &'static str {
        let Some(sig) = req.head.header_values("x-hub-signature-256").next() else {
            return "no signature (API key)";
        };
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.secret.as_bytes()).expect("any key length");
        mac.update(&req.body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if sig == format!("sha256={hex}") {
            "signature verifies"
        } else {
            "SIGNATURE MISMATCH"
        }
    }
}

impl http::Handler for Sink {
    async fn handle(&self, req: Request) -> Response {
        let h = |n: &str| req.head.header_values(n).next().unwrap_or("-").to_owned();
        let reject = req.body.windows(8).any(|w| w == b"\"reject\"")
            && self.seen.lock().unwrap().insert(req.body.clone());
        let status = if reject { 422 } else { 200 };
        println!(
            "sink: {} {} X-Relay-Id={} attempt={} source={} {} bytes, {} -> {status}",
            req.head.method,
            req.head.path(),
            h("x-relay-id"),
            h("x-relay-attempt"),
            h("x-relay-source"),
            req.body.len(),
            self.verdict(&req),
        );
        let _ = std::io::stdout().flush();
        Response::text(
            status,
            if reject {
                "rejected by the demo app"
            } else {
                "ok"
            },
        )
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (listen, secret) = match args.as_slice() {
        [_, l, s] => (l.clone(), s.clone()),
        _ => {
            eprintln!("usage: demo_sink LISTEN APP_SECRET");
            std::process::exit(2);
        }
    };
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .expect("bind the sink");
    let sink = Arc::new(Sink {
        secret,
        seen: Mutex::new(HashSet::new()),
    });
    let shutdown = shutdown::on_signals().expect("signal handlers");
    http::serve(listener, sink, Limits::new(16 << 20, 1000), shutdown).await;
}
