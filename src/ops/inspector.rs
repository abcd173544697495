//! The web inspector at `GET /` of the admin listener: one self-contained page (HTML, CSS and
//! plain JavaScript embedded in the binary, nothing fetched from elsewhere) that lists the
//! webhooks in the stream through `/events`, follows `/live`, shows one webhook with every
//! recorded attempt, and replays, redelivers or purges through the same admin API as the CLI.
//!
//! Its Content-Security-Policy allows only the page's own inline script and style (by hash)
//! and requests to its own origin. Webhook content is attacker-controlled: the script only
//! ever puts it in the page as text, never as markup.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::base64::encode as base64;
use crate::http::Response;

const HTML: &str = include_str!("inspector/page.html");
const STYLE: &str = include_str!("inspector/page.css");
const SCRIPT: &str = include_str!("inspector/page.js");

/// The page and its policy, built once per role.
struct Page {
    html: String,
    csp: String,
}

/// The inspector page for the admin listener of `role` (`server` or `client`).
pub fn page(role: &'static str) -> Response {
    static SERVER: OnceLock<Page> = OnceLock::new();
    static CLIENT: OnceLock<Page> = OnceLock::new();
    let page = match role {
        "server" => SERVER.get_or_init(|| build("server")),
        _ => CLIENT.get_or_init(|| build("client")),
    };
    let mut resp = Response::text(200, page.html.clone());
    resp.headers[0].1 = "text/html; charset=utf-8".into();
    resp.with_header("Content-Security-Policy", page.csp.clone())
        .with_header("Cache-Control", "no-store")
        .with_header("X-Frame-Options", "DENY")
        .with_header("Referrer-Policy", "no-referrer")
}

fn build(role: &str) -> Page {
    let html = HTML
        .replace("{{ROLE}}", role)
        .replace("{{STYLE}}", STYLE)
        .replace("{{SCRIPT}}", SCRIPT);
    let csp = format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; \
         img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        base64(&Sha256::digest(SCRIPT.as_bytes())),
        base64(&Sha256::digest(STYLE.as_bytes())),
    );
    Page { html, csp }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_hashes_are_base64_sha256() {
        assert_eq!(
            base64(&Sha256::digest(b"")),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn the_page_is_whole_and_allows_only_its_own_script_and_style() {
        let p = build("client");
        assert!(!p.html.contains("{{"), "every placeholder filled");
        assert!(p.html.contains(r#"data-role="client""#));
        assert!(p.html.contains(SCRIPT) && p.html.contains(STYLE));
        assert!(!p.html.contains("http://") && !p.html.contains("https://"));
        assert!(p.csp.starts_with("default-src 'none'; script-src 'sha256-"));
        assert!(!p.csp.contains("unsafe"));
        // The script never turns data into markup.
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("insertAdjacentHTML"));
    }
}
