"""`bench/run --peers`: the same load against the npm and PyPI `mcp-proxy` packages.

Both are installed into bench/ at pinned versions (bench/peers/npm/package-lock.json,
bench/peers/requirements.txt), idempotently; the install dirs are gitignored.
"""

import json
import os
import statistics
import subprocess
import sys
import time

import loadgen
import procs
from loadgen import SseSession, StdioSession, StreamSession

HERE = os.path.dirname(os.path.abspath(__file__))
NPM_DIR = os.path.join(HERE, "peers", "npm")
NPM_MAIN = os.path.join(NPM_DIR, "node_modules", "mcp-proxy", "dist", "bin", "mcp-proxy.mjs")
VENV = os.path.join(HERE, ".venv")
REQUIREMENTS = os.path.join(HERE, "peers", "requirements.txt")
PYPI_BIN = os.path.join(VENV, "bin", "mcp-proxy")
INSTALL_TIMEOUT = 600


def log(message):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), message), file=sys.stderr, flush=True)


def pinned(requirements, name):
    with open(requirements) as f:
        for line in f:
            if line.lower().startswith(name.lower() + "=="):
                return line.strip().split("==", 1)[1]
    raise RuntimeError("%s is not pinned in %s" % (name, requirements))


def ensure_npm():
    """Installs the lockfile's packages unless they are already there; returns the version."""
    with open(os.path.join(NPM_DIR, "package.json")) as f:
        want = json.load(f)["dependencies"]["mcp-proxy"]
    installed = os.path.join(NPM_DIR, "node_modules", "mcp-proxy", "package.json")
    try:
        with open(installed) as f:
            have = json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        have = None
    if have != want:
        log("installing npm mcp-proxy@%s into %s" % (want, NPM_DIR))
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
            cwd=NPM_DIR,
            check=True,
            timeout=INSTALL_TIMEOUT,
            stdout=sys.stderr,
        )
    return want


def ensure_pypi():
    """Creates bench/.venv with the pinned requirements unless it matches; returns the version."""
    want = pinned(REQUIREMENTS, "mcp-proxy")
    python = os.path.join(VENV, "bin", "python")
    stamp = os.path.join(VENV, ".bench-requirements")
    with open(REQUIREMENTS) as f:
        wanted = f.read()
    try:
        with open(stamp) as f:
            current = f.read()
    except OSError:
        current = None
    if current != wanted or not os.access(PYPI_BIN, os.X_OK):
        log("installing PyPI mcp-proxy==%s into %s" % (want, VENV))
        if not os.access(python, os.X_OK):
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True, timeout=INSTALL_TIMEOUT)
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", REQUIREMENTS],
            check=True,
            timeout=INSTALL_TIMEOUT,
            stdout=sys.stderr,
        )
        with open(stamp, "w") as f:
            f.write(wanted)
    return want


class Peer:
    """How to start one proxy in front of a stdio command, and where it serves."""

    def __init__(self, name, version, argv_fn, ready_path, stream_path="/mcp", sse_path="/sse", note="", env=None):
        self.name, self.version = name, version
        self.argv_fn, self.ready_path = argv_fn, ready_path
        self.stream_path, self.sse_path = stream_path, sse_path
        self.note = note
        self.env = env


def peers_for(bench):
    ours = Peer(
        "mcp-proxy (this repo, Rust)",
        "0.1.0",
        lambda port, cmd: [bench_proxy(), "--host", "127.0.0.1", "--port", str(port), "--", *cmd],
        "/ping",
        note="one child per session",
    )
    out = [ours]
    try:
        version = ensure_npm()
        out.append(
            Peer(
                "npm mcp-proxy (punkpeye, Node)",
                version,
                lambda port, cmd: ["node", NPM_MAIN, "--host", "127.0.0.1", "--port", str(port), "--", *cmd],
                "/ping",
                note="one child shared by all sessions, started with the proxy; defaults (event store on)",
            )
        )
    except Exception as error:
        bench.fail("installing the npm mcp-proxy", error)
    try:
        version = ensure_pypi()
        out.append(
            Peer(
                "PyPI mcp-proxy (sparfenyuk, Python)",
                version,
                lambda port, cmd: [PYPI_BIN, "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING", "--", *cmd],
                "/status",
                stream_path="/mcp",
                note="one child shared by all sessions, started with the proxy; --log-level WARNING (its INFO default logs every request)",
            )
        )
    except Exception as error:
        bench.fail("installing the PyPI mcp-proxy", error)
    return out


def bench_proxy():
    from bench import PROXY

    return PROXY


def start(bench, peer):
    port = procs.free_port()
    env = dict(os.environ)
    env.update(peer.env or {})
    bench.proxy_count += 1
    server = procs.LoggedProcess(
        bench.registry,
        peer.argv_fn(port, bench.echo_cmd),
        os.path.join(bench.tmp, "peer-%d.log" % bench.proxy_count),
        env=env,
    )
    server.port = port
    server.start_s = procs.wait_http_ready("127.0.0.1", port, peer.ready_path, bench.args.io_timeout, server.proc)
    return server


def run_all(bench):
    a = bench.args
    peers = peers_for(bench)
    duration = max(1.0, a.duration * 2 / 3)
    rounds = max(2, a.rounds - 2)
    calls = max(100, a.calls // 4)
    results = {"peers": [], "duration": duration}
    servers = {}
    try:
        for peer in peers:
            log("peers: starting %s" % peer.name)
            try:
                servers[peer.name] = start(bench, peer)
            except Exception as error:
                bench.fail("starting %s" % peer.name, error)
        # Memory first, while every proxy is fresh.
        rows = {}
        for peer in peers:
            server = servers.get(peer.name)
            if not server:
                continue
            row = rows[peer.name] = {"name": peer.name, "version": peer.version, "note": peer.note}
            row["start_ms"] = server.start_s * 1e3
            try:
                log("peers: %s memory with %d sessions" % (peer.name, a.rss_sessions))
                time.sleep(0.3)
                row["rss_idle_kb"] = before = procs.rss_kb(server.pid)
                opened, _ = bench.open_sessions("stream", a.rss_sessions, server.port, stream_path=peer.stream_path)
                try:
                    loadgen.drive(opened, calls=5, timeout_s=a.io_timeout * 2)
                    time.sleep(0.3)
                    row["rss_per_session_kb"] = (procs.rss_kb(server.pid) - before) / a.rss_sessions
                finally:
                    from bench import close_all

                    close_all(opened)
            except Exception as error:
                bench.fail("peers memory %s" % peer.name, error, server)
        # Latency, all proxies and direct stdio interleaved in rounds.
        sessions = {("direct", "stdio"): bench.open_sessions("stdio", 1)[0][0]}
        try:
            for peer in peers:
                server = servers.get(peer.name)
                if not server:
                    continue
                for kind, path in (("stream", peer.stream_path), ("sse", peer.sse_path)):
                    try:
                        sessions[(peer.name, kind)] = bench.open_sessions(
                            kind, 1, server.port, stream_path=path, sse_path=path
                        )[0][0]
                    except Exception as error:
                        bench.fail("%s %s session" % (peer.name, kind), error, server)
            log("peers: latency (%d rounds x %d calls)" % (rounds, calls))
            samples = {key: [] for key in sessions}
            for key, session in list(sessions.items()):
                try:
                    loadgen.drive([session], calls=max(20, a.warmup // 3), timeout_s=a.io_timeout * 4)
                except Exception as error:
                    bench.fail("latency %s %s" % key, error)
                    del sessions[key]
            for _ in range(rounds):
                for key, session in list(sessions.items()):
                    try:
                        window = loadgen.drive([session], calls=calls, timeout_s=a.io_timeout * 4)
                        samples[key].extend(window.latencies_ns)
                    except Exception as error:
                        bench.fail("latency %s %s" % key, error)
                        del sessions[key]
        finally:
            from bench import close_all, summarize

            close_all(sessions.values())
        results["latency"] = {key: summarize(values) for key, values in samples.items() if values}

        for peer in peers:
            server = servers.get(peer.name)
            if not server:
                continue
            row = rows[peer.name]
            results["peers"].append(row)
            for n in a.sessions:
                for kind in ("stream", "sse"):
                    log("peers: %s %s x %d sessions (%.1f s)" % (peer.name, kind, n, duration))
                    try:
                        row[(kind, n)] = bench.throughput(
                            server, kind, n, duration, a.warmup_s, stream_path=peer.stream_path, sse_path=peer.sse_path
                        )
                    except Exception as error:
                        bench.fail("peers throughput %s %s x %d" % (peer.name, kind, n), error, server)
            bench.stop(server)
            servers.pop(peer.name, None)
    finally:
        for server in servers.values():
            bench.stop(server)
    return results


def report(bench, results):
    from bench import fmt, ratio

    a = bench.args
    out = []
    w = out.append
    lat = results.get("latency", {})
    base = lat.get(("direct", "stdio"))
    w("")
    w("## 6. Peers: the same load against other stdio-to-HTTP proxies")
    w("")
    w("| proxy | version | children | start → HTTP ready ms | RSS idle MiB | RSS per stream session KiB |")
    w("|---|---|---|---:|---:|---:|")
    for row in results["peers"]:
        w(
            "| %s | %s | %s | %s | %s | %s |"
            % (
                row["name"],
                row["version"],
                row["note"],
                fmt(row["start_ms"]),
                fmt(row["rss_idle_kb"] / 1024, 1) if "rss_idle_kb" in row else "–",
                fmt(row.get("rss_per_session_kb")),
            )
        )
    w("")
    w("Latency (one session, sequential; interleaved rounds; ratios against direct stdio in the same phase):")
    w("")
    w("| proxy | transport | calls | p50 µs | p99 µs | p50 ratio | p99 ratio |")
    w("|---|---|---:|---:|---:|---:|---:|")
    for (name, kind), s in lat.items():
        w(
            "| %s | %s | %d | %s | %s | %s | %s |"
            % (
                name,
                kind,
                s["n"],
                fmt(s["p50"]),
                fmt(s["p99"]),
                fmt(ratio(s["p50"], base["p50"]) if base else None, 2),
                fmt(ratio(s["p99"], base["p99"]) if base else None, 2),
            )
        )
    w("")
    w("Throughput (%.1f s windows; ratio against direct stdio with the same session count from section 2):" % results["duration"])
    w("")
    w("| proxy | transport | sessions | calls/s | ratio | p50 µs | p99 µs | proxy CPU µs/call | child CPU µs/call |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    tp = bench.results.get("throughput") or {}
    for row in results["peers"]:
        for kind in ("stream", "sse"):
            for n in a.sessions:
                s = row.get((kind, n))
                if not s:
                    w("| %s | %s | %d | failed | | | | | |" % (row["name"], kind, n))
                    continue
                direct = tp.get(("stdio", n))
                w(
                    "| %s | %s | %d | %s | %s | %s | %s | %s | %s |"
                    % (
                        row["name"],
                        kind,
                        n,
                        fmt(s["rate"]),
                        fmt(ratio(s["rate"], direct["rate"]) if direct else None, 2),
                        fmt(s["p50"]),
                        fmt(s["p99"]),
                        fmt(s["server_cpu_us"], 1),
                        fmt(s["child_cpu_us"], 1),
                    )
                )
    w("")
    w(
        "Differences that matter when reading this: the npm and PyPI proxies start **one** child with the "
        "proxy and share it between all sessions (so their start time includes the child's start and "
        "their session open spawns nothing, and N sessions are funnelled into one stdio server), while "
        "this proxy gives every session its own child. Both peers answer Streamable HTTP POSTs as SSE "
        "streams; this proxy answers plain JSON when there is nothing to stream. Start → HTTP ready is "
        "polled (every 5 ms) for all three, so it is not comparable to section 5's stderr-line timing."
    )
    return out
