//! Maintains the recorded transcripts of `tests/vectors/transcripts`.
//!
//!     cargo run -p mcp-proxy-core --example vectors -- bless FILE...
//!
//! `bless` takes a transcript recorded by the host (`MCP_PROXY_RECORD=FILE mcp-proxy ...`),
//! replaces the recording machine's environment in its configuration with a fixed one (no
//! machine's variables, let alone secrets, belong in the repository), recomputes every answer
//! with the native core, and writes the file back. The tests then check that every build
//! gives those answers byte for byte.

use mcp_proxy_core::transcript::{bless, Transcript};

/// The environment a blessed transcript's configuration carries.
const ENVIRONMENT: [(&str, &str); 4] =
    [("HOME", "/home/mcp"), ("PATH", "/usr/local/bin:/usr/bin:/bin"), ("USER", "mcp"), ("LANG", "C.UTF-8")];

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, files)) = args.split_first() else {
        eprintln!("usage: vectors bless FILE...");
        return std::process::ExitCode::from(2);
    };
    if command != "bless" || files.is_empty() {
        eprintln!("usage: vectors bless FILE...");
        return std::process::ExitCode::from(2);
    }
    for file in files {
        if let Err(error) = bless_file(file) {
            eprintln!("{file}: {error}");
            return std::process::ExitCode::FAILURE;
        }
        eprintln!("{file}: blessed");
    }
    std::process::ExitCode::SUCCESS
}

fn bless_file(file: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let mut transcript = match Transcript::from_json(&text) {
        Ok(transcript) => transcript,
        // As the host records it: a header line, then a line per call.
        Err(_) => Transcript::from_json(&from_lines(&text)?).map_err(|e| e.to_string())?,
    };
    let mut config: serde_json::Value = serde_json::from_str(&transcript.config).map_err(|e| e.to_string())?;
    if let Some(object) = config.as_object_mut().filter(|object| object.contains_key("environment")) {
        let environment: Vec<serde_json::Value> =
            ENVIRONMENT.iter().map(|(name, value)| serde_json::json!([name, value])).collect();
        object.insert("environment".into(), serde_json::Value::Array(environment));
    }
    transcript.config = config.to_string();
    let blessed = bless(&transcript)?;
    std::fs::write(file, blessed.to_json()).map_err(|e| e.to_string())
}

/// A recording (a header object on the first line, then one call a line) as one document.
fn from_lines(text: &str) -> Result<String, String> {
    let mut lines = text.lines().filter(|line| !line.trim().is_empty());
    let header = lines.next().ok_or("empty recording")?;
    let mut document: serde_json::Value = serde_json::from_str(header).map_err(|e| format!("line 1: {e}"))?;
    let steps = lines
        .enumerate()
        .map(|(i, line)| serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 2)))
        .collect::<Result<Vec<serde_json::Value>, String>>()?;
    document["steps"] = serde_json::Value::Array(steps);
    Ok(document.to_string())
}
