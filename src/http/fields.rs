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
