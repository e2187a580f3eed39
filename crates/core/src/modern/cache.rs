//! The results a 2026-07-28 server says may be kept (`ttlMs`, `cacheScope`), kept for the
//! 2025 clients the proxy serves from it.
//!
//! A 2025 client knows nothing of the revision's cache hints, so the proxy, which talks to the
//! server for it, honours them: a `server/discover` or list result with `ttlMs > 0` answers
//! the same request again until it expires. A `"public"` result serves every client of the
//! server; a `"private"` one only clients with the same credential. An `input_required`
//! answer is never kept, and what a list change notification names is dropped at once. The
//! table is bounded (entries and bytes), the oldest going first.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::ids::ServerId;
use crate::time::Instant;
use crate::wire::mcp;

/// The most results kept, and their most bytes (as JSON).
const MAX_ENTRIES: usize = 512;
const MAX_BYTES: usize = 4 << 20;
/// The longest a result is kept, whatever the server says.
const MAX_TTL: Duration = Duration::from_secs(3600);

/// The methods whose results may be kept.
const CACHEABLE: [&str; 5] =
    [mcp::SERVER_DISCOVER, mcp::TOOLS_LIST, mcp::PROMPTS_LIST, mcp::RESOURCES_LIST, mcp::RESOURCE_TEMPLATES_LIST];

/// What a result is kept under: its server, method and parameters (without `_meta`), and for a
/// private result the credential of the client it was given to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    server: ServerId,
    method: String,
    params: String,
    credential: Option<[u8; 32]>,
}

#[derive(Debug)]
struct Entry {
    result: Value,
    expires: Instant,
    bytes: usize,
    /// When it was stored (the oldest goes first when the table is full).
    order: u64,
}

/// The kept results.
#[derive(Debug, Default)]
pub(crate) struct ResultCache {
    entries: BTreeMap<Key, Entry>,
    bytes: usize,
    next: u64,
}

/// The parameters that decide a result: everything but `_meta`, as canonical JSON.
fn params_key(params: &Option<Value>) -> String {
    match params {
        Some(Value::Object(object)) => {
            let mut object = object.clone();
            object.remove("_meta");
            Value::Object(object).to_string()
        }
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Whether a result of `method` may be kept at all.
pub(crate) fn cacheable(method: &str) -> bool {
    CACHEABLE.contains(&method)
}

impl ResultCache {
    /// A kept result for this request by a client with `credential`, if one is still fresh.
    pub(crate) fn get(
        &mut self,
        now: Instant,
        server: ServerId,
        method: &str,
        params: &Option<Value>,
        credential: [u8; 32],
    ) -> Option<Value> {
        if !cacheable(method) {
            return None;
        }
        let params = params_key(params);
        for credential in [None, Some(credential)] {
            let key = Key { server, method: method.to_owned(), params: params.clone(), credential };
            match self.entries.get(&key) {
                Some(entry) if entry.expires > now => return Some(entry.result.clone()),
                Some(_) => self.remove(&key),
                None => {}
            }
        }
        None
    }

    /// Keeps `result` if its server allows: `ttlMs > 0`, complete, within the bounds.
    pub(crate) fn put(
        &mut self,
        now: Instant,
        server: ServerId,
        method: &str,
        params: &Option<Value>,
        credential: [u8; 32],
        result: &Value,
    ) {
        if !cacheable(method) || result.get("resultType").and_then(Value::as_str).is_some_and(|t| t != "complete") {
            return;
        }
        let Some(ttl) = result.get("ttlMs").and_then(Value::as_u64).filter(|ttl| *ttl > 0) else {
            return;
        };
        let public = result.get("cacheScope").and_then(Value::as_str) == Some("public");
        let bytes = result.to_string().len();
        if bytes > MAX_BYTES / 8 {
            return;
        }
        let key = Key {
            server,
            method: method.to_owned(),
            params: params_key(params),
            credential: (!public).then_some(credential),
        };
        self.remove(&key);
        while self.entries.len() >= MAX_ENTRIES || self.bytes + bytes > MAX_BYTES {
            let Some(oldest) = self.entries.iter().min_by_key(|(_, e)| e.order).map(|(k, _)| k.clone()) else {
                break;
            };
            self.remove(&oldest);
        }
        self.next += 1;
        let expires = now.after(Duration::from_millis(ttl).min(MAX_TTL));
        self.bytes += bytes;
        self.entries.insert(key, Entry { result: result.clone(), expires, bytes, order: self.next });
    }

    /// A server said its list changed (`notifications/{tools,prompts,resources}/list_changed`):
    /// its kept lists of that kind (and its discover result) go.
    pub(crate) fn changed(&mut self, server: ServerId, notification: &str) {
        let methods: &[&str] = match notification {
            mcp::TOOLS_LIST_CHANGED => &[mcp::TOOLS_LIST],
            mcp::PROMPTS_LIST_CHANGED => &[mcp::PROMPTS_LIST],
            mcp::RESOURCES_LIST_CHANGED => &[mcp::RESOURCES_LIST, mcp::RESOURCE_TEMPLATES_LIST],
            _ => return,
        };
        let gone: Vec<Key> = self
            .entries
            .keys()
            .filter(|k| {
                k.server == server && (methods.contains(&k.method.as_str()) || k.method == mcp::SERVER_DISCOVER)
            })
            .cloned()
            .collect();
        for key in gone {
            self.remove(&key);
        }
    }

    fn remove(&mut self, key: &Key) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes -= entry.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];

    #[test]
    fn private_results_serve_only_their_credential_and_expire() {
        let mut cache = ResultCache::default();
        let now = Instant(0);
        let result = json!({"resultType": "complete", "tools": [], "ttlMs": 1000, "cacheScope": "private"});
        cache.put(now, ServerId(0), mcp::TOOLS_LIST, &None, A, &result);
        assert_eq!(cache.get(now, ServerId(0), mcp::TOOLS_LIST, &None, A), Some(result));
        assert_eq!(cache.get(now, ServerId(0), mcp::TOOLS_LIST, &None, B), None, "never across credentials");
        assert_eq!(cache.get(now, ServerId(1), mcp::TOOLS_LIST, &None, A), None, "nor across servers");
        assert_eq!(
            cache.get(now.after(Duration::from_millis(1000)), ServerId(0), mcp::TOOLS_LIST, &None, A),
            None,
            "expired"
        );
        assert!(cache.entries.is_empty() && cache.bytes == 0);
    }

    #[test]
    fn public_results_serve_everyone_until_the_list_changes() {
        let mut cache = ResultCache::default();
        let now = Instant(0);
        let params = Some(json!({"cursor": "c", "_meta": {"x": 1}}));
        let result = json!({"resultType": "complete", "tools": [], "ttlMs": 60000, "cacheScope": "public"});
        cache.put(now, ServerId(0), mcp::TOOLS_LIST, &params, A, &result);
        let other_meta = Some(json!({"cursor": "c", "_meta": {"y": 2}}));
        assert!(cache.get(now, ServerId(0), mcp::TOOLS_LIST, &other_meta, B).is_some(), "_meta does not count");
        assert!(cache.get(now, ServerId(0), mcp::TOOLS_LIST, &None, B).is_none(), "another page is another result");
        cache.changed(ServerId(0), mcp::PROMPTS_LIST_CHANGED);
        assert!(cache.get(now, ServerId(0), mcp::TOOLS_LIST, &params, B).is_some());
        cache.changed(ServerId(0), mcp::TOOLS_LIST_CHANGED);
        assert!(cache.get(now, ServerId(0), mcp::TOOLS_LIST, &params, B).is_none());
    }

    #[test]
    fn what_may_not_be_kept_is_not() {
        let mut cache = ResultCache::default();
        let now = Instant(0);
        for result in [
            json!({"resultType": "complete", "tools": []}),
            json!({"resultType": "complete", "tools": [], "ttlMs": 0}),
            json!({"resultType": "input_required", "ttlMs": 5000}),
        ] {
            cache.put(now, ServerId(0), mcp::TOOLS_LIST, &None, A, &result);
        }
        cache.put(now, ServerId(0), mcp::TOOLS_CALL, &None, A, &json!({"resultType": "complete", "ttlMs": 5000}));
        assert!(cache.entries.is_empty());
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut cache = ResultCache::default();
        for n in 0..(MAX_ENTRIES + 10) {
            let params = Some(json!({"cursor": n.to_string()}));
            cache.put(
                Instant(0),
                ServerId(0),
                mcp::TOOLS_LIST,
                &params,
                A,
                &json!({"tools": [], "ttlMs": 1000, "cacheScope": "public"}),
            );
        }
        assert_eq!(cache.entries.len(), MAX_ENTRIES);
        assert!(
            cache.get(Instant(0), ServerId(0), mcp::TOOLS_LIST, &Some(json!({"cursor": "0"})), A).is_none(),
            "the oldest went"
        );
    }
}
