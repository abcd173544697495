//! The static x86_64 binary takes its small copies from `src/small_copy.rs` (see there why):
//! the linker sends every `memcpy` call to `__wrap_memcpy`. Binaries only: the library and
//! its tests link as usual.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if env == "musl" && arch == "x86_64" {
        println!("cargo:rustc-link-arg-bins=-Wl,--wrap=memcpy");
    }
}
