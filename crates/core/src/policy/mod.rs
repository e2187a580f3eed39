//! HTTP policy decisions: pure functions of the configuration and the request.

pub(crate) mod access;
mod auth;
mod cors;
pub mod env;
pub mod network;
mod origin;
pub mod tool_filter;

pub use auth::{bearer_token, check_api_key, check_bearer_token, constant_time_eq, AuthDecision};
pub use cors::{cors_response_headers, preflight_headers};
pub use origin::{check_origin, OriginDecision, OriginDenial};
