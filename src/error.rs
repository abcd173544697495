//! Error types at the crate's boundaries, and `Report` to print a chain as `a: b: c`.

use std::error::Error;
use std::fmt;

/// A configuration value that is missing or invalid; always names the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    var: String,
    msg: String,
}

impl ConfigError {
    pub fn new(var: impl Into<String>, msg: impl Into<String>) -> Self {
        ConfigError {
            var: var.into(),
            msg: msg.into(),
        }
    }

    /// The variable (or argument) at fault.
    pub fn var(&self) -> &str {
        &self.var
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.msg)
    }
}

impl Error for ConfigError {}

/// Prints an error with its chain of causes: `binding 0.0.0.0:80: permission denied`.
pub struct Report<'a>(pub &'a dyn Error);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}
