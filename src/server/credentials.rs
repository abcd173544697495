//! The server's credentials (API keys, app secrets, the verify token), swappable while it
//! runs: SIGHUP re-reads the configuration and replaces them between two requests, logging
//! what changed by count, never a value.

use std::sync::{Arc, RwLock};

use super::auth::Authenticator;
use crate::config::{Secret, ServerConfig};

/// What one request checks against.
pub struct Credentials {
    pub auth: Authenticator,
    pub verify_token: Option<Secret>,
    api_keys: Vec<Secret>,
    app_secrets: Vec<Secret>,
    source_secrets: Vec<Secret>,
}

impl Credentials {
    pub fn new(config: &ServerConfig) -> Credentials {
        Credentials {
            auth: Authenticator::new(&config.api_keys, &config.app_secrets)
                .with_sources(&config.sources, config.signature_tolerance),
            verify_token: config.verify_token.clone(),
            api_keys: config.api_keys.clone(),
            app_secrets: config.app_secrets.clone(),
            source_secrets: config
                .sources
                .iter()
                .flat_map(|s| s.secrets.iter().cloned())
                .collect(),
        }
    }
}

/// The current credentials; a request takes them once and keeps them to its end.
pub struct Keyring(RwLock<Arc<Credentials>>);

impl Keyring {
    pub fn new(config: &ServerConfig) -> Keyring {
        Keyring(RwLock::new(Arc::new(Credentials::new(config))))
    }

    pub fn current(&self) -> Arc<Credentials> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Swaps in the credentials of `config`; returns what changed, in words without values.
    pub fn replace(&self, config: &ServerConfig) -> String {
        let new = Arc::new(Credentials::new(config));
        let old = std::mem::replace(
            &mut *self.0.write().unwrap_or_else(|p| p.into_inner()),
            new.clone(),
        );
        let token = match (&old.verify_token, &new.verify_token) {
            (a, b) if a == b => "verify token unchanged".to_owned(),
            (None, Some(_)) => "verify token set".to_owned(),
            (Some(_), None) => "verify token removed".to_owned(),
            _ => "verify token changed".to_owned(),
        };
        format!(
            "API keys {}; app secrets {}; source secrets {}; {token}",
            diff(&old.api_keys, &new.api_keys),
            diff(&old.app_secrets, &new.app_secrets),
            diff(&old.source_secrets, &new.source_secrets)
        )
    }
}

/// `1 added, 1 removed (2 now)` or `unchanged (2)`. Pure.
pub fn diff(old: &[Secret], new: &[Secret]) -> String {
    let added = new.iter().filter(|s| !old.contains(s)).count();
    let removed = old.iter().filter(|s| !new.contains(s)).count();
    match (added, removed) {
        (0, 0) => format!("unchanged ({})", new.len()),
        _ => format!("{added} added, {removed} removed ({} now)", new.len()),
    }
}

/// The settings a reload cannot apply, by name: those whose `name=value` differs in the two
/// start-line summaries (secrets appear there only as counts). Pure.
pub fn needs_restart(old_summary: &str, new_summary: &str) -> Vec<String> {
    const RELOADED: &[&str] = &["api_keys", "app_secrets", "verify_token"];
    let pairs = |s: &str| -> Vec<(String, String)> {
        s.split(' ')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    };
    let old = pairs(old_summary);
    pairs(new_summary)
        .into_iter()
        .filter(|(k, v)| {
            !RELOADED.contains(&k.as_str()) && old.iter().any(|(ok, ov)| ok == k && ov != v)
        })
        .map(|(k, _)| k)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<Secret> {
        v.iter().map(|x| Secret::new(*x)).collect()
    }

    #[test]
    fn changes_are_counted_never_shown() {
        assert_eq!(
            diff(&s(&["a", "b"]), &s(&["b", "c"])),
            "1 added, 1 removed (2 now)"
        );
        assert_eq!(diff(&s(&["a"]), &s(&["a"])), "unchanged (1)");
        assert_eq!(diff(&s(&[]), &s(&["a"])), "1 added, 0 removed (1 now)");
    }

    #[test]
    fn only_settings_a_reload_cannot_apply_are_named() {
        let old = "listen=0.0.0.0:8080 api_keys=1 max_body=4194304 verify_token=unset";
        let new = "listen=0.0.0.0:8080 api_keys=2 max_body=1048576 verify_token=set";
        assert_eq!(needs_restart(old, new), vec!["max_body".to_owned()]);
        assert!(needs_restart(old, old).is_empty());
    }
}
