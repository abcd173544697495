//! `--env-file`: `KEY=VALUE` lines, `#` comments, optional `export` and quotes.

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
    let mut vars = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(at(i, "expected KEY=VALUE"));
        };
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(at(i, "invalid variable name"));
        }
        let value = unquote(value.trim()).ok_or_else(|| at(i, "unbalanced quote"))?;
        vars.insert(key.to_owned(), value);
    }
    Ok(vars)
}

/// Strips one pair of matching quotes; an unquoted value loses a trailing ` # comment`.
fn unquote(v: &str) -> Option<String> {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q) {
            return inner.strip_suffix(q).map(str::to_owned);
        }
    }
    let v = match v.find(" #") {
        Some(i) => v[..i].trim_end(),
        None => v,
    };
    Some(v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_quotes_and_export() {
        let vars = parse("# comment\n\nA=1\nexport B = two \nC=\"x # y\"\nD='q'\nE=v # note\nF=\n")
            .unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two");
        assert_eq!(vars["C"], "x # y");
        assert_eq!(vars["D"], "q");
        assert_eq!(vars["E"], "v");
        assert_eq!(vars["F"], "");
    }

    #[test]
    fn errors_name_the_line_not_the_value() {
        let err = parse("A=1\nSECRET\n").unwrap_err();
        assert_eq!(err.to_string(), "line 2: expected KEY=VALUE");
        let err = parse("K=\"hunter2\n").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }
}
