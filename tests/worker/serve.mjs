// Runs the built Worker (crates/worker/build) in workerd through the Miniflare API, on
// loopback, for the end-to-end tests (tests/e2e/test_worker.py).
//
//   node tests/worker/serve.mjs [--port N] [--build DIR] [--bindings FILE.json] [--binding NAME=VALUE]...
//
// --build names another built Worker (default crates/worker/build), like the transcript
// replayer of crates/worker-vectors.
//
// Bindings are the Worker's vars and secrets (both plain strings here), e.g.
// MCP_PROXY_CONFIG. Prints "worker listening on http://127.0.0.1:PORT" on stdout once it
// serves; the Worker's console goes to stderr. Stops cleanly on SIGTERM, SIGINT or when stdin
// closes (so a test that dies does not leave workerd behind).
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Log, LogLevel, Miniflare } from "miniflare";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

function parseArgs(argv) {
    const options = { port: 0, bindings: {}, build: join(root, "crates", "worker", "build") };
    for (let i = 0; i < argv.length; i++) {
        const arg = argv[i];
        const value = () => {
            if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
            return argv[++i];
        };
        if (arg === "--port") {
            options.port = Number.parseInt(value(), 10);
        } else if (arg === "--build") {
            options.build = value();
        } else if (arg === "--bindings") {
            Object.assign(options.bindings, JSON.parse(readFileSync(value(), "utf8")));
        } else if (arg === "--binding") {
            const pair = value();
            const at = pair.indexOf("=");
            if (at <= 0) throw new Error(`--binding wants NAME=VALUE, got ${JSON.stringify(pair)}`);
            options.bindings[pair.slice(0, at)] = pair.slice(at + 1);
        } else {
            throw new Error(`unknown argument ${JSON.stringify(arg)}`);
        }
    }
    return options;
}

// One source of truth for the compatibility date: the root wrangler.toml.
function compatibilityDate() {
    const toml = readFileSync(join(root, "wrangler.toml"), "utf8");
    const match = toml.match(/^compatibility_date\s*=\s*"([^"]+)"/m);
    if (!match) throw new Error("wrangler.toml has no compatibility_date");
    return match[1];
}

const options = parseArgs(process.argv.slice(2));
const build = options.build;
const miniflare = new Miniflare({
    modules: true,
    scriptPath: join(build, "index.js"),
    modulesRoot: build,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
    compatibilityDate: compatibilityDate(),
    bindings: options.bindings,
    host: "127.0.0.1",
    port: options.port,
    log: new Log(LogLevel.WARN),
    // No request to workers.cloudflare.com for a real `request.cf`: placeholders do.
    cf: false,
});

let stopping = false;
async function stop(code) {
    if (stopping) return;
    stopping = true;
    try {
        await miniflare.dispose();
    } finally {
        process.exit(code);
    }
}
process.on("SIGTERM", () => stop(0));
process.on("SIGINT", () => stop(0));
process.stdin.on("end", () => stop(0));
process.stdin.resume();

try {
    const url = await miniflare.ready;
    process.stdout.write(`worker listening on ${url.origin}\n`);
} catch (error) {
    process.stderr.write(`serve.mjs: ${error.stack ?? error}\n`);
    await stop(1);
}
