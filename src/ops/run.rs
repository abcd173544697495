//! The operator commands that read the relay's state: `events`, `events show`, `redeliver`,
//! `tail`, and `health`. Each prints for a terminal (or JSON with `--json`) and says what
//! went wrong on stderr, with exit code 1.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cli::Role;
use crate::clock::unix_ms;
use crate::config::{Lookup, admin_config};
use crate::error::{Fatal, UsageError};
use crate::ops::dlq::add_content_json;
use crate::ops::events::{self, Filter, Redeliver};
use crate::ops::partitions::{Found, Handle, Partitions};
use crate::stream::StoreError;

fn failed(doing: &'static str) -> impl Fn(StoreError) -> Fatal {
    move |error| Fatal::Store { doing, error }
}

/// `events`.
pub async fn list(parts: &Partitions, filter: &Filter, json: bool) -> Result<(), Fatal> {
    parts
        .check_before(filter.before.as_ref())
        .map_err(|why| Fatal::Usage(UsageError(why)))?;
    let now = unix_ms();
    let listing = events::list(parts, filter, now)
        .await
        .map_err(failed("listing webhooks"))?;
    if json {
        let list: Vec<_> = listing.events.iter().map(events::Event::to_json).collect();
        let next = listing.next.map(|h| h.to_string());
        let v = serde_json::json!({ "events": list, "complete": listing.complete, "next": next });
        println!("{v}");
    } else {
        print!("{}", events::table(&listing, now));
    }
    Ok(())
}

/// `events show ID`.
pub async fn show(parts: &Partitions, id: Handle, json: bool) -> Result<(), Fatal> {
    match events::show(parts, &id.to_string())
        .await
        .map_err(failed("reading the webhook"))?
    {
        Found::One {
            value: (ev, entry), ..
        } if json => {
            let mut v = ev.to_json();
            add_content_json(&entry, &mut v);
            println!("{v}");
            Ok(())
        }
        Found::One {
            value: (ev, entry), ..
        } => {
            print!("{}", events::show_text(&ev, &entry));
            Ok(())
        }
        Found::Nothing => {
            eprintln!(
                "crm-relay: no webhook {id} in {} (never stored, or removed by retention)",
                parts.streams()
            );
            Err(Fatal::Reported)
        }
        Found::Ambiguous(candidates) => {
            eprintln!("crm-relay: {}", ambiguous(&id.to_string(), &candidates));
            Err(Fatal::Reported)
        }
    }
}

/// What to say of a plain id that several partitions hold.
pub fn ambiguous(id: &str, candidates: &[String]) -> String {
    format!(
        "{id} names an entry in several partitions; name one: {}",
        candidates.join(", ")
    )
}

/// `redeliver`: prints each copy; unknown, ambiguous or refused ids fail the command.
pub async fn redeliver(parts: &Partitions, what: &Redeliver) -> Result<(), Fatal> {
    let out = events::redeliver(parts, what, unix_ms())
        .await
        .map_err(failed("redelivering"))?;
    for (id, new_id) in &out.done {
        println!("redelivered {id} as {new_id}");
    }
    for id in &out.unknown {
        eprintln!("crm-relay: no webhook {id} in {}", parts.streams());
    }
    for (id, candidates) in &out.ambiguous {
        eprintln!("crm-relay: {}", ambiguous(id, candidates));
    }
    for (id, status) in &out.refused {
        eprintln!(
            "crm-relay: {id} is {}: it is still being delivered, not redelivered",
            status.as_str()
        );
    }
    println!(
        "{} redelivered, {} unknown, {} still being delivered",
        out.done.len(),
        out.unknown.len() + out.ambiguous.len(),
        out.refused.len()
    );
    out.all_done().then_some(()).ok_or(Fatal::Reported)
}

/// `health [server|client]`: `GET /health` on the admin listener; exit 0 on `200`.
pub async fn health(get: Lookup<'_>, role: Option<Role>) -> Result<(), Fatal> {
    let defaults: &[&str] = match role {
        Some(Role::Server) => &["127.0.0.1:9090"],
        Some(Role::Client) => &["127.0.0.1:9091"],
        None => &["127.0.0.1:9090", "127.0.0.1:9091"],
    };
    let mut last = String::from("no admin listener (RELAY_ADMIN_LISTEN is empty)");
    for default in defaults {
        let Some(admin) = admin_config(get, default)? else {
            break;
        };
        let token = admin.token.as_ref().map(|t| t.expose().to_owned());
        match ask_health(reachable(admin.listen), token.as_deref()).await {
            Ok(200) => {
                println!("healthy ({})", admin.listen);
                return Ok(());
            }
            Ok(status) => last = format!("{} answered {status}", admin.listen),
            Err(e) => last = format!("{}: {e}", admin.listen),
        }
        if get("RELAY_ADMIN_LISTEN").is_some() {
            break; // one configured address: no guessing
        }
    }
    eprintln!("crm-relay: unhealthy: {last}");
    Err(Fatal::Reported)
}

/// An unspecified listen address (`0.0.0.0`, `::`) is reached on loopback.
fn reachable(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

async fn ask_health(addr: SocketAddr, token: Option<&str>) -> Result<u16, String> {
    let exchange = async {
        let mut conn = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
        let req =
            format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
        conn.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        conn.take(4096)
            .read_to_end(&mut head)
            .await
            .map_err(|e| e.to_string())?;
        let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
        std::str::from_utf8(line)
            .ok()
            .and_then(|l| l.split(' ').nth(1)?.parse().ok())
            .ok_or_else(|| "not an HTTP answer".to_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| "no answer within 5 s".to_owned())?
}
