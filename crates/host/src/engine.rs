//! Loading the core component into wasmtime: compiled when the binary is built (`build.rs`),
//! linked once per process, instantiated cheaply.
//!
//! The core is sandboxed and bounded: its memory is capped ([`MEMORY_LIMIT`]), and every call
//! into it has a deadline (epoch interruption, [`CALL_DEADLINE_TICKS`] ticks of [`TICK`]): a
//! call that runs away traps, and a trap is handled like any other (the driver starts a fresh
//! core).

use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};

use crate::bindings::{ConfigError, HttpRequest, Input, Output, ProxyCore, ProxyCorePre, Response, Turn};

/// The most linear memory the core may use.
pub(crate) const MEMORY_LIMIT: usize = 1 << 30;
/// How often the engine's epoch advances.
pub(crate) const TICK: Duration = Duration::from_millis(100);
/// How many ticks one call into the core may last (10 s: a call takes microseconds; only a
/// bug runs this long).
pub(crate) const CALL_DEADLINE_TICKS: u64 = 100;

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
        tracing::warn!("no deadline for calls into the core: {error}");
    }
}

/// The core component, built by `build.rs`.
const CORE_COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/core.wasm"));
/// [`CORE_COMPONENT`] compiled by `build.rs` to native code for [`TARGET`], with the engine
/// settings of [`engine_config`].
const CORE_PRECOMPILED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/core.cwasm"));
/// The target triple this binary was built for, and [`CORE_PRECOMPILED`] compiled for.
const TARGET: &str = env!("MCP_PROXY_TARGET");

/// The settings of the engine the core runs in (the same as `build.rs` compiled it with).
///
/// With `MCP_PROXY_PERF_MAP=1` the core's compiled functions are named in
/// `/tmp/perf-<pid>.map`, so `perf` shows where time goes inside the core (see `bench/README.md`).
pub(crate) fn engine_config() -> Result<wasmtime::Config, EngineError> {
    let mut config = crate::engine_config::engine_config(TARGET)?;
    if std::env::var_os("MCP_PROXY_PERF_MAP").is_some_and(|value| value == "1") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Ok(config)
}

/// Why the core could not be loaded or called.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EngineError {
    /// wasmtime refused the component or a call into it trapped.
    #[error("core component: {0:#}")]
    Wasm(#[from] wasmtime::Error),
    /// The operating system gave no random bytes.
    #[error("no secure random source: {0}")]
    Random(#[from] getrandom::Error),
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
    /// Loads the core compiled at build time; compiles the embedded component instead if
    /// wasmtime refuses the compiled form here.
    pub(crate) fn load() -> Result<CoreEngine, EngineError> {
        let engine = Engine::new(&engine_config()?)?;
        start_ticking(&engine);
        let component = match precompiled(&engine) {
            Ok(component) => component,
            Err(error) => {
                tracing::warn!("the precompiled core cannot run here ({error:#}); compiling it instead");
                Component::new(&engine, CORE_COMPONENT)?
            }
        };
        let linker = Linker::new(&engine);
        let pre = ProxyCorePre::new(linker.instantiate_pre(&component)?)?;
        Ok(CoreEngine { engine, pre })
    }

    /// Creates a fresh core instance with its own store.
    pub(crate) fn instantiate(&self) -> Result<CoreInstance, EngineError> {
        let mut store = new_store(&self.engine);
        let bindings = self.pre.instantiate(&mut store)?;
        Ok(CoreInstance { store, bindings, core: None, recorder: None })
    }
}

/// One instance of the core component and the proxy resource inside it.
pub(crate) struct CoreInstance {
    store: Store<StoreLimits>,
    bindings: ProxyCore,
    core: Option<ResourceAny>,
    /// With `MCP_PROXY_RECORD`, every call is recorded (see [`crate::record`]).
    recorder: Option<crate::record::Recorder>,
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
        self.recorder = crate::record::Recorder::from_env(config, seed, now);
        Ok(())
    }

    /// The proxy resource, with a fresh deadline for the call about to be made.
    fn core(&mut self) -> Result<ResourceAny, EngineError> {
        self.store.set_epoch_deadline(CALL_DEADLINE_TICKS);
        self.core.ok_or_else(|| EngineError::Wasm(wasmtime::Error::msg("the proxy resource was not created")))
    }

    /// Hands the core one input; what it led to comes back in the same crossing.
    pub(crate) fn handle_input(&mut self, now: u64, input: &Input) -> Result<Turn, EngineError> {
        let core = self.core()?;
        if let Some(recorder) = &self.recorder {
            recorder.input(now, input);
        }
        Ok(self.bindings.mcp_proxy_core_proxy().core().call_handle_input(&mut self.store, core, now, input)?)
    }

    /// Sets the wall clock (seconds since the Unix epoch): the core dates what other machines
    /// must read the same way (sealed `input_required` states) by it.
    pub(crate) fn set_wall_clock(&mut self, seconds: u64) -> Result<(), EngineError> {
        let core = self.core()?;
        if let Some(recorder) = &self.recorder {
            recorder.wall(seconds);
        }
        Ok(self.bindings.mcp_proxy_core_proxy().core().call_set_wall_clock(&mut self.store, core, seconds)?)
    }

    /// The refusal of a request decided from its head alone.
    pub(crate) fn precheck(&mut self, request: &HttpRequest) -> Result<Option<Response>, EngineError> {
        let core = self.core()?;
        if let Some(recorder) = &self.recorder {
            recorder.precheck(request);
        }
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

/// The core as `build.rs` compiled it.
fn precompiled(engine: &Engine) -> Result<Component, wasmtime::Error> {
    // SAFETY: `Component::deserialize` requires bytes made by `precompile_component` of a
    // compatible engine, as it maps them as code without validating them. These were made by
    // this build's own `build.rs` (`engine.precompile_component` of the embedded component,
    // with `engine_config(TARGET)` as here) and are part of this binary, so nothing else can
    // have made them. wasmtime itself checks the header: its version, the target, the engine
    // settings and the CPU features the code needs; any mismatch is an error, not undefined
    // behaviour, and the caller then compiles the component instead.
    #[allow(unsafe_code)]
    let component = unsafe { Component::deserialize(engine, CORE_PRECOMPILED) };
    component
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
    fn the_precompiled_core_loads_and_runs() {
        let engine = Engine::new(&engine_config().expect("a valid configuration")).expect("engine");
        let component = precompiled(&engine).expect("build.rs compiled the core with this engine's settings");
        let linked = Linker::new(&engine).instantiate_pre(&component).expect("the core imports nothing");
        let pre = ProxyCorePre::new(linked).expect("the core exports the proxy interface");
        let mut store = new_store(&engine);
        let bindings = pre.instantiate(&mut store).expect("instantiates");
        let info = bindings.mcp_proxy_core_proxy().call_build_info(&mut store).expect("answers");
        assert!(info.contains("wasm32"), "{info}");
    }

    #[test]
    fn a_runaway_call_traps_at_its_deadline() {
        let engine = Engine::new(&engine_config().expect("a valid configuration")).expect("engine");
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
        let engine = Engine::new(&engine_config().expect("a valid configuration")).expect("engine");
        let module = wasmtime::Module::new(&engine, GREEDY).expect("module");
        let mut store = new_store(&engine);
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).expect("instance");
        let grow = instance.get_typed_func::<(), i32>(&mut store, "grow").expect("export");
        assert_eq!(grow.call(&mut store, ()).expect("a refused grow is not a trap"), -1, "1.3 GB > the 1 GiB limit");
    }
}
