//! The command line: `crm-relay [--env-file PATH] COMMAND`, and the `--help` text.

use std::path::PathBuf;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Server,
    Client,
    Help,
    Version,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub command: Command,
    /// `--env-file PATH`: `KEY=VALUE` lines read before the environment.
    pub env_file: Option<PathBuf>,
}

/// The `--help` text. Names variables, never their values.
pub const HELP: &str = "\
crm-relay: a webhook relay through a Redis Stream

Usage: crm-relay [--env-file PATH] COMMAND

Commands:
  server       run the public receiver: authenticate webhooks, store them in Redis
  client       run the forwarder: deliver stored webhooks to RELAY_TARGET_URL
  help         print this help (also --help, -h)
  version      print the version (also --version, -V)

Options:
  --env-file PATH   load KEY=VALUE lines from PATH; variables already set in the
                    environment win

Configuration comes from the environment; see the README for every variable.
  all roles: REDIS_URL, RELAY_STREAM, RELAY_DLQ_STREAM, RUST_LOG
  server:    RELAY_LISTEN, RELAY_API_KEYS, RELAY_META_APP_SECRET, RELAY_META_VERIFY_TOKEN,
             RELAY_MAX_BODY, RELAY_MAX_CONNECTIONS
  client:    RELAY_TARGET_URL, RELAY_GROUP, RELAY_CONSUMER, RELAY_CONCURRENCY,
             RELAY_FORWARD_TIMEOUT, RELAY_MAX_ATTEMPTS, RELAY_BACKOFF_BASE, RELAY_BACKOFF_MAX,
             RELAY_BREAKER_THRESHOLD, RELAY_BREAKER_COOLDOWN

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
";

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Invocation, String> {
    let mut env_file = None;
    let mut command = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let next = match arg.as_str() {
            "--env-file" => {
                let path = it.next().ok_or("--env-file needs a PATH")?;
                env_file = Some(PathBuf::from(path));
                continue;
            }
            a if a.starts_with("--env-file=") => {
                env_file = Some(PathBuf::from(&a["--env-file=".len()..]));
                continue;
            }
            "server" => Command::Server,
            "client" => Command::Client,
            "help" | "--help" | "-h" => Command::Help,
            "version" | "--version" | "-V" => Command::Version,
            a if a.starts_with('-') => return Err(format!("unknown option {a:?}")),
            a => return Err(format!("unknown command {a:?}")),
        };
        if command.replace(next).is_some() {
            return Err(format!("unexpected argument {arg:?}"));
        }
    }
    let command = command.ok_or("missing COMMAND")?;
    Ok(Invocation { command, env_file })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Invocation, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn commands_and_env_file_anywhere() {
        assert_eq!(p(&["server"]).unwrap().command, Command::Server);
        assert_eq!(p(&["--version"]).unwrap().command, Command::Version);
        assert_eq!(p(&["help"]).unwrap().command, Command::Help);
        let inv = p(&["--env-file", "/etc/r.env", "server"]).unwrap();
        assert_eq!(inv.env_file, Some(PathBuf::from("/etc/r.env")));
        let inv = p(&["server", "--env-file=x.env"]).unwrap();
        assert_eq!(inv.env_file, Some(PathBuf::from("x.env")));
    }

    #[test]
    fn usage_errors_name_the_argument() {
        assert!(p(&[]).unwrap_err().contains("missing COMMAND"));
        assert!(p(&["serve"]).unwrap_err().contains("\"serve\""));
        assert!(p(&["server", "--port"]).unwrap_err().contains("--port"));
        assert!(p(&["server", "server"]).unwrap_err().contains("unexpected"));
        assert!(p(&["--env-file"]).unwrap_err().contains("--env-file"));
    }
}
