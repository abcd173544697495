//! Header fields as received: names as sent, values byte-exact (text when UTF-8), duplicates
//! and order kept.

/// A header field's value: text when it is UTF-8 (nearly always), else the bytes as
/// received (obs-text, such as Latin-1 from Python's requests), kept byte-exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    Text(String),
    Bytes(Vec<u8>),
}

impl FieldValue {
    pub fn from_bytes(b: &[u8]) -> FieldValue {
        match std::str::from_utf8(b) {
            Ok(t) => FieldValue::Text(t.to_owned()),
            Err(_) => FieldValue::Bytes(b.to_vec()),
        }
    }

    /// `value`, a slice of `head` (as httparse returns them), where `head_text` is `head`
    /// already checked as UTF-8 (`None` when it is not): a slice of that text, without a
    /// second check. One check per head instead of one per value (std's `from_utf8` costs
    /// about 100 instructions per short value). Checks `value` itself when it lies outside.
    // Inlined into its loops: out of line it cost 110 instructions per webhook (callgrind).
    #[inline]
    pub fn from_head(head_text: Option<&str>, head: &[u8], value: &[u8]) -> FieldValue {
        let within = |text: &str| {
            let start = (value.as_ptr() as usize).checked_sub(head.as_ptr() as usize)?;
            text.get(start..start.checked_add(value.len())?)
                .map(|t| FieldValue::Text(t.to_owned()))
        };
        head_text
            .and_then(within)
            .unwrap_or_else(|| FieldValue::from_bytes(value))
    }

    /// The value as text, if it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::Text(t) => Some(t),
            FieldValue::Bytes(_) => None,
        }
    }

    /// The value's bytes, exactly as received.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            FieldValue::Text(t) => t.as_bytes(),
            FieldValue::Bytes(b) => b,
        }
    }
}

impl From<&str> for FieldValue {
    fn from(t: &str) -> Self {
        FieldValue::Text(t.to_owned())
    }
}

impl From<String> for FieldValue {
    fn from(t: String) -> Self {
        FieldValue::Text(t)
    }
}

/// Header fields in arrival order, names as received, duplicates kept.
pub type Fields = Vec<(String, FieldValue)>;

/// Text values of every header named `name` (case-insensitive) in `headers`, in order
/// (a value that is not UTF-8 matches nothing a caller compares with).
pub fn header_values<'a>(
    headers: &'a [(String, FieldValue)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .filter_map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_from_a_head_are_the_values_checked_one_by_one() {
        let head = "X-A: caf\u{e9}\r\nX-B: \u{1f600}\r\n".as_bytes();
        let text = std::str::from_utf8(head).ok();
        let (a, b) = (&head[5..10], &head[17..21]);
        assert_eq!(FieldValue::from_head(text, head, a), "caf\u{e9}".into());
        assert_eq!(FieldValue::from_head(text, head, b), "\u{1f600}".into());
        assert_eq!(FieldValue::from_head(text, head, &head[5..5]), "".into());
        // Not UTF-8 as a whole: each value is checked on its own.
        let latin1 = b"X-A: Caf\xe9\r\nX-B: ok\r\n";
        let (c, d) = (&latin1[5..9], &latin1[16..18]);
        assert_eq!(
            FieldValue::from_head(None, latin1, c),
            FieldValue::Bytes(c.to_vec())
        );
        assert_eq!(FieldValue::from_head(None, latin1, d), "ok".into());
        // A value outside the head is checked on its own too.
        let other = b"elsewhere";
        assert_eq!(FieldValue::from_head(text, head, other), "elsewhere".into());
    }
}
