//! Every `RELAY_*` variable the relay reads, so that a typo (`RELAY_LISTN`) is an error that
//! names what was meant instead of a setting silently ignored.

use crate::error::ConfigError;

/// Every `RELAY_*` variable, any role.
pub const KNOWN: &[&str] = &[
    "RELAY_ADMIN_HOSTS",
    "RELAY_ADMIN_LISTEN",
    "RELAY_ADMIN_TOKEN",
    "RELAY_API_KEYS",
    "RELAY_BACKOFF_BASE",
    "RELAY_BACKOFF_MAX",
    "RELAY_BREAKER_COOLDOWN",
    "RELAY_BREAKER_THRESHOLD",
    "RELAY_CA_FILE",
    "RELAY_CLUSTER_NODES",
    "RELAY_CONCURRENCY",
    "RELAY_CONSUMER",
    "RELAY_DLQ_STREAM",
    "RELAY_FORWARD_TIMEOUT",
    "RELAY_GROUP",
    "RELAY_LISTEN",
    "RELAY_MAX_ATTEMPTS",
    "RELAY_MAX_BODY",
    "RELAY_MAX_CONNECTIONS",
    "RELAY_MAX_STREAM_LEN",
    "RELAY_META_APP_SECRET",
    "RELAY_META_VERIFY_TOKEN",
    "RELAY_MIN_REPLICAS",
    "RELAY_PARTITIONS",
    "RELAY_REPLICA_TIMEOUT",
    "RELAY_RETENTION",
    "RELAY_ROUTES",
    "RELAY_SENTINELS",
    "RELAY_SENTINEL_MASTER",
    "RELAY_SENTINEL_PASSWORD",
    "RELAY_SIGNATURE_TOLERANCE",
    "RELAY_SOURCES",
    "RELAY_STREAM",
    "RELAY_TARGET_HEALTH_URL",
    "RELAY_TARGET_SECRET",
    "RELAY_TARGET_URL",
    "RELAY_TRUSTED_PROXIES",
    "RELAY_UNVERIFIED_BUDGET",
];

/// Prefixes of variables named after a source.
const PER_SOURCE: [&str; 3] = ["RELAY_SECRET_", "RELAY_TARGET_URL_", "RELAY_TARGET_SECRET_"];

/// Refuses a `RELAY_*` name the relay does not know, naming the closest known one.
pub fn check<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), ConfigError> {
    for name in names {
        // `RELAY_SECRET_<SOURCE>`, `RELAY_TARGET_URL_<SOURCE>`, `RELAY_TARGET_SECRET_<SOURCE>`:
        // named by the sources of `RELAY_SOURCES` and `RELAY_ROUTES`.
        let secret = PER_SOURCE
            .iter()
            .any(|p| name.starts_with(p) && name.len() > p.len());
        if name.starts_with("RELAY_") && !KNOWN.contains(&name) && !secret {
            let hint = closest(name)
                .map(|k| format!("; did you mean {k}?"))
                .unwrap_or_default();
            return Err(ConfigError::new(name, format!("unknown variable{hint}")));
        }
    }
    Ok(())
}

/// The known name nearest to `name` in edit distance, if it is near at all.
fn closest(name: &str) -> Option<&'static str> {
    KNOWN
        .iter()
        .map(|k| (distance(name, k), *k))
        .min()
        .filter(|(d, _)| *d <= 4)
        .map(|(_, k)| k)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_name_the_variable_meant() {
        let e = check(["RELAY_LISTEN", &format!("RELAY_{}", "LISTN")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "RELAY_LISTN: unknown variable; did you mean RELAY_LISTEN?"
        );
        let e = check(["RELAY_API_KEY"]).unwrap_err();
        assert!(e.to_string().contains("did you mean RELAY_API_KEYS?"));
        let e = check([format!("RELAY_{}", "SOMETHING_ELSE_ENTIRELY").as_str()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "RELAY_SOMETHING_ELSE_ENTIRELY: unknown variable"
        );
        assert!(check(["PATH", "REDIS_URL", "RELAY_STREAM"]).is_ok());
    }

    #[test]
    fn every_variable_a_role_reads_is_known() {
        use std::cell::RefCell;
        let asked = RefCell::new(Vec::new());
        let get = |k: &str| {
            asked.borrow_mut().push(k.to_owned());
            match k {
                "RELAY_API_KEYS" => Some("k".to_owned()),
                "RELAY_TARGET_URL" => Some("http://127.0.0.1:1/".to_owned()),
                _ => None,
            }
        };
        crate::config::ServerConfig::load(&get).unwrap();
        crate::config::ClientConfig::load(&get).unwrap();
        for name in asked.borrow().iter().filter(|n| n.starts_with("RELAY_")) {
            assert!(
                KNOWN.contains(&name.as_str()),
                "{name} is read but not in KNOWN"
            );
        }
    }
}
