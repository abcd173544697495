//! Who may use an admin listener. It holds customer messages and can replay or delete them,
//! so a web page open in a browser on the same machine must not reach it: only requests whose
//! `Host` is loopback, the listener's own address or listed in `RELAY_ADMIN_HOSTS` (against DNS
//! rebinding); no cross-site requests (`Sec-Fetch-Site: cross-site`, or an `Origin` other than
//! the listener's own); `POST` bodies only as `application/json` (a page's form cannot send
//! that); and `Authorization: Bearer <RELAY_ADMIN_TOKEN>` when a token is set (it must be when
//! the listener is not on loopback).

use std::net::IpAddr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AdminConfig, Secret};
use crate::http::{Head, Response};

/// The admin listener's access rules.
#[derive(Debug, Clone, Default)]
pub struct Access {
    token: Option<[u8; 32]>,
    hosts: Vec<String>,
    /// The address the listener is bound to, once known.
    own: Option<IpAddr>,
}

impl Access {
    pub fn new(config: &AdminConfig) -> Access {
        Access {
            token: config.token.as_ref().map(digest),
            hosts: config.hosts.clone(),
            own: Some(config.listen.ip()).filter(|ip| !ip.is_unspecified()),
        }
    }

    /// Loopback hosts only, no token (tests).
    pub fn loopback() -> Access {
        Access::default()
    }

    /// `Ok` when `head` may be served; else the refusal. `token`: whether the token is
    /// required (everything but the inspector page, which holds no data).
    pub fn check(&self, head: &Head, token: bool) -> Result<(), Response> {
        let host = head.header_values("host").next();
        if let Some(host) = host
            && !self.host_allowed(host)
        {
            return Err(Response::error(
                403,
                "host not allowed (see RELAY_ADMIN_HOSTS)",
            ));
        }
        if head
            .header_values("sec-fetch-site")
            .any(|v| v.trim().eq_ignore_ascii_case("cross-site"))
        {
            return Err(Response::error(403, "cross-site request"));
        }
        let own_origin = host.map(|h| format!("http://{h}"));
        if head
            .header_values("origin")
            .any(|o| Some(o.trim()) != own_origin.as_deref())
        {
            return Err(Response::error(403, "cross-origin request"));
        }
        if let Some(expected) = self.token.as_ref().filter(|_| token) {
            let presented = head.header_values("authorization").find_map(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
            let ok = presented.is_some_and(|t| bool::from(digest_str(t).ct_eq(expected)));
            if !ok {
                return Err(Response::error(401, "RELAY_ADMIN_TOKEN required")
                    .with_header("WWW-Authenticate", "Bearer"));
            }
        }
        let json = head.header_values("content-type").next().is_some_and(|t| {
            t.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
        if head.method == "POST" && !json {
            return Err(Response::error(415, "POST bodies must be application/json"));
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        let ip = name.trim_matches(['[', ']']).parse::<IpAddr>().ok();
        name == "localhost"
            || ip.is_some_and(|ip| ip.is_loopback() || Some(ip) == self.own)
            || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(&name))
    }
}

/// `name:port` → `name`; `[v6]:port` → `[v6]`.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    match host.strip_prefix('[') {
        Some(rest) => rest.find(']').map_or(host, |i| &host[..i + 2]),
        None => host.split(':').next().unwrap_or(host),
    }
}

fn digest(s: &Secret) -> [u8; 32] {
    digest_str(s.expose())
}

fn digest_str(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HeadLimits, parse_head};

    fn head(raw: &str) -> Head {
        let limits = HeadLimits {
            max_head: 16 * 1024,
            max_headers: 100,
            max_body: 1024,
        };
        parse_head(raw.as_bytes(), &limits).unwrap().unwrap().0
    }

    fn status(access: &Access, raw: &str) -> u16 {
        access
            .check(&head(raw), true)
            .err()
            .map_or(200, |r| r.status)
    }

    #[test]
    fn loopback_hosts_same_origin_and_json_only() {
        let a = Access::loopback();
        for host in ["127.0.0.1:9090", "localhost", "[::1]:9090", "127.1.2.3"] {
            assert_eq!(
                status(&a, &format!("GET /dlq HTTP/1.1\r\nHost: {host}\r\n\r\n")),
                200,
                "{host}"
            );
        }
        assert_eq!(
            status(&a, "GET /dlq HTTP/1.1\r\nHost: evil.example\r\n\r\n"),
            403
        );
        assert_eq!(
            status(
                &a,
                "GET / HTTP/1.1\r\nHost: 127.0.0.1:9090\r\nOrigin: http://127.0.0.1:9090\r\n\r\n"
            ),
            200
        );
        assert_eq!(
            status(
                &a,
                "GET / HTTP/1.1\r\nHost: 127.0.0.1:9090\r\nOrigin: http://evil.example\r\n\r\n"
            ),
            403
        );
        assert_eq!(
            status(
                &a,
                "GET / HTTP/1.1\r\nHost: localhost\r\nSec-Fetch-Site: cross-site\r\n\r\n"
            ),
            403
        );
        assert_eq!(
            status(
                &a,
                "POST /dlq/replay HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n"
            ),
            415
        );
        assert_eq!(
            status(
                &a,
                "POST /dlq/replay HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 2\r\n\r\n"
            ),
            200
        );
    }

    #[test]
    fn tokens_and_configured_hosts() {
        let config = AdminConfig {
            listen: "10.0.0.5:9090".parse().unwrap(),
            token: Some(Secret::new("t0k")),
            hosts: vec!["relay.internal".into()],
        };
        let a = Access::new(&config);
        let get =
            |host: &str, auth: &str| format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n");
        assert_eq!(status(&a, &get("10.0.0.5:9090", "")), 401);
        assert_eq!(
            status(&a, &get("10.0.0.5:9090", "Authorization: Bearer nope\r\n")),
            401
        );
        assert_eq!(
            status(&a, &get("10.0.0.5:9090", "Authorization: Bearer t0k\r\n")),
            200
        );
        assert_eq!(
            status(
                &a,
                &get("relay.internal:9090", "Authorization: Bearer t0k\r\n")
            ),
            200
        );
        assert_eq!(
            status(&a, &get("10.0.0.6:9090", "Authorization: Bearer t0k\r\n")),
            403
        );
        // The inspector page holds no data: served without the token, never to other hosts.
        let page = |host: &str| head(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"));
        assert!(a.check(&page("10.0.0.5:9090"), false).is_ok());
        assert_eq!(
            a.check(&page("10.0.0.5:9090"), true).unwrap_err().status,
            401
        );
        assert_eq!(
            a.check(&page("10.0.0.6:9090"), false).unwrap_err().status,
            403
        );
    }
}
