//! Tool filters: which tools of a server are listed and may be called. The one place the rule
//! is written; listings and calls on every endpoint go through it.

use serde_json::Value;

use crate::config::Config;
use crate::error::codes;
use crate::ids::ServerId;
use crate::wire::jsonrpc::{param, ErrorObject, Request};
use crate::wire::mcp;

/// A tool filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolFilter {
    /// Allow only the listed tools, or block them.
    pub mode: FilterMode,
    /// Tool names (as the server names them, without prefix).
    pub list: Vec<String>,
}

/// How a tool filter's list is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterMode {
    /// Only the listed tools.
    Allow,
    /// All but the listed tools.
    Block,
}

impl ToolFilter {
    /// Whether the tool `name` may be listed and called.
    pub fn allows(&self, name: &str) -> bool {
        let listed = self.list.iter().any(|item| item == name);
        match self.mode {
            FilterMode::Allow => listed,
            FilterMode::Block => !listed,
        }
    }
}

/// Removes the tools `filter` hides from a `tools/list` result.
pub(crate) fn filter_tools(result: &mut Value, filter: &ToolFilter) {
    if let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) {
        tools.retain(|tool| tool.get("name").and_then(Value::as_str).is_some_and(|name| filter.allows(name)));
    }
}

/// Whether `server` exposes the tool `name` (its filter, if any, allows it).
pub(crate) fn tool_allowed(config: &Config, server: ServerId, name: &str) -> bool {
    config.servers.get(server).and_then(|s| s.options.tool_filter.as_ref()).is_none_or(|filter| filter.allows(name))
}

/// Refuses a `tools/call` of a tool `server` does not expose (the request names the tool as
/// the server knows it).
pub(crate) fn check_call(config: &Config, server: ServerId, request: &Request) -> Result<(), ErrorObject> {
    if request.method != mcp::TOOLS_CALL {
        return Ok(());
    }
    let name = param(&request.params, "name").and_then(Value::as_str).unwrap_or_default();
    if tool_allowed(config, server, name) {
        return Ok(());
    }
    let message = format!("Tool {:?} is not available on this server", crate::proxy::truncate(name, 100));
    Err(ErrorObject::new(codes::INVALID_PARAMS, message))
}
