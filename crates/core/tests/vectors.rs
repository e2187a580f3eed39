//! The recorded transcripts of `tests/vectors/transcripts`, replayed on the native core: every
//! output must come out byte for byte as recorded (the component and the Worker replay the
//! same files; see `crates/host/src/vectors.rs` and `tests/e2e/test_core_vectors.py`).

use std::path::PathBuf;

use mcp_proxy_core::transcript::{replay, Transcript};

fn transcripts() -> Vec<(PathBuf, Transcript)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/transcripts");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/vectors/transcripts exists")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable");
            let transcript = Transcript::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, transcript)
        })
        .collect()
}

#[test]
fn every_transcript_replays_byte_for_byte() {
    let all = transcripts();
    assert!(all.len() >= 5, "the recorded vector set is there ({} files)", all.len());
    for (path, transcript) in all {
        if let Err(mismatch) = replay(&transcript) {
            panic!("{}: {mismatch}", path.display());
        }
    }
}
