//! `crm-relay client` settings.

use std::time::Duration;

use super::{
    AdminConfig, CommonConfig, Lookup, Secret, admin_config, admin_display, parse_count,
    parse_duration, parse_list, parsed, var,
};
use crate::client::Signer;
use crate::client::policy::backoff::Backoff;
use crate::error::ConfigError;
use crate::http::client::{Endpoint, Target};

/// Settings of `crm-relay client`.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub common: CommonConfig,
    /// `RELAY_TARGET_URL`, parsed, with its TLS settings.
    pub target: Endpoint,
    /// `RELAY_CONSUMER`: this process's consumer name (default: the host name).
    pub consumer: String,
    /// `RELAY_CONCURRENCY`: deliveries in flight.
    pub concurrency: usize,
    /// `RELAY_FORWARD_TIMEOUT`: the whole request/response deadline of one attempt.
    pub forward_timeout: Duration,
    /// `RELAY_MAX_ATTEMPTS`: counted attempts before a webhook is dead-lettered.
    pub max_attempts: u32,
    /// `RELAY_BACKOFF_BASE` / `RELAY_BACKOFF_MAX`.
    pub backoff: Backoff,
    /// `RELAY_BREAKER_THRESHOLD`.
    pub breaker_threshold: u32,
    /// `RELAY_BREAKER_COOLDOWN`.
    pub breaker_cooldown: Duration,
    /// The admin listener (`/metrics`, `/health`, the DLQ API); `None` when disabled.
    pub admin: Option<AdminConfig>,
    /// `RELAY_TARGET_HEALTH_URL`: a `GET` whose 2xx is evidence that the default target is up.
    pub health: Option<Endpoint>,
    /// `RELAY_TARGET_SECRET`: signs what goes to the default target (`whsec_…`, several while
    /// rotating).
    pub signer: Option<Signer>,
    /// `RELAY_ROUTES` with `RELAY_TARGET_URL_<SOURCE>` and `RELAY_TARGET_SECRET_<SOURCE>`:
    /// sources delivered to a target of their own.
    pub routes: Vec<RouteConfig>,
}

/// A source delivered to its own target.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub source: String,
    pub target: Endpoint,
    pub signer: Option<Signer>,
}

/// `<PREFIX><SOURCE>`: the source upper-cased, `-` as `_`.
fn per_source(prefix: &str, source: &str) -> String {
    format!("{prefix}{}", source.to_ascii_uppercase().replace('-', "_"))
}

/// The signer of `RELAY_TARGET_SECRET[_<SOURCE>]`, if set.
fn signer(get: Lookup, name: &str) -> Result<Option<Signer>, ConfigError> {
    let secrets: Vec<Secret> = var(get, name)
        .map_or_else(Vec::new, |v| parse_list(&v))
        .into_iter()
        .map(Secret::new)
        .collect();
    match secrets.is_empty() {
        true => Ok(None),
        false => Signer::new(&secrets)
            .map(Some)
            .map_err(|e| ConfigError::new(name, e)),
    }
}

impl ClientConfig {
    pub fn load(get: Lookup) -> Result<Self, ConfigError> {
        let common = CommonConfig::load(get)?;
        let url = var(get, "RELAY_TARGET_URL").ok_or_else(|| {
            ConfigError::new(
                "RELAY_TARGET_URL",
                "required: where webhooks are forwarded (http://host:port/path)",
            )
        })?;
        // TLS settings (bundled roots plus RELAY_CA_FILE) for whichever URL is https://.
        let tls = || {
            crate::tls::client_config(common.ca_pem.as_deref(), common.system_roots.as_ref())
                .map_err(|e| ConfigError::new("RELAY_CA_FILE", e))
        };
        let endpoint = |name: &str, url: &str| {
            let target = Target::parse(url.trim()).map_err(|e| ConfigError::new(name, e))?;
            Endpoint::new(target, tls)
        };
        let target = endpoint("RELAY_TARGET_URL", &url)?;
        let health = var(get, "RELAY_TARGET_HEALTH_URL")
            .map(|u| endpoint("RELAY_TARGET_HEALTH_URL", &u))
            .transpose()?;
        let small = |name: &str, default: &str| -> Result<u32, ConfigError> {
            let n = parsed(get, name, default, parse_count)?;
            u32::try_from(n).map_err(|_| ConfigError::new(name, "too large"))
        };
        let backoff = Backoff {
            base: parsed(get, "RELAY_BACKOFF_BASE", "1s", parse_duration)?,
            max: parsed(get, "RELAY_BACKOFF_MAX", "10m", parse_duration)?,
        };
        if backoff.max < backoff.base {
            return Err(ConfigError::new(
                "RELAY_BACKOFF_MAX",
                "must not be below RELAY_BACKOFF_BASE",
            ));
        }
        let mut routes: Vec<RouteConfig> = Vec::new();
        for source in var(get, "RELAY_ROUTES").map_or_else(Vec::new, |v| parse_list(&v)) {
            if !crate::server::valid_source(&source) {
                return Err(ConfigError::new(
                    "RELAY_ROUTES",
                    format!("{source:?}: a source is 1-64 of A-Z a-z 0-9 _ -"),
                ));
            }
            let url_var = per_source("RELAY_TARGET_URL_", &source);
            if routes
                .iter()
                .any(|r| per_source("RELAY_TARGET_URL_", &r.source) == url_var)
            {
                return Err(ConfigError::new(
                    "RELAY_ROUTES",
                    format!("{source:?} is listed twice (or shares {url_var} with another)"),
                ));
            }
            let url = var(get, &url_var).ok_or_else(|| {
                ConfigError::new(&url_var, format!("route {source:?} needs its target URL"))
            })?;
            routes.push(RouteConfig {
                target: endpoint(&url_var, &url)?,
                signer: signer(get, &per_source("RELAY_TARGET_SECRET_", &source))?,
                source,
            });
        }
        let forward_timeout = parsed(get, "RELAY_FORWARD_TIMEOUT", "15s", parse_duration)?;
        if forward_timeout.is_zero() {
            return Err(ConfigError::new("RELAY_FORWARD_TIMEOUT", "must be above 0"));
        }
        Ok(ClientConfig {
            common,
            target,
            consumer: var(get, "RELAY_CONSUMER").map_or_else(host_name, |v| v.trim().to_owned()),
            concurrency: small("RELAY_CONCURRENCY", "4")? as usize,
            forward_timeout,
            max_attempts: small("RELAY_MAX_ATTEMPTS", "10")?,
            backoff,
            breaker_threshold: small("RELAY_BREAKER_THRESHOLD", "5")?,
            breaker_cooldown: parsed(get, "RELAY_BREAKER_COOLDOWN", "30s", parse_duration)?,
            admin: admin_config(get, "127.0.0.1:9091")?,
            health,
            signer: signer(get, "RELAY_TARGET_SECRET")?,
            routes,
        })
    }

    /// The effective configuration for the start-up log line (nothing here is secret but the
    /// Redis URL, shown without credentials).
    pub fn summary(&self) -> String {
        format!(
            "target={}{} routes={} health={} admin={} redis={} {} tls_trust={} stream={} dlq={} group={} consumer={} concurrency={} forward_timeout={:?} max_attempts={} backoff={:?}..{:?} breaker={}/{:?} log={}",
            self.target.target().display(),
            if self.signer.is_some() {
                " (signed)"
            } else {
                ""
            },
            self.routes_display(),
            self.health
                .as_ref()
                .map_or_else(|| "off".to_owned(), |h| h.target().display()),
            admin_display(self.admin.as_ref()),
            self.common.redis_display(),
            self.common.topology.display(),
            self.common.trust_display(),
            self.common.stream,
            self.common.dlq_stream,
            self.common.group,
            self.consumer,
            self.concurrency,
            self.forward_timeout,
            self.max_attempts,
            self.backoff.base,
            self.backoff.max,
            self.breaker_threshold,
            self.breaker_cooldown,
            self.common.log_level,
        )
    }
}

impl ClientConfig {
    /// `stripe→https://…/stripe (signed),…`, `-` for none.
    fn routes_display(&self) -> String {
        match self.routes.is_empty() {
            true => "-".to_owned(),
            false => self
                .routes
                .iter()
                .map(|r| {
                    let signed = if r.signer.is_some() { " (signed)" } else { "" };
                    format!("{}→{}{signed}", r.source, r.target.target().display())
                })
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

pub(super) fn non_blank(get: Lookup, name: &str, default: &str) -> String {
    var(get, name).map_or_else(|| default.to_owned(), |v| v.trim().to_owned())
}

/// The kernel's host name, the default consumer name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "crm-relay".to_owned())
}
