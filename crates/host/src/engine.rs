//! Loading the core component into wasmtime: compiled once per machine, linked once per
//! process, instantiated cheaply.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Config, Engine, Store};

use crate::bindings::{ConfigError, Input, Output, ProxyCore, ProxyCorePre};

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
    pre: ProxyCorePre<()>,
}

impl CoreEngine {
    /// Compiles the embedded component, or loads the compiled form cached by an earlier run.
    pub(crate) fn load() -> Result<CoreEngine, EngineError> {
        let engine = Engine::new(&Config::new())?;
        let component = load_cached(&engine).map_or_else(|| compile_and_cache(&engine), Ok)?;
        let linker = Linker::new(&engine);
        let pre = ProxyCorePre::new(linker.instantiate_pre(&component)?)?;
        Ok(CoreEngine { engine, pre })
    }

    /// Creates a fresh core instance with its own store.
    pub(crate) fn instantiate(&self) -> Result<CoreInstance, EngineError> {
        let mut store = Store::new(&self.engine, ());
        let bindings = self.pre.instantiate(&mut store)?;
        Ok(CoreInstance { store, bindings, core: None })
    }
}

/// One instance of the core component and the proxy resource inside it.
pub(crate) struct CoreInstance {
    store: Store<()>,
    bindings: ProxyCore,
    core: Option<ResourceAny>,
}

impl CoreInstance {
    /// Describes how the core was built (computed inside the component).
    pub(crate) fn build_info(&mut self) -> Result<String, EngineError> {
        Ok(self.bindings.mcp_proxy_core_proxy().call_build_info(&mut self.store)?)
    }

    /// Creates the proxy resource from a JSON configuration at time `now`.
    pub(crate) fn create(&mut self, config: &str, seed: &[u8], now: u64) -> Result<(), EngineError> {
        let created = self.bindings.mcp_proxy_core_proxy().core().call_create(&mut self.store, config, seed, now)?;
        self.core = Some(created.map_err(EngineError::Config)?);
        Ok(())
    }

    fn core(&self) -> Result<ResourceAny, EngineError> {
        self.core.ok_or_else(|| EngineError::Wasm(wasmtime::Error::msg("the proxy resource was not created")))
    }

    /// Hands the core one input.
    pub(crate) fn handle_input(&mut self, now: u64, input: &Input) -> Result<(), EngineError> {
        let core = self.core()?;
        Ok(self.bindings.mcp_proxy_core_proxy().core().call_handle_input(&mut self.store, core, now, input)?)
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
