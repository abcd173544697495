//! `--env-file`: `KEY=VALUE` lines, `#` comments on their own lines, optional quotes. Written
//! to mean the same under systemd's `EnvironmentFile=` (which is not a shell): an inline
//! ` # comment` (systemd keeps it in the value) and an `export ` prefix (systemd ignores the
//! line) are refused with the line number rather than read differently; so is a leading
//! byte order mark, which would otherwise end up in the first variable's name.

use std::collections::HashMap;
use std::fmt;

/// What is wrong with an env file; names the line, never its value (it may be a secret).
#[derive(Debug)]
pub enum EnvFileError {
    Read(std::io::Error),
    Line { line: usize, problem: &'static str },
}

impl fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvFileError::Read(e) => write!(f, "cannot read it: {e}"),
            EnvFileError::Line { line, problem } => write!(f, "line {line}: {problem}"),
        }
    }
}

impl std::error::Error for EnvFileError {}

fn at(line: usize, problem: &'static str) -> EnvFileError {
    EnvFileError::Line {
        line: line + 1,
        problem,
    }
}

/// Reads and parses the env file at `path`.
pub fn read(path: &std::path::Path) -> Result<HashMap<String, String>, EnvFileError> {
    let text = std::fs::read_to_string(path).map_err(EnvFileError::Read)?;
    parse(&text)
}

/// Parses an env file.
pub fn parse(text: &str) -> Result<HashMap<String, String>, EnvFileError> {
    if text.starts_with('\u{feff}') {
        return Err(at(
            0,
            "starts with a byte order mark (U+FEFF, which some Windows editors add): save the \
             file as UTF-8 without BOM",
        ));
    }
    let mut vars = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("export ") {
            return Err(at(
                i,
                "'export ' is not allowed: systemd's EnvironmentFile= ignores such lines; write KEY=VALUE",
            ));
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(at(i, "expected KEY=VALUE"));
        };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(at(i, "invalid variable name"));
        }
        let value = unquote(value.trim()).map_err(|problem| at(i, problem))?;
        vars.insert(key.to_owned(), value);
    }
    Ok(vars)
}

/// Strips one pair of matching quotes. An unquoted value with ` #` is refused: systemd would
/// keep the comment as part of the value, and a key would silently stop matching.
fn unquote(v: &str) -> Result<String, &'static str> {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q) {
            return inner
                .strip_suffix(q)
                .map(str::to_owned)
                .ok_or("unbalanced quote");
        }
    }
    if v.contains(" #") || v.contains("\t#") {
        return Err(
            "an inline '# comment' would be part of the value under systemd's EnvironmentFile=: put it on a line of its own, or quote the value",
        );
    }
    Ok(v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_and_quotes() {
        let vars = parse("# comment\n\nA=1\n  B = two \nC=\"x # y\"\nD='q'\nE=v#w\nF=\n").unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two");
        assert_eq!(vars["C"], "x # y");
        assert_eq!(vars["D"], "q");
        assert_eq!(vars["E"], "v#w", "no space: systemd keeps it too");
        assert_eq!(vars["F"], "");
    }

    #[test]
    fn what_systemd_reads_differently_is_refused_with_the_line() {
        let err = parse("A=1\nRELAY_API_KEYS=mykey # prod\n").unwrap_err();
        assert!(
            err.to_string().starts_with("line 2: an inline '# comment'"),
            "{err}"
        );
        assert!(!err.to_string().contains("mykey"));
        let err = parse("\nexport RELAY_LISTEN=127.0.0.1:8080\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("line 2: 'export ' is not allowed"),
            "{err}"
        );
    }

    #[test]
    fn a_byte_order_mark_is_named() {
        let err = parse("\u{feff}REDIS_URL=redis://127.0.0.1:6379\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("line 1: starts with a byte order mark"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_line_not_the_value() {
        let err = parse("A=1\nSECRET\n").unwrap_err();
        assert_eq!(err.to_string(), "line 2: expected KEY=VALUE");
        let err = parse("K=\"hunter2\n").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }
}
