"""The official Python MCP SDK (`mcp`, as in tests/requirements.txt) calling a tool the way users
call it: one initialized ClientSession, sequential `tools/call`s, either straight to a stdio
server (`--command ...`) or through a proxy over Streamable HTTP (`--url ...`).

Prints one JSON line: {"latencies_ns": [...]} for the calls after the warm-up. Run by
bench/bench.py (section 1d) with the repo's .venv python.
"""

import argparse
import asyncio
import json
import time

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

ARGUMENTS = {"message": "hello bench"}


async def calls(session, count, warmup):
    for _ in range(warmup):
        await session.call_tool("echo", ARGUMENTS)
    latencies = []
    for _ in range(count):
        started = time.perf_counter_ns()
        await session.call_tool("echo", ARGUMENTS)
        latencies.append(time.perf_counter_ns() - started)
    return latencies


async def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="a Streamable HTTP endpoint")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("command", nargs="*", help="a stdio server to start (after --)")
    args = parser.parse_args()
    if args.url:
        async with streamable_http_client(args.url) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                latencies = await calls(session, args.calls, args.warmup)
    else:
        server = StdioServerParameters(command=args.command[0], args=args.command[1:])
        async with stdio_client(server) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                latencies = await calls(session, args.calls, args.warmup)
    print(json.dumps({"latencies_ns": latencies}))


if __name__ == "__main__":
    asyncio.run(main())
