"""mcp-proxy benchmark: latency, throughput, CPU, memory and start time on loopback.

Run it through `bench/run`. Everything is measured in one run and compared against driving the same stdio server directly, so the ratios hold on a
noisy machine. The report is printed as Markdown and written to bench/results/latest.md.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import loadgen  # noqa: E402
import procs  # noqa: E402
from loadgen import Call, ModernSession, PingSession, SseSession, StdioSession, StreamSession  # noqa: E402

ROOT = os.path.dirname(HERE)
PROXY = os.path.join(ROOT, "target", "release", "mcp-proxy")
EVERYTHING = os.path.join(
    ROOT, "tests", "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js"
)
HOST = "127.0.0.1"


def log(message):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), message), file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args):
        self.args = args
        self.tag = "mcpbench-%d-%s" % (os.getpid(), uuid.uuid4().hex[:8])
        self.tmp = tempfile.mkdtemp(prefix="mcp-bench-")
        self.registry = procs.Registry(self.tag)
        self.echo_cmd = [sys.executable, "-I", "-S", os.path.join(HERE, "echo_server.py"), "--tag", self.tag]
        self.everything_cmd = ["node", EVERYTHING, "stdio", "--tag", self.tag]
        self.call = Call()
        self.notes = []
        self.results = {}
        self.proxy_count = 0

    # ---------------------------------------------------------------------------------------
    # processes

    def start_proxy(self, server_cmd, extra=(), env_extra=None):
        return self.start_proxy_with([*extra, "--", *server_cmd], env_extra)

    def start_proxy_with(self, extra, env_extra=None):
        """A proxy with these arguments (with no command of its own, an aggregator)."""
        self.proxy_count += 1
        env = dict(os.environ)
        env.update(env_extra or {})
        argv = [PROXY, "--host", HOST, "--port", "0", *extra]
        proxy = procs.LoggedProcess(
            self.registry,
            argv,
            os.path.join(self.tmp, "proxy-%d.log" % self.proxy_count),
            env=env,
            ready_marker=b"listening on",
        )
        proxy.start_s = proxy.wait_ready(self.args.io_timeout)
        proxy.port = int(proxy.ready_line.rsplit(":", 1)[1].split("/")[0])
        return proxy

    def stop(self, proxy):
        self.registry.stop(proxy.proc)
        proxy.thread.join(timeout=5)

    def open_sessions(self, kind, n, port=None, server_cmd=None, stream_path="/mcp", sse_path="/sse"):
        """Opens n sessions one after another; returns them and the seconds each open took."""
        sessions, times = [], []
        try:
            for _ in range(n):
                t0 = time.perf_counter()
                if kind == "stdio":
                    session = StdioSession(server_cmd or self.echo_cmd, self.call)
                elif kind == "stream":
                    session = StreamSession(HOST, port, stream_path, self.call)
                elif kind == "modern":
                    session = ModernSession(HOST, port, stream_path, self.call)
                else:
                    session = SseSession(HOST, port, sse_path, self.call)
                sessions.append(session)
                session.initialize()
                times.append(time.perf_counter() - t0)
        except BaseException:
            close_all(sessions)
            raise
        return sessions, times

    # ---------------------------------------------------------------------------------------
    # 1. latency

    def interleaved(self, sessions, rounds, calls, warmup):
        """Sequential calls on each session, the sessions taking turns round by round, after a
        warm-up: every sample list meets the same machine."""
        samples = {kind: [] for kind in sessions}
        for session in sessions.values():
            loadgen.drive([session], calls=warmup, timeout_s=self.args.io_timeout * 4)
        for _ in range(rounds):
            for kind, session in sessions.items():
                window = loadgen.drive([session], calls=calls, timeout_s=self.args.io_timeout * 4)
                samples[kind].extend(window.latencies_ns)
        return samples

    def latency(self, label, server_cmd, rounds, calls, warmup, diag=False):
        """Sequential calls on one session per transport, interleaved in rounds.

        With `diag`, a second proxy runs with one tokio worker thread (TOKIO_WORKER_THREADS=1),
        to show what cross-thread hand-offs cost.
        """
        log("latency: %s (%d rounds x %d calls per transport)" % (label, rounds, calls))
        proxy = self.start_proxy(server_cmd)
        single = None
        sessions = {}
        try:
            for kind in ("stdio", "stream", "sse", "modern"):
                sessions[kind] = self.open_sessions(kind, 1, proxy.port, server_cmd)[0][0]
            if diag:
                sessions["ping"] = PingSession(HOST, proxy.port)
                sessions["ping"].initialize()
                single = self.start_proxy(server_cmd, env_extra={"TOKIO_WORKER_THREADS": "1"})
                sessions["stream1"] = self.open_sessions("stream", 1, single.port, server_cmd)[0][0]
            samples = self.interleaved(sessions, rounds, calls, warmup)
        finally:
            close_all(sessions.values())
            self.stop(proxy)
            if single:
                self.stop(single)
        return {kind: summarize(values) for kind, values in samples.items()}

    # ---------------------------------------------------------------------------------------
    # 1c. 2026-07-28 upstreams

    def sdk_latency(self, rounds, calls, warmup):
        """What a user sees: the official Python SDK client (bench/sdk_client.py) calling the echo
        tool straight over stdio and through the proxy over Streamable HTTP, rounds interleaved."""
        log("sdk: the official Python SDK client, direct and through the proxy (%d rounds)" % rounds)
        proxy = self.start_proxy(self.echo_cmd)
        client = [sys.executable, os.path.join(HERE, "sdk_client.py"), "--calls", str(calls), "--warmup", str(warmup)]
        ways = {
            "stdio": client + ["--", *self.echo_cmd],
            "stream": client + ["--url", "http://%s:%d/mcp" % (HOST, proxy.port)],
        }
        samples = {kind: [] for kind in ways}
        try:
            for _ in range(rounds):
                for kind, argv in ways.items():
                    done = subprocess.run(argv, capture_output=True, text=True, timeout=self.args.io_timeout * 8)
                    if done.returncode != 0:
                        raise RuntimeError("sdk_client.py (%s): %s" % (kind, done.stderr[-1500:]))
                    samples[kind].extend(json.loads(done.stdout.strip().splitlines()[-1])["latencies_ns"])
        finally:
            self.stop(proxy)
        return {kind: summarize(values) for kind, values in samples.items()}

    def upstream_eras(self, rounds, calls, warmup):
        """A 2025 client's tools/call through an aggregator to a remote server spoken to in the
        2025 revision (a session upstream) and to the same server spoken to in 2026-07-28 (the
        envelope, no session): the remote is a bridge over the echo server, so both paths have
        the same two proxies and one child; only the revision between them differs."""
        log("upstream eras: %d rounds x %d calls" % (rounds, calls))
        remote = self.start_proxy(self.echo_cmd)
        url = "http://%s:%d/mcp" % (HOST, remote.port)
        servers = {
            "legacy": {"type": "streamable-http", "url": url, "protocol": "2025-11-25"},
            "modern": {"type": "streamable-http", "url": url, "protocol": "2026-07-28"},
        }
        config = os.path.join(self.tmp, "eras.json")
        with open(config, "w") as f:
            json.dump({"mcpServers": servers}, f)
        front = self.start_proxy_with(["--config", config])
        sessions = {}
        try:
            sessions["stdio"] = self.open_sessions("stdio", 1)[0][0]
            for era in ("legacy", "modern"):
                sessions[era] = self.open_sessions("stream", 1, front.port, stream_path="/%s/mcp" % era)[0][0]
            samples = self.interleaved(sessions, rounds, calls, warmup)
        finally:
            close_all(sessions.values())
            self.stop(front)
            self.stop(remote)
        return {kind: summarize(values) for kind, values in samples.items()}

    # ---------------------------------------------------------------------------------------
    # 1b. payload size

    def payload(self, sizes, rounds=2):
        """Latency and CPU per call as the echoed message grows (request and answer both carry it)."""
        proxy = self.start_proxy(self.echo_cmd)
        out = {}
        try:
            for size in sizes:
                log("payload: %d bytes" % size)
                call = Call(arguments={"message": "x" * size})
                direct = StdioSession(self.echo_cmd, call)
                stream = StreamSession(HOST, proxy.port, "/mcp", call)
                try:
                    direct.initialize()
                    stream.initialize()
                    child = procs.descendants(proxy.pid)
                    cpu = {"stdio": [0.0, 0.0], "stream": [0.0, 0.0]}
                    samples = {"stdio": [], "stream": []}
                    loadgen.drive([direct], calls=10, timeout_s=self.args.io_timeout * 4)
                    probe = loadgen.drive([stream], calls=10, timeout_s=self.args.io_timeout * 4)
                    # About 0.5 s per transport and round, so the 10 ms CPU ticks add up.
                    calls = int(max(30, min(3000, 0.5 / max(probe.seconds / 10, 1e-6))))
                    for _ in range(rounds):
                        for kind, session, server, kids in (
                            ("stdio", direct, None, [direct.pid]),
                            ("stream", stream, proxy.pid, child),
                        ):
                            marks = {}

                            def mark(name, server=server, kids=kids, marks=marks):
                                marks[name] = (procs.cpu_of([server]) if server else {}, procs.cpu_of(kids))

                            window = loadgen.drive([session], calls=calls, on_mark=mark, timeout_s=self.args.io_timeout * 4)
                            samples[kind].extend(window.latencies_ns)
                            cpu[kind][0] += procs.cpu_delta(marks["start"][0], marks["end"][0])
                            cpu[kind][1] += procs.cpu_delta(marks["start"][1], marks["end"][1])
                    n = calls * rounds
                    out[size] = {
                        kind: dict(summarize(samples[kind]), server_cpu_us=cpu[kind][0] / n * 1e6, child_cpu_us=cpu[kind][1] / n * 1e6)
                        for kind in samples
                    }
                finally:
                    close_all([direct, stream])
        finally:
            self.stop(proxy)
        return out

    # ---------------------------------------------------------------------------------------
    # 2 + 3. throughput and CPU

    def throughput(self, proxy, kind, n, duration, warmup_s, stream_path="/mcp", sse_path="/sse", server_cmd=None):
        port = proxy.port if proxy else None
        sessions, open_times = self.open_sessions(
            kind, n, port, server_cmd=server_cmd, stream_path=stream_path, sse_path=sse_path
        )
        try:
            if kind == "stdio":
                server_pid, child_pids = None, [s.pid for s in sessions]
            else:
                server_pid = proxy.pid
                child_pids = procs.descendants(server_pid)
            marks = {}

            def mark(name):
                marks[name] = (
                    procs.cpu_of([server_pid]) if server_pid else {},
                    procs.cpu_of(child_pids),
                    sum(os.times()[:2]),
                    procs.ctx_switches(server_pid) if server_pid else 0,
                    sum(procs.ctx_switches(pid) for pid in child_pids),
                    procs.system_cpu(),
                    procs.system_seconds(server_pid) if server_pid else 0.0,
                )

            window = loadgen.drive(
                sessions,
                warmup_s=warmup_s,
                duration_s=duration,
                on_mark=mark,
                timeout_s=warmup_s + duration + self.args.io_timeout * 2,
            )
        finally:
            close_all(sessions)
        (p0, c0, u0, ps0, cs0, sys0, k0), (p1, c1, u1, ps1, cs1, sys1, k1) = marks["start"], marks["end"]
        calls = max(window.calls, 1)
        result = summarize(window.latencies_ns)
        ours = procs.cpu_delta(p0, p1) + procs.cpu_delta(c0, c1) + (u1 - u0)
        machine = (sys1[0] - sys0[0]) / procs.CLK_TCK
        result.update(
            server_cs=(ps1 - ps0) / calls if server_pid else None,
            child_cs=(cs1 - cs0) / calls,
            other_load=max(0.0, machine - ours) / (window.seconds * os.cpu_count()) if window.seconds else None,
            calls=window.calls,
            rate=window.calls / window.seconds if window.seconds else 0.0,
            server_cpu_us=procs.cpu_delta(p0, p1) / calls * 1e6 if server_pid else None,
            server_kernel_us=(k1 - k0) / calls * 1e6 if server_pid else None,
            child_cpu_us=procs.cpu_delta(c0, c1) / calls * 1e6,
            client_cpu_us=(u1 - u0) / calls * 1e6,
            children=len(child_pids),
            open_ms=statistics.median(open_times) * 1e3,
        )
        return result

    def throughput_all(self, counts, duration, warmup_s, server_cmd=None, kinds=("stdio", "stream", "sse", "modern")):
        server_cmd = server_cmd or self.echo_cmd
        proxy = self.start_proxy(server_cmd)
        out = {}
        try:
            for n in counts:
                for kind in kinds:
                    log("throughput: %s x %d sessions (%.1f s window)" % (kind, n, duration))
                    try:
                        out[(kind, n)] = self.throughput(
                            proxy if kind != "stdio" else None, kind, n, duration, warmup_s, server_cmd=server_cmd
                        )
                    except Exception as error:  # one broken cell must not lose the others
                        self.fail("throughput %s x %d" % (kind, n), error, proxy)
                        out[(kind, n)] = None
            out["rss_after_kb"] = procs.rss_kb(proxy.pid)
            out["hwm_kb"] = procs.hwm_kb(proxy.pid)
        finally:
            self.stop(proxy)
        return out

    # ---------------------------------------------------------------------------------------
    # 4. memory

    def memory(self, kind, n):
        log("memory: %d %s sessions" % (n, kind))
        proxy = self.start_proxy(self.echo_cmd)
        try:
            time.sleep(0.3)
            idle = procs.rss_kb(proxy.pid)
            sessions, _ = self.open_sessions(kind, n, proxy.port)
            try:
                loadgen.drive(sessions, calls=5, timeout_s=self.args.io_timeout * 2)
                time.sleep(0.3)
                loaded = procs.rss_kb(proxy.pid)
                children = procs.descendants(proxy.pid)
                child_rss = sum(procs.rss_kb(pid) for pid in children) / max(len(children), 1)
            finally:
                close_all(sessions)
        finally:
            self.stop(proxy)
        return {"idle_kb": idle, "loaded_kb": loaded, "per_session_kb": (loaded - idle) / n, "child_kb": child_rss}

    # ---------------------------------------------------------------------------------------
    # 5. start time

    def start_times(self, runs):
        # The core is compiled at build time (crates/host/build.rs): every start is the same,
        # the first on a machine included; there is no cache to be warm or cold.
        log("start: %d runs" % runs)
        warm, first_call, direct_first = [], [], []
        for _ in range(runs):
            proxy = self.start_proxy(self.echo_cmd)
            warm.append(proxy.start_s)
            # spawn -> first tools/call answered, through the proxy (child started on initialize)
            session = StreamSession(HOST, proxy.port, "/mcp", self.call)
            try:
                session.initialize()
                loadgen.drive([session], calls=1, timeout_s=self.args.io_timeout)
                first_call.append(time.perf_counter() - proxy.t0)
            finally:
                session.close()
                self.stop(proxy)
            # the same without a proxy: spawn the server, initialize, first call
            t0 = time.perf_counter()
            session = StdioSession(self.echo_cmd, self.call)
            try:
                session.initialize()
                loadgen.drive([session], calls=1, timeout_s=self.args.io_timeout)
                direct_first.append(time.perf_counter() - t0)
            finally:
                session.close()
        return {"warm": warm, "first_call": first_call, "direct_first": direct_first}

    # ---------------------------------------------------------------------------------------

    def fail(self, what, error, proxy=None):
        detail = "%s: %s" % (type(error).__name__, error)
        self.notes.append("**%s failed**: %s" % (what, detail))
        log("%s FAILED: %s" % (what, detail))
        if self.args.verbose:
            traceback.print_exc()
        if proxy is not None:
            tail = proxy.log_tail()
            if tail:
                log("proxy log tail:\n" + tail)

    def step(self, name, fn, *a, **kw):
        try:
            self.results[name] = fn(*a, **kw)
        except Exception as error:
            self.fail(name, error)
            self.results[name] = None

    def core_cost(self):
        """The core alone: crates/host/src/core_cost.rs replays recorded sessions natively and in
        wasmtime; its lines are `core-cost NAME steps=N native_us=X component_us=Y`."""
        log("core: per message, native and in wasmtime (cargo test core_cost)")
        command = ["cargo", "test", "--release", "-q", "-p", "mcp-proxy", "--bin", "mcp-proxy", "core_cost",
                   "--", "--ignored", "--nocapture"]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=max(600, self.args.io_timeout))
        rows = {}
        for line in done.stdout.splitlines():
            parts = line.split()
            if parts[:1] == ["core-cost"]:
                fields = dict(part.split("=", 1) for part in parts[2:])
                rows[parts[1]] = {
                    "steps": int(fields["steps"]),
                    "native": float(fields["native_us"]),
                    "component": float(fields["component_us"]),
                }
        if not rows:
            raise RuntimeError("core_cost printed nothing: %s" % (done.stderr[-2000:] or done.stdout[-2000:]))
        return rows

    def run(self):
        a = self.args
        started = time.perf_counter()
        self.step("start", self.start_times, a.start_runs)
        self.background = procs.busy_fraction(1.0)
        self.loadavg = open("/proc/loadavg").read().split()[:3]
        self.step("latency", self.latency, "echo", self.echo_cmd, a.rounds, a.calls, a.warmup, a.diag)
        if a.everything and os.path.exists(EVERYTHING) and shutil.which("node"):
            self.step(
                "latency_everything",
                self.latency,
                "server-everything",
                self.everything_cmd,
                max(2, a.rounds // 2),
                max(100, a.calls // 2),
                a.warmup,
            )
        elif a.everything:
            self.notes.append("server-everything rows skipped: %s or node is missing" % EVERYTHING)
        self.step("upstream_eras", self.upstream_eras, max(2, a.rounds // 2), max(100, a.calls // 2), a.warmup)
        self.step("sdk", self.sdk_latency, max(2, a.rounds // 2), max(100, a.calls // 4), max(10, a.warmup // 4))
        if a.payloads:
            self.step("payload", self.payload, a.payloads)
        self.step("throughput", self.throughput_all, a.sessions, a.duration, a.warmup_s)
        if a.everything and os.path.exists(EVERYTHING) and shutil.which("node"):
            self.step(
                "throughput_everything",
                self.throughput_all,
                [n for n in a.sessions if n <= 8],
                a.duration * 2 / 3,
                a.warmup_s,
                self.everything_cmd,
                ("stdio", "stream"),
            )
        if a.edge:
            import edge

            self.step("edge", edge.measure, self, max(2, a.rounds // 2), max(200, a.calls // 4), a.warmup)
        self.step("memory_stream", self.memory, "stream", a.rss_sessions)
        self.step("memory_sse", self.memory, "sse", a.rss_sessions)
        if a.core:
            self.step("core", self.core_cost)
        if a.peers:
            import peers

            self.step("peers", peers.run_all, self)
        self.elapsed = time.perf_counter() - started

    def cleanup(self):
        left = self.registry.cleanup()
        if left:
            log("could not end processes: %s" % left)
        if not self.args.keep_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            log("logs kept in %s" % self.tmp)


def close_all(sessions):
    for session in sessions:
        try:
            session.close()
        except Exception:
            pass


def summarize(latencies_ns):
    values = sorted(latencies_ns)
    if not values:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "mean": float("nan")}
    return {
        "n": len(values),
        "p50": loadgen.percentile(values, 50) / 1e3,
        "p90": loadgen.percentile(values, 90) / 1e3,
        "p99": loadgen.percentile(values, 99) / 1e3,
        "mean": sum(values) / len(values) / 1e3,
        "max": values[-1] / 1e3,
    }


# -------------------------------------------------------------------------------------------
# report


def fmt(value, digits=0):
    if value is None or value != value:
        return "–"
    return ("%%.%df" % digits) % value


def human(size):
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return "%d %s" % (size // scale, unit)
    return "%d B" % size


def ratio(a, b):
    if a is None or b is None or not b or a != a or b != b:
        return None
    return a / b


TRANSPORT = {
    "stdio": "direct stdio",
    "stream": "proxy, Streamable HTTP",
    "sse": "proxy, legacy SSE",
    "modern": "proxy, 2026-07-28 (no session)",
    "stream1": "proxy, Streamable HTTP, 1 tokio worker (diagnostic)",
    "ping": "proxy, GET /ping: HTTP + core, no child (diagnostic)",
}


def report(bench):
    a, r = bench.args, bench.results
    out = []
    w = out.append
    commit = git(["rev-parse", "--short", "HEAD"]) or "?"
    dirty = " (+ uncommitted changes)" if git(["status", "--porcelain", "--", "crates", "wit", "Cargo.toml", "Cargo.lock"]) else ""
    w("# mcp-proxy benchmark")
    w("")
    w(
        "%s · commit %s%s · %s · %d CPUs · Python %s · total %.0f s"
        % (
            datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            commit,
            dirty,
            platform.platform(terse=True),
            os.cpu_count(),
            platform.python_version(),
            getattr(bench, "elapsed", 0),
        )
    )
    w("")
    if hasattr(bench, "background"):
        w(
            "Machine before the run: %.0f%% busy with other processes, load average %s."
            % (100 * bench.background, " ".join(bench.loadavg))
        )
        w("")
    w(
        "Loopback only. Server: `bench/echo_server.py` (stdlib Python, one `echo` tool) unless noted. "
        "Clients: `bench/loadgen.py` (raw HTTP/1.1 keep-alive and pipes, one epoll loop, closed loop: "
        "one call in flight per session). Ratios are against direct stdio measured in the same run."
    )
    goals = []

    lat = r.get("latency")
    if lat:
        w("")
        w("## 1. tools/call latency (one session, sequential)")
        w("")
        w("| server | transport | calls | p50 µs | p90 µs | p99 µs | max µs | mean µs | p50 ratio | p99 ratio |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for label, key in (("echo (Python)", "latency"), ("server-everything (Node)", "latency_everything")):
            block = r.get(key)
            if not block:
                continue
            base = block["stdio"]
            for kind in ("stdio", "stream", "sse", "modern", "stream1", "ping"):
                s = block.get(kind)
                if not s:
                    continue
                w(
                    "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |"
                    % (
                        label,
                        TRANSPORT[kind],
                        s["n"],
                        fmt(s["p50"]),
                        fmt(s.get("p90")),
                        fmt(s["p99"]),
                        fmt(s.get("max")),
                        fmt(s["mean"]),
                        fmt(ratio(s["p50"], base["p50"]), 2),
                        fmt(ratio(s["p99"], base["p99"]), 2),
                    )
                )
        if "ping" in lat:
            ping, call, direct = lat["ping"]["p50"], lat["stream"]["p50"], lat["stdio"]["p50"]
            w("")
            w(
                "Where the Streamable HTTP p50 goes (echo): client ↔ proxy HTTP + core (GET /ping) %.0f µs; "
                "the hop to the child and back through the proxy (tools/call − /ping) %.0f µs, against %.0f µs "
                "for the whole direct stdio round trip." % (ping, call - ping, direct)
            )
        for label, key, goal in (("echo", "latency", 2.0), ("everything", "latency_everything", 1.4)):
            block = r.get(key)
            if not block:
                continue
            p50r = ratio(block["stream"]["p50"], block["stdio"]["p50"])
            goals.append(("p50 vs direct stdio, 1 session, Streamable HTTP (%s) ≤ %.1fx" % (label, goal), "%.2fx" % p50r, p50r <= goal))

    sdk = r.get("sdk")
    if sdk:
        w("")
        w("## 1d. What a user sees: the official Python SDK client")
        w("")
        w(
            "The same echo tool called by the official `mcp` client (`bench/sdk_client.py`: one "
            "`ClientSession`, sequential `call_tool`), over its stdio transport straight to the server "
            "and over its Streamable HTTP transport through the proxy; rounds interleaved. The SDK's own "
            "cost per call is most of what it sees on either path."
        )
        w("")
        w("| path | calls | p50 µs | p90 µs | p99 µs | p50 ratio |")
        w("|---|---:|---:|---:|---:|---:|")
        for kind, label in (("stdio", "SDK stdio client → server"), ("stream", "SDK Streamable HTTP client → mcp-proxy → server")):
            row = sdk[kind]
            w(
                "| %s | %d | %s | %s | %s | %s |"
                % (label, row["n"], fmt(row["p50"]), fmt(row["p90"]), fmt(row["p99"]), fmt(ratio(row["p50"], sdk["stdio"]["p50"]), 2))
            )

    eras = r.get("upstream_eras")
    if eras:
        w("")
        w("## 1c. A 2025 client's tools/call on a 2025 and on a 2026-07-28 upstream")
        w("")
        w(
            "Client → aggregator → remote mcp-proxy bridging the echo server, the remote spoken to in the "
            "2025 revision (`protocol: 2025-11-25`: a session upstream) or in 2026-07-28 (the envelope and "
            "headers on every request, no session). Same processes on both paths; ratios against direct stdio."
        )
        w("")
        w("| upstream | calls | p50 µs | p99 µs | p50 ratio | p99 ratio |")
        w("|---|---:|---:|---:|---:|---:|")
        base = eras["stdio"]
        for kind, label in (("stdio", "direct stdio"), ("legacy", "2025 upstream"), ("modern", "2026-07-28 upstream")):
            s = eras.get(kind)
            if s:
                w(
                    "| %s | %d | %s | %s | %s | %s |"
                    % (label, s["n"], fmt(s["p50"]), fmt(s["p99"]), fmt(ratio(s["p50"], base["p50"]), 2), fmt(ratio(s["p99"], base["p99"]), 2))
                )
        if eras.get("legacy") and eras.get("modern"):
            w("")
            w("2026 upstream ÷ 2025 upstream, p50: %s." % fmt(ratio(eras["modern"]["p50"], eras["legacy"]["p50"]), 2))

    pl = r.get("payload")
    if pl:
        w("")
        w("## 1b. Payload size (echo; the message travels in the request and again in the answer)")
        w("")
        w("| message | direct p50 µs | proxy p50 µs | p50 ratio | proxy CPU µs/call | child CPU µs/call (direct / via proxy) | proxy CPU per MiB carried |")
        w("|---:|---:|---:|---:|---:|---:|---:|")
        for size, row in sorted(pl.items()):
            d, p_ = row["stdio"], row["stream"]
            # Only meaningful once the payload dominates the fixed per-call cost.
            per_mib = p_["server_cpu_us"] / (2.0 * size / 1048576) / 1e3 if size >= 65536 else None
            w(
                "| %s | %s | %s | %s | %s | %s / %s | %s |"
                % (
                    human(size),
                    fmt(d["p50"]),
                    fmt(p_["p50"]),
                    fmt(ratio(p_["p50"], d["p50"]), 2),
                    fmt(p_["server_cpu_us"]),
                    fmt(d["child_cpu_us"]),
                    fmt(p_["child_cpu_us"]),
                    "%.1f ms" % per_mib if per_mib is not None else "–",
                )
            )

    tp = r.get("throughput")
    blocks = [(label, r.get(key)) for label, key in (("echo", "throughput"), ("everything", "throughput_everything"))]
    blocks = [(label, block) for label, block in blocks if block]
    if blocks:
        w("")
        w("## 2-3. Throughput and CPU per call (closed loop, one call in flight per session)")
        w("")
        w(
            "| server | sessions | transport | calls/s | ratio | p50 µs | p99 µs | proxy CPU µs/call (kernel) | "
            "child CPU µs/call | proxy ÷ child | client CPU µs/call | proxy ctx sw/call | child ctx sw/call | session open ms | other load |"
        )
        w("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        other = []
        for label, block in blocks:
            for n in a.sessions:
                base = block.get(("stdio", n))
                for kind in ("stdio", "stream", "sse", "modern"):
                    if (kind, n) not in block:
                        continue
                    s = block[(kind, n)]
                    if not s:
                        w("| %s | %d | %s | failed | | | | | | | | | | | |" % (label, n, TRANSPORT[kind]))
                        continue
                    if s.get("other_load") is not None:
                        other.append(s["other_load"])
                    cpu_ratio = ratio(s["server_cpu_us"], s["child_cpu_us"])
                    w(
                        "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
                        % (
                            label,
                            n,
                            TRANSPORT[kind],
                            fmt(s["rate"]),
                            fmt(ratio(s["rate"], base["rate"]) if base else None, 2),
                            fmt(s["p50"]),
                            fmt(s["p99"]),
                            "%s (%s)" % (fmt(s["server_cpu_us"], 1), fmt(s.get("server_kernel_us"), 0))
                            if s["server_cpu_us"] is not None
                            else "–",
                            fmt(s["child_cpu_us"], 1),
                            fmt(cpu_ratio, 2),
                            fmt(s["client_cpu_us"], 1),
                            fmt(s["server_cs"], 1) if s["server_cs"] is not None else "–",
                            fmt(s["child_cs"], 1),
                            fmt(s["open_ms"], 1),
                            "%.0f%%" % (100 * s["other_load"]) if s.get("other_load") is not None else "–",
                        )
                    )
        w("")
        w(
            "Windows: %.1f s (echo), %.1f s (everything), after %.1f s of warm-up. "
            "CPU is utime+stime from `/proc/<pid>/stat` (10 ms ticks) over the window, divided by the calls "
            "in it, and in parentheses its kernel share (stime: the proxy's own syscalls, which on loopback "
            "include delivering what it sends to the receiver); *child* is the sum over the stdio servers (one per session in every mode); *client* is "
            "this load generator. Context switches (voluntary + involuntary, all threads, from "
            "`/proc/<pid>/task/*/status`) per call count the wake-ups on each call's path. "
            "Session open = connect + initialize + initialized (spawns the child). *Other load*: CPU used "
            "by processes outside the bench during the window, as a share of all CPUs."
            % (a.duration, a.duration * 2 / 3, a.warmup_s)
        )
        if other:
            w("")
            w(
                "Other processes on the machine used %.0f%% of its CPUs on average during these windows "
                "(max %.0f%%); the absolute numbers move with that, the ratios much less."
                % (100 * sum(other) / len(other), 100 * max(other))
            )
        echo = tp or {}
        one = echo.get(("stream", 1))
        if one and one.get("server_cpu_us") is not None:
            goals.append(("proxy CPU per call, 1 session, Streamable HTTP (echo) ≤ 40 µs", "%.1f µs" % one["server_cpu_us"], one["server_cpu_us"] <= 40))
        if one and one.get("server_cs") is not None:
            goals.append(("proxy context switches per call, 1 session (echo) ≤ 2", "%.1f" % one["server_cs"], one["server_cs"] <= 2))
        for n in (8, 32):
            got, base = echo.get(("stream", n)), echo.get(("stdio", n))
            if got and base:
                rate = ratio(got["rate"], base["rate"])
                goals.append(("throughput vs direct, %d sessions, Streamable HTTP (echo) ≥ 0.6x" % n, "%.2fx" % rate, rate >= 0.6))

    ms, me = r.get("memory_stream"), r.get("memory_sse")
    if ms or me or (tp and "rss_after_kb" in tp):
        w("")
        w("## 4. Memory (proxy process only, children excluded)")
        w("")
        w("| measure | value |")
        w("|---|---:|")
        if ms:
            w("| RSS idle (fresh proxy, no session) | %.1f MiB |" % (ms["idle_kb"] / 1024))
            w("| RSS per Streamable HTTP session (%d sessions open) | %.0f KiB |" % (a.rss_sessions, ms["per_session_kb"]))
        if me:
            w("| RSS per SSE session (%d sessions open) | %.0f KiB |" % (a.rss_sessions, me["per_session_kb"]))
        if ms:
            w("| for scale: RSS of one echo child | %.1f MiB |" % (ms["child_kb"] / 1024))
        if tp and "rss_after_kb" in tp:
            w("| RSS after all throughput runs (sessions closed) / peak | %.1f / %.1f MiB |" % (tp["rss_after_kb"] / 1024, tp["hwm_kb"] / 1024))

    st = r.get("start")
    if st:
        w("")
        w("## 5. Start (spawn → `listening` line on stderr)")
        w("")
        w("| measure | median ms | min ms | max ms | runs |")
        w("|---|---:|---:|---:|---:|")
        rows = (
            ("spawn → listening (the core precompiled at build time; the first start too)", st["warm"]),
            ("spawn → first tools/call answered via proxy", st["first_call"]),
            ("for scale: spawn echo server → first call answered, direct", st["direct_first"]),
        )
        for label, values in rows:
            if values:
                w(
                    "| %s | %.1f | %.1f | %.1f | %d |"
                    % (label, statistics.median(values) * 1e3, min(values) * 1e3, max(values) * 1e3, len(values))
                )
        if st["warm"]:
            med = statistics.median(st["warm"]) * 1e3
            goals.append(("start to listening under 30 ms (no compile at start, first run included)", "%.1f ms" % med, med < 30))

    if r.get("edge"):
        import edge

        out.extend(edge.report(r["edge"]))
        latency = r["edge"]["latency"]
        added = latency["worker"]["p50"] - latency["direct"]["p50"]
        goals.append(("Worker in local workerd: p50 added over direct ≤ +300 µs", "+%.0f µs" % added, added <= 300))

    core = r.get("core")
    if core:
        w("")
        w("## 7. The core alone, per message")
        w("")
        w(
            "Recorded real sessions (`tests/vectors/transcripts/host-*.json`: what clients and servers said "
            "through the host) replayed over and over on the core, natively (linked into the test binary) "
            "and as the component in wasmtime through the WIT, with the calls the driver makes per event "
            "(the input, the outputs, the deadline). A step is one input: an HTTP request, a line from a "
            "child, a closed stream."
        )
        w("")
        w("| session | steps | native µs/step | component µs/step | component ÷ native |")
        w("|---|---:|---:|---:|---:|")
        for name, row in core.items():
            w(
                "| %s | %d | %.2f | %.2f | %.2f |"
                % (name, row["steps"], row["native"], row["component"], row["component"] / row["native"])
            )
        worst = max(row["component"] for row in core.values())
        goals.append(("the core in wasmtime, per message: single-digit µs", "worst %.1f µs" % worst, worst < 10))

    if r.get("peers"):
        import peers

        out.extend(peers.report(bench, r["peers"]))

    if goals:
        w("")
        w("## Goals")
        w("")
        w("| goal | measured | met |")
        w("|---|---:|:---:|")
        for goal, value, ok in goals:
            w("| %s | %s | %s |" % (goal, value, "yes" if ok else "**no**"))

    if bench.notes:
        w("")
        w("## Notes")
        w("")
        for note in bench.notes:
            w("- " + note)
    return "\n".join(out) + "\n"


def git(args):
    try:
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return ""


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peers", action="store_true", help="also measure the npm and PyPI mcp-proxy (installed into bench/)")
    p.add_argument("--no-core", dest="core", action="store_false", help="skip the core's per-message cost (cargo test core_cost)")
    p.add_argument("--quick", action="store_true", help="a short smoke run (numbers are rough)")
    p.add_argument("--no-everything", dest="everything", action="store_false", help="skip the server-everything rows (latency and throughput)")
    p.add_argument("--no-diag", dest="diag", action="store_false", help="skip the diagnostic latency rows (GET /ping, TOKIO_WORKER_THREADS=1)")
    p.add_argument("--no-edge", dest="edge", action="store_false", help="skip the Cloudflare Worker rows (bundle size, added latency)")
    p.add_argument("--rounds", type=int, default=5, help="latency rounds (transports interleaved per round)")
    p.add_argument("--calls", type=int, default=2000, help="latency calls per transport per round")
    p.add_argument("--warmup", type=int, default=300, help="latency warm-up calls per transport")
    p.add_argument("--payloads", type=int, nargs="*", default=[4096, 65536, 1048576], help="echoed message sizes for the payload rows (none: skip)")
    p.add_argument("--sessions", type=int, nargs="+", default=[1, 8, 32], help="concurrent sessions for throughput")
    p.add_argument("--duration", type=float, default=3.0, help="throughput window per row, seconds")
    p.add_argument("--warmup-s", type=float, default=0.5, help="throughput warm-up per row, seconds")
    p.add_argument("--rss-sessions", type=int, default=32, help="sessions opened to measure RSS per session")
    p.add_argument("--start-runs", type=int, default=9, help="warm start measurements")
    p.add_argument("--io-timeout", type=float, default=20.0, help="seconds any single step may take")
    p.add_argument("--budget", type=float, default=None, help="hard limit for the whole run, seconds")
    p.add_argument("--out", default=os.path.join(HERE, "results", "latest.md"), help="where to write the report")
    p.add_argument("--keep-tmp", action="store_true", help="keep the proxies' logs")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.calls, args.warmup = 2, 300, 50
        args.duration, args.warmup_s = 1.0, 0.2
        args.rss_sessions, args.start_runs = 8, 3
        args.payloads = [65536]
    if args.budget is None:
        args.budget = 900.0 if args.peers else 420.0
    return args


class Interrupted(BaseException):
    pass


def main(argv=None):
    sys.modules.setdefault("bench", sys.modules[__name__])  # peers.py imports helpers from here
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not os.access(PROXY, os.X_OK):
        sys.exit("missing %s (bench/run builds it)" % PROXY)

    def on_signal(signum, frame):
        raise Interrupted("signal %d" % signum)

    def on_alarm(signum, frame):
        raise Interrupted("the run exceeded its budget of %.0f s" % args.budget)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.budget))
    bench = Bench(args)
    code = 0
    try:
        bench.run()
    except Interrupted as stop:
        bench.notes.append("**run stopped early**: %s" % stop)
        log("stopped: %s" % stop)
        code = 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        bench.cleanup()
    text = report(bench)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    sys.stdout.write(text)
    log("report written to %s" % args.out)
    if any(v is None for v in bench.results.values()):
        code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
