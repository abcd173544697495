//! Glue: the command line to `command::main`, a failure to its message and exit code.

use std::process::ExitCode;

use crm_relay::command;

#[cfg(any(test, all(target_env = "musl", target_arch = "x86_64")))]
mod small_copy;

/// See Cargo.toml: musl's own allocator costs a fifth of the ingest throughput.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match command::main(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(fatal) => {
            command::report(&fatal);
            ExitCode::from(fatal.exit_code())
        }
    }
}
