//! Carrying out a command: arguments, the env file, configuration, logger, runtime,
//! listeners. Every failure is a `Fatal`, returned with `?` and turned into a message and an
//! exit code in one place (`report` and `Fatal::exit_code`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use crate::cli::{self, Command, DlqCommand, HELP};
use crate::client::Client;
use crate::config::{ClientConfig, CommonConfig, Lookup, ServerConfig, envfile};
use crate::error::{Fatal, Report};
use crate::http::{self, Limits};
use crate::ops::admin::Admin;
use crate::ops::dlq::{self, Outcome};
use crate::ops::durability::{self, Level};
use crate::ops::partitions::{Found, Partitions};
use crate::ops::run;
use crate::server::{Reload, Server};
use crate::shutdown::{self, Shutdown};
use crate::stream::Store;

mod listen;

/// Runs the command line `args` (without the program name).
pub fn main(args: &[String]) -> Result<(), Fatal> {
    let invocation = cli::parse(args)?;
    let lookup = variables(invocation.env_file.as_deref())?;
    match &invocation.command {
        Command::Help => {
            print!("{HELP}");
            Ok(())
        }
        Command::Version => {
            println!("crm-relay {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Server => {
            // SIGHUP reads the same sources again: the environment and the env file.
            let env_file = invocation.env_file.clone();
            let reload: Reload = Box::new(move || {
                let get = variables(env_file.as_deref()).map_err(|e| Report(&e).to_string())?;
                ServerConfig::load(&get).map_err(|e| Report(&e).to_string())
            });
            server(&lookup, reload)
        }
        Command::Client => client(&lookup),
        Command::Check(role) => {
            let usable =
                crate::task::block_on(&runtime()?, crate::ops::check::run(&lookup, *role))?;
            usable.then_some(()).ok_or(Fatal::Reported)
        }
        Command::Dlq(cmd) => dlq_command(&lookup, cmd),
        Command::Events { filter, json } => with_store(&lookup, |parts| async move {
            run::list(&parts, filter, *json).await
        }),
        Command::EventShow { id, json } => with_store(&lookup, |parts| async move {
            run::show(&parts, *id, *json).await
        }),
        Command::Redeliver(what) => with_store(&lookup, |parts| async move {
            run::redeliver(&parts, what).await
        }),
        Command::Tail(opts) => with_store(&lookup, |parts| async move {
            let shutdown = shutdown::on_signals().map_err(Fatal::Start)?;
            crate::ops::tail::run(&parts, opts, shutdown)
                .await
                .map_err(|error| Fatal::Store {
                    doing: "starting to follow the streams",
                    error,
                })
        }),
        Command::Health(role) => crate::task::block_on(&runtime()?, run::health(&lookup, *role)),
    }
}

/// The configuration's variables: the environment, then the env file (a variable set in the
/// environment wins). A typo in a `RELAY_*` name is an error, not a setting silently ignored.
fn variables(env_file: Option<&Path>) -> Result<impl Fn(&str) -> Option<String>, Fatal> {
    let file_vars = match env_file {
        None => HashMap::new(),
        Some(path) => envfile::read(path).map_err(|error| Fatal::EnvFile {
            path: path.to_owned(),
            error,
        })?,
    };
    let env_names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    crate::config::names::check(env_names.iter().chain(file_vars.keys()).map(String::as_str))?;
    Ok(move |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| file_vars.get(name).cloned())
    })
}

/// Says why a command failed: usage errors on stderr (with the help hint where `--help`
/// says how to fix them), role failures through the log (once a role runs, stderr is its
/// log), the rest on stderr.
pub fn report(fatal: &Fatal) {
    match fatal {
        Fatal::Reported => {}
        f if f.help_helps() => eprintln!("crm-relay: {}\nTry 'crm-relay --help'.", Report(f)),
        f if f.is_usage() => eprintln!("crm-relay: {}", Report(f)),
        f if log::max_level() >= log::LevelFilter::Error => log::error!("{}", Report(f)),
        f => eprintln!("crm-relay: {}", Report(f)),
    }
}

fn init_logger(level: log::LevelFilter) {
    // Our lines at the configured level; dependencies never below warn, so that nothing
    // they trace (a Redis AUTH command, say) can reach the log.
    let _ = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Warn.min(level))
        .with_module_level("crm_relay", level)
        .with_utc_timestamps()
        .init();
}

fn runtime() -> Result<tokio::runtime::Runtime, Fatal> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(Fatal::Start)
}

/// The server's runtime: multi-threaded where it has several CPUs; one thread where it has
/// one (a small VPS, or pinned with taskset), where worker threads only add wake-ups and
/// context switches between them.
/// Measured with server and Redis pinned to one core (`scripts/bench-ab.sh`, two runs of 8
/// rounds): 0.83–0.88 times the CPU per request of the multi-threaded runtime.
fn server_runtime() -> Result<tokio::runtime::Runtime, Fatal> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    match one_thread(cpus) {
        true => one_thread_runtime(),
        false => runtime(),
    }
}

/// Whether a server with `cpus` CPUs available runs on one thread.
fn one_thread(cpus: usize) -> bool {
    cpus <= 1
}

/// A runtime on one thread: the client's, and the server's where it has one CPU. The
/// client's work is waiting on sockets and one dispatcher loop; across threads every delivery cost wake-ups and context switches. Measured on 2
/// cores (100,000 stored webhooks, sink-side rate): concurrency 4 12.3k–12.9k/s against
/// 9.5k–10.4k/s on the multi-threaded runtime, concurrency 16 16.7k–16.9k/s against
/// 14.5k–15.4k/s.
fn one_thread_runtime() -> Result<tokio::runtime::Runtime, Fatal> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Fatal::Start)
}

/// Starts the admin listener, if the role has one.
async fn serve_admin(admin: Option<(SocketAddr, Admin)>, shutdown: &Shutdown) -> Result<(), Fatal> {
    if let Some((addr, admin)) = admin {
        let listener = listen::bind("RELAY_ADMIN_LISTEN", addr)?;
        let limits = Limits::new(64 * 1024, 64);
        let admin = std::sync::Arc::new(admin);
        crate::task::spawn(http::serve(listener, admin, limits, shutdown.clone()));
    }
    Ok(())
}

fn server(get: Lookup, reload: Reload) -> Result<(), Fatal> {
    let config = ServerConfig::load(get)?;
    init_logger(config.common.log_level);
    // Before any thread starts: taking the socket clears LISTEN_FDS from the environment.
    let activated = listenfd::ListenFd::from_env().take_tcp_listener(0);
    crate::task::block_on(&server_runtime()?, async {
        let listen = config.listen;
        log::info!(
            "crm-relay {} server starting: {}",
            env!("CARGO_PKG_VERSION"),
            config.summary()
        );
        let min_replicas = config.common.topology.min_replicas;
        let server = Server::new(config)?;
        let shutdown = shutdown::on_signals().map_err(Fatal::Start)?;
        let hangups = shutdown::hangups().map_err(Fatal::Start)?;
        let listener = match activated {
            Ok(Some(socket)) => listen::adopt(socket, listen)?,
            Ok(None) => listen::bind("RELAY_LISTEN", listen)?,
            Err(e) => return Err(Fatal::Start(e)),
        };
        serve_admin(server.admin(), &shutdown).await?;
        log_durability(server.store(), min_replicas).await;
        server
            .run(listener, shutdown, Some((hangups, reload)))
            .await;
        log::info!("server stopped");
        Ok(())
    })
}

/// The server logs what `check` reports, so a risky Redis is visible in its own log.
async fn log_durability(store: &Store, min_replicas: u32) {
    let mut findings = durability::inspect(store).await;
    findings.extend(durability::writes(store).await);
    if min_replicas > 0 {
        findings.push(durability::replicas(store, min_replicas).await);
    }
    for f in findings {
        match f.level {
            Level::Ok => log::info!("redis: {}", f.text),
            Level::Warn | Level::Fail => log::warn!("redis: {}", f.text),
        }
    }
}

fn client(get: Lookup) -> Result<(), Fatal> {
    let config = ClientConfig::load(get)?;
    init_logger(config.common.log_level);
    crate::task::block_on(&one_thread_runtime()?, async {
        log::info!(
            "crm-relay {} client starting: {}",
            env!("CARGO_PKG_VERSION"),
            config.summary()
        );
        let client = Client::new(config)?;
        let shutdown = shutdown::on_signals().map_err(Fatal::Start)?;
        // SIGHUP must not end the client (its default action); it has nothing to reload.
        let mut hangups = shutdown::hangups().map_err(Fatal::Start)?;
        crate::task::spawn(async move {
            while hangups.recv().await.is_some() {
                log::info!(
                    "SIGHUP: the client has nothing to reload; restart it to apply configuration changes"
                );
            }
        });
        serve_admin(client.admin(), &shutdown).await?;
        client.run(shutdown).await?;
        log::info!("client stopped");
        Ok(())
    })
}

/// Runs an operator command against the configured Redis and keys (every partition).
fn with_store<F, Fut>(get: Lookup, f: F) -> Result<(), Fatal>
where
    F: FnOnce(Partitions) -> Fut,
    Fut: std::future::Future<Output = Result<(), Fatal>>,
{
    let common = CommonConfig::load(get)?;
    let parts = Partitions::open(&common).map_err(|error| Fatal::Store {
        doing: "opening the redis client",
        error,
    })?;
    crate::task::block_on(&runtime()?, f(parts))
}

/// `crm-relay dlq …`.
fn dlq_command(get: Lookup, cmd: &DlqCommand) -> Result<(), Fatal> {
    with_store(get, |parts| async move {
        let failed = |doing| move |error| Fatal::Store { doing, error };
        match cmd {
            DlqCommand::List { limit } => {
                let entries = dlq::list(&parts, *limit)
                    .await
                    .map_err(failed("listing dead letters"))?;
                print!("{}", dlq::table(&entries, crate::clock::unix_ms()));
                Ok(())
            }
            DlqCommand::Show(id) => match dlq::get(&parts, &id.to_string()).await {
                Ok(Found::One { value, .. }) => {
                    print!("{}", dlq::show(&value));
                    Ok(())
                }
                Ok(Found::Nothing) => {
                    eprintln!("crm-relay: no dead letter {id} in {}", parts.dlqs());
                    Err(Fatal::Reported)
                }
                Ok(Found::Ambiguous(candidates)) => {
                    eprintln!(
                        "crm-relay: {}",
                        run::ambiguous(&id.to_string(), &candidates)
                    );
                    Err(Fatal::Reported)
                }
                Err(e) => Err(failed("reading the dead letter")(e)),
            },
            DlqCommand::Replay(sel) => {
                let out = dlq::replay(&parts, sel)
                    .await
                    .map_err(failed("replaying dead letters"))?;
                print_outcome(&out, "replayed")
            }
            DlqCommand::Purge(sel) => {
                let out = dlq::purge(&parts, sel)
                    .await
                    .map_err(failed("purging dead letters"))?;
                print_outcome(&out, "purged")
            }
        }
    })
}

/// Prints what a replay or purge did; unknown ids fail the command.
fn print_outcome(out: &Outcome, verb: &str) -> Result<(), Fatal> {
    for (id, new_id) in &out.done {
        match new_id {
            Some(new_id) => println!("{verb} {id} as {new_id}"),
            None => println!("{verb} {id}"),
        }
    }
    for id in &out.unknown {
        eprintln!("crm-relay: unknown dead letter {id}");
    }
    for (id, candidates) in &out.ambiguous {
        eprintln!("crm-relay: {}", run::ambiguous(id, candidates));
    }
    let unknown = out.unknown.len() + out.ambiguous.len();
    println!("{} {verb}, {unknown} unknown", out.done.len());
    out.all_done().then_some(()).ok_or(Fatal::Reported)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_server_runs_on_one_thread_only_with_one_cpu() {
        assert!(super::one_thread(1));
        assert!(!super::one_thread(2));
        assert!(!super::one_thread(64));
    }
}
