//! The wasmtime settings the core component is compiled and run with.
//!
//! Shared by `build.rs`, which precompiles the component, and `engine.rs`, which loads it: a
//! precompiled component is only accepted by an engine with the same settings, so both take
//! them from here (`build.rs` includes this file as a module of its own).

/// The engine configuration for code that runs on `target` (a target triple: the one the
/// binary is built for).
///
/// The target is always named, even when it is the machine's own: code is then compiled for
/// the triple's baseline CPU, not for the features of whichever machine built the binary, so
/// the precompiled core runs wherever the binary does.
pub(crate) fn engine_config(target: &str) -> wasmtime::Result<wasmtime::Config> {
    let mut config = wasmtime::Config::new();
    // Every call into the core has a deadline (see `engine.rs`).
    config.epoch_interruption(true);
    config.target(target)?;
    Ok(config)
}
