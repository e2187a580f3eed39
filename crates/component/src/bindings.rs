//! The one `generate!` of the component: Rust bindings for `wit/proxy.wit`.
//!
//! The generated glue exports symbols and crosses the canonical ABI, which takes
//! `unsafe` code; it is confined to this module.
#![allow(unsafe_code, unreachable_pub)]

wit_bindgen::generate!({
    world: "proxy-core",
    path: "../../wit",
});

use crate::Component;
export!(Component with_types_in crate::bindings);
