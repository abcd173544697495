//! The command line: `crm-relay [--env-file PATH] COMMAND`, and the `--help` text.

use std::path::PathBuf;

use crate::error::UsageError;
use crate::ops::dlq::Selection;
use crate::ops::events::{Filter, Redeliver};
use crate::ops::partitions::Handle;
use crate::ops::tail;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Server,
    Client,
    /// `check [server|client]`: one role's whole configuration, or every role it can see.
    Check(Option<Role>),
    Dlq(DlqCommand),
    /// `events [--since D] [--source S] [--status ST] [--limit N] [--before ID] [--json]`.
    Events {
        filter: Filter,
        json: bool,
    },
    /// `events show ID [--json]`.
    EventShow {
        id: Handle,
        json: bool,
    },
    /// `redeliver ID...` or `redeliver --since D [--source S] [--status ST]`.
    Redeliver(Redeliver),
    /// `tail [--json] [--source S]`.
    Tail(tail::Options),
    /// `health [server|client]`: asks that role's admin `/health` (container health checks).
    Health(Option<Role>),
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
    Show(Handle),
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
  events [--since D] [--source S] [--status ST] [--limit N] [--before ID] [--json]
                            webhooks in the stream, newest first, with what became of
                            them (ST: pending, retrying, delivered, dead, acknowledged)
  events show ID [--json]   one webhook: status, last attempt, the app's last answer
                            (first KiB, kept for failures), headers and body
  redeliver ID...           send finished webhooks again (a copy with the same X-Relay-Id)
  redeliver --since D [--source S] [--status ST]
                            the same for every finished webhook the filter selects
  tail [--json] [--source S]
                            follow webhooks as they arrive and as their attempts end
  health [server|client]    ask the role's admin /health (default: RELAY_ADMIN_LISTEN,
                            else whichever of 127.0.0.1:9090, :9091 answers); exit 0
                            when healthy, 1 when not (for container health checks)
  help                      print this help (also --help, -h)
  version                   print the version (also --version, -V)

Options:
  --env-file PATH   load KEY=VALUE lines from PATH; variables already set in the
                    environment win

Configuration comes from the environment; see the README for every variable.
  all roles: REDIS_URL, RELAY_STREAM, RELAY_DLQ_STREAM, RELAY_GROUP, RELAY_CA_FILE,
             RELAY_ADMIN_LISTEN, RELAY_ADMIN_TOKEN, RELAY_ADMIN_HOSTS, RUST_LOG
  server:    RELAY_LISTEN, RELAY_API_KEYS, RELAY_META_APP_SECRET, RELAY_META_VERIFY_TOKEN,
             RELAY_MAX_BODY, RELAY_UNVERIFIED_BUDGET, RELAY_MAX_CONNECTIONS,
             RELAY_TRUSTED_PROXIES, RELAY_RETENTION, RELAY_MAX_STREAM_LEN
  client:    RELAY_TARGET_URL, RELAY_TARGET_HEALTH_URL, RELAY_CONSUMER, RELAY_CONCURRENCY,
             RELAY_FORWARD_TIMEOUT, RELAY_MAX_ATTEMPTS, RELAY_BACKOFF_BASE, RELAY_BACKOFF_MAX,
             RELAY_BREAKER_THRESHOLD, RELAY_BREAKER_COOLDOWN

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
        "events" => events(rest)?,
        "redeliver" => redeliver(rest)?,
        "tail" => {
            let (pairs, json, ids) = options(rest, &["source"])?;
            no_ids(&ids)?;
            Command::Tail(tail::Options {
                json,
                source: pairs.first().map(|(_, v)| v.to_string()),
            })
        }
        "health" => match rest {
            [] => Command::Health(None),
            ["server"] => Command::Health(Some(Role::Server)),
            ["client"] => Command::Health(Some(Role::Client)),
            _ => return Err("usage: health [server|client]".into()),
        },
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
                .map_err(|e: String| format!("dead letter {e}")),
            _ => Err("usage: dlq show ID".into()),
        },
        "replay" => selection(args, "replay").map(DlqCommand::Replay),
        "purge" => selection(args, "purge").map(DlqCommand::Purge),
        other => Err(format!("unknown dlq command {other:?}")),
    }
}

/// `--name value` / `--name=value` options among `allowed`, `--json`, and the other words.
#[allow(clippy::type_complexity)]
fn options<'a>(
    args: &[&'a str],
    allowed: &[&str],
) -> Result<(Vec<(&'a str, &'a str)>, bool, Vec<&'a str>), String> {
    let (mut pairs, mut json, mut words) = (Vec::new(), false, Vec::new());
    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        let Some(opt) = arg.strip_prefix("--") else {
            words.push(arg);
            continue;
        };
        if opt == "json" {
            json = true;
            continue;
        }
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, v),
            None => (opt, *it.next().ok_or(format!("--{opt} needs a value"))?),
        };
        if !allowed.contains(&name) {
            return Err(format!("unknown option --{name}"));
        }
        pairs.push((name, value));
    }
    Ok((pairs, json, words))
}

fn no_ids(words: &[&str]) -> Result<(), String> {
    match words.first() {
        None => Ok(()),
        Some(w) => Err(format!("unexpected argument {w:?}")),
    }
}

fn events(rest: &[&str]) -> Result<Command, String> {
    if rest.first() == Some(&"show") {
        let (_, json, words) = options(&rest[1..], &[])?;
        return match words.as_slice() {
            [id] => Ok(Command::EventShow {
                id: id.parse().map_err(|e: String| format!("webhook {e}"))?,
                json,
            }),
            _ => Err("usage: events show ID [--json]".into()),
        };
    }
    let (pairs, json, words) = options(rest, &["since", "source", "status", "limit", "before"])?;
    no_ids(&words)?;
    Ok(Command::Events {
        filter: Filter::from_pairs(pairs)?,
        json,
    })
}

fn redeliver(rest: &[&str]) -> Result<Command, String> {
    let (pairs, json, words) = options(rest, &["since", "source", "status"])?;
    const USAGE: &str = "usage: redeliver ID... | redeliver --since D [--source S] [--status ST]";
    match (pairs.is_empty(), words.is_empty(), json) {
        (true, false, false) => Ok(Command::Redeliver(Redeliver::Ids(
            words.iter().map(|w| w.to_string()).collect(),
        ))),
        (false, true, false) if pairs.iter().any(|(n, _)| *n == "since") => Ok(Command::Redeliver(
            Redeliver::Matching(Filter::from_pairs(pairs)?),
        )),
        _ => Err(USAGE.into()),
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
#[path = "cli_tests.rs"]
mod tests;
