//! Glue: arguments → command, the env file, then the command's own runner.

use std::collections::HashMap;
use std::process::ExitCode;

use crm_relay::cli::{self, Command, HELP};
use crm_relay::command::{self, usage_error};
use crm_relay::config::envfile;

/// See Cargo.toml: musl's own allocator costs a fifth of the ingest throughput.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let invocation = match cli::parse(&args) {
        Ok(i) => i,
        Err(e) => return usage_error(&e),
    };
    let file_vars = match &invocation.env_file {
        None => HashMap::new(),
        Some(path) => {
            let parsed = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| envfile::parse(&text));
            match parsed {
                Ok(vars) => vars,
                Err(e) => return usage_error(&format!("--env-file {}: {e}", path.display())),
            }
        }
    };
    // A variable set in the environment wins over the file.
    let lookup = move |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| file_vars.get(name).cloned())
    };
    match &invocation.command {
        Command::Help => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("crm-relay {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Server => command::server(&lookup),
        Command::Client => command::client(&lookup),
        Command::Check => command::check(&lookup),
        Command::Dlq(cmd) => command::dlq(&lookup, cmd),
    }
}
