//! Checks that a panic still costs one connection, not the process, in a build made with
//! particular settings: `scripts/build-static.sh` builds this probe exactly as it builds the
//! shipped binary (with the standard library rebuilt, see there) and runs it.
//!
//! On each runtime the relay uses (one thread, several threads), it serves HTTP with a
//! handler that panics on `/panic`, asks for `/panic` (the connection must close without an
//! answer), then for `/ok` three times (each must be answered). Exit 0 when all of that held,
//! 1 with the reason otherwise. The panic's own message on stderr is expected.
//!
//! `cargo run --example unwind_probe`
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crm_relay::http::{self, Limits, Request, Response};
use crm_relay::shutdown;

struct Panicky;

impl http::Handler for Panicky {
    async fn handle(&self, req: Request) -> Response {
        if req.head.path() == "/panic" {
            panic!("unwind_probe: the deliberate panic");
        }
        Response::text(200, "fine")
    }
}

/// Sends one request on a new connection; the whole answer, empty if none came.
fn ask(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut conn = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let head = format!("GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n");
    conn.write_all(head.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut answer = Vec::new();
    match conn.read_to_end(&mut answer) {
        Ok(_) => Ok(String::from_utf8_lossy(&answer).into_owned()),
        // A reset is also "no answer": the panicking connection may be dropped either way.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(String::new()),
        Err(e) => Err(format!("read {path}: {e}")),
    }
}

fn probe(runtime: tokio::runtime::Runtime, name: &str) -> Result<(), String> {
    let (trigger, stop) = shutdown::channel();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = runtime.spawn(http::serve(
        listener,
        Arc::new(Panicky),
        Limits::new(1024, 16),
        stop,
    ));
    // The asking runs on the runtime's blocking pool; the server is served meanwhile (with
    // one thread, inside this `block_on`).
    let asked = runtime.spawn_blocking(move || -> Result<(), String> {
        let answer = ask(addr, "/panic")?;
        if !answer.is_empty() {
            return Err(format!("/panic was answered: {answer:?}"));
        }
        for _ in 0..3 {
            let answer = ask(addr, "/ok")?;
            if !answer.starts_with("HTTP/1.1 200") || !answer.ends_with("fine") {
                return Err(format!("/ok after the panic: {answer:?}"));
            }
        }
        Ok(())
    });
    let result = runtime
        .block_on(asked)
        .unwrap_or_else(|e| Err(format!("the asking task: {e}")));
    trigger.trigger();
    runtime
        .block_on(server)
        .map_err(|e| format!("the server task: {e}"))?;
    result.map_err(|e| format!("{name} runtime: {e}"))
}

fn main() -> ExitCode {
    let runtimes = [
        ("one-thread", tokio::runtime::Builder::new_current_thread()),
        ("multi-thread", tokio::runtime::Builder::new_multi_thread()),
    ];
    for (name, mut builder) in runtimes {
        let runtime = match builder.enable_all().build() {
            Ok(runtime) => runtime,
            Err(e) => {
                eprintln!("unwind_probe: cannot start the {name} runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = probe(runtime, name) {
            eprintln!("unwind_probe: FAILED: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("unwind_probe: a panic cost one connection, on both runtimes");
    ExitCode::SUCCESS
}
