"""A small MCP server over Streamable HTTP (the Python SDK's MCPServer, once FastMCP) for the
Worker's end-to-end tests: a remote upstream that answers in SSE, as most servers do.

    python tests/worker/http_server.py PORT

Serves ``http://127.0.0.1:PORT/mcp``. Tools:

* ``echo {message}`` -> text ``"Echo: <message>"``
* ``countdown {count, pause}`` -> sends ``count`` log messages (one SSE event each),
  ``pause`` seconds apart, then answers ``"done"``
* ``announce`` -> sends ``notifications/tools/list_changed`` on the session's own stream
  (the GET stream: it belongs to no request), then answers ``"announced"``
"""

import asyncio
import sys

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer(name="worker-test-http-server", version="1.0.0")


@server.tool()
def echo(message: str) -> str:
    """Returns the message."""
    return f"Echo: {message}"


@server.tool()
async def countdown(count: int, ctx: Context, pause: float = 0.0) -> str:
    """Logs ``count`` messages ``pause`` seconds apart, then answers."""
    for remaining in range(count, 0, -1):
        await ctx.info(f"countdown {remaining}")
        await asyncio.sleep(pause)
    return "done"


@server.tool()
async def announce(ctx: Context) -> str:
    """Tells the client its tool list changed, outside any request."""
    await ctx.session.send_tool_list_changed()
    return "announced"


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
