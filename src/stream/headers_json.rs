//! The record's `headers` field: the header fields as a JSON array of `[name, value]` pairs,
//! a value that is not UTF-8 as an array of its bytes; written exactly as serde_json would
//! write it, on every webhook's path, and parsed back.

use crate::http::{FieldValue, Fields};

/// Writes `headers` as the field's JSON. Pushed into a plain `Vec` (pushes inlined) and handed
/// to the command whole: through the command's `io::Write`, each of the ~30 small writes per
/// webhook was an out-of-line call.
pub(super) fn write(headers: &[(String, FieldValue)], out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, (name, value)) in headers.iter().enumerate() {
        out.extend_from_slice(if i > 0 { b",[" } else { b"[" });
        json_str(out, name);
        out.push(b',');
        match value {
            FieldValue::Text(t) => json_str(out, t),
            FieldValue::Bytes(b) => {
                out.push(b'[');
                for (i, byte) in b.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(byte.to_string().as_bytes());
                }
                out.push(b']');
            }
        }
        out.push(b']');
    }
    out.push(b']');
}

/// About the length of `write`'s output (exact when nothing needs escaping).
pub(super) fn len(headers: &[(String, FieldValue)]) -> usize {
    let pair = |(n, v): &(String, FieldValue)| n.len() + v.as_bytes().len() + 8;
    headers.iter().map(pair).sum::<usize>() + 2
}

/// Bytes a JSON string escapes, as serde_json escapes them: the control characters, `"`
/// and `\\`.
const ESCAPED: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Whether any of the 8 bytes in `w` is one that JSON escapes (a control character, `"` or
/// `\\`): the classic "has a byte below n" and "has a zero byte" word tests, exact as a
/// yes/no.
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES * 0x80;
    let below = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGH != 0;
    below(w, 0x20)
        || below(w ^ (ONES * u64::from(b'"')), 1)
        || below(w ^ (ONES * u64::from(b'\\')), 1)
}

/// `s` as a JSON string, escaped exactly as serde_json escapes it, the runs between escapes
/// copied whole. Header text rarely has any escape: the scan tests 8 bytes at a time, and
/// looks at single bytes only in a word that has one.
fn json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut run = 0;
    let mut i = 0;
    while i < bytes.len() {
        let word = bytes
            .get(i..i + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok());
        if let Some(word) = word
            && !word_needs_escape(u64::from_le_bytes(word))
        {
            i += 8;
            continue;
        }
        let (at, b) = (i, bytes[i]);
        i += 1;
        if !ESCAPED[usize::from(b)] {
            continue;
        }
        out.extend_from_slice(&bytes[run..at]);
        run = at + 1;
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            _ => 0,
        };
        match short {
            0 => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]),
            c => out.extend_from_slice(&[b'\\', c]),
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// The `headers` field back into fields: `[name, "text"]` or `[name, [bytes…]]` pairs.
pub(super) fn parse(raw: &[u8]) -> Result<Fields, String> {
    let pairs: Vec<(String, serde_json::Value)> =
        serde_json::from_slice(raw).map_err(|e| e.to_string())?;
    pairs
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                serde_json::Value::String(t) => FieldValue::Text(t),
                serde_json::Value::Array(_) => {
                    FieldValue::Bytes(serde_json::from_value(value).map_err(|e| e.to_string())?)
                }
                _ => return Err(format!("value of {name} is neither text nor bytes")),
            };
            Ok((name, value))
        })
        .collect()
}
