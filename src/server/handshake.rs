//! Meta's subscription handshake: `GET <callback>?hub.mode=subscribe&hub.verify_token=T&
//! hub.challenge=C` answered with `C` when `T` is the configured verify token.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::http::{Head, Response, percent_decode};
use crate::log_limit::LogLimit;

static REFUSED: LogLimit = LogLimit::new("verification handshakes refused");

/// Reports what the rate-limited warning suppressed.
pub fn flush_logs() {
    REFUSED.flush();
}

/// The answer to a handshake request; `404` when no verify token is configured.
pub fn answer(verify_token: Option<&Secret>, head: &Head) -> Response {
    let Some(expected) = verify_token else {
        return Response::error(404, "verification handshake not configured");
    };
    let query = head.query().unwrap_or("");
    let (mut mode, mut token, mut challenge) = (None, None, None);
    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        match percent_decode(k).as_deref() {
            Some("hub.mode") => mode = percent_decode(v),
            Some("hub.verify_token") => token = percent_decode(v),
            Some("hub.challenge") => challenge = percent_decode(v),
            _ => {}
        }
    }
    // Digests of equal length: the comparison says nothing about the token's length.
    let digest = |t: &str| -> [u8; 32] { Sha256::digest(t.as_bytes()).into() };
    let token_ok = token.is_some_and(|t| bool::from(digest(&t).ct_eq(&digest(expected.expose()))));
    match challenge {
        _ if mode.as_deref() != Some("subscribe") || !token_ok => {
            REFUSED.warn(|| "verification handshake refused: wrong mode or token (403)".into());
            Response::error(403, "verification failed")
        }
        None => Response::error(400, "missing hub.challenge"),
        Some(c) => Response::text(200, c),
    }
}
