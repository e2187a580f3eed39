//! The seed for the core's session-id generator, from the runtime's secure random source.

use wasm_bindgen::JsCast;
use web_sys::WorkerGlobalScope;
use worker::js_sys;

/// 32 bytes from `crypto.getRandomValues`.
pub(crate) fn seed() -> Result<[u8; 32], String> {
    // workerd's global is a worker scope without being `instanceof WorkerGlobalScope`.
    let scope: WorkerGlobalScope = js_sys::global().unchecked_into();
    let crypto = scope.crypto().map_err(|error| format!("crypto is not available: {error:?}"))?;
    let mut seed = [0u8; 32];
    crypto
        .get_random_values_with_u8_array(&mut seed)
        .map_err(|error| format!("crypto.getRandomValues failed: {error:?}"))?;
    Ok(seed)
}
