//! Loading the core component into wasmtime: compiled once per machine, linked once per
//! process, instantiated cheaply.
//!
//! The core is sandboxed and bounded: its memory is capped ([`MEMORY_LIMIT`]), and every call
//! into it has a deadline (epoch interruption, [`CALL_DEADLINE_TICKS`] ticks of [`TICK`]): a
//! call that runs away traps, and a trap is handled like any other (the driver starts a fresh
//! core).

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};

use crate::bindings::{ConfigError, HttpRequest, Input, Output, ProxyCore, ProxyCorePre, Response};

/// The most linear memory the core may use.
pub(crate) const MEMORY_LIMIT: usize = 1 << 30;
/// How often the engine's epoch advances.
pub(crate) const TICK: Duration = Duration::from_millis(100);
/// How many ticks one call into the core may last (10 s: a call takes microseconds; only a
/// bug runs this long).
pub(crate) const CALL_DEADLINE_TICKS: u64 = 100;

/// The engine settings the component is compiled and run with (a precompiled core must have
/// been made with the same).
pub(crate) fn engine_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config
}

/// The limits of a core's store.
pub(crate) fn store_limits() -> StoreLimits {
    StoreLimitsBuilder::new().memory_size(MEMORY_LIMIT).instances(16).tables(64).memories(16).build()
}

/// A store for one core instance: bounded in memory, every call with a deadline.
pub(crate) fn new_store(engine: &Engine) -> Store<StoreLimits> {
    let mut store = Store::new(engine, store_limits());
    store.limiter(|limits| limits);
    store.set_epoch_deadline(CALL_DEADLINE_TICKS);
    store
}

/// Advances `engine`'s epoch every [`TICK`], for as long as the process runs.
fn start_ticking(engine: &Engine) {
    let engine = engine.clone();
    let started = std::thread::Builder::new().name("core-deadline".into()).spawn(move || loop {
        std::thread::sleep(TICK);
        engine.increment_epoch();
    });
    if let Err(error) = started {
        crate::log::warn(&format!("no deadline for calls into the core: {error}"));
    }
}

/// The core component, built by `build.rs`.
const CORE_COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/core.wasm"));

/// Why the core could not be loaded or called.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EngineError {
    /// wasmtime refused the component or a call into it trapped.
    #[error("core component: {0:#}")]
    Wasm(#[from] wasmtime::Error),
    /// The operating system gave no random bytes.
    #[error("no secure random source: {0}")]
    Random(String),
    /// The configuration handed to the core is invalid.
    #[error("invalid configuration at {}: {}", .0.path, .0.message)]
    Config(ConfigError),
}

/// The compiled core, ready to instantiate.
pub(crate) struct CoreEngine {
    engine: Engine,
    pre: ProxyCorePre<StoreLimits>,
}

impl CoreEngine {
    /// Compiles the embedded component, or loads the compiled form cached by an earlier run.
    pub(crate) fn load() -> Result<CoreEngine, EngineError> {
        let engine = Engine::new(&engine_config())?;
        start_ticking(&engine);
        let component = load_cached(&engine).map_or_else(|| compile_and_cache(&engine), Ok)?;
        let linker = Linker::new(&engine);
        let pre = ProxyCorePre::new(linker.instantiate_pre(&component)?)?;
        Ok(CoreEngine { engine, pre })
    }

    /// Creates a fresh core instance with its own store.
    pub(crate) fn instantiate(&self) -> Result<CoreInstance, EngineError> {
        let mut store = new_store(&self.engine);
        let bindings = self.pre.instantiate(&mut store)?;
        Ok(CoreInstance { store, bindings, core: None })
    }
}

/// One instance of the core component and the proxy resource inside it.
pub(crate) struct CoreInstance {
    store: Store<StoreLimits>,
    bindings: ProxyCore,
    core: Option<ResourceAny>,
}

impl CoreInstance {
    /// Describes how the core was built (computed inside the component).
    pub(crate) fn build_info(&mut self) -> Result<String, EngineError> {
        self.store.set_epoch_deadline(CALL_DEADLINE_TICKS);
        Ok(self.bindings.mcp_proxy_core_proxy().call_build_info(&mut self.store)?)
    }

    /// Creates the proxy resource from a JSON configuration at time `now`.
    pub(crate) fn create(&mut self, config: &str, seed: &[u8], now: u64) -> Result<(), EngineError> {
        self.store.set_epoch_deadline(CALL_DEADLINE_TICKS);
        let created = self.bindings.mcp_proxy_core_proxy().core().call_create(&mut self.store, config, seed, now)?;
        self.core = Some(created.map_err(EngineError::Config)?);
        Ok(())
    }

    /// The proxy resource, with a fresh deadline for the call about to be made.
    fn core(&mut self) -> Result<ResourceAny, EngineError> {
        self.store.set_epoch_deadline(CALL_DEADLINE_TICKS);
        self.core.ok_or_else(|| EngineError::Wasm(wasmtime::Error::msg("the proxy resource was not created")))
    }

    /// Hands the core one input.
    pub(crate) fn handle_input(&mut self, now: u64, input: &Input) -> Result<(), EngineError> {
        let core = self.core()?;
        Ok(self.bindings.mcp_proxy_core_proxy().core().call_handle_input(&mut self.store, core, now, input)?)
    }

    /// The refusal of a request decided from its head alone.
    pub(crate) fn precheck(&mut self, request: &HttpRequest) -> Result<Option<Response>, EngineError> {
        let core = self.core()?;
        Ok(self.bindings.mcp_proxy_core_proxy().core().call_precheck(&mut self.store, core, request)?)
    }

    /// Takes all of the core's pending outputs.
    pub(crate) fn poll_outputs(&mut self) -> Result<Vec<Output>, EngineError> {
        let core = self.core()?;
        Ok(self.bindings.mcp_proxy_core_proxy().core().call_poll_outputs(&mut self.store, core)?)
    }

    /// The core's next deadline.
    pub(crate) fn poll_timeout(&mut self) -> Result<Option<u64>, EngineError> {
        let core = self.core()?;
        Ok(self.bindings.mcp_proxy_core_proxy().core().call_poll_timeout(&mut self.store, core)?)
    }

    /// The largest request body to read.
    pub(crate) fn max_body_size(&mut self) -> Result<u64, EngineError> {
        let core = self.core()?;
        Ok(self.bindings.mcp_proxy_core_proxy().core().call_max_body_size(&mut self.store, core)?)
    }
}

/// Where the compiled component is cached: `$MCP_PROXY_CACHE_DIR`, else the user cache dir.
fn cache_path(engine: &Engine) -> Option<PathBuf> {
    let dir = std::env::var_os("MCP_PROXY_CACHE_DIR").map(PathBuf::from).or_else(|| {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from(std::env::var_os("HOME")?).join(".cache")))?;
        Some(base.join("mcp-proxy"))
    })?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    CORE_COMPONENT.hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    Some(dir.join(format!("core-{:016x}.cwasm", hasher.finish())))
}

fn load_cached(engine: &Engine) -> Option<Component> {
    let path = cache_path(engine)?;
    let bytes = std::fs::read(&path).ok()?;
    // SAFETY: wasmtime requires that deserialized bytes come from `precompile_component` of a
    // compatible engine. This file is written only by `compile_and_cache` below, named by a hash
    // of the component and the engine's compatibility hash, in the user's own cache directory;
    // wasmtime also checks the header and engine settings and refuses a mismatch.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &bytes) };
    component.ok()
}

fn compile_and_cache(engine: &Engine) -> Result<Component, EngineError> {
    let compiled = engine.precompile_component(CORE_COMPONENT)?;
    if let Some(path) = cache_path(engine) {
        let written = path.parent().map(std::fs::create_dir_all).transpose().and_then(|_| {
            let temporary = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&temporary, &compiled)?;
            std::fs::rename(&temporary, &path)
        });
        if let Err(error) = written {
            crate::log::warn(&format!("could not cache the compiled core at {}: {error}", path.display()));
        }
    }
    // SAFETY: these bytes were produced just now by `precompile_component` of this engine.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, &compiled) }?;
    Ok(component)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(module (func (export "run") (loop (br 0))))`: never returns.
    const RUNAWAY: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02, 0x01, 0x00,
        0x07, 0x07, 0x01, 0x03, b'r', b'u', b'n', 0x00, 0x00, 0x0a, 0x09, 0x01, 0x07, 0x00, 0x03, 0x40, 0x0c, 0x00,
        0x0b, 0x0b,
    ];
    /// `(module (memory 1) (func (export "grow") (result i32) (memory.grow (i32.const 20000))))`.
    const GREEDY: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f, 0x03, 0x02, 0x01,
        0x00, 0x05, 0x03, 0x01, 0x00, 0x01, 0x07, 0x08, 0x01, 0x04, b'g', b'r', b'o', b'w', 0x00, 0x00, 0x0a, 0x0a,
        0x01, 0x08, 0x00, 0x41, 0xa0, 0x9c, 0x01, 0x40, 0x00, 0x0b,
    ];

    #[test]
    fn a_runaway_call_traps_at_its_deadline() {
        let engine = Engine::new(&engine_config()).expect("engine");
        let module = wasmtime::Module::new(&engine, RUNAWAY).expect("module");
        let mut store = new_store(&engine);
        store.set_epoch_deadline(2);
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).expect("instance");
        let run = instance.get_typed_func::<(), ()>(&mut store, "run").expect("export");
        let ticker = {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    std::thread::sleep(Duration::from_millis(20));
                    engine.increment_epoch();
                }
            })
        };
        let error = run.call(&mut store, ()).expect_err("interrupted");
        assert_eq!(error.downcast_ref::<wasmtime::Trap>(), Some(&wasmtime::Trap::Interrupt), "{error:?}");
        let _ = ticker.join();
    }

    #[test]
    fn memory_beyond_the_limit_is_refused() {
        let engine = Engine::new(&engine_config()).expect("engine");
        let module = wasmtime::Module::new(&engine, GREEDY).expect("module");
        let mut store = new_store(&engine);
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).expect("instance");
        let grow = instance.get_typed_func::<(), i32>(&mut store, "grow").expect("export");
        assert_eq!(grow.call(&mut store, ()).expect("a refused grow is not a trap"), -1, "1.3 GB > the 1 GiB limit");
    }
}
