//! What the Redis settings mean for "a 200 is never lost": checked by `crm-relay check` and
//! logged by the server at start, each finding with the exact lines that fix it.

use crate::stream::{Store, StoreError};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    /// Usable, but webhooks can be lost in some failure.
    Warn,
    /// Not usable as configured.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub text: String,
}

fn f(level: Level, text: impl Into<String>) -> Finding {
    Finding {
        level,
        text: text.into(),
    }
}

/// Oldest Redis with everything the relay uses: `XAUTOCLAIM`, `XADD … MINID`, and the
/// consumer group `lag` of `XINFO GROUPS` (7.0), without which the backlog would count
/// delivered entries and the backlog cap would refuse webhooks on a healthy relay.
const MIN_VERSION: (u32, u32) = (7, 0);

/// Connects and inspects version and persistence settings.
pub async fn inspect(store: &Store) -> Vec<Finding> {
    let version = match store.redis_version().await {
        Ok(v) => v,
        Err(e) => {
            let mut out = vec![f(
                Level::Fail,
                format!("cannot use redis: {}", crate::error::Report(&e)),
            )];
            if e.is_closed_by_peer()
                && let Some(said) = store.greeting().await
            {
                out.push(f(Level::Fail, closes_saying(&said)));
            }
            return out;
        }
    };
    let mut out = vec![version_finding(&version)];
    match settings(store).await {
        Ok(s) => out.extend(judge(&s)),
        Err(_) => out.push(f(
            Level::Warn,
            "CONFIG GET is not allowed (managed Redis?): make sure persistence is AOF with appendfsync everysec or always, and maxmemory-policy is noeviction, in your provider's settings",
        )),
    }
    out
}

/// Whether Redis takes writes now: a Redis full to its `maxmemory` or unable to save
/// (`MISCONF`) answers every webhook `503` while looking healthy to every other check. A
/// warning, not a failure: both roles start anyway and go on by themselves once Redis takes
/// writes again, and a full Redis needs the server, whose trimming frees memory. `None` where
/// `permissions` or `inspect` already say why (an ACL refusal, Redis unreachable).
pub async fn writes(store: &Store) -> Option<Finding> {
    let e = match store.probe_write().await {
        Ok(()) => return Some(f(Level::Ok, "redis takes writes")),
        Err(e) if !e.is_refusal() || e.code() == Some("NOPERM") => return None,
        Err(e) => e,
    };
    Some(f(
        Level::Warn,
        match e.code() {
            Some("OOM") => {
                "redis is full (maxmemory reached): it refuses new webhooks (the server \
                            answers 503) until memory frees; the client still delivers and \
                            acknowledges. The server trims delivered webhooks older than \
                            RELAY_RETENTION: raise maxmemory, or lower RELAY_RETENTION"
                    .to_owned()
            }
            _ => format!(
                "redis refuses writes now: {}: the server answers 503 and the client waits until \
                 it takes them again",
                crate::error::Report(&e)
            ),
        },
    ))
}

/// What a Redis that closes every new connection at once says, and what to do.
fn closes_saying(said: &str) -> String {
    let mut text = format!("redis closes every new connection at once, saying: {said}");
    if said.contains("max number of clients") {
        text.push_str(
            ": it has its maxclients connections already. `redis-cli INFO clients` counts \
             them and `CLIENT LIST` names them; stop what holds too many, or raise maxclients \
             (a managed Redis: its plan's connection limit)",
        );
    }
    text
}

/// Whether the node has the replicas `RELAY_MIN_REPLICAS` waits for: with fewer, every
/// webhook would be answered `503`.
pub async fn replicas(store: &Store, want: u32) -> Finding {
    match store.connected_replicas().await {
        Ok(n) if n >= want => f(
            Level::Ok,
            format!("{n} replicas in sync; RELAY_MIN_REPLICAS={want} waits for {want}"),
        ),
        Ok(n) => f(
            Level::Fail,
            format!(
                "RELAY_MIN_REPLICAS={want} but only {n} replicas are in sync: every webhook would get 503 (add replicas, or lower it)"
            ),
        ),
        Err(e) => f(
            Level::Warn,
            format!("cannot count replicas: {}", crate::error::Report(&e)),
        ),
    }
}

/// Whether the Redis user may run what the roles need; a missing permission is named.
pub async fn permissions(store: &Store, server: bool, client: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    for (role, needed, wanted) in [
        ("server", crate::stream::SERVER_COMMANDS, server),
        ("client", crate::stream::CLIENT_COMMANDS, client),
    ] {
        if !wanted {
            continue;
        }
        match store.denied(needed).await {
            Ok(denied) if denied.is_empty() => out.push(f(
                Level::Ok,
                format!("the redis user may run every command the {role} needs"),
            )),
            Ok(denied) => out.push(f(
                Level::Fail,
                format!(
                    "the redis user may not run {} on {}: the {role} needs them (ACL SETUSER … +{})",
                    denied.join(", "),
                    store.stream(),
                    denied
                        .iter()
                        .map(|d| d.to_ascii_lowercase().replace(' ', "|"))
                        .collect::<Vec<_>>()
                        .join(" +")
                ),
            )),
            Err(e) => out.push(f(
                Level::Fail,
                format!("cannot check permissions: {}", crate::error::Report(&e)),
            )),
        }
    }
    if client
        && matches!(store.denied(crate::stream::CLIENT_ACTIVITY).await, Ok(d) if !d.is_empty())
    {
        out.push(f(
            Level::Warn,
            format!(
                "the redis user may not PUBLISH on {0}:activity: deliveries work, but `crm-relay tail` shows arrivals only (ACL SETUSER … &{0}:activity)",
                store.stream()
            ),
        ));
    }
    out
}

/// The settings that matter, as Redis reports them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Settings {
    pub appendonly: String,
    pub appendfsync: String,
    pub maxmemory_policy: String,
    pub no_appendfsync_on_rewrite: String,
}

async fn settings(store: &Store) -> Result<Settings, StoreError> {
    let get = |name: &'static str| async move {
        store.config_get(name).await.map(Option::unwrap_or_default)
    };
    Ok(Settings {
        appendonly: get("appendonly").await?,
        appendfsync: get("appendfsync").await?,
        maxmemory_policy: get("maxmemory-policy").await?,
        no_appendfsync_on_rewrite: get("no-appendfsync-on-rewrite").await?,
    })
}

fn version_finding(version: &str) -> Finding {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if v < MIN_VERSION {
        f(
            Level::Fail,
            format!(
                "redis {version} is older than 7.0: the backlog cap needs XINFO GROUPS 'lag' (7.0); upgrade Redis"
            ),
        )
    } else {
        f(Level::Ok, format!("redis {version}"))
    }
}

/// Pure: the findings for a set of settings.
pub fn judge(s: &Settings) -> Vec<Finding> {
    let mut out = Vec::new();
    if s.appendonly != "yes" {
        out.push(f(
            Level::Warn,
            "appendonly is no: a Redis restart or crash loses accepted webhooks (RDB snapshots keep minutes at best). Fix: redis-cli CONFIG SET appendonly yes && redis-cli CONFIG REWRITE (or 'appendonly yes' in redis.conf)",
        ));
    }
    match s.appendfsync.as_str() {
        "always" => out.push(f(Level::Ok, "appendfsync always: every 200 is on disk")),
        "everysec" => out.push(f(
            Level::Ok,
            "appendfsync everysec: a power failure can lose about the last second of accepted webhooks (use 'always' to lose none)",
        )),
        other => out.push(f(
            Level::Warn,
            format!("appendfsync is {other}: the OS decides when accepted webhooks reach the disk. Fix: redis-cli CONFIG SET appendfsync everysec (or always) && redis-cli CONFIG REWRITE"),
        )),
    }
    if s.no_appendfsync_on_rewrite == "yes" {
        out.push(f(
            Level::Warn,
            "no-appendfsync-on-rewrite is yes: writes during an AOF rewrite are not fsynced. Fix: redis-cli CONFIG SET no-appendfsync-on-rewrite no && redis-cli CONFIG REWRITE",
        ));
    }
    if s.maxmemory_policy != "noeviction" {
        out.push(f(
            Level::Fail,
            format!("maxmemory-policy is {}: eviction can silently delete the whole stream. Fix: redis-cli CONFIG SET maxmemory-policy noeviction && redis-cli CONFIG REWRITE", s.maxmemory_policy),
        ));
    } else {
        out.push(f(
            Level::Ok,
            "maxmemory-policy noeviction: a full Redis refuses writes (the server answers 503)",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(aof: &str, fsync: &str, policy: &str) -> Settings {
        Settings {
            appendonly: aof.into(),
            appendfsync: fsync.into(),
            maxmemory_policy: policy.into(),
            no_appendfsync_on_rewrite: "no".into(),
        }
    }

    #[test]
    fn good_settings_have_no_warnings() {
        assert!(
            judge(&s("yes", "everysec", "noeviction"))
                .iter()
                .all(|x| x.level == Level::Ok)
        );
    }

    #[test]
    fn each_risk_is_named_with_its_fix() {
        let out = judge(&s("no", "no", "allkeys-lru"));
        let texts: Vec<&str> = out.iter().map(|x| x.text.as_str()).collect();
        assert!(
            texts
                .iter()
                .any(|t| t.starts_with("appendonly is no")
                    && t.contains("CONFIG SET appendonly yes"))
        );
        assert!(texts.iter().any(|t| t.starts_with("appendfsync is no")));
        assert!(
            out.iter()
                .any(|x| x.level == Level::Fail && x.text.contains("allkeys-lru"))
        );
    }

    #[test]
    fn versions() {
        assert_eq!(version_finding("7.0.15").level, Level::Ok);
        assert_eq!(version_finding("7.2.4").level, Level::Ok);
        assert_eq!(version_finding("6.2.0").level, Level::Fail);
        assert_eq!(version_finding("6.0.9").level, Level::Fail);
        assert_eq!(version_finding("5.0.7").level, Level::Fail);
    }
}
