//! Per-source verification settings: `RELAY_SOURCES=whatsapp:meta,stripe:stripe,…` names each
//! source's scheme, `RELAY_SECRET_<SOURCE>` holds its secrets (comma-separated: several while
//! rotating), `RELAY_SIGNATURE_TOLERANCE` how far a signed timestamp may be from now.

use std::time::Duration;

use super::{Lookup, Secret, parse_duration, parse_list, parsed, var};
use crate::error::ConfigError;
use crate::server::{Scheme, key_of};

/// One source's scheme and secrets.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: String,
    pub scheme: Scheme,
    pub secrets: Vec<Secret>,
}

/// `RELAY_SECRET_<SOURCE>`: the source name upper-cased, `-` as `_`.
pub fn secret_var(source: &str) -> String {
    format!(
        "RELAY_SECRET_{}",
        source.to_ascii_uppercase().replace('-', "_")
    )
}

/// `RELAY_SOURCES` and each source's secrets, checked: known schemes, valid names, no two
/// sources sharing a secret variable, at least one secret each, `whsec_` keys that decode.
pub fn load(get: Lookup) -> Result<(Vec<SourceConfig>, Duration), ConfigError> {
    let tolerance = parsed(get, "RELAY_SIGNATURE_TOLERANCE", "5m", parse_duration)?;
    let mut out: Vec<SourceConfig> = Vec::new();
    for item in var(get, "RELAY_SOURCES").map_or_else(Vec::new, |v| parse_list(&v)) {
        let bad = |msg: String| ConfigError::new("RELAY_SOURCES", msg);
        let (name, scheme) = item
            .split_once(':')
            .ok_or_else(|| bad(format!("{item:?}: expected source:scheme")))?;
        let (name, scheme_name) = (name.trim(), scheme.trim());
        if !crate::server::valid_source(name) {
            return Err(bad(format!(
                "{name:?}: a source is 1-64 of A-Z a-z 0-9 _ -"
            )));
        }
        let scheme = Scheme::parse(scheme_name).ok_or_else(|| {
            bad(format!(
                "{scheme_name:?}: expected one of {}",
                Scheme::NAMES
            ))
        })?;
        let secret_name = secret_var(name);
        if let Some(other) = out.iter().find(|s| secret_var(&s.name) == secret_name) {
            return Err(bad(format!(
                "{name:?} and {:?} would share {secret_name}",
                other.name
            )));
        }
        let secrets: Vec<Secret> = var(get, &secret_name)
            .map_or_else(Vec::new, |v| parse_list(&v))
            .into_iter()
            .map(Secret::new)
            .collect();
        if secrets.is_empty() {
            return Err(ConfigError::new(
                secret_name,
                format!("source {name:?} ({scheme_name}) needs its secret"),
            ));
        }
        for s in &secrets {
            key_of(scheme, s.expose()).map_err(|why| ConfigError::new(&secret_name, why))?;
        }
        out.push(SourceConfig {
            name: name.to_owned(),
            scheme,
            secrets,
        });
    }
    Ok((out, tolerance))
}

/// `whatsapp:meta/github/1,stripe:stripe/2` (scheme and secret count), `-` for none.
pub fn display(sources: &[SourceConfig]) -> String {
    match sources.is_empty() {
        true => "-".to_owned(),
        false => sources
            .iter()
            .map(|s| format!("{}:{}/{}", s.name, s.scheme.as_str(), s.secrets.len()))
            .collect::<Vec<_>>()
            .join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load_from(pairs: &[(&str, &str)]) -> Result<Vec<SourceConfig>, ConfigError> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load(&|k| vars.get(k).cloned()).map(|(s, _)| s)
    }

    #[test]
    fn sources_with_schemes_and_rotating_secrets() {
        let my_shop = secret_var("my-shop");
        assert_eq!(my_shop, format!("RELAY_SECRET_{}", "MY_SHOP"));
        let s = load_from(&[
            ("RELAY_SOURCES", "stripe:stripe, my-shop:shopify,forms:svix"),
            ("RELAY_SECRET_STRIPE", "whsec_new,whsec_old"),
            (my_shop.as_str(), "shpss"),
            (
                "RELAY_SECRET_FORMS",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
        ])
        .unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].secrets.len(), 2);
        assert_eq!(s[1].name, "my-shop");
        assert_eq!(s[2].scheme, Scheme::Standard);
        assert!(load_from(&[]).unwrap().is_empty());
    }

    #[test]
    fn mistakes_name_the_variable() {
        let err = |pairs: &[(&str, &str)]| load_from(pairs).unwrap_err().to_string();
        assert!(err(&[("RELAY_SOURCES", "stripe")]).contains("source:scheme"));
        assert!(err(&[("RELAY_SOURCES", "stripe:paypal")]).contains("expected one of meta"));
        assert!(err(&[("RELAY_SOURCES", "stripe:stripe")]).starts_with("RELAY_SECRET_STRIPE"));
        assert!(err(&[("RELAY_SOURCES", "a b:meta")]).contains("1-64"));
        let my_shop = secret_var("my-shop");
        assert!(
            err(&[
                ("RELAY_SOURCES", "my-shop:meta,my_shop:meta"),
                (my_shop.as_str(), "x")
            ])
            .contains(&format!("share {my_shop}"))
        );
        let bad_key = err(&[
            ("RELAY_SOURCES", "forms:standard"),
            ("RELAY_SECRET_FORMS", "not-a-whsec-secret"),
        ]);
        assert!(bad_key.starts_with("RELAY_SECRET_FORMS"), "{bad_key}");
        assert!(
            !bad_key.contains("not-a-whsec"),
            "no secret in errors: {bad_key}"
        );
    }
}
