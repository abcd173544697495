//! Carrying out a parsed command: configuration, logger, runtime, listeners, exit code.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;

use crate::cli::DlqCommand;
use crate::config::{ClientConfig, CommonConfig, Lookup, ServerConfig};
use crate::error::{ConfigError, Report};
use crate::http::{self, Limits};
use crate::metrics::{ClientMetrics, ServerMetrics};
use crate::ops::admin::{Admin, Role};
use crate::ops::dlq::{self, Outcome};
use crate::ops::durability::{self, Level};
use crate::shutdown::{self, Shutdown};
use crate::stream::Store;
use crate::{client, server};

/// Exit code 2: usage or configuration error.
pub fn usage_error(msg: &str) -> ExitCode {
    eprintln!("crm-relay: {msg}\nTry 'crm-relay --help'.");
    ExitCode::from(2)
}

fn config_error(e: &ConfigError) -> ExitCode {
    usage_error(&format!("configuration error: {e}"))
}

/// Exit code 1, logged: a runtime failure.
fn fatal(what: &str, e: &dyn std::error::Error) -> ExitCode {
    log::error!("{what}: {}", Report(e));
    ExitCode::from(1)
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

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// What both roles set up before running: the store, signal handling, the admin listener.
struct Started {
    store: Arc<Store>,
    shutdown: Shutdown,
}

/// Opens the store, installs signal handlers and starts the admin listener (if configured)
/// with `role`'s metrics. `Err` is the exit code of a fatal failure, already logged.
async fn start_role(
    common: &CommonConfig,
    admin: Option<SocketAddr>,
    role: Role,
) -> Result<Started, ExitCode> {
    let store = Store::from_config(common).map_err(|e| fatal("opening the redis client", &e))?;
    let store = Arc::new(store);
    let shutdown = shutdown::on_signals().map_err(|e| fatal("installing signal handlers", &e))?;
    if let Some(addr) = admin {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| fatal(&format!("binding RELAY_ADMIN_LISTEN {addr}"), &e))?;
        let admin = Admin {
            role,
            store: store.clone(),
        };
        let limits = Limits::new(64 * 1024, 64);
        tokio::spawn(http::serve(
            listener,
            Arc::new(admin),
            limits,
            shutdown.clone(),
        ));
    }
    Ok(Started { store, shutdown })
}

/// A runtime for a role, or the exit code if it cannot start.
fn role_runtime(level: log::LevelFilter) -> Result<tokio::runtime::Runtime, ExitCode> {
    init_logger(level);
    runtime().map_err(|e| fatal("starting the runtime", &e))
}

pub fn server(get: Lookup) -> ExitCode {
    let config = match ServerConfig::load(get) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    let rt = match role_runtime(config.common.log_level) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let listener = match TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => return fatal(&format!("binding {}", config.listen), &e),
        };
        let metrics = Arc::new(ServerMetrics::default());
        let role = Role::Server(metrics.clone());
        let Started { store, shutdown } =
            match start_role(&config.common, config.admin_listen, role).await {
                Ok(r) => r,
                Err(code) => return code,
            };
        log::info!(
            "crm-relay {} server starting: {}",
            env!("CARGO_PKG_VERSION"),
            config.summary()
        );
        log_durability(&store).await;
        let limits = server::limits(&config);
        server::run(listener, &config, store, limits, metrics, shutdown).await;
        log::info!("server stopped");
        ExitCode::SUCCESS
    })
}

/// The server logs what `check` reports, so a risky Redis is visible in its own log.
async fn log_durability(store: &Store) {
    for f in durability::inspect(store).await {
        match f.level {
            Level::Ok => log::info!("redis: {}", f.text),
            Level::Warn | Level::Fail => log::warn!("redis: {}", f.text),
        }
    }
}

pub fn client(get: Lookup) -> ExitCode {
    let config = match ClientConfig::load(get) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    let rt = match role_runtime(config.common.log_level) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let metrics = Arc::new(ClientMetrics::default());
        let role = Role::Client(metrics.clone());
        let Started { store, shutdown } =
            match start_role(&config.common, config.admin_listen, role).await {
                Ok(r) => r,
                Err(code) => return code,
            };
        log::info!(
            "crm-relay {} client starting: {}",
            env!("CARGO_PKG_VERSION"),
            config.summary()
        );
        let _ = store;
        match client::run(config, metrics, shutdown).await {
            Ok(()) => {
                log::info!("client stopped");
                ExitCode::SUCCESS
            }
            Err(e) => fatal("client", &e),
        }
    })
}

/// `crm-relay check`: configuration of every role it can see, then Redis.
pub fn check(get: Lookup) -> ExitCode {
    let common = match CommonConfig::load(get) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    init_logger(log::LevelFilter::Error);
    let has = |name: &str| get(name).is_some_and(|v| !v.trim().is_empty());
    if has("RELAY_API_KEYS") || has("RELAY_META_APP_SECRET") {
        match ServerConfig::load(get) {
            Ok(c) => println!("ok: server configuration: {}", c.summary()),
            Err(e) => return config_error(&e),
        }
    }
    if has("RELAY_TARGET_URL") {
        match ClientConfig::load(get) {
            Ok(c) => println!("ok: client configuration: {}", c.summary()),
            Err(e) => return config_error(&e),
        }
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fatal("starting the runtime", &e),
    };
    let findings = rt.block_on(async {
        match Store::from_config(&common) {
            Ok(store) => durability::inspect(&store).await,
            Err(e) => vec![durability::Finding {
                level: Level::Fail,
                text: format!("cannot use redis: {}", Report(&e)),
            }],
        }
    });
    println!("redis: {}", common.redis_display());
    let mut usable = true;
    for f in &findings {
        let tag = match f.level {
            Level::Ok => "ok",
            Level::Warn => "warning",
            Level::Fail => {
                usable = false;
                "error"
            }
        };
        println!("{tag}: {}", f.text);
    }
    println!("{}", if usable { "usable" } else { "NOT usable" });
    if usable {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `crm-relay dlq …`.
pub fn dlq(get: Lookup, cmd: &DlqCommand) -> ExitCode {
    let common = match CommonConfig::load(get) {
        Ok(c) => c,
        Err(e) => return config_error(&e),
    };
    init_logger(log::LevelFilter::Error);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fatal("starting the runtime", &e),
    };
    rt.block_on(async {
        let store = match Store::from_config(&common) {
            Ok(s) => s,
            Err(e) => return failed(&e),
        };
        let key = common.dlq_stream.as_str();
        match cmd {
            DlqCommand::List { limit } => match store.dlq_list(*limit).await {
                Ok(entries) => {
                    print!("{}", dlq::table(&entries, unix_ms()));
                    ExitCode::SUCCESS
                }
                Err(e) => failed(&e),
            },
            DlqCommand::Show(id) => match store.dlq_get(*id).await {
                Ok(Some(entry)) => {
                    print!("{}", dlq::show(&entry));
                    ExitCode::SUCCESS
                }
                Ok(None) | Err(crate::stream::StoreError::Refused(_)) => {
                    eprintln!("crm-relay: no dead letter {id} in {key}");
                    ExitCode::from(1)
                }
                Err(e) => failed(&e),
            },
            DlqCommand::Replay(sel) => report(dlq::replay(&store, sel).await, "replayed"),
            DlqCommand::Purge(sel) => report(dlq::purge(&store, sel).await, "purged"),
        }
    })
}

/// Prints what a replay or purge did; unknown ids make the exit code 1.
fn report(result: Result<Outcome, crate::stream::StoreError>, verb: &str) -> ExitCode {
    let out = match result {
        Ok(o) => o,
        Err(e) => return failed(&e),
    };
    for (id, new_id) in &out.done {
        if new_id.is_empty() {
            println!("{verb} {id}");
        } else {
            println!("{verb} {id} as {new_id}");
        }
    }
    for id in &out.unknown {
        eprintln!("crm-relay: unknown dead letter {id}");
    }
    println!("{} {verb}, {} unknown", out.done.len(), out.unknown.len());
    if out.unknown.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn failed(e: &dyn std::error::Error) -> ExitCode {
    eprintln!("crm-relay: {}", Report(e));
    ExitCode::from(1)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
