//! `crm-relay check [server|client]`: a role's whole configuration, then what it will meet:
//! Redis (reachable, durable, new enough, the user's permissions) and, for the client, its
//! target (reachable, its TLS certificate trusted). Prints one line per finding.

use crate::cli::Role;
use crate::config::{ClientConfig, CommonConfig, Lookup, ServerConfig};
use crate::error::{ConfigError, Report};
use crate::http::client::{Client, Endpoint, SendError};
use crate::ops::durability::{self, Finding, Level};
use crate::stream::{Layout, Store};

/// Checks, prints, and says whether everything found is usable. `Err` for an invalid
/// configuration (exit 2).
pub async fn run(get: Lookup<'_>, role: Option<Role>) -> Result<bool, ConfigError> {
    let common = CommonConfig::load(get)?;
    let has = |name: &str| get(name).is_some_and(|v| !v.trim().is_empty());
    let server = match role {
        Some(Role::Server) => true,
        Some(Role::Client) => false,
        None => has("RELAY_API_KEYS") || has("RELAY_META_APP_SECRET"),
    };
    let client = match role {
        Some(Role::Client) => true,
        Some(Role::Server) => false,
        None => has("RELAY_TARGET_URL"),
    };
    let mut findings = Vec::new();
    if server {
        let c = ServerConfig::load(get)?;
        println!("ok: server configuration: {}", c.summary());
    }
    let client_config = match client {
        true => Some(ClientConfig::load(get)?),
        false => None,
    };
    if let Some(c) = &client_config {
        println!("ok: client configuration: {}", c.summary());
    }
    println!(
        "redis: {} ({})",
        common.redis_display(),
        common.topology.display()
    );
    match Store::partitions(&common) {
        Ok(stores) => {
            // Where each partition lives; each node is inspected once.
            let mut nodes = std::collections::HashSet::new();
            for store in &stores {
                let node = match store.placement().await {
                    Ok(None) => "REDIS_URL".to_owned(),
                    Ok(Some(place)) => {
                        findings.push(Finding {
                            level: Level::Ok,
                            text: format!("{}: {place}", store.stream()),
                        });
                        place.rsplit(" at ").next().unwrap_or_default().to_owned()
                    }
                    Err(e) => {
                        findings.push(Finding {
                            level: Level::Fail,
                            text: format!("{}: no node found: {}", store.stream(), Report(&e)),
                        });
                        continue;
                    }
                };
                if nodes.insert(node) {
                    findings.extend(durability::inspect(store).await);
                    findings.extend(durability::permissions(store, server, client).await);
                    findings.extend(durability::writes(store).await);
                    if common.topology.min_replicas > 0 {
                        let want = common.topology.min_replicas;
                        findings.push(durability::replicas(store, want).await);
                    }
                }
            }
        }
        Err(e) => findings.push(Finding {
            level: Level::Fail,
            text: format!("cannot use redis: {}", Report(&e)),
        }),
    }
    // Only a Redis that answered has a layout to read (else one more line of the same error).
    if findings.iter().all(|f| f.level != Level::Fail) {
        findings.push(layout(&common, client).await);
    }
    if let Some(c) = &client_config {
        findings.push(probe("target", &c.target, c.forward_timeout).await);
        for r in &c.routes {
            let what = format!("route {}", r.source);
            findings.push(probe(&what, &r.target, c.forward_timeout).await);
        }
        if let Some(health) = &c.health {
            findings.push(probe("health URL", health, c.forward_timeout).await);
        }
    }
    let mut usable = true;
    for f in &findings {
        let tag = match f.level {
            Level::Ok => "ok",
            Level::Warn => "warning",
            Level::Fail => {
                usable = false;
                "error"
            }
        };
        println!("{tag}: {}", f.text);
    }
    println!("{}", if usable { "usable" } else { "NOT usable" });
    Ok(usable)
}

/// The partitions' layout (`stream::Layout`): for the client, webhooks left undelivered in
/// streams a changed `RELAY_PARTITIONS` no longer reads keep it from starting; the server
/// starts (it strands nothing itself), with the same words as a warning.
async fn layout(common: &CommonConfig, client: bool) -> Finding {
    let now = common.topology.partitions;
    match Layout::inspect(common).await {
        Ok(Layout::Same) => Finding {
            level: Level::Ok,
            text: format!("RELAY_PARTITIONS={now}: the layout the client recorded, or none yet"),
        },
        Ok(layout @ Layout::Stranded { .. }) if client => Finding {
            level: Level::Fail,
            text: layout.message(now).unwrap_or_default(),
        },
        Ok(layout) => Finding {
            level: Level::Warn,
            text: layout.message(now).unwrap_or_default(),
        },
        Err(e) => Finding {
            level: Level::Warn,
            text: format!("cannot read the partitions' layout: {}", Report(&e)),
        },
    }
}

/// Connects to `endpoint` (and completes the TLS handshake): reachable and trusted, or why
/// not, in the words a delivery would log.
async fn probe(what: &str, endpoint: &Endpoint, timeout: std::time::Duration) -> Finding {
    let url = endpoint.target().display();
    let client = Client::new(endpoint.clone(), timeout, 0);
    match client.probe().await {
        Ok(()) => Finding {
            level: Level::Ok,
            text: format!("{what} {url} reachable"),
        },
        // A certificate that is not trusted needs a configuration change; an app that is
        // down now may be up later, and the client holds webhooks until it is, so that alone
        // must not keep the client from starting.
        Err(e @ SendError::Tls(_)) => Finding {
            level: Level::Fail,
            text: format!("{what} {url}: {e}"),
        },
        Err(e) => Finding {
            level: Level::Warn,
            text: format!(
                "{what} {url}: {e} (the client starts anyway and holds webhooks until it answers)"
            ),
        },
    }
}
