//! The mcp-proxy core exported as a WebAssembly component.
//!
//! Built for `wasm32-unknown-unknown` and turned into a component by the host's build
//! script, it imports nothing: the core is a pure sandbox that only answers calls.
//! On other targets the crate is empty, so workspace-wide native builds pass over it.
#![cfg(target_arch = "wasm32")]

mod bindings;
mod convert;

use std::cell::RefCell;

use bindings::exports::mcp_proxy::core::proxy::{self as wit, Guest, GuestCore};
use mcp_proxy_core::{Config, Instant, Proxy};

pub(crate) struct Component;

impl Guest for Component {
    type Core = CoreResource;

    fn build_info() -> String {
        format!("{} component", mcp_proxy_core::build_arch())
    }
}

/// One proxy state machine behind a component resource handle.
pub(crate) struct CoreResource {
    proxy: RefCell<Proxy>,
}

impl GuestCore for CoreResource {
    fn create(config: String, seed: Vec<u8>, now: u64) -> Result<wit::Core, wit::ConfigError> {
        let config = Config::from_json(&config).map_err(|e| wit::ConfigError { path: e.path, message: e.message })?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| wit::ConfigError { path: "seed".into(), message: "must be 32 bytes".into() })?;
        Ok(wit::Core::new(CoreResource { proxy: RefCell::new(Proxy::new(config, seed, Instant(now))) }))
    }

    fn set_wall_clock(&self, seconds: u64) {
        self.proxy.borrow_mut().set_wall_clock(mcp_proxy_core::WallClock(seconds));
    }

    fn handle_input(&self, now: u64, input: wit::Input) -> wit::Turn {
        let mut proxy = self.proxy.borrow_mut();
        proxy.handle_input(Instant(now), convert::input(input));
        let outputs = std::iter::from_fn(|| proxy.poll_output()).map(convert::output).collect();
        wit::Turn { outputs, timeout: proxy.poll_timeout().map(|instant| instant.0) }
    }

    fn precheck(&self, request: wit::HttpRequest) -> Option<wit::Response> {
        let (head, body) = self.proxy.borrow_mut().precheck(&convert::request(request))?;
        Some(convert::response(head, body))
    }

    fn poll_outputs(&self) -> Vec<wit::Output> {
        let mut proxy = self.proxy.borrow_mut();
        std::iter::from_fn(|| proxy.poll_output()).map(convert::output).collect()
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.proxy.borrow().poll_timeout().map(|instant| instant.0)
    }

    fn max_body_size(&self) -> u64 {
        self.proxy.borrow().max_body_size()
    }
}
