//! The recorded transcripts of `tests/vectors/transcripts`, replayed on the native core: every
//! output must come out byte for byte as recorded (the component and the Worker replay the
//! same files; see `crates/host/src/vectors.rs` and `tests/e2e/test_core_vectors.py`).

use std::path::PathBuf;

use mcp_proxy_core::transcript::{load_dir, replay};

#[test]
fn every_transcript_replays_byte_for_byte() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/transcripts");
    let all = load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(all.len() >= 5, "the recorded vector set is there ({} files)", all.len());
    for (path, transcript) in all {
        if let Err(mismatch) = replay(&transcript) {
            panic!("{}: {mismatch}", path.display());
        }
    }
}
