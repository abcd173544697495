//! Where requests go: an `http(s)://host[:port][/path][?query]` URL, parsed once.

use rustls::pki_types::ServerName;

use crate::error::Invalid;

/// Where requests go: an `http(s)://host[:port][/path][?query]` URL, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https://`: TLS, never a plaintext fallback.
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query sent in the request line.
    pub path: String,
    /// The `Host` header value.
    pub authority: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, Invalid> {
        Self::parse_url(url).map_err(Invalid)
    }

    fn parse_url(url: &str) -> Result<Target, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err("must start with http:// or https://".into());
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return Err("credentials in the URL are not supported".into());
        }
        let path = path.split('#').next().unwrap_or("");
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("the path contains spaces or control characters".into());
        }
        let (host, port) = split_host_port(authority, if tls { 443 } else { 80 })?;
        if tls && ServerName::try_from(host.clone()).is_err() {
            return Err(format!("{host:?} is not a valid TLS server name"));
        }
        Ok(Target {
            tls,
            host,
            port,
            path,
            authority: authority.to_owned(),
        })
    }

    /// The TLS server name (checked by `parse` for `https://` targets).
    pub fn server_name(&self) -> ServerName<'static> {
        ServerName::try_from(self.host.clone())
            .unwrap_or_else(|_| ServerName::try_from("invalid.invalid").expect("a valid name"))
    }

    /// The URL again, for log lines.
    pub fn display(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.path)
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, rest) = v6.split_once(']').ok_or("unclosed [ in host")?;
        (h, rest.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse().map_err(|_| format!("invalid port {p:?}"))?,
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = Target::parse("http://127.0.0.1:3000/hooks/in?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 3000, "/hooks/in?x=1")
        );
        assert_eq!(t.authority, "127.0.0.1:3000");
        let t = Target::parse("http://app.internal").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let t = Target::parse("http://[::1]:8081?q").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 8081, "/?q")
        );
        for bad in [
            "",
            "ftp://x",
            "http://",
            "http://:80/",
            "http://h:port/",
            "http://u:p@h/",
            "http://h/a b",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
        let t = Target::parse("https://app.internal/in").unwrap();
        assert!(t.tls);
        assert_eq!(
            (t.port, t.display().as_str()),
            (443, "https://app.internal/in")
        );
    }
}
