//! The command line: `crm-relay [--env-file PATH] COMMAND`, and the `--help` text.

use std::path::PathBuf;

use crate::error::UsageError;
use crate::ops::dlq::Selection;
use crate::stream::StreamId;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Server,
    Client,
    /// `check [server|client]`: one role's whole configuration, or every role it can see.
    Check(Option<Role>),
    Dlq(DlqCommand),
    Help,
    Version,
}

/// A role, for `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// `crm-relay dlq …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlqCommand {
    List { limit: usize },
    Show(StreamId),
    Replay(Selection),
    Purge(Selection),
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
  server                    run the public receiver: authenticate webhooks, store them in Redis
  client                    run the forwarder: deliver stored webhooks to RELAY_TARGET_URL
  check [server|client]     validate a role's whole configuration (default: every role
                            configured), connect to Redis and report its durability
                            settings and the user's permissions, probe the client's
                            target; exit 0 when usable, 1 when not
  dlq list [--limit N]      dead-lettered webhooks, newest first (default 50)
  dlq show ID               one dead-lettered webhook: headers and body
  dlq replay ID...|--all    put dead-lettered webhooks back on the main stream
  dlq purge ID...|--all     delete dead-lettered webhooks
  help                      print this help (also --help, -h)
  version                   print the version (also --version, -V)

Options:
  --env-file PATH   load KEY=VALUE lines from PATH; variables already set in the
                    environment win

Configuration comes from the environment; see the README for every variable.
  all roles: REDIS_URL, RELAY_STREAM, RELAY_DLQ_STREAM, RUST_LOG
  server:    RELAY_LISTEN, RELAY_ADMIN_LISTEN, RELAY_API_KEYS, RELAY_META_APP_SECRET,
             RELAY_META_VERIFY_TOKEN, RELAY_MAX_BODY, RELAY_MAX_CONNECTIONS, RELAY_RETENTION,
             RELAY_MAX_STREAM_LEN
  client:    RELAY_TARGET_URL, RELAY_GROUP, RELAY_CONSUMER, RELAY_CONCURRENCY,
             RELAY_FORWARD_TIMEOUT, RELAY_MAX_ATTEMPTS, RELAY_BACKOFF_BASE, RELAY_BACKOFF_MAX,
             RELAY_BREAKER_THRESHOLD, RELAY_BREAKER_COOLDOWN, RELAY_ADMIN_LISTEN

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
";

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Invocation, UsageError> {
    parse_words(args).map_err(UsageError)
}

fn parse_words(args: &[String]) -> Result<Invocation, String> {
    let mut env_file = None;
    let mut words: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--env-file" {
            env_file = Some(PathBuf::from(it.next().ok_or("--env-file needs a PATH")?));
        } else if let Some(path) = arg.strip_prefix("--env-file=") {
            env_file = Some(PathBuf::from(path));
        } else {
            words.push(arg);
        }
    }
    let (first, rest) = words.split_first().ok_or("missing COMMAND")?;
    let command = match *first {
        "server" => bare(Command::Server, rest)?,
        "client" => bare(Command::Client, rest)?,
        "check" => match rest {
            [] => Command::Check(None),
            ["server"] => Command::Check(Some(Role::Server)),
            ["client"] => Command::Check(Some(Role::Client)),
            _ => return Err("usage: check [server|client]".into()),
        },
        "help" | "--help" | "-h" => bare(Command::Help, rest)?,
        "version" | "--version" | "-V" => bare(Command::Version, rest)?,
        "dlq" => Command::Dlq(dlq(rest)?),
        a if a.starts_with('-') => return Err(format!("unknown option {a:?}")),
        a => return Err(format!("unknown command {a:?}")),
    };
    Ok(Invocation { command, env_file })
}

/// A command that takes no arguments.
fn bare(command: Command, rest: &[&str]) -> Result<Command, String> {
    match rest.first() {
        None => Ok(command),
        Some(a) if a.starts_with('-') => Err(format!("unknown option {a:?}")),
        Some(a) => Err(format!("unexpected argument {a:?}")),
    }
}

fn dlq(rest: &[&str]) -> Result<DlqCommand, String> {
    let (sub, args) = rest
        .split_first()
        .ok_or("dlq needs list, show, replay or purge")?;
    match *sub {
        "list" => match args {
            [] => Ok(DlqCommand::List { limit: 50 }),
            ["--limit", n] => match n.parse::<usize>() {
                Ok(n) if (1..=10_000).contains(&n) => Ok(DlqCommand::List { limit: n }),
                _ => Err(format!("--limit {n:?}: expected 1..10000")),
            },
            _ => Err("usage: dlq list [--limit N]".into()),
        },
        "show" => match args {
            [id] if !id.starts_with('-') => id
                .parse()
                .map(DlqCommand::Show)
                .map_err(|_| format!("{id:?} is not a dead-letter id like 1764351234567-0")),
            _ => Err("usage: dlq show ID".into()),
        },
        "replay" => selection(args, "replay").map(DlqCommand::Replay),
        "purge" => selection(args, "purge").map(DlqCommand::Purge),
        other => Err(format!("unknown dlq command {other:?}")),
    }
}

fn selection(args: &[&str], verb: &str) -> Result<Selection, String> {
    match args {
        ["--all"] => Ok(Selection::All),
        [] => Err(format!("usage: dlq {verb} ID...|--all")),
        ids if ids.iter().any(|a| a.starts_with('-')) => {
            Err(format!("usage: dlq {verb} ID...|--all"))
        }
        ids => Ok(Selection::Ids(ids.iter().map(|s| s.to_string()).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Invocation, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).map_err(|e| e.0)
    }

    #[test]
    fn commands_and_env_file_anywhere() {
        assert_eq!(p(&["server"]).unwrap().command, Command::Server);
        assert_eq!(p(&["--version"]).unwrap().command, Command::Version);
        assert_eq!(p(&["help"]).unwrap().command, Command::Help);
        assert_eq!(p(&["check"]).unwrap().command, Command::Check(None));
        assert_eq!(
            p(&["check", "client"]).unwrap().command,
            Command::Check(Some(Role::Client))
        );
        let inv = p(&["--env-file", "/etc/r.env", "server"]).unwrap();
        assert_eq!(inv.env_file, Some(PathBuf::from("/etc/r.env")));
        let inv = p(&["server", "--env-file=x.env"]).unwrap();
        assert_eq!(inv.env_file, Some(PathBuf::from("x.env")));
    }

    #[test]
    fn dlq_subcommands() {
        assert_eq!(
            p(&["dlq", "list"]).unwrap().command,
            Command::Dlq(DlqCommand::List { limit: 50 })
        );
        assert_eq!(
            p(&["dlq", "list", "--limit", "5"]).unwrap().command,
            Command::Dlq(DlqCommand::List { limit: 5 })
        );
        assert_eq!(
            p(&["dlq", "show", "1-0"]).unwrap().command,
            Command::Dlq(DlqCommand::Show("1-0".parse().unwrap()))
        );
        assert_eq!(
            p(&["dlq", "replay", "1-0", "2-0"]).unwrap().command,
            Command::Dlq(DlqCommand::Replay(Selection::Ids(vec![
                "1-0".into(),
                "2-0".into()
            ])))
        );
        assert_eq!(
            p(&["dlq", "purge", "--all"]).unwrap().command,
            Command::Dlq(DlqCommand::Purge(Selection::All))
        );
        for bad in [
            &["dlq"][..],
            &["dlq", "list", "--limit", "x"],
            &["dlq", "show"],
            &["dlq", "show", "1000"],
            &["dlq", "replay"],
            &["dlq", "purge", "--all", "1-0"],
            &["dlq", "nuke"],
            &["check", "x"],
            &["check", "server", "client"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn usage_errors_name_the_argument() {
        assert!(p(&[]).unwrap_err().contains("missing COMMAND"));
        assert!(p(&["serve"]).unwrap_err().contains("\"serve\""));
        assert!(p(&["server", "--port"]).unwrap_err().contains("--port"));
        assert!(p(&["server", "client"]).unwrap_err().contains("unexpected"));
        assert!(p(&["--env-file"]).unwrap_err().contains("--env-file"));
    }
}
