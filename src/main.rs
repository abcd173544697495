//! Glue: arguments → command, configuration, logger, bind, run, exit code.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use crm_relay::cli::{self, Command, HELP};
use crm_relay::config::{ClientConfig, ServerConfig, envfile};
use crm_relay::error::Report;
use crm_relay::{client, server, shutdown, stream::Store};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let invocation = match cli::parse(&args) {
        Ok(i) => i,
        Err(e) => return usage_error(&e),
    };
    let file_vars = match &invocation.env_file {
        None => HashMap::new(),
        Some(path) => match std::fs::read_to_string(path).map_err(|e| e.to_string()) {
            Ok(text) => match envfile::parse(&text) {
                Ok(vars) => vars,
                Err(e) => return usage_error(&format!("--env-file {}: {e}", path.display())),
            },
            Err(e) => return usage_error(&format!("--env-file {}: {e}", path.display())),
        },
    };
    // A variable set in the environment wins over the file.
    let lookup = move |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| file_vars.get(name).cloned())
    };
    match invocation.command {
        Command::Help => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("crm-relay {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Server => match ServerConfig::load(&lookup) {
            Ok(config) => run_server(config),
            Err(e) => usage_error(&e.to_string()),
        },
        Command::Client => match ClientConfig::load(&lookup) {
            Ok(config) => run_client(config),
            Err(e) => usage_error(&e.to_string()),
        },
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("crm-relay: {msg}\nTry 'crm-relay --help'.");
    ExitCode::from(2)
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

fn run_server(config: ServerConfig) -> ExitCode {
    init_logger(config.common.log_level);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fatal("starting the runtime", &e),
    };
    rt.block_on(async {
        let store = match Store::new(&config.common.redis_url, &config.common.stream) {
            Ok(s) => Arc::new(s),
            Err(e) => return fatal("opening the redis client", &e),
        };
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(l) => l,
            Err(e) => return fatal(&format!("binding {}", config.listen), &e),
        };
        let shutdown = match shutdown::on_signals() {
            Ok(s) => s,
            Err(e) => return fatal("installing signal handlers", &e),
        };
        log::info!(
            "crm-relay {} server starting: {}",
            env!("CARGO_PKG_VERSION"),
            config.summary()
        );
        if let Err(e) = store.ping().await {
            log::warn!("redis not reachable at start (webhooks get 503 until it is): {e}");
        }
        let limits = server::limits(&config);
        server::run(listener, &config, store, limits, shutdown).await;
        log::info!("server stopped");
        ExitCode::SUCCESS
    })
}

fn run_client(config: ClientConfig) -> ExitCode {
    init_logger(config.common.log_level);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fatal("starting the runtime", &e),
    };
    rt.block_on(async {
        let store = match Store::new(&config.common.redis_url, &config.common.stream) {
            Ok(s) => Arc::new(s),
            Err(e) => return fatal("opening the redis client", &e),
        };
        let shutdown = match shutdown::on_signals() {
            Ok(s) => s,
            Err(e) => return fatal("installing signal handlers", &e),
        };
        log::info!(
            "crm-relay {} client starting: {}",
            env!("CARGO_PKG_VERSION"),
            config.summary()
        );
        match client::run(config, store, shutdown).await {
            Ok(()) => {
                log::info!("client stopped");
                ExitCode::SUCCESS
            }
            Err(e) => fatal("setting up the consumer group", &e),
        }
    })
}

fn fatal(what: &str, e: &dyn std::error::Error) -> ExitCode {
    log::error!("{what}: {}", Report(e));
    ExitCode::from(1)
}
