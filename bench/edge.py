"""The Cloudflare Worker (crates/worker) in the benchmark: its bundle size, and the latency it
adds in front of a Streamable HTTP upstream, measured against calling that upstream directly
in the same run.

The Worker runs in workerd through Miniflare (tests/worker/serve.mjs), on loopback; the
upstream is the native mcp-proxy bridging the echo server. Every call through the Worker is
served by a fresh core that opens the sealed session id, so the difference to direct is the
whole edge path: workerd, the wasm core, and the extra HTTP hop.
"""

import gzip
import json
import os
import re
import subprocess
import threading
import time

import loadgen
from loadgen import StreamSession

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(ROOT, "crates", "worker", "build")
SERVE = os.path.join(ROOT, "tests", "worker", "serve.mjs")
SESSION_KEY = "bench-session-key-0123456789abcdef0123456789"
HOST = "127.0.0.1"


def bundle_sizes():
    """Raw and gzip sizes of what `wrangler deploy` uploads (the wasm and its JS glue)."""
    sizes = {}
    for name in ("index_bg.wasm", "index.js"):
        path = os.path.join(BUILD, name)
        with open(path, "rb") as f:
            data = f.read()
        sizes[name] = (len(data), len(gzip.compress(data, 9)))
    return sizes


def ensure_built(log):
    if os.path.exists(os.path.join(BUILD, "index_bg.wasm")):
        return
    log("edge: building the Worker (scripts/build-worker)")
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "build-worker")], cwd=ROOT, check=True, timeout=1200)


class Worker:
    """serve.mjs with the given bindings; it stops when its stdin closes."""

    def __init__(self, registry, bindings, log_path, timeout):
        argv = ["node", SERVE]
        for name, value in bindings.items():
            argv += ["--binding", "%s=%s" % (name, value)]
        env = dict(os.environ, WRANGLER_SEND_METRICS="false", CLOUDFLARE_CF_FETCH_ENABLED="false")
        self.proc = registry.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        self.port = None
        ready = threading.Event()

        def drain():
            with open(log_path, "ab") as log:
                for line in self.proc.stdout:
                    log.write(line)
                    match = re.search(rb"worker listening on http://[^:]+:(\d+)", line)
                    if match and self.port is None:
                        self.port = int(match.group(1))
                        ready.set()
            ready.set()

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(timeout) or self.port is None:
            raise RuntimeError("the Worker did not start; see %s" % log_path)

    def stop(self, registry):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        registry.stop(self.proc)


def measure(bench, rounds, calls, warmup):
    """Sequential tools/call on one session: direct to the upstream, and through the Worker."""
    from bench import summarize

    ensure_built(bench_log)
    upstream = bench.start_proxy(bench.echo_cmd)
    config = {"mcpServers": {"echo": {"type": "streamable-http", "url": "http://%s:%d/mcp" % (HOST, upstream.port)}}}
    worker = None
    sessions = {}
    try:
        worker = Worker(
            bench.registry,
            {"MCP_PROXY_CONFIG": json.dumps(config), "MCP_PROXY_SESSION_KEY": SESSION_KEY},
            os.path.join(bench.tmp, "worker.log"),
            bench.args.io_timeout * 3,
        )
        sessions["direct"] = StreamSession(HOST, upstream.port, "/mcp", bench.call)
        sessions["worker"] = StreamSession(HOST, worker.port, "/echo/mcp", bench.call)
        for session in sessions.values():
            session.initialize()
        samples = {kind: [] for kind in sessions}
        for session in sessions.values():
            loadgen.drive([session], calls=warmup, timeout_s=bench.args.io_timeout * 4)
        for _ in range(rounds):
            for kind, session in sessions.items():
                window = loadgen.drive([session], calls=calls, timeout_s=bench.args.io_timeout * 4)
                samples[kind].extend(window.latencies_ns)
    finally:
        for session in sessions.values():
            session.close()
        if worker:
            worker.stop(bench.registry)
        bench.stop(upstream)
    return {"latency": {kind: summarize(values) for kind, values in samples.items()}, "sizes": bundle_sizes()}


def bench_log(message):
    from bench import log

    log(message)


def report(result):
    """Markdown lines for the report."""
    from bench import fmt, ratio

    def kib(size):
        return "%.1f KiB" % (size / 1024)

    out = ["", "## 6. Cloudflare Worker (edge): bundle and added latency", ""]
    out.append("| file | size | gzip |")
    out.append("|---|---:|---:|")
    total = 0
    for name, (raw, packed) in result["sizes"].items():
        total += packed
        out.append("| `%s` | %s | %s |" % (name, kib(raw), kib(packed)))
    out.append("| **upload** | | **%s** |" % kib(total))
    out.append("")
    out.append("| path | calls | p50 µs | p90 µs | p99 µs | p50 ratio | p50 added µs |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    direct = result["latency"]["direct"]
    for kind, label in (("direct", "client → upstream (native mcp-proxy + echo)"), ("worker", "client → Worker (workerd) → upstream")):
        row = result["latency"][kind]
        out.append(
            "| %s | %d | %s | %s | %s | %s | %s |"
            % (
                label,
                row["n"],
                fmt(row["p50"]),
                fmt(row["p90"]),
                fmt(row["p99"]),
                fmt(ratio(row["p50"], direct["p50"]), 2),
                fmt(row["p50"] - direct["p50"]),
            )
        )
    out.append("")
    out.append(
        "Every call through the Worker runs a fresh core that opens the sealed session id; workerd here is"
        " Miniflare's local runtime, so the added latency is the edge path on this machine, not Cloudflare's network."
    )
    return out
