//! How each kind of sender proves a webhook is its own, per `<source>` (`RELAY_SOURCES`):
//! the signature schemes of Meta and GitHub, Stripe, Shopify, Slack, Standard Webhooks (Svix),
//! GitLab's token, and a secret token in the URL for senders that cannot set headers. Pure:
//! the clock is passed in. Every comparison is constant-time; every secret of a source is
//! tried (rotation).

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::auth::AuthError;
use crate::config::Secret;
use crate::http::FieldValue;

type HmacSha256 = Hmac<Sha256>;

/// A sender's scheme, as named in `RELAY_SOURCES` (`name:scheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `X-Hub-Signature-256: sha256=<hex HMAC of the body>` (Meta, GitHub).
    Hub,
    /// `Stripe-Signature: t=<unix>,v1=<hex HMAC of "t.body">`.
    Stripe,
    /// `X-Shopify-Hmac-Sha256: <base64 HMAC of the body>`.
    Shopify,
    /// `X-Slack-Signature: v0=<hex HMAC of "v0:ts:body">`, `X-Slack-Request-Timestamp: ts`.
    Slack,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC of
    /// "id.ts.body">` (also `svix-*`); `whsec_<base64 key>` secrets.
    Standard,
    /// `X-Gitlab-Token: <secret>`.
    Gitlab,
    /// `/webhook/<source>/<secret>`.
    Token,
}

impl Scheme {
    pub const NAMES: &'static str =
        "meta, github, stripe, shopify, slack, standard (or svix), gitlab, token";

    pub fn parse(name: &str) -> Option<Scheme> {
        Some(match name {
            "meta" | "github" => Scheme::Hub,
            "stripe" => Scheme::Stripe,
            "shopify" => Scheme::Shopify,
            "slack" => Scheme::Slack,
            "standard" | "svix" => Scheme::Standard,
            "gitlab" => Scheme::Gitlab,
            "token" => Scheme::Token,
            _ => return None,
        })
    }

    /// The scheme's name for log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Hub => "meta/github",
            Scheme::Stripe => "stripe",
            Scheme::Shopify => "shopify",
            Scheme::Slack => "slack",
            Scheme::Standard => "standard",
            Scheme::Gitlab => "gitlab",
            Scheme::Token => "token",
        }
    }

    /// The header whose presence says a request tries this scheme (none for the URL token).
    fn header(self) -> Option<&'static str> {
        match self {
            Scheme::Hub => Some("x-hub-signature-256"),
            Scheme::Stripe => Some("stripe-signature"),
            Scheme::Shopify => Some("x-shopify-hmac-sha256"),
            Scheme::Slack => Some("x-slack-signature"),
            Scheme::Standard => None, // webhook-signature or svix-signature
            Scheme::Gitlab => Some("x-gitlab-token"),
            Scheme::Token => None,
        }
    }
}

/// One source's scheme and keys.
#[derive(Clone)]
pub struct SourceAuth {
    pub scheme: Scheme,
    /// The HMAC keys or tokens: the secrets' bytes (for `standard`, the decoded `whsec_` key).
    keys: Vec<Vec<u8>>,
    tolerance: Duration,
}

impl std::fmt::Debug for SourceAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} with {} secret(s)", self.scheme, self.keys.len())
    }
}

impl SourceAuth {
    /// `secrets` are checked at configuration time (`key_of`).
    pub fn new(scheme: Scheme, secrets: &[Secret], tolerance: Duration) -> Self {
        let keys = secrets
            .iter()
            .filter_map(|s| key_of(scheme, s.expose()).ok())
            .collect();
        SourceAuth {
            scheme,
            keys,
            tolerance,
        }
    }

    /// From the head alone: `Ok(true)` when the request is proven already (tokens), `Ok(false)`
    /// when the body must be read to know, `Err` when it cannot be this sender.
    pub fn precheck(
        &self,
        headers: &[(String, FieldValue)],
        url_token: Option<&str>,
    ) -> Result<bool, AuthError> {
        match self.scheme {
            Scheme::Token => self.token(url_token).map(|()| true),
            Scheme::Gitlab => self
                .token(single(headers, "x-gitlab-token")?)
                .map(|()| true),
            _ if url_token.is_some() => Err(AuthError::MissingCredentials),
            Scheme::Standard => {
                standard_headers(headers)?;
                Ok(false)
            }
            scheme => {
                let name = scheme.header().expect("every other scheme has a header");
                single(headers, name)?.ok_or(AuthError::MissingCredentials)?;
                Ok(false)
            }
        }
    }

    /// The full check over the exact bytes received, at `now` (Unix seconds).
    pub fn verify(
        &self,
        headers: &[(String, FieldValue)],
        body: &[u8],
        url_token: Option<&str>,
        now: u64,
    ) -> Result<(), AuthError> {
        if self.precheck(headers, url_token)? {
            return Ok(());
        }
        let one = |name| single(headers, name)?.ok_or(AuthError::MissingCredentials);
        match self.scheme {
            Scheme::Hub => {
                let sig = one("x-hub-signature-256")?.trim();
                let mac = sig.strip_prefix("sha256=").and_then(hex);
                self.any_mac(&[body], &[mac.ok_or(AuthError::BadSignature)?])
            }
            Scheme::Shopify => {
                let mac = crate::base64::decode(one("x-shopify-hmac-sha256")?.trim());
                self.any_mac(&[body], &[mac.ok_or(AuthError::BadSignature)?])
            }
            Scheme::Slack => {
                let ts = one("x-slack-request-timestamp")?.trim();
                let sent = timestamp(ts)?;
                let sig = one("x-slack-signature")?.trim();
                let mac = sig.strip_prefix("v0=").and_then(hex);
                let prefix = format!("v0:{ts}:");
                self.any_mac(
                    &[prefix.as_bytes(), body],
                    &[mac.ok_or(AuthError::BadSignature)?],
                )?;
                self.fresh(sent, now)
            }
            Scheme::Stripe => {
                let header = one("stripe-signature")?;
                let mut ts = None;
                let mut macs = Vec::new();
                for part in header.split(',') {
                    match part.trim().split_once('=') {
                        Some(("t", t)) => ts = Some(t),
                        Some(("v1", sig)) => macs.extend(hex(sig)),
                        _ => {} // v0 (test mode's old scheme) and unknown parts: ignored
                    }
                }
                let ts = ts.ok_or(AuthError::BadSignature)?;
                let sent = timestamp(ts)?;
                let prefix = format!("{ts}.");
                self.any_mac(&[prefix.as_bytes(), body], &macs)?;
                self.fresh(sent, now)
            }
            Scheme::Standard => {
                let (id, ts, sigs) = standard_headers(headers)?;
                let sent = timestamp(ts)?;
                let macs: Vec<Vec<u8>> = sigs
                    .split_whitespace()
                    .filter_map(|s| s.strip_prefix("v1,"))
                    .filter_map(crate::base64::decode)
                    .collect();
                let prefix = format!("{id}.{ts}.");
                self.any_mac(&[prefix.as_bytes(), body], &macs)?;
                self.fresh(sent, now)
            }
            Scheme::Gitlab | Scheme::Token => unreachable!("decided by precheck"),
        }
    }

    /// Whether some key's HMAC over the concatenated `parts` equals one of `macs`.
    fn any_mac(&self, parts: &[&[u8]], macs: &[Vec<u8>]) -> Result<(), AuthError> {
        let mut ok = subtle::Choice::from(0);
        for key in &self.keys {
            let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
            for p in parts {
                mac.update(p);
            }
            let ours = mac.finalize().into_bytes();
            for presented in macs {
                ok |= ours.as_slice().ct_eq(presented);
            }
        }
        match bool::from(ok) {
            true => Ok(()),
            false => Err(AuthError::BadSignature),
        }
    }

    fn token(&self, presented: Option<&str>) -> Result<(), AuthError> {
        let presented = presented.ok_or(AuthError::MissingCredentials)?;
        let mut ok = subtle::Choice::from(0);
        for key in &self.keys {
            ok |= key.as_slice().ct_eq(presented.as_bytes());
        }
        match bool::from(ok) {
            true => Ok(()),
            false => Err(AuthError::BadSignature),
        }
    }

    /// A timestamp within the tolerance of `now`, either way. Checked after the signature,
    /// so that `Stale` means an authentic request sent too long ago (a replay) or stamped by
    /// a clock far from ours: the log can say which clock to look at.
    fn fresh(&self, sent: u64, now: u64) -> Result<(), AuthError> {
        match now.abs_diff(sent) <= self.tolerance.as_secs() {
            true => Ok(()),
            false => Err(AuthError::Stale {
                ahead_s: i64::try_from(sent)
                    .unwrap_or(i64::MAX)
                    .saturating_sub(i64::try_from(now).unwrap_or(i64::MAX)),
            }),
        }
    }
}

/// A signature's timestamp (Unix seconds); anything else makes the signature invalid.
fn timestamp(ts: &str) -> Result<u64, AuthError> {
    ts.trim().parse().map_err(|_| AuthError::BadSignature)
}

/// The key a secret stands for, or why it cannot be one.
pub fn key_of(scheme: Scheme, secret: &str) -> Result<Vec<u8>, String> {
    match scheme {
        Scheme::Standard => crate::base64::whsec_key(secret)
            .ok_or_else(|| "a standard (Svix) secret is whsec_ followed by base64".to_owned()),
        _ => Ok(secret.as_bytes().to_vec()),
    }
}

/// The one value of header `name`: two are refused rather than guessed between.
fn single<'a>(
    headers: &'a [(String, FieldValue)],
    name: &str,
) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .filter_map(|(_, v)| v.as_str());
    match (values.next(), values.next()) {
        (Some(_), Some(_)) => Err(AuthError::BadSignature),
        (v, _) => Ok(v),
    }
}

/// `(id, timestamp, signatures)` from `webhook-*`, else `svix-*`.
fn standard_headers(headers: &[(String, FieldValue)]) -> Result<(&str, &str, &str), AuthError> {
    for prefix in ["webhook-", "svix-"] {
        let get = |n: &str| single(headers, &format!("{prefix}{n}"));
        if let Some(sigs) = get("signature")? {
            let id = get("id")?.ok_or(AuthError::BadSignature)?;
            let ts = get("timestamp")?.ok_or(AuthError::BadSignature)?;
            return Ok((id, ts, sigs));
        }
    }
    Err(AuthError::MissingCredentials)
}

/// Hex digits (either case) → bytes.
fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|p| {
            let hi = (p[0] as char).to_digit(16)?;
            let lo = (p[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

#[cfg(test)]
#[path = "schemes_tests.rs"]
mod tests;
