//! Property tests: random and corpus-seeded traffic from clients and servers never panics
//! the core, every exchange is answered at most once, and state stays bounded.
//!
//! Deterministic (a fixed-seed generator), so a failure reproduces; the seed and step are in
//! the panic message. The corpus in `tests/corpus/` holds inputs worth keeping.

mod harness;

use std::collections::HashSet;
use std::time::Duration;

use harness::*;
use mcp_proxy_core::UpstreamEnd;
use mcp_proxy_core::{ExchangeId, Header, HttpRequest, Input, Output, UpstreamId};

/// A small, fast, seeded generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("corpus dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).expect("corpus file")).collect()
}

const METHODS: [&str; 6] = ["POST", "GET", "DELETE", "OPTIONS", "PUT", "HEAD"];
const PATHS: [&str; 9] = ["/mcp", "/sse", "/messages", "/ping", "/", "/mcp/../x", "/a/mcp", "/b/sse", "/api/servers"];
const MESSAGES: [&str; 9] = [
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"progressToken":"p"}}}"#,
    r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
    r#"{"jsonrpc":"2.0","id":"s","result":{}}"#,
    r#"[{"jsonrpc":"2.0","id":2,"method":"ping"},{"jsonrpc":"2.0","id":3,"method":"ping"}]"#,
    r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#,
    "{not json",
    "",
];

/// Mutates bytes a little: flips, truncations, insertions.
fn mutate(rng: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.below(4) {
        match rng.below(3) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            1 => bytes.truncate(rng.below(bytes.len() + 1)),
            _ => {
                let i = rng.below(bytes.len() + 1);
                bytes.insert(i, *rng.pick(b"{}[]\",:0123456789-abc\\\n\0\xff"));
            }
        }
    }
    bytes
}

struct World {
    h: Harness,
    rng: Rng,
    corpus: Vec<Vec<u8>>,
    upstreams: Vec<UpstreamId>,
    sessions: Vec<String>,
    open: Vec<ExchangeId>,
    closed: HashSet<ExchangeId>,
    answered: HashSet<ExchangeId>,
    next_exchange: u64,
}

impl World {
    fn body(&mut self) -> Vec<u8> {
        let base = if self.rng.below(3) == 0 {
            self.rng.pick(&self.corpus).clone()
        } else {
            self.rng.pick(&MESSAGES).as_bytes().to_vec()
        };
        if self.rng.below(2) == 0 {
            mutate(&mut self.rng, base)
        } else {
            base
        }
    }

    fn step(&mut self) {
        let outputs = match self.rng.below(7) {
            0..=2 => {
                self.next_exchange += 1;
                let exchange = ExchangeId(1_000_000 + self.next_exchange);
                let mut headers =
                    vec![Header::new("content-type", *self.rng.pick(&["application/json", "text/plain"]))];
                headers.push(Header::new(
                    "accept",
                    *self.rng.pick(&[JSON_AND_SSE, "text/event-stream", "application/json", "x/y"]),
                ));
                if !self.sessions.is_empty() && self.rng.below(4) != 0 {
                    let session = self.rng.pick(&self.sessions).clone();
                    headers.push(Header::new("mcp-session-id", session));
                }
                if self.rng.below(4) == 0 {
                    headers.push(Header::new("last-event-id", format!("{}-{}", self.rng.below(3), self.rng.below(20))));
                }
                if self.rng.below(8) == 0 {
                    headers.push(Header::new(
                        "origin",
                        *self.rng.pick(&["http://localhost:1", "https://evil.example", "null"]),
                    ));
                }
                let mut target = self.rng.pick(&PATHS).to_string();
                if target == "/messages" && !self.sessions.is_empty() {
                    target = format!("/messages?sessionId={}", self.rng.pick(&self.sessions));
                }
                let body = self.body();
                let request = HttpRequest {
                    exchange,
                    method: self.rng.pick(&METHODS).to_string(),
                    target,
                    headers,
                    body,
                    body_too_large: self.rng.below(20) == 0,
                    via_loopback: self.rng.below(4) != 0,
                };
                self.open.push(exchange);
                self.h.input(Input::HttpRequest(request))
            }
            3 if !self.upstreams.is_empty() => {
                let upstream = *self.rng.pick(&self.upstreams);
                let mut line = self.body();
                if self.rng.below(2) == 0 {
                    // Answers with ids the proxy may really have used.
                    line = format!(
                        r#"{{"jsonrpc":"2.0","id":{},"result":{{"protocolVersion":"2025-11-25"}}}}"#,
                        self.rng.below(40)
                    )
                    .into_bytes();
                }
                self.h.input(Input::UpstreamMessage { upstream, data: line })
            }
            4 if !self.open.is_empty() => {
                let exchange = *self.rng.pick(&self.open);
                self.closed.insert(exchange);
                self.h.input(Input::HttpClosed(exchange))
            }
            5 if !self.upstreams.is_empty() && self.rng.below(4) == 0 => {
                let upstream = *self.rng.pick(&self.upstreams);
                self.h.input(Input::UpstreamClosed { upstream, reason: UpstreamEnd::Exited("fuzz".into()) })
            }
            _ => self.h.advance(Duration::from_millis(self.rng.below(40_000) as u64)),
        };
        self.observe(&outputs);
    }

    fn observe(&mut self, outputs: &[Output]) {
        for output in outputs {
            match output {
                Output::Respond { head, .. } | Output::StreamStart(head) => {
                    assert!(self.answered.insert(head.exchange), "exchange {:?} answered twice", head.exchange);
                    for header in &head.headers {
                        if header.name.eq_ignore_ascii_case("mcp-session-id") {
                            self.sessions.push(header.value.clone());
                        }
                    }
                }
                Output::Spawn { upstream, .. } => self.upstreams.push(*upstream),
                Output::StreamData { data, .. } => {
                    let text = String::from_utf8_lossy(data);
                    if let Some(rest) = text.strip_prefix("event: endpoint\ndata: ") {
                        if let Some((_, id)) = rest.trim().split_once("sessionId=") {
                            self.sessions.push(id.to_owned());
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

fn run(seed: u64, steps: usize, config: &str) {
    run_on(Harness::new(config), seed, steps, config);
}

fn run_on(h: Harness, seed: u64, steps: usize, config: &str) {
    let mut world = World {
        h,
        rng: Rng(seed.max(1)),
        corpus: corpus(),
        upstreams: Vec::new(),
        sessions: Vec::new(),
        open: Vec::new(),
        closed: HashSet::new(),
        answered: HashSet::new(),
        next_exchange: 0,
    };
    for step in 0..steps {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.step()));
        if let Err(panic) = outcome {
            let message =
                panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            panic!("seed {seed} step {step} config {config:?}: {}", message.unwrap_or_default());
        }
        assert!(world.h.proxy.session_count() <= 1000 + 256);
    }
    // Liveness: once every timeout has run out, each request whose client stayed got an answer.
    for _ in 0..3 {
        let outputs = world.h.advance(Duration::from_secs(3600));
        world.observe(&outputs);
    }
    let unanswered: Vec<&ExchangeId> =
        world.open.iter().filter(|e| !world.closed.contains(e) && !world.answered.contains(e)).collect();
    assert!(unanswered.is_empty(), "seed {seed} config {config:?}: never answered: {unanswered:?}");
}

#[test]
fn random_traffic_never_breaks_the_core() {
    for seed in 1..=150 {
        run(seed, 300, "");
    }
}

#[test]
fn random_traffic_in_stateless_mode() {
    for seed in 1_000..1_060 {
        run(seed, 300, r#", "stateless": true, "statelessPoolSize": 2"#);
    }
}

#[test]
fn random_traffic_with_small_limits() {
    for seed in 2_000..2_060 {
        run(
            seed,
            300,
            r#", "maxSessions": 3, "eventStoreSize": 2, "requestTimeoutMs": 50, "keepAliveMs": 10, "sessionTimeoutMs": 100"#,
        );
    }
}

#[test]
fn random_traffic_on_the_aggregator() {
    let file = r#"{"mcpProxy": {"options": {"authTokens": []}}, "mcpServers": {"a": {"command": "x"}, "b": {"command": "y", "options": {"toolFilter": {"mode": "allow", "list": ["t"]}}}}}"#;
    for seed in 3_000..3_080 {
        let h = Harness::aggregator(file);
        run_on(h, seed, 300, "aggregator");
    }
}

#[test]
fn random_traffic_on_a_shared_upstream() {
    let file = r#"{"mcpProxy": {"options": {"authTokens": [], "shareUpstream": true}}, "mcpServers": {"a": {"command": "x"}, "b": {"command": "y", "options": {"shareUpstream": false}}}}"#;
    for seed in 4_000..4_080 {
        let h = Harness::aggregator(file);
        run_on(h, seed, 300, "aggregator");
    }
}

#[test]
fn corpus_inputs_get_answers() {
    for body in corpus() {
        let mut h = Harness::new("");
        let request = HttpRequest {
            exchange: ExchangeId(1),
            method: "POST".into(),
            target: "/mcp".into(),
            headers: vec![Header::new("content-type", "application/json"), Header::new("accept", JSON_AND_SSE)],
            body: body.clone(),
            body_too_large: false,
            via_loopback: true,
        };
        let outputs = h.input(Input::HttpRequest(request));
        let answered = status(&outputs, ExchangeId(1)).is_some() || spawned(&outputs).is_some();
        assert!(answered, "no answer for {:?}", String::from_utf8_lossy(&body));
    }
}
