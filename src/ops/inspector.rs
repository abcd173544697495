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
    resp.headers[0].1 = "text/html; charset=utf-8".to_owned();
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

/// Standard base64 with padding (RFC 4648 §4), for the policy's hashes.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
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
