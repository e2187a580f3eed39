//! `MCP_PROXY_RECORD=FILE`: every call the host makes into the core, written as a transcript
//! (a header line with the configuration, seed and time, then a line per call), for the test
//! vectors (`cargo run -p mcp-proxy-core --example vectors -- bless FILE` turns it into one).
//! A writer thread does the file IO, so the driver never waits on the disk. The recording holds
//! whatever the proxy saw, the configuration's environment included: it is for the developer
//! who asked for it, and blessing replaces the environment before a vector is committed.

use std::io::Write;
use std::sync::mpsc;

use mcp_proxy_core::transcript::{input_json, request_json};

use crate::bindings::{HttpRequest, Input};
use crate::convert::{input_in, request_in};

/// Where the calls go.
pub(crate) struct Recorder {
    lines: mpsc::Sender<String>,
}

impl Recorder {
    /// A recorder if `MCP_PROXY_RECORD` names a file, starting with the core's creation.
    pub(crate) fn from_env(config: &str, seed: &[u8], created: u64) -> Option<Recorder> {
        let path = std::env::var_os("MCP_PROXY_RECORD")?;
        let mut file = match std::fs::File::create(&path) {
            Ok(file) => file,
            Err(error) => {
                tracing::warn!("MCP_PROXY_RECORD: cannot write {}: {error}", path.to_string_lossy());
                return None;
            }
        };
        let (lines, received) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in received {
                if writeln!(file, "{line}").is_err() {
                    return;
                }
            }
        });
        let config: serde_json::Value = serde_json::from_str(config).unwrap_or_else(|_| config.into());
        let seed: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        let header = serde_json::json!({"config": config, "seed": seed, "created": created});
        let recorder = Recorder { lines };
        recorder.write(header);
        Some(recorder)
    }

    fn write(&self, line: serde_json::Value) {
        // The writer thread only stops when the file cannot be written: then recording stops.
        let _ = self.lines.send(line.to_string());
    }

    /// An input handed in at `at`.
    pub(crate) fn input(&self, at: u64, input: &Input) {
        self.write(serde_json::json!({"at": at, "input": input_json(&input_in(input.clone()))}));
    }

    /// A precheck.
    pub(crate) fn precheck(&self, request: &HttpRequest) {
        self.write(serde_json::json!({"precheck": request_json(&request_in(request.clone()))}));
    }

    /// A wall-clock reading.
    pub(crate) fn wall(&self, seconds: u64) {
        self.write(serde_json::json!({"wall": seconds}));
    }
}
