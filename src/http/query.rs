//! Query strings (`name=value&…`, form-encoded as browsers and `URLSearchParams` send them).

/// The decoded `name=value` pairs of `query`, empty pairs skipped, a pair without `=` with an
/// empty value; `Err` names the first pair whose encoding is invalid.
pub fn pairs(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            match (percent_decode(k), percent_decode(v)) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(format!("{kv:?}: invalid %-encoding")),
            }
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (form encoding); `None` for invalid escapes or non-UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(percent_decode("%7E%7e").as_deref(), Some("~~"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn pairs_are_decoded() {
        let got = pairs("limit=5&&before=1%2F17-0&flag").unwrap();
        let want = [("limit", "5"), ("before", "1/17-0"), ("flag", "")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            pairs("a=%zz").unwrap_err(),
            r#""a=%zz": invalid %-encoding"#
        );
    }
}
