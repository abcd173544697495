#!/usr/bin/env bash
# cargo with the shipped binary's settings: the standard library rebuilt from the toolchain's
# own sources (the rust-src component) together with the relay, without std's backtrace
# symbolizer. Used by scripts/build-static.sh and the Dockerfile, so both build the same.
#
# Why: a panic must cost one connection, not the process (panic = "unwind", see Cargo.toml),
# and a prebuilt std then links the code that turns a backtrace into function names and
# lines (gimli, addr2line, a DWARF decompressor, a demangler). The shipped binary is
# stripped, so that code has no names to find: with RUST_BACKTRACE=full it printed
# "<unknown>" for every frame, with RUST_BACKTRACE=1 no frame at all. Rebuilt without the
# "backtrace" feature, std keeps unwinding, catching, and the panic message with its file and
# line (examples/unwind_probe.rs checks this on every static build); RUST_BACKTRACE prints
# nothing more. Debug builds (cargo build, cargo test) keep the prebuilt std and backtraces.
# core and alloc keep opt-level 3, as in the prebuilt std (at the release profile's "s" they
# cost 1% more user-space instructions per stored webhook); std itself is at "s".
# libgcc is linked for the C helpers (`__popcountdi2`, which mimalloc's bitmaps call) that
# the prebuilt std carries in its compiler-builtins and a rebuilt one does not. A RUSTFLAGS
# in the environment replaces that flag (cargo's rule): the link then fails naming it.
#
# -Zbuild-std is a cargo feature still marked unstable, so this sets RUSTC_BOOTSTRAP=1 for
# this build only, on the stable toolchain, as the Linux kernel does to build its Rust code.
# Measured on 2026-12-03 (rustc 1.95.0): 3,300,872 -> 3,089,608 bytes (code -188 KB, tables
# -23 KB); 26,870 -> 26,611 user-space instructions per webhook (scripts/bench-instructions.sh,
# two runs each; core and alloc at "s" too: 3,032,264 bytes, 27,155 instructions).
#
# Usage: scripts/static-cargo.sh build --release --locked --target TARGET [cargo args...]
set -euo pipefail
export RUSTC_BOOTSTRAP=1
exec cargo "$@" \
  -Zbuild-std=std,panic_unwind -Zbuild-std-features=panic-unwind \
  --config 'profile.release.package.core.opt-level=3' \
  --config 'profile.release.package.alloc.opt-level=3' \
  --config 'build.rustflags=["-C", "link-arg=-lgcc"]'
