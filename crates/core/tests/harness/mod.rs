//! Drives a `Proxy` in memory with a fake clock: no sockets, no processes.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use mcp_proxy_core::transcript::{Call, Step, Transcript};
use mcp_proxy_core::{
    Config, ExchangeId, FetchId, FetchRequest, Header, HttpRequest, Input, Instant, Output, Proxy, UpstreamId,
};
use serde_json::Value;

pub const JSON_AND_SSE: &str = "application/json, text/event-stream";

pub struct Harness {
    pub proxy: Proxy,
    pub now: Instant,
    next_exchange: u64,
    /// With `MCP_PROXY_RECORD_DIR` set, every input is recorded, and the transcript is written
    /// there (named for the test) when the harness is dropped: how the vectors of
    /// `tests/vectors/transcripts` were made (then blessed, see `examples/vectors.rs`).
    record: Option<Transcript>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let (Some(dir), Some(transcript)) = (std::env::var_os("MCP_PROXY_RECORD_DIR"), self.record.take()) else {
            return;
        };
        let test = std::thread::current().name().unwrap_or("harness").replace("::", "-");
        let mut path = std::path::PathBuf::from(dir).join(format!("{test}.json"));
        let mut n = 1;
        while path.exists() {
            n += 1;
            path.set_file_name(format!("{test}-{n}.json"));
        }
        if let Ok(blessed) = mcp_proxy_core::transcript::bless(&transcript) {
            let _ = std::fs::write(path, blessed.to_json());
        }
    }
}

impl Harness {
    pub fn new(extra: &str) -> Harness {
        Harness::with_config(&format!(r#"{{"server": {{"command": "srv", "args": ["stdio"]}}{extra}}}"#))
    }

    /// A proxy serving an aggregator configuration file.
    pub fn aggregator(file: &str) -> Harness {
        Harness::with_config(&serde_json::json!({"configFile": {"text": file}}).to_string())
    }

    pub fn with_config(text: &str) -> Harness {
        Harness::with_seed(text, [42; 32])
    }

    /// A proxy from `text` whose session ids come from `seed`.
    pub fn with_seed(text: &str, seed: [u8; 32]) -> Harness {
        Harness::started(text, seed).0
    }

    /// A proxy from `text` and `seed`, with the outputs it had at once (a stateless pool
    /// starts its children).
    pub fn started(text: &str, seed: [u8; 32]) -> (Harness, Vec<Output>) {
        // Upstreams speak the 2025 revisions unless a test says otherwise (era detection has
        // tests of its own): the first message a child gets is then `initialize`.
        let mut document: Value = serde_json::from_str(text).expect("test config is JSON");
        if let Some(object) = document.as_object_mut() {
            object.entry("upstreamProtocol").or_insert_with(|| Value::from("legacy"));
        }
        let owned = document.to_string();
        let text = owned.as_str();
        let config = Config::from_json(text).expect("test config is valid");
        let now = Instant(1_000);
        let mut proxy = Proxy::new(config, seed, now);
        let started: Vec<Output> = std::iter::from_fn(|| proxy.poll_output()).collect();
        let record = Some(Transcript {
            config: text.to_owned(),
            seed,
            created: now,
            created_outputs: Vec::new(),
            steps: Vec::new(),
        });
        (Harness { proxy, now, next_exchange: 0, record }, started)
    }

    pub fn advance(&mut self, by: Duration) -> Vec<Output> {
        self.now = self.now.after(by);
        self.input(Input::Timeout)
    }

    pub fn input(&mut self, input: Input) -> Vec<Output> {
        if let Some(record) = self.record.as_mut() {
            let call = Call::Input { at: self.now, input: input.clone() };
            record.steps.push(Step { call, refusal: None, outputs: Vec::new(), timeout: None });
        }
        self.proxy.handle_input(self.now, input);
        std::iter::from_fn(|| self.proxy.poll_output()).collect()
    }

    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (ExchangeId, Vec<Output>) {
        self.next_exchange += 1;
        let exchange = ExchangeId(self.next_exchange);
        let request = HttpRequest {
            exchange,
            method: method.into(),
            target: target.into(),
            headers: headers.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
            body: body.as_bytes().to_vec(),
            body_too_large: false,
            via_loopback: true,
        };
        (exchange, self.input(Input::HttpRequest(request)))
    }

    /// POSTs a JSON-RPC body to /mcp with the usual headers and an optional session.
    pub fn post(&mut self, session: Option<&str>, body: &str) -> (ExchangeId, Vec<Output>) {
        let mut headers = vec![("content-type", "application/json"), ("accept", JSON_AND_SSE)];
        if let Some(session) = session {
            headers.push(("mcp-session-id", session));
        }
        self.request("POST", "/mcp", &headers, body)
    }

    /// POSTs a JSON-RPC body to `path` with the usual headers, an optional session and extras.
    pub fn post_to(
        &mut self,
        path: &str,
        session: Option<&str>,
        extra: &[(&str, &str)],
        body: &str,
    ) -> (ExchangeId, Vec<Output>) {
        let mut headers = vec![("content-type", "application/json"), ("accept", JSON_AND_SSE)];
        if let Some(session) = session {
            headers.push(("mcp-session-id", session));
        }
        headers.extend_from_slice(extra);
        self.request("POST", path, &headers, body)
    }

    /// Opens the session's GET stream on /mcp.
    pub fn open_get(&mut self, session: &str) -> (ExchangeId, Vec<Output>) {
        self.request("GET", "/mcp", &[("accept", "text/event-stream"), ("mcp-session-id", session)], "")
    }

    pub fn upstream_says(&mut self, upstream: UpstreamId, line: &str) -> Vec<Output> {
        self.input(Input::UpstreamMessage { upstream, data: line.as_bytes().to_vec() })
    }

    /// Runs initialize through a new session; returns (session id, upstream).
    pub fn initialize(&mut self) -> (String, UpstreamId) {
        self.initialize_at("/mcp", &[])
    }

    /// Runs initialize on the Streamable HTTP endpoint `path` with extra headers.
    pub fn initialize_at(&mut self, path: &str, extra: &[(&str, &str)]) -> (String, UpstreamId) {
        let mut headers = vec![("content-type", "application/json"), ("accept", JSON_AND_SSE)];
        headers.extend_from_slice(extra);
        let body = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        let (exchange, outputs) = self.request("POST", path, &headers, body);
        let upstream = spawned(&outputs).expect("initialize spawns a child");
        let sent = sent_json(&outputs, upstream);
        assert_eq!(sent.len(), 1);
        let id = sent[0]["id"].clone();
        let outputs = self.upstream_says(upstream, &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"protocolVersion":"2025-11-25","capabilities":{{"tools":{{}}}},"serverInfo":{{"name":"s","version":"1"}}}}}}"#));
        let (head, body) = response(&outputs, exchange).expect("initialize answered");
        assert_eq!(head.status, 200);
        assert_eq!(body["id"], 0);
        let session = header(&head.headers, "mcp-session-id").expect("session id issued").to_owned();
        (session, upstream)
    }
}

pub fn spawned(outputs: &[Output]) -> Option<UpstreamId> {
    outputs.iter().find_map(|o| match o {
        Output::Spawn { upstream, .. } => Some(*upstream),
        _ => None,
    })
}

pub fn sent_json(outputs: &[Output], to: UpstreamId) -> Vec<Value> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { upstream, data } if *upstream == to => {
                Some(serde_json::from_slice(data).expect("proxy sends JSON"))
            }
            _ => None,
        })
        .collect()
}

pub fn response(outputs: &[Output], exchange: ExchangeId) -> Option<(mcp_proxy_core::ResponseHead, Value)> {
    outputs.iter().find_map(|o| match o {
        Output::Respond { head, body } if head.exchange == exchange => {
            let body = if body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into()))
            };
            Some((head.clone(), body))
        }
        _ => None,
    })
}

pub fn status(outputs: &[Output], exchange: ExchangeId) -> Option<u16> {
    response(outputs, exchange).map(|(head, _)| head.status)
}

pub fn header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

/// The JSON payloads of SSE events written to `exchange`.
pub fn events(outputs: &[Output], exchange: ExchangeId) -> Vec<Value> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::StreamData { exchange: e, data } if *e == exchange => Some(data),
            _ => None,
        })
        .flat_map(|data| {
            let text = String::from_utf8_lossy(data).into_owned();
            text.lines()
                .filter_map(|line| line.strip_prefix("data: "))
                .filter(|d| !d.is_empty())
                .map(|d| serde_json::from_str(d).unwrap_or(Value::String(d.to_owned())))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn stream_started(outputs: &[Output], exchange: ExchangeId) -> bool {
    outputs.iter().any(|o| matches!(o, Output::StreamStart(head) if head.exchange == exchange))
}

pub fn stream_ended(outputs: &[Output], exchange: ExchangeId) -> bool {
    outputs.iter().any(|o| matches!(o, Output::StreamEnd(e) if *e == exchange))
}

pub fn closed_upstream(outputs: &[Output], upstream: UpstreamId) -> bool {
    outputs.iter().any(|o| matches!(o, Output::CloseUpstream(u) if *u == upstream))
}

/// The fetches the proxy asked for.
pub fn fetches(outputs: &[Output]) -> Vec<FetchRequest> {
    outputs.iter().filter_map(|o| if let Output::Fetch(f) = o { Some(f.clone()) } else { None }).collect()
}

/// A fetch's status and headers arrive.
pub fn head(h: &mut Harness, fetch: FetchId, status: u16, headers: &[(&str, &str)]) -> Vec<Output> {
    let headers = headers.iter().map(|(n, v)| Header::new(*n, *v)).collect();
    h.input(Input::FetchHead { fetch, status, headers })
}

/// A fetch's whole body arrives, then its end.
pub fn body(h: &mut Harness, fetch: FetchId, data: &str) -> Vec<Output> {
    let mut outputs = h.input(Input::FetchData { fetch, data: data.as_bytes().to_vec() });
    outputs.extend(h.input(Input::FetchEnd { fetch, error: None }));
    outputs
}
