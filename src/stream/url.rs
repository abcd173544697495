//! `REDIS_URL`: `redis://` or `rediss://` (TLS), `[user:password@]host[:port][/db]`, read
//! here rather than by the redis crate's general URL parser (which pulls a WHATWG URL and IDNA
//! implementation, about a tenth of the static binary's growth budget, into the binary for
//! this one string). Nothing else is accepted: a query or a fragment is an error, not ignored.

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

const DEFAULT_PORT: u16 = 6379;

/// The connection settings `url` describes. Errors never quote the URL (it may hold a
/// password).
pub fn parse(url: &str) -> Result<ConnectionInfo, &'static str> {
    let (tls, rest) = match url.split_once("://") {
        Some(("redis", rest)) => (false, rest),
        Some(("rediss", rest)) => (true, rest),
        _ => return Err("must start with redis:// or rediss:// (TLS)"),
    };
    if rest.contains(['?', '#']) {
        return Err("takes no query or fragment: [user:password@]host[:port][/db]");
    }
    // The user information ends at the last `@`, so a password may hold `/` or `@` unencoded.
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, rest),
    };
    let (hostport, db) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = host_port(hostport)?;
    if host == "0.0.0.0" || host == "::" {
        return Err("cannot connect to a wildcard address (0.0.0.0 or ::)");
    }
    let mut settings = RedisConnectionInfo::default();
    if let Some(userinfo) = userinfo {
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        if !user.is_empty() {
            settings = settings.set_username(decode(user)?);
        }
        if !password.is_empty() {
            settings = settings.set_password(decode(password)?);
        }
    }
    match db.trim_end_matches('/') {
        "" => {}
        db => {
            settings = settings.set_db(
                db.parse::<u16>()
                    .map_err(|_| "the database must be a number")?
                    .into(),
            )
        }
    }
    let addr = match tls {
        false => ConnectionAddr::Tcp(host, port),
        true => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        },
    };
    let info = addr.into_connection_info().map_err(|_| "invalid address")?;
    Ok(info.set_redis_settings(settings))
}

/// `redis://user:pass@host:6379/0` → `redis://host:6379/0`.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(invalid)".to_owned();
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let rest = rest.split_once('?').map_or(rest, |(path, _)| path);
    format!("{scheme}://{rest}")
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn host_port(s: &str) -> Result<(String, u16), &'static str> {
    let (host, port) = match s.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or("an IPv6 host needs its closing ]")?;
            (host, after.strip_prefix(':'))
        }
        None => match s.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        },
    };
    if host.is_empty() {
        return Err("has no host");
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse()
            .map_err(|_| "the port must be a number up to 65535")?,
    };
    Ok((host.to_owned(), port))
}

/// Percent-decoding (`%40` → `@`), as in a URL's user and password.
fn decode(s: &str) -> Result<String, &'static str> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or("a % must be followed by two hex digits")?;
            out.push(
                u8::from_str_radix(hex, 16)
                    .map_err(|_| "a % must be followed by two hex digits")?,
            );
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "user and password must be UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(info: &ConnectionInfo) -> (String, u16, bool) {
        match info.addr() {
            ConnectionAddr::Tcp(h, p) => (h.clone(), *p, false),
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                ..
            } => {
                assert!(!insecure);
                (host.clone(), *port, true)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_documented_forms_parse_as_the_redis_crate_reads_them() {
        let i = parse("redis://127.0.0.1:6379").unwrap();
        assert_eq!(tcp(&i), ("127.0.0.1".into(), 6379, false));
        assert_eq!(i.redis_settings().db(), 0);
        assert_eq!(i.redis_settings().password(), None);
        let i = parse("rediss://user:p%40ss:w@redis.example:6380/2").unwrap();
        assert_eq!(tcp(&i), ("redis.example".into(), 6380, true));
        assert_eq!(i.redis_settings().username(), Some("user"));
        assert_eq!(i.redis_settings().password(), Some("p@ss:w"));
        assert_eq!(i.redis_settings().db(), 2);
        let i = parse("redis://:secret@[::1]:7000/").unwrap();
        assert_eq!(tcp(&i), ("::1".into(), 7000, false));
        assert_eq!(i.redis_settings().username(), None);
        assert_eq!(i.redis_settings().password(), Some("secret"));
        assert_eq!(tcp(&parse("redis://localhost").unwrap()).1, 6379);
        // An unencoded @ or / in the password: the last @ ends the user information.
        let i = parse("redis://:a@b/c@h:1/3").unwrap();
        assert_eq!(i.redis_settings().password(), Some("a@b/c"));
        assert_eq!(i.redis_settings().db(), 3);
    }

    #[test]
    fn anything_else_is_refused_without_quoting_the_url() {
        for bad in [
            "http://h:1",
            "h:6379",
            "redis://",
            "redis://:pw@:6379",
            "redis://h:port",
            "redis://h:70000",
            "redis://h:1/db",
            "redis://h:1/?protocol=resp3",
            "rediss://h:1/#insecure",
            "redis://0.0.0.0:6379",
            "redis://[::1:6379",
            "redis://:%zz@h",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(!e.contains("pw") && !e.contains(bad), "{bad}: {e}");
        }
    }
}
