//! Who may store a webhook. A source configured in `RELAY_SOURCES` accepts only its own
//! scheme (`schemes.rs`). Any other: `X-Hub-Signature-256` (HMAC-SHA256 of the raw body with
//! one of the app secrets) or, for requests without a signature, an API key in `X-API-Key` or
//! `Authorization: Bearer`. Every comparison is constant-time.

use std::collections::HashMap;

use super::api_keys::ApiKeys;
use super::schemes::{Scheme, SourceAuth};
use crate::config::{Secret, SourceConfig};
use crate::http::{FieldValue, header_values};

/// The header Meta (and GitHub) sign requests with.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// How a request proved itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Signature,
    ApiKey,
}

/// What `precheck` found in the headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// A valid API key: the sender is known.
    Key,
    /// A signature, no valid key: the body must be read to know.
    VerifyBody,
}

/// Why a request was refused (`401`); the text is safe to send back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No signature and no valid API key.
    MissingCredentials,
    /// A signature header that does not match any app secret (or is malformed).
    BadSignature,
    /// An authentic signature whose timestamp is outside the tolerance (a replay, or a clock
    /// off): the timestamp is `ahead_s` seconds ahead of ours (behind when negative).
    Stale { ahead_s: i64 },
}

impl AuthError {
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingCredentials => "missing or invalid API key",
            AuthError::BadSignature => "invalid signature",
            AuthError::Stale { .. } => "signature timestamp outside the tolerance",
        }
    }

    /// The reason as the operator's log says it: for a stale timestamp, by how much and
    /// which clock to look at (the sender only gets `reason`).
    pub fn explained(&self) -> String {
        match *self {
            AuthError::Stale { ahead_s } if ahead_s > 0 => format!(
                "an authentic signature stamped {ahead_s} s ahead of this server's clock, beyond \
                 RELAY_SIGNATURE_TOLERANCE: this machine's clock is behind (timedatectl), or \
                 the sender's is ahead"
            ),
            AuthError::Stale { ahead_s } => format!(
                "an authentic signature stamped {} s before this server's clock, beyond \
                 RELAY_SIGNATURE_TOLERANCE: a replay of an old request, or this machine's clock \
                 is ahead (timedatectl)",
                ahead_s.unsigned_abs()
            ),
            _ => self.reason().to_owned(),
        }
    }
}

/// The configured credentials, prepared for constant-time checks.
pub struct Authenticator {
    /// The API keys, compared in constant time (`api_keys.rs`).
    api_keys: ApiKeys,
    /// `X-Hub-Signature-256` with the app secrets (`RELAY_META_APP_SECRET`), for sources
    /// without a scheme of their own: the `meta` scheme.
    meta: SourceAuth,
    has_app_secrets: bool,
    /// Sources with a scheme of their own.
    sources: HashMap<String, SourceAuth>,
}

impl Authenticator {
    pub fn new(api_keys: &[Secret], app_secrets: &[Secret]) -> Self {
        Authenticator {
            api_keys: ApiKeys::new(api_keys),
            meta: SourceAuth::new(Scheme::Hub, app_secrets, std::time::Duration::ZERO),
            has_app_secrets: !app_secrets.is_empty(),
            sources: HashMap::new(),
        }
    }

    /// Adds the sources verified by their own scheme.
    pub fn with_sources(
        mut self,
        sources: &[SourceConfig],
        tolerance: std::time::Duration,
    ) -> Self {
        self.sources = sources
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    SourceAuth::new(s.scheme, &s.secrets, tolerance),
                )
            })
            .collect();
        self
    }

    /// `precheck` for a webhook to `/webhook/<source>[/<url_token>]`.
    pub fn precheck_for(
        &self,
        source: Option<&str>,
        url_token: Option<&str>,
        headers: &[(String, FieldValue)],
    ) -> Result<Admit, AuthError> {
        match (source.and_then(|s| self.sources.get(s)), url_token) {
            (Some(own), _) => own.precheck(headers, url_token).map(|proven| match proven {
                true => Admit::Key,
                false => Admit::VerifyBody,
            }),
            (None, Some(_)) => Err(AuthError::MissingCredentials),
            (None, None) => self.precheck(headers),
        }
    }

    /// The scheme `source` is configured with, if any.
    pub fn scheme_of(&self, source: Option<&str>) -> Option<super::schemes::Scheme> {
        Some(self.sources.get(source?)?.scheme)
    }

    /// `authenticate` for a webhook to `/webhook/<source>[/<url_token>]`, at `now` (Unix s).
    /// `key_checked`: `precheck_for` found a valid API key in these headers moments ago (a
    /// signature, if any, is still verified; the key is not digested a second time).
    pub fn authenticate_for(
        &self,
        source: Option<&str>,
        url_token: Option<&str>,
        headers: &[(String, FieldValue)],
        body: &[u8],
        now: u64,
        key_checked: bool,
    ) -> Result<Credential, AuthError> {
        match (source.and_then(|s| self.sources.get(s)), url_token) {
            (Some(own), _) => own
                .verify(headers, body, url_token, now)
                .map(|()| Credential::Signature),
            (None, Some(_)) => Err(AuthError::MissingCredentials),
            (None, None) if key_checked && !has_signature(headers) => Ok(Credential::ApiKey),
            (None, None) => self.authenticate(headers, body),
        }
    }

    /// Decides from the headers alone, before the body is read: a valid API key admits the
    /// request (its signature, if any, is checked with the body); a signature without a
    /// valid key must be read to be verified; anything else is refused.
    pub fn precheck(&self, headers: &[(String, FieldValue)]) -> Result<Admit, AuthError> {
        let key = self.api_key(headers).is_ok();
        match header_values(headers, SIGNATURE_HEADER).next() {
            Some(_) if !self.has_app_secrets => Err(AuthError::BadSignature),
            Some(_) if !key => Ok(Admit::VerifyBody),
            _ if key => Ok(Admit::Key),
            _ => Err(AuthError::MissingCredentials),
        }
    }

    /// The full check, over the exact bytes received.
    pub fn authenticate(
        &self,
        headers: &[(String, FieldValue)],
        body: &[u8],
    ) -> Result<Credential, AuthError> {
        let mut sigs = header_values(headers, SIGNATURE_HEADER);
        match (sigs.next(), sigs.next()) {
            (Some(_), None) => self
                .meta
                .verify(headers, body, None, 0)
                .map(|()| Credential::Signature),
            // Two signatures: refuse rather than guess which one the sender meant.
            (Some(_), Some(_)) => Err(AuthError::BadSignature),
            (None, _) => self.api_key(headers).map(|()| Credential::ApiKey),
        }
    }

    /// Removes the relay's own credentials from headers about to be stored: every
    /// `X-API-Key`, and an `Authorization: Bearer` carrying one of our keys. They are meant for
    /// the relay, and must not travel on to Redis, the DLQ and the local app. Other
    /// `Authorization` values (the sender's, for the app) stay.
    pub fn strip_credentials(&self, headers: &mut Vec<(String, FieldValue)>) {
        headers.retain(|(name, value)| {
            if name.eq_ignore_ascii_case("x-api-key") {
                return false;
            }
            if !name.eq_ignore_ascii_case("authorization") {
                return true;
            }
            let one = [(name.clone(), value.clone())];
            self.api_key(&one).is_err()
        });
    }

    /// `strip_credentials`, and for a `gitlab` source its `X-Gitlab-Token`: that header is the
    /// secret itself (not a signature), checked here, and must not be stored, shown in the
    /// inspector or sent on.
    pub fn strip_credentials_for(
        &self,
        source: Option<&str>,
        headers: &mut Vec<(String, FieldValue)>,
    ) {
        self.strip_credentials(headers);
        if self.scheme_of(source) == Some(super::schemes::Scheme::Gitlab) {
            headers.retain(|(name, _)| !name.eq_ignore_ascii_case("x-gitlab-token"));
        }
    }

    fn api_key(&self, headers: &[(String, FieldValue)]) -> Result<(), AuthError> {
        let bearer = header_values(headers, "authorization").filter_map(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        let presented = header_values(headers, "x-api-key")
            .map(str::trim)
            .chain(bearer);
        let mut ok = subtle::Choice::from(0);
        for key in presented {
            ok |= self.api_keys.contains(key);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(AuthError::MissingCredentials)
        }
    }
}

fn has_signature(headers: &[(String, FieldValue)]) -> bool {
    header_values(headers, SIGNATURE_HEADER).next().is_some()
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
