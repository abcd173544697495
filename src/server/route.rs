//! What a public request path names: `/health`, `/webhook`, `/webhook/<source>`, and
//! `/webhook/<source>/<url token>`; and the path as it may be stored and logged.

/// Longest `<source>` in `/webhook/<source>`.
const MAX_SOURCE_LEN: usize = 64;
/// Longest URL token in `/webhook/<source>/<token>`.
const MAX_TOKEN_LEN: usize = 256;

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route<'a> {
    Health,
    /// `/webhook` (no source), `/webhook/<source>`, or `/webhook/<source>/<url token>`.
    Webhook(Option<&'a str>, Option<&'a str>),
    NotFound,
}

pub(super) fn route(path: &str) -> Route<'_> {
    match path {
        "/health" => Route::Health,
        "/webhook" => Route::Webhook(None, None),
        _ => match path
            .strip_prefix("/webhook/")
            .map(|rest| rest.split_once('/'))
        {
            Some(None) if valid_source(&path[9..]) => Route::Webhook(Some(&path[9..]), None),
            Some(Some((source, token))) if valid_source(source) && valid_token(token) => {
                Route::Webhook(Some(source), Some(token))
            }
            _ => Route::NotFound,
        },
    }
}

/// A URL token: 1–256 unreserved characters (RFC 3986: `A-Za-z0-9-._~`).
fn valid_token(s: &str) -> bool {
    (1..=MAX_TOKEN_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// `/webhook/<source>/<token>[?query]` → `/webhook/<source>[?query]`: what is stored and logged.
pub fn without_token(target: &str) -> String {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let kept = match path
        .strip_prefix("/webhook/")
        .and_then(|r| r.split_once('/'))
    {
        Some((source, _)) => format!("/webhook/{source}"),
        None => path.to_owned(),
    };
    match query {
        Some(q) => format!("{kept}?{q}"),
        None => kept,
    }
}

/// `<source>`: 1–64 of `A-Za-z0-9_-`.
pub fn valid_source(s: &str) -> bool {
    (1..=MAX_SOURCE_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/health"), Route::Health);
        assert_eq!(route("/webhook"), Route::Webhook(None, None));
        assert_eq!(
            route("/webhook/whatsapp_1-a"),
            Route::Webhook(Some("whatsapp_1-a"), None)
        );
        assert_eq!(
            route("/webhook/forms/Xy.9_~-k"),
            Route::Webhook(Some("forms"), Some("Xy.9_~-k"))
        );
        assert_eq!(
            without_token("/webhook/forms/s3cret?a=1"),
            "/webhook/forms?a=1"
        );
        assert_eq!(without_token("/webhook/forms/s3cret"), "/webhook/forms");
        let long = format!("/webhook/{}", "a".repeat(65));
        for p in [
            "/",
            "/webhook/",
            "/webhook/a/",
            "/webhook/a/b/c",
            "/webhook/a/b%20",
            "/webhook/a.b",
            "/webhooks",
            long.as_str(),
        ] {
            assert_eq!(route(p), Route::NotFound, "{p}");
        }
        let max = "a".repeat(64);
        assert_eq!(
            route(&format!("/webhook/{max}")),
            Route::Webhook(Some(max.as_str()), None)
        );
    }
}
