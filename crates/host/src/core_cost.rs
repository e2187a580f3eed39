//! What a message costs the core: recorded real sessions (`tests/vectors/transcripts/host-*`)
//! replayed many times, natively (the core linked into this binary) and as the component in
//! wasmtime (the calls the driver makes for each event: one crossing per input, which brings
//! back its outputs and the deadline). A measurement, not a test: `bench/run` runs it and reports the two side by side.
//!
//! ```sh
//! cargo test --release -p mcp-proxy --bin mcp-proxy core_cost -- --ignored --nocapture
//! ```

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, Instant as Clock};

    use mcp_proxy_core::transcript::{Call, Transcript};
    use mcp_proxy_core::{Config, Proxy};

    use crate::convert::{input_out, request_out};
    use crate::engine::CoreEngine;

    /// The recorded sessions measured: what real clients and servers said through the host.
    const SESSIONS: [&str; 3] = ["host-bridge-2025-session", "host-bridge-2026-mrtr", "host-merged-both-eras"];
    /// How long each side replays a session, after one round of warm-up.
    const WINDOW: Duration = Duration::from_millis(1500);

    fn load(name: &str) -> Transcript {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../tests/vectors/transcripts/{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Transcript::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// One round natively: the time spent in the steps (creation excluded).
    fn native_round(transcript: &Transcript) -> Duration {
        let config = Config::from_json(&transcript.config).expect("a recorded configuration is valid");
        let mut proxy = Proxy::new(config, transcript.seed, transcript.created);
        while proxy.poll_output().is_some() {}
        let started = Clock::now();
        for step in &transcript.steps {
            match &step.call {
                Call::Input { at, input } => {
                    proxy.handle_input(*at, input.clone());
                    while proxy.poll_output().is_some() {}
                    std::hint::black_box(proxy.poll_timeout());
                }
                Call::Precheck(request) => {
                    drop(proxy.precheck(request));
                    while proxy.poll_output().is_some() {}
                }
                Call::Wall(wall) => proxy.set_wall_clock(*wall),
            }
        }
        started.elapsed()
    }

    /// One round in wasmtime, through the WIT as the driver calls it.
    fn component_round(engine: &CoreEngine, transcript: &Transcript) -> Duration {
        let mut core = engine.instantiate().expect("instantiates");
        core.create(&transcript.config, &transcript.seed, transcript.created.0).expect("valid configuration");
        core.poll_outputs().expect("no trap");
        // Converted up front: the driver gets its inputs in the WIT's types.
        let calls: Vec<_> = transcript
            .steps
            .iter()
            .map(|step| match &step.call {
                Call::Input { at, input } => (Some((at.0, input_out(input.clone()))), None, None),
                Call::Precheck(request) => (None, Some(request_out(request.clone())), None),
                Call::Wall(wall) => (None, None, Some(wall.0)),
            })
            .collect();
        let started = Clock::now();
        for call in &calls {
            match call {
                // One crossing: the input, its outputs and the deadline.
                (Some((at, input)), _, _) => {
                    drop(std::hint::black_box(core.handle_input(*at, input).expect("no trap")))
                }
                (_, Some(request), _) => {
                    drop(core.precheck(request).expect("no trap"));
                    std::hint::black_box(core.poll_outputs().expect("no trap"));
                }
                (_, _, Some(wall)) => core.set_wall_clock(*wall).expect("no trap"),
                _ => {}
            }
        }
        started.elapsed()
    }

    /// Microseconds per step over a window of rounds.
    fn per_step(steps: usize, mut round: impl FnMut() -> Duration) -> f64 {
        round();
        let (mut spent, mut rounds, started) = (Duration::ZERO, 0u32, Clock::now());
        while started.elapsed() < WINDOW || rounds < 3 {
            spent += round();
            rounds += 1;
        }
        spent.as_secs_f64() * 1e6 / (f64::from(rounds) * steps as f64)
    }

    #[test]
    #[ignore = "a measurement (bench/run runs it), not a test"]
    fn core_cost() {
        let engine = CoreEngine::load().expect("the component loads");
        for name in SESSIONS {
            let transcript = load(name);
            let steps = transcript.steps.len();
            let native = per_step(steps, || native_round(&transcript));
            let component = per_step(steps, || component_round(&engine, &transcript));
            // One line per session, for bench/run to read.
            println!("core-cost {name} steps={steps} native_us={native:.2} component_us={component:.2}");
        }
    }
}
