//! Error types at the crate's boundaries: `ConfigError`, `Fatal` (what stops a command, mapped
//! once to an exit code), and `Report`, which prints a cause chain as `a: b: c`.

use std::error::Error;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::envfile::EnvFileError;
use crate::stream::StoreError;

/// A configuration value that is missing or invalid; always names the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    var: String,
    msg: String,
    /// The value is valid, but what Redis holds forbids it now (the message says what to do
    /// instead): `--help` would not help.
    conflict: bool,
}

impl ConfigError {
    pub fn new(var: impl Into<String>, msg: impl fmt::Display) -> Self {
        ConfigError {
            var: var.into(),
            msg: msg.to_string(),
            conflict: false,
        }
    }

    /// A valid value that what Redis holds forbids for now; `msg` says what to do.
    pub fn conflict(var: impl Into<String>, msg: impl fmt::Display) -> Self {
        ConfigError {
            conflict: true,
            ..ConfigError::new(var, msg)
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

/// A value that does not parse (a duration, a size, a URL, a certificate file); says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Invalid {}

/// Arguments that do not make a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for UsageError {}

/// Why a command stopped. `exit_code` is the one place that turns it into a status.
#[derive(Debug)]
pub enum Fatal {
    Usage(UsageError),
    EnvFile {
        path: PathBuf,
        error: EnvFileError,
    },
    Config(ConfigError),
    /// The runtime or the signal handlers could not start.
    Start(std::io::Error),
    Bind {
        what: &'static str,
        addr: SocketAddr,
        error: std::io::Error,
    },
    /// Redis failed something the command cannot do without.
    Store {
        doing: &'static str,
        error: StoreError,
    },
    /// The client's stream reader stopped: a bug; the exit code makes systemd restart it.
    FeedLost,
    /// The command ran and reported its failure itself (`check` found Redis unusable, a
    /// DLQ id was unknown).
    Reported,
}

impl Fatal {
    /// 2 for usage and configuration errors, 1 for runtime failures.
    pub fn exit_code(&self) -> u8 {
        match self {
            Fatal::Usage(_) | Fatal::EnvFile { .. } | Fatal::Config(_) => 2,
            _ => 1,
        }
    }

    /// A usage or configuration error, which the user fixes on the command line.
    pub fn is_usage(&self) -> bool {
        self.exit_code() == 2
    }

    /// Whether `--help` says how to fix it: not for a configuration that conflicts with what
    /// Redis holds (its message says what to do).
    pub fn help_helps(&self) -> bool {
        match self {
            Fatal::Config(e) => !e.conflict,
            f => f.is_usage(),
        }
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fatal::Usage(_) => f.write_str("command line"),
            Fatal::EnvFile { path, .. } => write!(f, "--env-file {}", path.display()),
            Fatal::Config(_) => f.write_str("configuration error"),
            Fatal::Start(_) => f.write_str("starting"),
            Fatal::Bind { what, addr, .. } => write!(f, "binding {what} {addr}"),
            Fatal::Store { doing, .. } => f.write_str(doing),
            Fatal::FeedLost => f.write_str("the stream reader stopped unexpectedly"),
            Fatal::Reported => f.write_str("failed"),
        }
    }
}

impl Error for Fatal {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Fatal::Usage(e) => Some(e),
            Fatal::EnvFile { error, .. } => Some(error),
            Fatal::Config(e) => Some(e),
            Fatal::Start(e) | Fatal::Bind { error: e, .. } => Some(e),
            Fatal::Store { error, .. } => Some(error),
            Fatal::FeedLost | Fatal::Reported => None,
        }
    }
}

impl From<ConfigError> for Fatal {
    fn from(e: ConfigError) -> Self {
        Fatal::Config(e)
    }
}

impl From<UsageError> for Fatal {
    fn from(e: UsageError) -> Self {
        Fatal::Usage(e)
    }
}

/// Prints an error with its chain of causes on one line: `binding 0.0.0.0:80: permission
/// denied`. A cause whose text the line already ends with is not repeated: some errors (the
/// redis crate's) print their source in their own message and return it as `source()` too.
/// A message of several lines (the redis crate's parse errors) is joined with `; `: one
/// event, one log line.
pub struct Report<'a>(pub &'a dyn Error);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = one_line(&self.0.to_string());
        let mut cause = self.0.source();
        while let Some(e) = cause {
            let text = one_line(&e.to_string());
            if !line.ends_with(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = e.source();
        }
        f.write_str(&line)
    }
}

/// `text`'s non-blank lines, trimmed, joined with `; `.
fn one_line(text: &str) -> String {
    match text.contains(['\n', '\r']) {
        false => text.to_owned(),
        true => {
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            lines.join("; ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_errors_map_to_exit_codes_and_print_their_chain() {
        let e = Fatal::Config(ConfigError::new("RELAY_LISTEN", "bad"));
        assert_eq!(
            (e.exit_code(), Report(&e).to_string().as_str()),
            (2, "configuration error: RELAY_LISTEN: bad")
        );
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let e = Fatal::Bind {
            what: "RELAY_LISTEN",
            addr: "127.0.0.1:80".parse().unwrap(),
            error: io,
        };
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            Report(&e).to_string(),
            "binding RELAY_LISTEN 127.0.0.1:80: address in use"
        );
        assert_eq!(Fatal::FeedLost.exit_code(), 1);
        assert!(Fatal::Config(ConfigError::new("RELAY_LISTEN", "bad")).help_helps());
        let conflict = Fatal::Config(ConfigError::conflict("RELAY_PARTITIONS", "drain first"));
        assert_eq!(
            (conflict.exit_code(), conflict.help_helps()),
            (2, false),
            "exit code 2 as for any configuration error, without the --help hint"
        );
    }

    /// An error whose message already ends with its cause's (the redis crate's connection
    /// errors: "redis connection failed: Connection refused (os error 111)", whose source is
    /// that io error).
    #[derive(Debug)]
    struct Repeats(std::io::Error);

    impl fmt::Display for Repeats {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "redis connection failed: {}", self.0)
        }
    }

    impl Error for Repeats {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_message_of_several_lines_is_printed_on_one() {
        let e = Fatal::Start(std::io::Error::other(
            "Parse error at 1\nUnexpected `72`\r\n\nUnexpected `84`\n",
        ));
        assert_eq!(
            Report(&e).to_string(),
            "starting: Parse error at 1; Unexpected `72`; Unexpected `84`"
        );
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_printed_twice() {
        let refused = || std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            Report(&Repeats(refused())).to_string(),
            "redis connection failed: refused"
        );
        // Wrapped once more, by an error that names only itself.
        let e = Fatal::Start(std::io::Error::other(Repeats(refused())));
        assert_eq!(
            Report(&e).to_string(),
            "starting: redis connection failed: refused"
        );
    }
}
