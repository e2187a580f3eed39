//! The recorded transcripts of `tests/vectors/transcripts`, replayed on the core as the host
//! runs it: the component inside wasmtime, driven through the WIT. Every answer must be the
//! one the native core gave when the transcript was blessed, byte for byte (the core's own
//! tests replay the same files natively, and the Worker build replays them in workerd).

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use mcp_proxy_core::transcript::{answers_json, compare, load_dir, Call};
    use mcp_proxy_core::Instant;

    use crate::convert::{head_in, input_out, output_in, request_out};
    use crate::engine::CoreEngine;

    #[test]
    fn the_component_replays_every_transcript_byte_for_byte() {
        let engine = CoreEngine::load().expect("the component loads");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/transcripts");
        let all = load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert!(all.len() >= 5, "the recorded vector set is there ({} files)", all.len());
        for (path, transcript) in all {
            let name = path.display();
            let mut core = engine.instantiate().expect("instantiates");
            core.create(&transcript.config, &transcript.seed, transcript.created.0).expect("valid configuration");
            let created: Vec<_> = core.poll_outputs().expect("outputs").into_iter().map(output_in).collect();
            let expected = answers_json(&None, &transcript.created_outputs, None);
            if let Err(mismatch) = compare(0, &expected["outputs"], &answers_json(&None, &created, None)["outputs"]) {
                panic!("{name}: {mismatch}");
            }
            for (index, step) in transcript.steps.iter().enumerate() {
                let (refusal, outputs, timeout) = match &step.call {
                    // An input's outputs and deadline come back with it, in one crossing.
                    Call::Input { at, input } => {
                        let turn = core.handle_input(at.0, &input_out(input.clone())).expect("no trap");
                        (None, turn.outputs, turn.timeout)
                    }
                    Call::Precheck(request) => {
                        let refusal = core
                            .precheck(&request_out(request.clone()))
                            .expect("no trap")
                            .map(|response| (head_in(response.head), response.body));
                        (refusal, core.poll_outputs().expect("outputs"), core.poll_timeout().expect("no trap"))
                    }
                    Call::Wall(wall) => {
                        core.set_wall_clock(wall.0).expect("no trap");
                        (None, core.poll_outputs().expect("outputs"), core.poll_timeout().expect("no trap"))
                    }
                };
                let outputs: Vec<_> = outputs.into_iter().map(output_in).collect();
                let timeout = timeout.map(Instant);
                let expected = answers_json(&step.refusal, &step.outputs, step.timeout);
                if let Err(mismatch) = compare(index + 1, &expected, &answers_json(&refusal, &outputs, timeout)) {
                    panic!("{name}: {mismatch}");
                }
            }
        }
    }
}
