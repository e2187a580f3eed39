"""MCP test server that provides what the server scenarios of the official
conformance suite (@modelcontextprotocol/conformance, `server` mode) call.

The suite's own reference server is HTTP-only and ships in no registry package,
so this one stands in for it behind mcp-proxy. Written against the lowlevel
`Server` of the Python SDK (`mcp` 2.3.0) so that every result is exactly what
the scenarios check (raw JSON Schemas, raw elicitation schemas, isError, ...).

    python server.py                  # stdio (what mcp-proxy runs)
    python server.py --http PORT      # Streamable HTTP on 127.0.0.1:PORT/mcp (0: any
                                      # free port), to check this server without the proxy
    python server.py --http PORT --stateless

It serves both eras, as the Python SDK does (the first request of a connection,
or each HTTP request, decides):

- 2025 (`initialize`; what mcp-proxy runs over stdio): the tools that need
  the client (sampling, elicitation, roots) send it real server-to-client
  requests. Those of the 2026 multi-round-trip scenarios name their question
  with `_meta["mcp-proxy/inputKey"]` (the key the scenario expects in
  `inputRequests`); a client that ignores the key loses nothing.
- 2026-07-28 (per-request `_meta` envelope; the `--http` control run): the
  same tools answer `input_required` themselves, read the answers from
  `inputResponses`, carry earlier answers in a sealed `requestState`, and
  check the client capabilities the request declares.

Apart from that key (documented by mcp-proxy, harmless to anyone else)
nothing here depends on the proxy: it is a plain, spec-following server.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import struct
import sys
import warnings
import wave
import zlib
from typing import Any

import anyio
import mcp.types as types
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.stdio import stdio_server
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, PromptsListChanged, ToolsListChanged
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp.types.jsonrpc import MISSING_REQUIRED_CLIENT_CAPABILITY
from mcp.types.version import MODERN_PROTOCOL_VERSIONS

# logging/setLevel, sampling and the handshake-era notifications are what the
# suite (protocol 2025-11-25) exercises; the SDK flags them as deprecated for
# the 2026-07-28 protocol. Keep stderr quiet.
warnings.simplefilter("ignore", MCPDeprecationWarning)


# --------------------------------------------------------------------------
# Small binary fixtures, made here rather than shipped.


def _png_1x1_red() -> str:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    raw = b"\x00\xff\x00\x00"  # filter byte + one red pixel
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode()


def _wav_silence() -> str:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 80)  # 10 ms of silence
    return base64.b64encode(buf.getvalue()).decode()


PNG = _png_1x1_red()
WAV = _wav_silence()

# --------------------------------------------------------------------------
# Tools

NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}

JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    # SEP-2106 (checked by the 2026 suite): composition and conditional keywords.
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

TOOLS = [
    types.Tool(name="test_simple_text", description="Returns simple text content", input_schema=NO_ARGS),
    types.Tool(name="test_image_content", description="Returns image content", input_schema=NO_ARGS),
    types.Tool(name="test_audio_content", description="Returns audio content", input_schema=NO_ARGS),
    types.Tool(name="test_embedded_resource", description="Returns an embedded resource", input_schema=NO_ARGS),
    types.Tool(
        name="test_multiple_content_types",
        description="Returns text, image and resource content",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="test_tool_with_logging", description="Sends log notifications while it runs", input_schema=NO_ARGS
    ),
    types.Tool(name="test_error_handling", description="Always returns a tool error", input_schema=NO_ARGS),
    types.Tool(
        name="test_tool_with_progress", description="Sends progress notifications while it runs", input_schema=NO_ARGS
    ),
    types.Tool(
        name="test_sampling",
        description="Asks the client for an LLM completion (sampling/createMessage)",
        input_schema={
            "type": "object",
            "properties": {"prompt": {"type": "string", "description": "The prompt to send to the LLM"}},
            "required": ["prompt"],
        },
    ),
    types.Tool(
        name="test_elicitation",
        description="Asks the client for user input (elicitation/create)",
        input_schema={
            "type": "object",
            "properties": {"message": {"type": "string", "description": "The message to show the user"}},
            "required": ["message"],
        },
    ),
    types.Tool(
        name="test_elicitation_sep1034_defaults",
        description="Elicitation whose schema has defaults for every primitive type (SEP-1034)",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="test_elicitation_sep1330_enums",
        description="Elicitation with the five enum schema variants (SEP-1330)",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="json_schema_2020_12_tool",
        description="Tool with JSON Schema 2020-12 features",
        input_schema=JSON_SCHEMA_2020_12,
    ),
    types.Tool(
        name="test_reconnection",
        description="Answers after a short delay (SSE polling scenario)",
        input_schema=NO_ARGS,
    ),
]

LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]


class State:
    """Per-connection state (one stdio child serves one session)."""

    def __init__(self) -> None:
        self.log_level = "debug"
        self.subscriptions: set[str] = set()


STATE = State()


def text(t: str) -> types.TextContent:
    return types.TextContent(type="text", text=t)


async def log(ctx: Any, level: str, message: str) -> None:
    if LEVELS.index(level) < LEVELS.index(STATE.log_level):
        return
    await ctx.session.send_log_message(
        level=level, data=message, logger="conformance-test-server", related_request_id=ctx.request_id
    )


async def progress(ctx: Any, value: float, total: float) -> None:
    token = (ctx.meta or {}).get("progress_token")
    if token is None:
        token = (ctx.meta or {}).get("progressToken")
    if token is None:
        return
    await ctx.session.send_progress_notification(
        progress_token=token, progress=value, total=total, related_request_id=ctx.request_id
    )


async def elicit(ctx: Any, message: str, schema: dict[str, Any]) -> types.ElicitResult:
    return await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    name = params.name
    args = params.arguments or {}
    if name == "test_simple_text":
        return types.CallToolResult(content=[text("This is a simple text response for testing.")])
    if name == "test_image_content":
        return types.CallToolResult(content=[types.ImageContent(type="image", data=PNG, mime_type="image/png")])
    if name == "test_audio_content":
        return types.CallToolResult(content=[types.AudioContent(type="audio", data=WAV, mime_type="audio/wav")])
    if name == "test_embedded_resource":
        return types.CallToolResult(
            content=[
                types.EmbeddedResource(
                    type="resource",
                    resource=types.TextResourceContents(
                        uri="test://embedded-resource",
                        mime_type="text/plain",
                        text="This is an embedded resource content.",
                    ),
                )
            ]
        )
    if name == "test_multiple_content_types":
        return types.CallToolResult(
            content=[
                text("Multiple content types test:"),
                types.ImageContent(type="image", data=PNG, mime_type="image/png"),
                types.EmbeddedResource(
                    type="resource",
                    resource=types.TextResourceContents(
                        uri="test://mixed-content-resource",
                        mime_type="application/json",
                        text=json.dumps({"test": "data", "value": 123}),
                    ),
                ),
            ]
        )
    if name == "test_tool_with_logging":
        await log(ctx, "info", "Tool execution started")
        await anyio.sleep(0.05)
        await log(ctx, "info", "Tool processing data")
        await anyio.sleep(0.05)
        await log(ctx, "info", "Tool execution completed")
        return types.CallToolResult(content=[text("Tool with logging executed successfully")])
    if name == "test_error_handling":
        return types.CallToolResult(
            is_error=True, content=[text("This tool intentionally returns an error for testing")]
        )
    if name == "test_tool_with_progress":
        await progress(ctx, 0, 100)
        await anyio.sleep(0.05)
        await progress(ctx, 50, 100)
        await anyio.sleep(0.05)
        await progress(ctx, 100, 100)
        return types.CallToolResult(content=[text("Tool with progress executed successfully")])
    if name == "test_sampling":
        caps = ctx.session.client_capabilities
        if caps is None or caps.sampling is None:
            return types.CallToolResult(is_error=True, content=[text("Client does not support sampling")])
        result = await ctx.session.create_message(
            messages=[
                types.SamplingMessage(role="user", content=text(str(args.get("prompt", ""))))
            ],
            max_tokens=100,
            related_request_id=ctx.request_id,
        )
        content = result.content
        reply = content.text if isinstance(content, types.TextContent) else json.dumps(
            content.model_dump(mode="json", by_alias=True, exclude_none=True)
            if hasattr(content, "model_dump")
            else str(content)
        )
        return types.CallToolResult(content=[text(f"LLM response: {reply}")])
    if name == "test_elicitation":
        caps = ctx.session.client_capabilities
        if caps is None or caps.elicitation is None:
            return types.CallToolResult(is_error=True, content=[text("Client does not support elicitation")])
        result = await elicit(
            ctx,
            str(args.get("message", "")),
            {
                "type": "object",
                "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"},
                },
                "required": ["username", "email"],
            },
        )
        return types.CallToolResult(
            content=[text(f"User response: action={result.action}, content={json.dumps(result.content)}")]
        )
    if name == "test_elicitation_sep1034_defaults":
        result = await elicit(
            ctx,
            "Please review and update the form fields with defaults",
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "User name", "default": "John Doe"},
                    "age": {"type": "integer", "description": "User age", "default": 30},
                    "score": {"type": "number", "description": "User score", "default": 95.5},
                    "status": {
                        "type": "string",
                        "description": "User status",
                        "enum": ["active", "inactive", "pending"],
                        "default": "active",
                    },
                    "verified": {"type": "boolean", "description": "Verification status", "default": True},
                },
                "required": [],
            },
        )
        return types.CallToolResult(
            content=[text(f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}")]
        )
    if name == "test_elicitation_sep1330_enums":
        result = await elicit(
            ctx,
            "Please choose from the enum fields",
            {
                "type": "object",
                "properties": {
                    "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                    "titledSingle": {
                        "type": "string",
                        "oneOf": [
                            {"const": "value1", "title": "First Option"},
                            {"const": "value2", "title": "Second Option"},
                            {"const": "value3", "title": "Third Option"},
                        ],
                    },
                    "legacyEnum": {
                        "type": "string",
                        "enum": ["opt1", "opt2", "opt3"],
                        "enumNames": ["Option One", "Option Two", "Option Three"],
                    },
                    "untitledMulti": {
                        "type": "array",
                        "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
                    },
                    "titledMulti": {
                        "type": "array",
                        "items": {
                            "anyOf": [
                                {"const": "value1", "title": "First Choice"},
                                {"const": "value2", "title": "Second Choice"},
                                {"const": "value3", "title": "Third Choice"},
                            ]
                        },
                    },
                },
                "required": [],
            },
        )
        return types.CallToolResult(
            content=[text(f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}")]
        )
    if name == "json_schema_2020_12_tool":
        return types.CallToolResult(content=[text(f"Received: {json.dumps(args)}")])
    if name == "test_reconnection":
        # Over stdio a server cannot close an HTTP stream; it just answers late.
        await anyio.sleep(0.1)
        return types.CallToolResult(content=[text("Reconnection test completed successfully")])
    raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {name}")


async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


# --------------------------------------------------------------------------
# Resources

RESOURCES = [
    types.Resource(
        uri="test://static-text",
        name="Static text resource",
        description="A static text resource for testing",
        mime_type="text/plain",
    ),
    types.Resource(
        uri="test://static-binary",
        name="Static binary resource",
        description="A static binary (PNG) resource for testing",
        mime_type="image/png",
    ),
    types.Resource(
        uri="test://watched-resource",
        name="Watched resource",
        description="A resource that can be subscribed to",
        mime_type="text/plain",
    ),
]

TEMPLATES = [
    types.ResourceTemplate(
        uri_template="test://template/{id}/data",
        name="Template resource",
        description="A resource template with an id parameter",
        mime_type="application/json",
    )
]


async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
    return types.ListResourcesResult(resources=RESOURCES)


async def list_templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
    return types.ListResourceTemplatesResult(resource_templates=TEMPLATES)


async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
    uri = str(params.uri)
    if uri == "test://static-text":
        contents: list[Any] = [
            types.TextResourceContents(
                uri=uri, mime_type="text/plain", text="This is the content of the static text resource."
            )
        ]
    elif uri == "test://static-binary":
        contents = [types.BlobResourceContents(uri=uri, mime_type="image/png", blob=PNG)]
    elif uri == "test://watched-resource":
        contents = [types.TextResourceContents(uri=uri, mime_type="text/plain", text="Watched resource content")]
    elif uri.startswith("test://template/") and uri.endswith("/data"):
        rid = uri[len("test://template/") : -len("/data")]
        contents = [
            types.TextResourceContents(
                uri=uri,
                mime_type="application/json",
                text=json.dumps({"id": rid, "templateTest": True, "data": f"Data for ID: {rid}"}),
            )
        ]
    else:
        raise MCPError(code=-32002, message=f"Resource not found: {uri}")
    return types.ReadResourceResult(contents=contents)


async def subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
    STATE.subscriptions.add(str(params.uri))
    return types.EmptyResult()


async def unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    STATE.subscriptions.discard(str(params.uri))
    return types.EmptyResult()


# --------------------------------------------------------------------------
# Prompts

PROMPTS = [
    types.Prompt(name="test_simple_prompt", description="A simple prompt without arguments"),
    types.Prompt(
        name="test_prompt_with_arguments",
        description="A prompt with two required arguments",
        arguments=[
            types.PromptArgument(name="arg1", description="First test argument", required=True),
            types.PromptArgument(name="arg2", description="Second test argument", required=True),
        ],
    ),
    types.Prompt(
        name="test_prompt_with_embedded_resource",
        description="A prompt that embeds a resource",
        arguments=[types.PromptArgument(name="resourceUri", description="URI of the resource to embed", required=True)],
    ),
    types.Prompt(name="test_prompt_with_image", description="A prompt with image content"),
]


def user(content: Any) -> types.PromptMessage:
    return types.PromptMessage(role="user", content=content)


async def list_prompts(ctx: Any, params: Any) -> types.ListPromptsResult:
    return types.ListPromptsResult(prompts=PROMPTS)


async def get_prompt(ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
    args = params.arguments or {}
    if params.name == "test_simple_prompt":
        messages = [user(text("This is a simple prompt for testing."))]
    elif params.name == "test_prompt_with_arguments":
        messages = [
            user(text(f"Prompt with arguments: arg1='{args.get('arg1', '')}', arg2='{args.get('arg2', '')}'"))
        ]
    elif params.name == "test_prompt_with_embedded_resource":
        messages = [
            user(
                types.EmbeddedResource(
                    type="resource",
                    resource=types.TextResourceContents(
                        uri=args.get("resourceUri", "test://example-resource"),
                        mime_type="text/plain",
                        text="Embedded resource content for testing.",
                    ),
                )
            ),
            user(text("Please process the embedded resource above.")),
        ]
    elif params.name == "test_prompt_with_image":
        messages = [
            user(types.ImageContent(type="image", data=PNG, mime_type="image/png")),
            user(text("Please analyze the image above.")),
        ]
    else:
        raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown prompt: {params.name}")
    return types.GetPromptResult(messages=messages)


# --------------------------------------------------------------------------
# Completion and logging

COMPLETIONS = ["paris", "park", "party", "test", "testing", "tested"]


async def complete(ctx: Any, params: types.CompleteRequestParams) -> types.CompleteResult:
    prefix = params.argument.value or ""
    values = [v for v in COMPLETIONS if v.startswith(prefix)]
    return types.CompleteResult(completion=types.Completion(values=values, total=len(values), has_more=False))


async def set_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
    STATE.log_level = params.level
    return types.EmptyResult()


def make_server() -> Server:
    return Server(
        "mcp-proxy-conformance-test-server",
        version="1.0.0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_completion=complete,
        on_set_logging_level=set_level,
    )


async def run_stdio() -> None:
    server = make_server()
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def run_http(port: int, stateless: bool) -> None:
    import socket

    import uvicorn

    server = make_server()
    app = server.streamable_http_app(stateless_http=stateless, host="127.0.0.1")
    # Bind here so that port 0 works and the chosen port can be announced.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    print(f"conformance test server listening on http://127.0.0.1:{sock.getsockname()[1]}/mcp", file=sys.stderr, flush=True)
    uvicorn.run(app, fd=sock.fileno(), log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--http", type=int, metavar="PORT", help="serve Streamable HTTP on 127.0.0.1:PORT/mcp")
    parser.add_argument("--stateless", action="store_true", help="with --http: no sessions")
    opts = parser.parse_args()
    if opts.http is not None:
        run_http(opts.http, opts.stateless)
    else:
        anyio.run(run_stdio)


if __name__ == "__main__":
    sys.exit(main())
