//! The seed for the core's session-id generator, from the runtime's secure random source.

use web_sys::WorkerGlobalScope;
use worker::js_sys;
use worker::wasm_bindgen::JsCast;

/// 32 bytes from `crypto.getRandomValues`.
pub(crate) fn seed() -> Result<[u8; 32], String> {
    let scope: WorkerGlobalScope =
        js_sys::global().dyn_into().map_err(|_| "the global object is not a worker scope".to_owned())?;
    let crypto = scope.crypto().map_err(|error| format!("crypto is not available: {error:?}"))?;
    let mut seed = [0u8; 32];
    crypto
        .get_random_values_with_u8_array(&mut seed)
        .map_err(|error| format!("crypto.getRandomValues failed: {error:?}"))?;
    Ok(seed)
}
