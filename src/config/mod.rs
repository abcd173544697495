//! Configuration: loaded once from a lookup function (the environment, an env file, or a test
//! map), validated at start with errors that name the variable, then passed explicitly.

mod client;
pub mod envfile;
pub mod names;
mod sources;
mod topology;
mod value;

use std::net::SocketAddr;

pub use client::{ClientConfig, RouteConfig};
pub use sources::{SourceConfig, secret_var};
pub use topology::{PARTITIONS, RedisTopology, Topology, hash_tag, partition_key, slot_of};
pub use value::{Secret, parse_count, parse_duration, parse_list, parse_size};

use crate::error::ConfigError;

/// Where configuration values come from: a variable name in, its value (if set) out.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Settings every role shares.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    /// `REDIS_URL`; may carry a password, so it is a `Secret`.
    pub redis_url: Secret,
    /// `RELAY_STREAM`: the main stream key.
    pub stream: String,
    /// `RELAY_DLQ_STREAM`: the dead-letter stream key.
    pub dlq_stream: String,
    /// `RUST_LOG`: the level of our own log lines.
    pub log_level: log::LevelFilter,
    /// `RELAY_CA_FILE`: extra PEM roots for `rediss://` and `https://`, read and checked at start.
    pub ca_pem: Option<Vec<u8>>,
    /// The system trust store (`SSL_CERT_FILE`, `SSL_CERT_DIR`, the distribution's bundle),
    /// trusted besides the bundled roots and `RELAY_CA_FILE`.
    pub system_roots: Option<crate::tls::SystemRoots>,
    /// `RELAY_GROUP`: the consumer group the client delivers for, and whose outcomes
    /// `events` reports.
    pub group: String,
    /// Sentinel or Cluster, partitions, replicas to wait for.
    pub topology: Topology,
}

/// Settings of `crm-relay server`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub common: CommonConfig,
    /// `RELAY_LISTEN`: the public address.
    pub listen: SocketAddr,
    /// `RELAY_API_KEYS`.
    pub api_keys: Vec<Secret>,
    /// `RELAY_META_APP_SECRET`: every secret a signature may be made with.
    pub app_secrets: Vec<Secret>,
    /// `RELAY_META_VERIFY_TOKEN`: enables the `GET /webhook` handshake.
    pub verify_token: Option<Secret>,
    /// `RELAY_MAX_BODY` in bytes.
    pub max_body: u64,
    /// `RELAY_MAX_CONNECTIONS`: public connections served at once.
    pub max_connections: usize,
    /// The admin listener (`/metrics`, `/health`, the DLQ API); `None` when disabled.
    pub admin: Option<AdminConfig>,
    /// `RELAY_RETENTION`: how long delivered entries stay in the stream.
    pub retention: std::time::Duration,
    /// `RELAY_MAX_STREAM_LEN`: above it new webhooks get `503`.
    pub max_stream_len: u64,
    /// `RELAY_UNVERIFIED_BUDGET`: bytes of bodies read before their signature can be checked,
    /// all connections together.
    pub unverified_budget: u64,
    /// `RELAY_TRUSTED_PROXIES`: peers whose `Forwarded`/`X-Forwarded-For` are believed.
    pub trusted_proxies: Vec<crate::server::Cidr>,
    /// `RELAY_SOURCES` with `RELAY_SECRET_<SOURCE>`: sources verified by their own scheme.
    pub sources: Vec<SourceConfig>,
    /// `RELAY_SIGNATURE_TOLERANCE`: how far a signed timestamp may be from now.
    pub signature_tolerance: std::time::Duration,
}

impl CommonConfig {
    pub fn load(get: Lookup) -> Result<Self, ConfigError> {
        Self::load_with(get, true)
    }

    /// `load`, reading the system trust store only when `system_roots`.
    fn load_with(get: Lookup, system_roots: bool) -> Result<Self, ConfigError> {
        let redis_url = var(get, "REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into());
        check_redis_url(&redis_url)?;
        let stream = non_empty(get, "RELAY_STREAM", "relay:{webhooks}")?;
        let dlq_stream = non_empty(get, "RELAY_DLQ_STREAM", "relay:{webhooks}:dlq")?;
        Ok(CommonConfig {
            redis_url: Secret::new(redis_url),
            topology: Topology::load(get, &stream, &dlq_stream)?,
            stream,
            dlq_stream,
            log_level: parse_level(get)?,
            ca_pem: ca_file(get)?,
            system_roots: system_roots
                .then(|| crate::tls::system_roots(get))
                .flatten(),
            group: client::non_blank(get, "RELAY_GROUP", "relay"),
        })
    }

    /// The roots `rediss://` trusts besides none (then the bundled ones): the system store
    /// and `RELAY_CA_FILE`, as one PEM text.
    pub fn redis_roots(&self) -> Option<Vec<u8>> {
        if self.ca_pem.is_none() && self.system_roots.is_none() {
            return None;
        }
        let mut pem = self
            .system_roots
            .as_ref()
            .map_or_else(Vec::new, |s| s.pem.clone());
        pem.extend_from_slice(self.ca_pem.as_deref().unwrap_or_default());
        Some(pem)
    }

    /// What TLS trusts, for the start line.
    pub fn trust_display(&self) -> String {
        let mut parts = vec!["bundled".to_owned()];
        if let Some(s) = &self.system_roots {
            parts.push(format!("{s:?}"));
        }
        if self.ca_pem.is_some() {
            parts.push("RELAY_CA_FILE".into());
        }
        parts.join(" + ")
    }

    /// The Redis address for log lines: scheme, host, port and database, never credentials.
    pub fn redis_display(&self) -> String {
        crate::stream::url::redacted(self.redis_url.expose())
    }
}

impl ServerConfig {
    pub fn load(get: Lookup) -> Result<Self, ConfigError> {
        // Its only TLS is rediss://: without, the system trust store would be parsed for nothing.
        let rediss = var(get, "REDIS_URL").is_some_and(|u| u.starts_with("rediss://"));
        let common = CommonConfig::load_with(get, rediss)?;
        let secrets = |name: &str| -> Vec<Secret> {
            var(get, name)
                .map_or_else(Vec::new, |v| parse_list(&v))
                .into_iter()
                .map(Secret::new)
                .collect()
        };
        let api_keys = secrets("RELAY_API_KEYS");
        let app_secrets = secrets("RELAY_META_APP_SECRET");
        let (sources, signature_tolerance) = sources::load(get)?;
        if api_keys.is_empty() && app_secrets.is_empty() && sources.is_empty() {
            return Err(ConfigError::new(
                "RELAY_API_KEYS",
                "set RELAY_API_KEYS, RELAY_META_APP_SECRET or RELAY_SOURCES: the server refuses to run without authentication",
            ));
        }
        // The docs' examples must not become a production key by copy and paste.
        if api_keys
            .iter()
            .any(|k| k.expose().to_ascii_lowercase().starts_with("change-me"))
        {
            return Err(ConfigError::new(
                "RELAY_API_KEYS",
                "holds a placeholder from the examples (change-me…): generate a key, e.g. openssl rand -hex 24",
            ));
        }
        let listen = parsed(get, "RELAY_LISTEN", "0.0.0.0:8080", |s| {
            s.parse::<SocketAddr>().map_err(|_| {
                crate::error::Invalid(format!("{s:?} is not an address like 0.0.0.0:8080"))
            })
        })?;
        let max_connections = parsed(get, "RELAY_MAX_CONNECTIONS", "10000", parse_count)?;
        let max_body = parsed(get, "RELAY_MAX_BODY", "4MiB", parse_size)?;
        let unverified_budget = parsed(get, "RELAY_UNVERIFIED_BUDGET", "16MiB", parse_size)?;
        if unverified_budget < max_body {
            return Err(ConfigError::new(
                "RELAY_UNVERIFIED_BUDGET",
                "must be at least RELAY_MAX_BODY, or a signed webhook of the largest size could never be read",
            ));
        }
        let trusted_proxies = var(get, "RELAY_TRUSTED_PROXIES")
            .map_or_else(Vec::new, |v| parse_list(&v))
            .iter()
            .map(|p| crate::server::Cidr::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::new("RELAY_TRUSTED_PROXIES", e))?;
        Ok(ServerConfig {
            common,
            listen,
            api_keys,
            app_secrets,
            verify_token: var(get, "RELAY_META_VERIFY_TOKEN").map(Secret::new),
            max_body,
            max_connections: usize::try_from(max_connections)
                .map_err(|_| ConfigError::new("RELAY_MAX_CONNECTIONS", "too large"))?,
            admin: admin_config(get, "127.0.0.1:9090")?,
            retention: parsed(get, "RELAY_RETENTION", "24h", parse_duration)?,
            max_stream_len: parsed(get, "RELAY_MAX_STREAM_LEN", "1000000", parse_count)?,
            unverified_budget,
            trusted_proxies,
            sources,
            signature_tolerance,
        })
    }

    /// The effective configuration for the start-up log line: no secret, only counts.
    pub fn summary(&self) -> String {
        format!(
            "listen={} admin={} redis={} {} tls_trust={} stream={} retention={:?} max_stream_len={} api_keys={} app_secrets={} verify_token={} max_body={} unverified_budget={} max_connections={} trusted_proxies={} sources={} log={}",
            self.listen,
            admin_display(self.admin.as_ref()),
            self.common.redis_display(),
            self.common.topology.display(),
            self.common.trust_display(),
            self.common.stream,
            self.retention,
            self.max_stream_len,
            self.api_keys.len(),
            self.app_secrets.len(),
            if self.verify_token.is_some() {
                "set"
            } else {
                "unset"
            },
            self.max_body,
            self.unverified_budget,
            self.max_connections,
            self.trusted_proxies.len(),
            sources::display(&self.sources),
            self.common.log_level,
        )
    }
}

/// The admin listener of a role.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `RELAY_ADMIN_LISTEN`.
    pub listen: SocketAddr,
    /// `RELAY_ADMIN_TOKEN`: required as `Authorization: Bearer` when set.
    pub token: Option<Secret>,
    /// `RELAY_ADMIN_HOSTS`: `Host` names accepted besides loopback and the listen address.
    pub hosts: Vec<String>,
}

/// `RELAY_ADMIN_LISTEN` (unset → `default`; set but empty → disabled), with its token and
/// hosts. A listener beyond loopback must have a token.
pub fn admin_config(get: Lookup, default: &str) -> Result<Option<AdminConfig>, ConfigError> {
    let raw = get("RELAY_ADMIN_LISTEN").unwrap_or_else(|| default.to_owned());
    if raw.trim().is_empty() {
        return Ok(None);
    }
    let listen: SocketAddr = raw.trim().parse().map_err(|_| {
        ConfigError::new(
            "RELAY_ADMIN_LISTEN",
            format!("{raw:?} is not an address like 127.0.0.1:9090 (empty disables)"),
        )
    })?;
    let token = var(get, "RELAY_ADMIN_TOKEN").map(|t| Secret::new(t.trim()));
    if token.is_none() && !listen.ip().is_loopback() {
        return Err(ConfigError::new(
            "RELAY_ADMIN_TOKEN",
            format!(
                "required when RELAY_ADMIN_LISTEN ({listen}) is not a loopback address: the admin API can read and replay every webhook"
            ),
        ));
    }
    Ok(Some(AdminConfig {
        listen,
        token,
        hosts: var(get, "RELAY_ADMIN_HOSTS").map_or_else(Vec::new, |v| parse_list(&v)),
    }))
}

/// The admin listener for the start-up line: its address, and whether a token guards it.
fn admin_display(admin: Option<&AdminConfig>) -> String {
    match admin {
        None => "off".to_owned(),
        Some(a) if a.token.is_some() => format!("{} (token)", a.listen),
        Some(a) => a.listen.to_string(),
    }
}

/// A variable's value; set-but-blank counts as unset.
fn var(get: Lookup, name: &str) -> Option<String> {
    get(name).filter(|v| !v.trim().is_empty())
}

fn non_empty(get: Lookup, name: &str, default: &str) -> Result<String, ConfigError> {
    Ok(var(get, name).map_or_else(|| default.to_owned(), |v| v.trim().to_owned()))
}

/// Parses a variable (or its default) with `parse`, naming the variable on error.
fn parsed<T>(
    get: Lookup,
    name: &str,
    default: &str,
    parse: impl Fn(&str) -> Result<T, crate::error::Invalid>,
) -> Result<T, ConfigError> {
    let raw = var(get, name).unwrap_or_else(|| default.to_owned());
    parse(raw.trim()).map_err(|msg| ConfigError::new(name, msg))
}

fn parse_level(get: Lookup) -> Result<log::LevelFilter, ConfigError> {
    let raw = var(get, "RUST_LOG").unwrap_or_else(|| "info".into());
    match raw.trim().to_ascii_lowercase().as_str() {
        "error" => Ok(log::LevelFilter::Error),
        "warn" => Ok(log::LevelFilter::Warn),
        "info" => Ok(log::LevelFilter::Info),
        "debug" => Ok(log::LevelFilter::Debug),
        "trace" => Ok(log::LevelFilter::Trace),
        "off" => Ok(log::LevelFilter::Off),
        other => Err(ConfigError::new(
            "RUST_LOG",
            format!("{other:?} is not one of error, warn, info, debug, trace"),
        )),
    }
}

/// Checks the URL's shape without ever quoting it back (it may hold a password).
fn check_redis_url(url: &str) -> Result<(), ConfigError> {
    crate::stream::url::parse(url)
        .map(drop)
        .map_err(|why| ConfigError::new("REDIS_URL", why))
}

/// Reads and checks `RELAY_CA_FILE`.
fn ca_file(get: Lookup) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(path) = var(get, "RELAY_CA_FILE") else {
        return Ok(None);
    };
    let path = path.trim();
    let pem = std::fs::read(path)
        .map_err(|e| ConfigError::new("RELAY_CA_FILE", format!("cannot read {path}: {e}")))?;
    crate::tls::parse_ca_pem(&pem)
        .map_err(|e| ConfigError::new("RELAY_CA_FILE", format!("{path} {e}")))?;
    Ok(Some(pem))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
