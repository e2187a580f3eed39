//! Transcripts: what a shell handed a core and what the core answered, as data.
//!
//! A transcript is a JSON document: the configuration and seed the core was created with, then
//! every call the shell made in order — an input with its time, a precheck, a wall-clock
//! reading — with the outputs the core answered and its next deadline. The core is
//! deterministic, so replaying the inputs must give the same outputs byte for byte, in every
//! build: natively ([`replay`]), as the component inside wasmtime, and inside the Worker.
//! The vectors in `tests/vectors/transcripts` are recorded from real sessions
//! (`MCP_PROXY_RECORD` on the host) and checked in all three.
//!
//! Bytes are written as a JSON string when they are UTF-8, else as `{"base64": "..."}`.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::config::{Config, StdioServer};
use crate::ids::{ExchangeId, FetchId, UpstreamId};
use crate::io::{Input, LogLevel, Output, UpstreamEnd};
use crate::time::{Instant, WallClock};
use crate::upstream::http::FetchRequest;
use crate::wire::http::{Header, HttpRequest, ResponseHead};
use crate::Proxy;

/// Why a transcript could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct TranscriptError {
    /// Where in the document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn error(path: &str, message: impl Into<String>) -> TranscriptError {
    TranscriptError { path: path.to_owned(), message: message.into() }
}

/// One call a shell made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `handle_input(at, input)`, then the outputs drained.
    Input {
        /// The time handed in.
        at: Instant,
        /// What was observed.
        input: Input,
    },
    /// `precheck(request)`: its answer (a refusal, if any), then the outputs drained.
    Precheck(HttpRequest),
    /// `set_wall_clock(wall)`.
    Wall(WallClock),
}

/// One call and what the core answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The call.
    pub call: Call,
    /// For a precheck: its refusal.
    pub refusal: Option<(ResponseHead, Vec<u8>)>,
    /// The outputs drained after the call.
    pub outputs: Vec<Output>,
    /// The deadline after the call.
    pub timeout: Option<Instant>,
}

/// A whole transcript.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transcript {
    /// The configuration, as the JSON the core was created from.
    pub config: String,
    /// The seed.
    pub seed: [u8; 32],
    /// When the core was created.
    pub created: Instant,
    /// The outputs pending right after creation.
    pub created_outputs: Vec<Output>,
    /// The calls, in order.
    pub steps: Vec<Step>,
}

/// Where a replay first differs from its transcript.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("step {step}: expected {expected}, got {actual}")]
pub struct Mismatch {
    /// The step (0 is the creation).
    pub step: usize,
    /// What the transcript says, as JSON.
    pub expected: String,
    /// What the replay gave, as JSON.
    pub actual: String,
}

impl Transcript {
    /// Reads a transcript document.
    pub fn from_json(text: &str) -> Result<Transcript, TranscriptError> {
        let document: Value = serde_json::from_str(text).map_err(|e| error(".", e.to_string()))?;
        let config = document
            .get("config")
            .map(|config| if let Value::String(text) = config { text.clone() } else { config.to_string() })
            .ok_or_else(|| error("config", "missing"))?;
        let seed = hex32(document.get("seed").and_then(Value::as_str).ok_or_else(|| error("seed", "missing"))?)
            .ok_or_else(|| error("seed", "expected 64 hex digits"))?;
        let created = Instant(u64_at(&document, "created", "created")?);
        let created_outputs = outputs_from(document.get("createdOutputs"), "createdOutputs")?;
        let steps = document.get("steps").and_then(Value::as_array).ok_or_else(|| error("steps", "missing"))?;
        let steps = steps
            .iter()
            .enumerate()
            .map(|(i, step)| step_from(step, &format!("steps[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(Transcript { config, seed, created, created_outputs, steps })
    }

    /// Writes the transcript as a JSON document, one step a line.
    pub fn to_json(&self) -> String {
        let config: Value = serde_json::from_str(&self.config).unwrap_or(Value::String(self.config.clone()));
        let mut text = String::from("{\n");
        text.push_str(&format!("\"config\": {},\n", config));
        text.push_str(&format!("\"seed\": \"{}\",\n", hex(&self.seed)));
        text.push_str(&format!("\"created\": {},\n", self.created.0));
        text.push_str(&format!(
            "\"createdOutputs\": {},\n",
            Value::Array(self.created_outputs.iter().map(output_json).collect())
        ));
        text.push_str("\"steps\": [\n");
        let steps: Vec<String> = self.steps.iter().map(|step| step_json(step).to_string()).collect();
        text.push_str(&steps.join(",\n"));
        text.push_str("\n]\n}\n");
        text
    }
}

/// Reads every transcript in `dir` (the files named `*.json`), in the order of their names,
/// each with its path.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, Transcript)>, TranscriptError> {
    let unreadable = |path: &Path, e: std::io::Error| error(&path.display().to_string(), e.to_string());
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| unreadable(dir, e))? {
        let path = entry.map_err(|e| unreadable(dir, e))?.path();
        if path.extension().is_some_and(|ext| ext == "json") {
            files.push(path);
        }
    }
    files.sort();
    let mut transcripts = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| unreadable(&file, e))?;
        let transcript =
            Transcript::from_json(&text).map_err(|e| error(&format!("{}: {}", file.display(), e.path), e.message))?;
        transcripts.push((file, transcript));
    }
    Ok(transcripts)
}

/// Replays `transcript` on a native core: every call in order, its answers compared with the
/// transcript's byte for byte. Also what [`bless`] uses to compute the answers.
pub fn replay(transcript: &Transcript) -> Result<(), Mismatch> {
    let blessed = bless(transcript).map_err(|message| Mismatch {
        step: 0,
        expected: "a valid configuration".into(),
        actual: message,
    })?;
    compare(0, &outputs_value(&transcript.created_outputs), &outputs_value(&blessed.created_outputs))?;
    for (index, (expected, actual)) in transcript.steps.iter().zip(&blessed.steps).enumerate() {
        compare(index + 1, &step_json(expected), &step_json(actual))?;
    }
    Ok(())
}

/// Compares one answer of a replay, as JSON.
pub fn compare(step: usize, expected: &Value, actual: &Value) -> Result<(), Mismatch> {
    if expected == actual {
        return Ok(());
    }
    Err(Mismatch { step, expected: expected.to_string(), actual: actual.to_string() })
}

/// The transcript's calls with the answers a native core gives now.
pub fn bless(transcript: &Transcript) -> Result<Transcript, String> {
    let config = Config::from_json(&transcript.config).map_err(|e| e.to_string())?;
    let mut proxy = Proxy::new(config, transcript.seed, transcript.created);
    let created_outputs = drain(&mut proxy);
    let mut steps = Vec::with_capacity(transcript.steps.len());
    for step in &transcript.steps {
        let refusal = match &step.call {
            Call::Input { at, input } => {
                proxy.handle_input(*at, input.clone());
                None
            }
            Call::Precheck(request) => proxy.precheck(request),
            Call::Wall(wall) => {
                proxy.set_wall_clock(*wall);
                None
            }
        };
        let outputs = drain(&mut proxy);
        steps.push(Step { call: step.call.clone(), refusal, outputs, timeout: proxy.poll_timeout() });
    }
    Ok(Transcript { created_outputs, steps, ..transcript.clone() })
}

fn drain(proxy: &mut Proxy) -> Vec<Output> {
    std::iter::from_fn(|| proxy.poll_output()).collect()
}

/// The JSON of a step's answers (what replays compare).
pub fn answers_json(refusal: &Option<(ResponseHead, Vec<u8>)>, outputs: &[Output], timeout: Option<Instant>) -> Value {
    json!({
        "refusal": refusal.as_ref().map(|(head, body)| json!({"head": head_json(head), "body": bytes_json(body)})),
        "outputs": outputs_value(outputs),
        "timeout": timeout.map(|t| t.0),
    })
}

fn step_json(step: &Step) -> Value {
    let mut object = Map::new();
    match &step.call {
        Call::Input { at, input } => {
            object.insert("at".into(), json!(at.0));
            object.insert("input".into(), input_json(input));
        }
        Call::Precheck(request) => {
            object.insert("precheck".into(), request_json(request));
        }
        Call::Wall(wall) => {
            object.insert("wall".into(), json!(wall.0));
        }
    }
    if let Value::Object(answers) = answers_json(&step.refusal, &step.outputs, step.timeout) {
        object.extend(answers);
    }
    Value::Object(object)
}

fn step_from(value: &Value, path: &str) -> Result<Step, TranscriptError> {
    let call = if let Some(input) = value.get("input") {
        Call::Input { at: Instant(u64_at(value, "at", path)?), input: input_from(input, &format!("{path}.input"))? }
    } else if let Some(request) = value.get("precheck") {
        Call::Precheck(request_from(request, &format!("{path}.precheck"))?)
    } else if let Some(wall) = value.get("wall").and_then(Value::as_u64) {
        Call::Wall(WallClock(wall))
    } else {
        return Err(error(path, "expected input, precheck or wall"));
    };
    let refusal = match value.get("refusal") {
        None | Some(Value::Null) => None,
        Some(refusal) => {
            let head = head_from(refusal.get("head").unwrap_or(&Value::Null), &format!("{path}.refusal.head"))?;
            Some((head, bytes_from(refusal.get("body"), &format!("{path}.refusal.body"))?))
        }
    };
    let outputs = outputs_from(value.get("outputs"), &format!("{path}.outputs"))?;
    let timeout = value.get("timeout").and_then(Value::as_u64).map(Instant);
    Ok(Step { call, refusal, outputs, timeout })
}

/// The JSON of an input.
pub fn input_json(input: &Input) -> Value {
    match input {
        Input::HttpRequest(request) => json!({"httpRequest": request_json(request)}),
        Input::HttpClosed(exchange) => json!({"httpClosed": exchange.0}),
        Input::UpstreamMessage { upstream, data } => {
            json!({"upstreamMessage": {"upstream": upstream.0, "data": bytes_json(data)}})
        }
        Input::UpstreamClosed { upstream, reason } => {
            let reason = match reason {
                UpstreamEnd::Exited(why) => json!({"exited": why}),
                UpstreamEnd::SpawnFailed(why) => json!({"spawnFailed": why}),
                UpstreamEnd::Stalled => json!("stalled"),
            };
            json!({"upstreamClosed": {"upstream": upstream.0, "reason": reason}})
        }
        Input::Timeout => json!("timeout"),
        Input::Shutdown => json!("shutdown"),
        Input::FetchHead { fetch, status, headers } => {
            json!({"fetchHead": {"fetch": fetch.0, "status": status, "headers": headers_json(headers)}})
        }
        Input::FetchData { fetch, data } => json!({"fetchData": {"fetch": fetch.0, "data": bytes_json(data)}}),
        Input::FetchEnd { fetch, error } => json!({"fetchEnd": {"fetch": fetch.0, "error": error}}),
        Input::ClientMessage(data) => json!({"clientMessage": bytes_json(data)}),
        Input::ClientClosed => json!("clientClosed"),
    }
}

/// Reads an input written by [`input_json`].
pub fn input_from(value: &Value, path: &str) -> Result<Input, TranscriptError> {
    match value.as_str() {
        Some("timeout") => return Ok(Input::Timeout),
        Some("shutdown") => return Ok(Input::Shutdown),
        Some("clientClosed") => return Ok(Input::ClientClosed),
        _ => {}
    }
    let (kind, body) = single(value, path)?;
    let at = |key: &str| format!("{path}.{kind}.{key}");
    Ok(match kind {
        "httpRequest" => Input::HttpRequest(request_from(body, &format!("{path}.{kind}"))?),
        "httpClosed" => Input::HttpClosed(ExchangeId(body.as_u64().ok_or_else(|| error(path, "expected a number"))?)),
        "upstreamMessage" => Input::UpstreamMessage {
            upstream: UpstreamId(u64_at(body, "upstream", &at("upstream"))?),
            data: bytes_from(body.get("data"), &at("data"))?,
        },
        "upstreamClosed" => {
            let reason = match body.get("reason") {
                Some(Value::String(text)) if text == "stalled" => UpstreamEnd::Stalled,
                Some(reason) => match single(reason, &at("reason"))? {
                    ("exited", Value::String(why)) => UpstreamEnd::Exited(why.clone()),
                    ("spawnFailed", Value::String(why)) => UpstreamEnd::SpawnFailed(why.clone()),
                    _ => return Err(error(&at("reason"), "expected exited, spawnFailed or stalled")),
                },
                None => return Err(error(&at("reason"), "missing")),
            };
            Input::UpstreamClosed { upstream: UpstreamId(u64_at(body, "upstream", &at("upstream"))?), reason }
        }
        "fetchHead" => Input::FetchHead {
            fetch: FetchId(u64_at(body, "fetch", &at("fetch"))?),
            status: u16::try_from(u64_at(body, "status", &at("status"))?)
                .map_err(|_| error(&at("status"), "not a status"))?,
            headers: headers_from(body.get("headers"), &at("headers"))?,
        },
        "fetchData" => Input::FetchData {
            fetch: FetchId(u64_at(body, "fetch", &at("fetch"))?),
            data: bytes_from(body.get("data"), &at("data"))?,
        },
        "fetchEnd" => Input::FetchEnd {
            fetch: FetchId(u64_at(body, "fetch", &at("fetch"))?),
            error: body.get("error").and_then(Value::as_str).map(str::to_owned),
        },
        "clientMessage" => Input::ClientMessage(bytes_from(Some(body), &at("data"))?),
        other => return Err(error(path, format!("unknown input {other:?}"))),
    })
}

/// The JSON of an output.
pub fn output_json(output: &Output) -> Value {
    match output {
        Output::Respond { head, body } => json!({"respond": {"head": head_json(head), "body": bytes_json(body)}}),
        Output::StreamStart(head) => json!({"streamStart": head_json(head)}),
        Output::StreamData { exchange, data } => {
            json!({"streamData": {"exchange": exchange.0, "data": bytes_json(data)}})
        }
        Output::StreamEnd(exchange) => json!({"streamEnd": exchange.0}),
        Output::Spawn { upstream, server } => json!({"spawn": {
            "upstream": upstream.0,
            "command": server.command,
            "args": server.args,
            "env": server.env.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "shell": server.shell,
        }}),
        Output::Send { upstream, data } => json!({"send": {"upstream": upstream.0, "data": bytes_json(data)}}),
        Output::CloseUpstream(upstream) => json!({"closeUpstream": upstream.0}),
        Output::Fetch(fetch) => json!({"fetch": {
            "fetch": fetch.fetch.0,
            "method": fetch.method,
            "url": fetch.url,
            "headers": headers_json(&fetch.headers),
            "body": bytes_json(&fetch.body),
            "publicOnly": fetch.public_only,
        }}),
        Output::CancelFetch(fetch) => json!({"cancelFetch": fetch.0}),
        Output::PersistConfig(text) => json!({"persistConfig": text}),
        Output::ClientSend(data) => json!({"clientSend": bytes_json(data)}),
        Output::ClientDone => json!("clientDone"),
        Output::Log { level, message } => json!({"log": {"level": level_name(*level), "message": message}}),
    }
}

/// Reads an output written by [`output_json`].
pub fn output_from(value: &Value, path: &str) -> Result<Output, TranscriptError> {
    if value.as_str() == Some("clientDone") {
        return Ok(Output::ClientDone);
    }
    let (kind, body) = single(value, path)?;
    let at = |key: &str| format!("{path}.{kind}.{key}");
    Ok(match kind {
        "respond" => Output::Respond {
            head: head_from(body.get("head").unwrap_or(&Value::Null), &at("head"))?,
            body: bytes_from(body.get("body"), &at("body"))?,
        },
        "streamStart" => Output::StreamStart(head_from(body, &at("head"))?),
        "streamData" => Output::StreamData {
            exchange: ExchangeId(u64_at(body, "exchange", &at("exchange"))?),
            data: bytes_from(body.get("data"), &at("data"))?,
        },
        "streamEnd" => Output::StreamEnd(ExchangeId(body.as_u64().ok_or_else(|| error(path, "expected a number"))?)),
        "spawn" => Output::Spawn {
            upstream: UpstreamId(u64_at(body, "upstream", &at("upstream"))?),
            server: StdioServer {
                command: str_at(body, "command", &at("command"))?,
                args: strings_from(body.get("args"), &at("args"))?,
                env: body
                    .get("env")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|pair| Some((pair.get(0)?.as_str()?.to_owned(), pair.get(1)?.as_str()?.to_owned())))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| error(&at("env"), "expected [name, value] pairs"))?,
                shell: body.get("shell").and_then(Value::as_bool).unwrap_or(false),
            },
        },
        "send" => Output::Send {
            upstream: UpstreamId(u64_at(body, "upstream", &at("upstream"))?),
            data: bytes_from(body.get("data"), &at("data"))?,
        },
        "closeUpstream" => {
            Output::CloseUpstream(UpstreamId(body.as_u64().ok_or_else(|| error(path, "expected a number"))?))
        }
        "fetch" => Output::Fetch(FetchRequest {
            fetch: FetchId(u64_at(body, "fetch", &at("fetch"))?),
            method: str_at(body, "method", &at("method"))?,
            url: str_at(body, "url", &at("url"))?,
            headers: headers_from(body.get("headers"), &at("headers"))?,
            body: bytes_from(body.get("body"), &at("body"))?,
            public_only: body.get("publicOnly").and_then(Value::as_bool).unwrap_or(false),
        }),
        "cancelFetch" => Output::CancelFetch(FetchId(body.as_u64().ok_or_else(|| error(path, "expected a number"))?)),
        "persistConfig" => Output::PersistConfig(body.as_str().ok_or_else(|| error(path, "expected text"))?.to_owned()),
        "clientSend" => Output::ClientSend(bytes_from(Some(body), &at("data"))?),
        "log" => Output::Log {
            level: match body.get("level").and_then(Value::as_str) {
                Some("error") => LogLevel::Error,
                Some("warn") => LogLevel::Warn,
                Some("info") => LogLevel::Info,
                Some("debug") => LogLevel::Debug,
                _ => return Err(error(&at("level"), "expected error, warn, info or debug")),
            },
            message: str_at(body, "message", &at("message"))?,
        },
        other => return Err(error(path, format!("unknown output {other:?}"))),
    })
}

fn outputs_value(outputs: &[Output]) -> Value {
    Value::Array(outputs.iter().map(output_json).collect())
}

fn outputs_from(value: Option<&Value>, path: &str) -> Result<Vec<Output>, TranscriptError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            items.iter().enumerate().map(|(i, item)| output_from(item, &format!("{path}[{i}]"))).collect()
        }
        Some(_) => Err(error(path, "expected a list")),
    }
}

fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
    }
}

/// The JSON of an HTTP request.
pub fn request_json(request: &HttpRequest) -> Value {
    json!({
        "exchange": request.exchange.0,
        "method": request.method,
        "target": request.target,
        "headers": headers_json(&request.headers),
        "body": bytes_json(&request.body),
        "bodyTooLarge": request.body_too_large,
        "viaLoopback": request.via_loopback,
    })
}

fn request_from(value: &Value, path: &str) -> Result<HttpRequest, TranscriptError> {
    Ok(HttpRequest {
        exchange: ExchangeId(u64_at(value, "exchange", path)?),
        method: str_at(value, "method", path)?,
        target: str_at(value, "target", path)?,
        headers: headers_from(value.get("headers"), &format!("{path}.headers"))?,
        body: bytes_from(value.get("body"), &format!("{path}.body"))?,
        body_too_large: value.get("bodyTooLarge").and_then(Value::as_bool).unwrap_or(false),
        via_loopback: value.get("viaLoopback").and_then(Value::as_bool).unwrap_or(false),
    })
}

fn head_json(head: &ResponseHead) -> Value {
    json!({"exchange": head.exchange.0, "status": head.status, "headers": headers_json(&head.headers)})
}

fn head_from(value: &Value, path: &str) -> Result<ResponseHead, TranscriptError> {
    Ok(ResponseHead {
        exchange: ExchangeId(u64_at(value, "exchange", path)?),
        status: u16::try_from(u64_at(value, "status", path)?).map_err(|_| error(path, "not a status"))?,
        headers: headers_from(value.get("headers"), &format!("{path}.headers"))?,
    })
}

fn headers_json(headers: &[Header]) -> Value {
    Value::Array(headers.iter().map(|h| json!([h.name, h.value])).collect())
}

fn headers_from(value: Option<&Value>, path: &str) -> Result<Vec<Header>, TranscriptError> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|pair| Some(Header::new(pair.get(0)?.as_str()?, pair.get(1)?.as_str()?)))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| error(path, "expected [name, value] pairs"))
}

fn bytes_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => json!({"base64": STANDARD.encode(bytes)}),
    }
}

fn bytes_from(value: Option<&Value>, path: &str) -> Result<Vec<u8>, TranscriptError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(text.clone().into_bytes()),
        Some(other) => other
            .get("base64")
            .and_then(Value::as_str)
            .and_then(|text| STANDARD.decode(text).ok())
            .ok_or_else(|| error(path, "expected text or {\"base64\": ...}")),
    }
}

fn strings_from(value: Option<&Value>, path: &str) -> Result<Vec<String>, TranscriptError> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|item| item.as_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| error(path, "expected strings"))
}

fn single<'a>(value: &'a Value, path: &str) -> Result<(&'a str, &'a Value), TranscriptError> {
    match value.as_object().filter(|object| object.len() == 1).and_then(|object| object.iter().next()) {
        Some((kind, body)) => Ok((kind.as_str(), body)),
        None => Err(error(path, "expected an object with one key")),
    }
}

fn u64_at(value: &Value, key: &str, path: &str) -> Result<u64, TranscriptError> {
    value.get(key).and_then(Value::as_u64).ok_or_else(|| error(path, format!("{key}: expected a number")))
}

fn str_at(value: &Value, key: &str, path: &str) -> Result<String, TranscriptError> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| error(path, format!("{key}: expected text")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcript_reads_back_what_it_wrote_and_replays() {
        let ping = HttpRequest {
            exchange: ExchangeId(1),
            method: "GET".into(),
            target: "/ping".into(),
            headers: vec![Header::new("host", "localhost")],
            body: vec![0xff, 0x00],
            body_too_large: false,
            via_loopback: true,
        };
        let recorded = Transcript {
            config: r#"{"server": {"command": "x"}}"#.into(),
            seed: [7; 32],
            created: Instant(5),
            created_outputs: Vec::new(),
            steps: vec![
                Step { call: Call::Wall(WallClock(1_700_000_000)), refusal: None, outputs: Vec::new(), timeout: None },
                Step {
                    call: Call::Input { at: Instant(10), input: Input::HttpRequest(ping) },
                    refusal: None,
                    outputs: Vec::new(),
                    timeout: None,
                },
            ],
        };
        let blessed = bless(&recorded).expect("valid");
        assert!(matches!(blessed.steps[1].outputs[0], Output::Respond { .. }));
        let text = blessed.to_json();
        let read = Transcript::from_json(&text).expect("reads back");
        assert_eq!((&read.steps, read.seed, read.created), (&blessed.steps, blessed.seed, blessed.created));
        assert_eq!(replay(&read), Ok(()));
        let mut tampered = read;
        tampered.steps[1].outputs.clear();
        assert_eq!(replay(&tampered).map_err(|m| m.step), Err(2));
    }
}
