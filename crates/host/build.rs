//! Builds the routing core as a WebAssembly component and hands it to the host.
//!
//! Runs a nested `cargo build` of `crates/component` for `wasm32-unknown-unknown`, turns the
//! module into a component with `wit-component` (so it imports nothing), writes it to
//! `$OUT_DIR/core.wasm`, and compiles it to native code for the binary's target with the
//! engine settings the host runs it with (`src/engine_config.rs`), into `$OUT_DIR/core.cwasm`.
//! The host embeds both with `include_bytes!`: it loads the compiled form, and compiles the
//! component itself only if wasmtime refuses that.

#[path = "src/engine_config.rs"]
mod engine_config;

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.join("../..").canonicalize().expect("the workspace root exists");
    for watched in [
        "wit",
        "crates/core/src",
        "crates/core/Cargo.toml",
        "crates/component/src",
        "crates/component/Cargo.toml",
        "Cargo.lock",
        "crates/host/src/engine_config.rs",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    for name in ["MCP_PROXY_WASM_CARGO", "MCP_PROXY_WASM_BUILD_STD", "MCP_PROXY_WASM_RUSTFLAGS"] {
        println!("cargo:rerun-if-env-changed={name}");
    }

    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("component"),
        None => root.join("target/component"),
    };
    let module = build_guest(&root, &target_dir);
    let wasm = std::fs::read(&module).unwrap_or_else(|e| panic!("reading {}: {e}", module.display()));
    let component = wit_component::ComponentEncoder::default()
        .module(&wasm)
        .and_then(|encoder| encoder.validate(true).encode())
        .unwrap_or_else(|e| panic!("turning {} into a component: {e:#}", module.display()));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let out = out_dir.join("core.wasm");
    std::fs::write(&out, &component).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));

    let target = env::var("TARGET").expect("cargo sets TARGET");
    println!("cargo:rustc-env=MCP_PROXY_TARGET={target}");
    let compiled = precompile(&component, &target);
    let out = out_dir.join("core.cwasm");
    std::fs::write(&out, compiled).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}

/// Compiles the component to native code for `target`, as the host's engine would.
fn precompile(component: &[u8], target: &str) -> Vec<u8> {
    let config =
        engine_config::engine_config(target).unwrap_or_else(|e| panic!("wasmtime cannot compile for {target}: {e:#}"));
    let engine = wasmtime::Engine::new(&config).unwrap_or_else(|e| panic!("creating a wasmtime engine: {e:#}"));
    engine.precompile_component(component).unwrap_or_else(|e| panic!("compiling the core component: {e:#}"))
}

/// Runs `cargo build` for the guest crate and returns the path of the wasm module.
///
/// Normally the outer build's own cargo (rustup's, with the wasm target installed). When
/// `scripts/setup` had to fall back to Debian's toolchain it sets `MCP_PROXY_WASM_CARGO`,
/// `MCP_PROXY_WASM_BUILD_STD` and `MCP_PROXY_WASM_RUSTFLAGS`, and std is built from source.
fn build_guest(root: &Path, target_dir: &Path) -> PathBuf {
    let fallback = env::var_os("MCP_PROXY_WASM_CARGO");
    let cargo = fallback.clone().or_else(|| env::var_os("CARGO")).unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["build", "--release", "--locked", "-p", "mcp-proxy-component", "--target", TARGET, "--target-dir"])
        .arg(target_dir)
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "3");
    // The outer build's settings are for the host target, not for the guest.
    for name in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        command.env_remove(name);
    }
    if fallback.is_some() {
        if let Some(build_std) = env::var_os("MCP_PROXY_WASM_BUILD_STD") {
            command.arg("-Z").arg(format!("build-std={}", build_std.to_string_lossy()));
            command.env("RUSTC_BOOTSTRAP", "1");
        }
        if let Some(flags) = env::var_os("MCP_PROXY_WASM_RUSTFLAGS") {
            command.env("RUSTFLAGS", flags);
        }
    }
    let status = command.status().unwrap_or_else(|e| panic!("running cargo for the core component: {e}"));
    if !status.success() {
        panic!("building the core component failed ({status}); is the {TARGET} target installed? Run scripts/setup (it runs `rustup target add {TARGET}`).");
    }
    target_dir.join(TARGET).join("release/mcp_proxy_component.wasm")
}
