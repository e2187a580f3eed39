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
    python server.py --era 2025       # stdio, 2025 only (a handshake-era server: an
                                      # enveloped request, server/discover too, gets -32600)
    python server.py --era 2026       # stdio, 2026-07-28 only (a modern-only server:
                                      # `initialize` is refused with -32022)

It serves both eras, as the Python SDK does (the first request of a connection,
or each HTTP request, decides):

- 2025 (`initialize`; what mcp-proxy runs over stdio): the tools that need
  the client (sampling, elicitation, roots) send it real server-to-client
  requests. Those of the 2026 multi-round-trip scenarios name their question
  with `_meta["mcp-proxy/inputKey"]` (the key the scenario expects in
  `inputRequests`); a client that ignores the key loses nothing.
- 2026-07-28 (per-request `_meta` envelope; the `--http` control run, and
  stdio with `--era 2026`): the same tools answer `input_required`
  themselves, read the answers from `inputResponses`, carry earlier answers
  in a sealed `requestState`, and check the client capabilities the request
  declares.

With `--era 2025` the stdio server is a 2025-only one: what mcp-proxy runs
when it is to bridge to 2025 children (its default `--upstreamProtocol auto`
asks with `server/discover` first, is refused, and initializes it). With
`--era 2026` the stdio server is modern-only, like an SDK v2 server
that rejects the legacy era: every request must carry the 2026-07-28
envelope (`server/discover` answers), and `initialize` gets -32022 naming the
served versions (the Python SDK's answer to `initialize` on a modern
connection). The tools that the 2025 scenarios call and that ask the client
something (test_sampling, test_elicitation, the SEP-1034/SEP-1330
elicitations) then ask with `input_required` too, so a proxy in front can
bridge them to its 2025 clients.

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
# --era 2025 / 2026: the SDK's two serving loops, without the dual-era choice
# in front of them (mcp 2.3.0 has no public switch for either).
from mcp.server.runner import _serve_legacy_stream, _serve_modern_stream
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
    types.Tool(
        name="test_header_param",
        description="Echoes an argument that is mirrored in the Mcp-Param-Region header (SEP-2243)",
        input_schema={
            "type": "object",
            "properties": {"region": {"type": "string", "description": "A region", "x-mcp-header": "Region"}},
            "required": ["region"],
        },
    ),
    # Hooks of the 2026 server-stateless scenario.
    types.Tool(
        name="test_missing_capability",
        description="Needs the client's sampling capability (a request without it gets -32021)",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="test_streaming_elicitation",
        description="Asks the client for input while it runs (never a request on the response stream at 2026)",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="test_logging_tool",
        description="Logs while it runs (only to clients that opted in with a log level)",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="test_trigger_tool_change", description="Announces that the tool list changed", input_schema=NO_ARGS
    ),
    types.Tool(
        name="test_trigger_prompt_change", description="Announces that the prompt list changed", input_schema=NO_ARGS
    ),
    # Multi round-trip requests (2026 input-required-result-* scenarios).
    types.Tool(
        name="test_input_required_result_elicitation",
        description="Asks for the user's name (elicitation), then greets",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="test_input_required_result_sampling",
        description="Asks the client's LLM a question (sampling), then answers with its reply",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="test_input_required_result_list_roots",
        description="Asks for the client's roots, then lists them",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="test_input_required_result_request_state",
        description="Asks for a confirmation with a request state, then confirms it got the state back",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="test_input_required_result_multiple_inputs",
        description="Asks for a name, a greeting and the roots at once",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="test_input_required_result_multi_round",
        description="Asks two questions, one round each",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="test_input_required_result_tampered_state",
        description="Asks for a confirmation; its request state is integrity-protected",
        input_schema=NO_ARGS,
    ),
    types.Tool(
        name="test_input_required_result_capabilities",
        description="Asks only what the client declared it can answer (elicitation if it can, and sampling)",
        input_schema=NO_ARGS,
    ),
]

# The elicitations of the 2025 scenarios (tools-call-elicitation, SEP-1034, SEP-1330).
ELICITATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "description": "User's response"},
        "email": {"type": "string", "description": "User's email address"},
    },
    "required": ["username", "email"],
}
SEP1034_MESSAGE = "Please review and update the form fields with defaults"
SEP1034_SCHEMA: dict[str, Any] = {
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
}
SEP1330_MESSAGE = "Please choose from the enum fields"
SEP1330_SCHEMA: dict[str, Any] = {
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
}

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


# --------------------------------------------------------------------------
# Asking the client for input, in either era.

BUS = InMemorySubscriptionBus()
KEY_HINT = "mcp-proxy/inputKey"  # mcp-proxy: the inputRequests key of a 2025 server's question


def is_modern(ctx: Any) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


class Question:
    """One thing to ask the client: `method` + `params`, under `key`. An optional
    question is skipped (answered None) when the client cannot take it."""

    def __init__(self, key: str, method: str, params: dict[str, Any], optional: bool = False) -> None:
        self.key, self.method, self.params, self.optional = key, method, params, optional

    def capability(self) -> dict[str, Any]:
        return {
            "elicitation/create": {"elicitation": {"form": {}}},
            "sampling/createMessage": {"sampling": {}},
            "roots/list": {"roots": {}},
        }[self.method]


def ask_form(key: str, message: str, field: str, kind: str = "string", optional: bool = False) -> Question:
    """A form elicitation of one required field."""
    schema = {"type": "object", "properties": {field: {"type": kind}}, "required": [field]}
    return Question(key, "elicitation/create", {"message": message, "requestedSchema": schema}, optional)


def ask_name(key: str, message: str = "What is your name?", optional: bool = False) -> Question:
    return ask_form(key, message, "name", optional=optional)


def ask_llm(key: str, prompt: str, max_tokens: int = 100, optional: bool = False) -> Question:
    messages = [{"role": "user", "content": {"type": "text", "text": prompt}}]
    return Question(key, "sampling/createMessage", {"messages": messages, "maxTokens": max_tokens}, optional)


def ask_roots(key: str) -> Question:
    return Question(key, "roots/list", {})


RESULT_TYPES: dict[str, Any] = {
    "elicitation/create": types.ElicitResult,
    "sampling/createMessage": types.CreateMessageResult,
    "roots/list": types.ListRootsResult,
}
REQUEST_TYPES: dict[str, Any] = {
    "elicitation/create": types.ElicitRequest,
    "sampling/createMessage": types.CreateMessageRequest,
    "roots/list": types.ListRootsRequest,
}


class NeedInput(Exception):
    """Raised (2026 only) when answers are missing: the request ends `input_required`."""

    def __init__(self, asker: Asker, questions: list[Question]) -> None:
        super().__init__("input required")
        self.asker, self.questions = asker, questions

    def result(self) -> types.InputRequiredResult:
        requests = {
            q.key: REQUEST_TYPES[q.method].model_validate({"method": q.method, "params": q.params})
            for q in self.questions
        }
        # Earlier rounds' answers ride along in the state (sealed by RequestStateBoundary).
        state = json.dumps({"answers": self.asker.used}, sort_keys=True)
        return types.InputRequiredResult(input_requests=requests, request_state=state)


class Asker:
    """Asks the client questions. At 2025: real server-to-client requests, several
    at once when asked together (named for mcp-proxy with `_meta[KEY_HINT]`).
    At 2026: answers come from `inputResponses` and the `requestState` of earlier
    rounds; what is still missing ends the request with `input_required`."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.modern = is_modern(ctx)
        self.answers: dict[str, Any] = {}
        self.used: dict[str, Any] = {}
        if self.modern:
            params = ctx.params or {}
            state = params.get("requestState")  # the plaintext: RequestStateBoundary verified it
            if isinstance(state, str):
                try:
                    self.answers.update(json.loads(state).get("answers", {}))
                except (ValueError, AttributeError):
                    raise MCPError(code=types.INVALID_PARAMS, message="Invalid requestState") from None
            responses = params.get("inputResponses")
            if isinstance(responses, dict):
                self.answers.update({k: v for k, v in responses.items() if isinstance(v, dict)})

    def _lacks(self, question: Question) -> bool:
        caps = self.ctx.session.client_capabilities
        if caps is None:
            return True
        if question.method == "elicitation/create":
            elicitation = caps.elicitation
            if elicitation is None:
                return True
            # Form questions only; a bare `elicitation: {}` means form.
            return getattr(elicitation, "form", None) is None and getattr(elicitation, "url", None) is not None
        if question.method == "sampling/createMessage":
            return caps.sampling is None
        return caps.roots is None

    async def ask(self, *questions: Question) -> list[Any]:
        """The answers (typed results), in order; None for a skipped optional question."""
        if self.modern:
            return self._ask_modern(questions)
        return await self._ask_legacy(questions)

    def _ask_modern(self, questions: tuple[Question, ...]) -> list[Any]:
        answers: list[Any] = []
        missing: list[Question] = []
        lacking: dict[str, Any] = {}
        for q in questions:
            if self._lacks(q):
                if not q.optional:
                    lacking.update(q.capability())
                answers.append(None)
                continue
            raw = self.answers.get(q.key)
            if raw is None:
                missing.append(q)
                answers.append(None)
                continue
            try:
                answers.append(RESULT_TYPES[q.method].model_validate(raw))
            except ValueError:
                missing.append(q)  # not an answer to this question: ask again
                answers.append(None)
                continue
            self.used[q.key] = raw
        if lacking:
            raise MCPError(
                code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                message="This request needs a client capability it did not declare",
                data={"requiredCapabilities": lacking},
            )
        if missing:
            raise NeedInput(self, missing)
        return answers

    async def _ask_legacy(self, questions: tuple[Question, ...]) -> list[Any]:
        results: list[Any] = [None] * len(questions)
        errors: list[BaseException | None] = [None] * len(questions)

        async def one(i: int, q: Question) -> None:
            params = {**q.params, "_meta": {KEY_HINT: q.key}}
            request = REQUEST_TYPES[q.method].model_validate({"method": q.method, "params": params})
            try:
                results[i] = await self.ctx.session.send_request(
                    request,
                    RESULT_TYPES[q.method],
                    metadata=ServerMessageMetadata(related_request_id=self.ctx.request_id),
                )
            except MCPError as e:
                errors[i] = e

        # Together: a client (mcp-proxy) that gathers questions asks them in one round.
        async with anyio.create_task_group() as tg:
            for i, q in enumerate(questions):
                tg.start_soon(one, i, q)
        for q, error in zip(questions, errors):
            if error is not None and not q.optional:
                raise error
        return results


def reply_text(result: types.CreateMessageResult | None) -> str:
    if result is None:
        return "(none)"
    content = result.content
    return content.text if isinstance(content, types.TextContent) else str(content)


def name_of(result: types.ElicitResult | None, field: str = "name") -> str:
    if result is None or result.action != "accept" or not result.content:
        return f"({result.action if result else 'no answer'})"
    return str(result.content.get(field, ""))


async def interactive_tool(ctx: Any, name: str, args: dict[str, Any]) -> types.CallToolResult | None:
    """The tools that ask the client something (None: not one of them)."""
    ask = Asker(ctx)
    if name == "test_input_required_result_elicitation":
        (answer,) = await ask.ask(ask_name("user_name"))
        return types.CallToolResult(content=[text(f"Hello, {name_of(answer)}!")])
    if name == "test_input_required_result_sampling":
        (answer,) = await ask.ask(ask_llm("capital_question", "What is the capital of France?"))
        return types.CallToolResult(content=[text(f"The LLM said: {reply_text(answer)}")])
    if name == "test_input_required_result_list_roots":
        (answer,) = await ask.ask(ask_roots("client_roots"))
        roots = ", ".join(str(r.uri) for r in answer.roots) if answer else "(none)"
        return types.CallToolResult(content=[text(f"Client roots: {roots}")])
    if name in ("test_input_required_result_request_state", "test_input_required_result_tampered_state"):
        (answer,) = await ask.ask(ask_form("confirm", "Please confirm", "ok", "boolean"))
        ok = answer is not None and answer.action == "accept" and bool((answer.content or {}).get("ok"))
        return types.CallToolResult(content=[text(f"state-ok: confirmed={ok}")])
    if name == "test_input_required_result_multiple_inputs":
        user, greeting, roots = await ask.ask(
            ask_name("user_name"), ask_llm("greeting", "Generate a greeting", max_tokens=50), ask_roots("client_roots")
        )
        count = len(roots.roots) if roots else 0
        return types.CallToolResult(
            content=[text(f"name={name_of(user)}, greeting={reply_text(greeting)}, roots={count}")]
        )
    if name == "test_input_required_result_multi_round":
        (first,) = await ask.ask(ask_name("step1", "Step 1: What is your name?"))
        (second,) = await ask.ask(ask_form("step2", "Step 2: What is your favorite color?", "color"))
        return types.CallToolResult(content=[text(f"{name_of(first)} likes {name_of(second, 'color')}")])
    if name == "test_input_required_result_capabilities":
        # Elicitation only if the client can take it; sampling in any case.
        user, reply = await ask.ask(
            ask_name("user_name", optional=True),
            ask_llm("capital_question", "What is the capital of France?"),
        )
        return types.CallToolResult(content=[text(f"name={name_of(user)}, reply={reply_text(reply)}")])
    if name == "test_missing_capability":
        # Without sampling this cannot run: -32021 at 2026 (mcp-proxy turns the
        # failed 2025 request into one).
        (reply,) = await ask.ask(ask_llm("sample", "Say hello"))
        return types.CallToolResult(content=[text(f"The LLM said: {reply_text(reply)}")])
    if name == "test_streaming_elicitation":
        (answer,) = await ask.ask(ask_name("user_name"))
        return types.CallToolResult(content=[text(f"Hello, {name_of(answer)}!")])
    if ask.modern:
        # The 2025 scenarios' tools that ask the client (their 2025 form, with
        # real server-to-client requests, is in call_tool) ask at 2026 with
        # input_required, which a proxy bridges back to 2025 requests.
        return await modern_legacy_tool(ask, name, args)
    return None


def elicitation(key: str, message: str, schema: dict[str, Any]) -> Question:
    return Question(key, "elicitation/create", {"message": message, "requestedSchema": schema})


async def modern_legacy_tool(ask: Asker, name: str, args: dict[str, Any]) -> types.CallToolResult | None:
    if name == "test_sampling":
        (reply,) = await ask.ask(ask_llm("sampling", str(args.get("prompt", ""))))
        return types.CallToolResult(content=[text(f"LLM response: {reply_text(reply)}")])
    if name == "test_elicitation":
        (result,) = await ask.ask(elicitation("elicitation", str(args.get("message", "")), ELICITATION_SCHEMA))
        return types.CallToolResult(
            content=[text(f"User response: action={result.action}, content={json.dumps(result.content)}")]
        )
    if name in ("test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums"):
        sep1034 = name == "test_elicitation_sep1034_defaults"
        question = elicitation(
            "elicitation",
            SEP1034_MESSAGE if sep1034 else SEP1330_MESSAGE,
            SEP1034_SCHEMA if sep1034 else SEP1330_SCHEMA,
        )
        (result,) = await ask.ask(question)
        return types.CallToolResult(
            content=[text(f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}")]
        )
    return None


async def call_tool(
    ctx: Any, params: types.CallToolRequestParams
) -> types.CallToolResult | types.InputRequiredResult:
    name = params.name
    args = params.arguments or {}
    try:
        result = await interactive_tool(ctx, name, args)
    except NeedInput as need:
        return need.result()
    if result is not None:
        return result
    if name == "test_logging_tool":
        # At 2026 the SDK sends these only to a request that set a log level.
        await log(ctx, "info", "test_logging_tool started")
        await log(ctx, "info", "test_logging_tool finished")
        return types.CallToolResult(content=[text("Logging tool done")])
    if name == "test_trigger_tool_change":
        if is_modern(ctx):
            await BUS.publish(ToolsListChanged())
        else:
            await ctx.session.send_tool_list_changed()
        return types.CallToolResult(content=[text("Tool list change announced")])
    if name == "test_trigger_prompt_change":
        if is_modern(ctx):
            await BUS.publish(PromptsListChanged())
        else:
            await ctx.session.send_prompt_list_changed()
        return types.CallToolResult(content=[text("Prompt list change announced")])
    if name == "test_header_param":
        return types.CallToolResult(content=[text(f"region={args.get('region')}")])
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
        result = await elicit(ctx, str(args.get("message", "")), ELICITATION_SCHEMA)
        return types.CallToolResult(
            content=[text(f"User response: action={result.action}, content={json.dumps(result.content)}")]
        )
    if name == "test_elicitation_sep1034_defaults":
        result = await elicit(ctx, SEP1034_MESSAGE, SEP1034_SCHEMA)
        return types.CallToolResult(
            content=[text(f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}")]
        )
    if name == "test_elicitation_sep1330_enums":
        result = await elicit(ctx, SEP1330_MESSAGE, SEP1330_SCHEMA)
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
        # 2025: -32002; 2026 (SEP-2164): -32602. Both name the URI.
        code = types.INVALID_PARAMS if is_modern(ctx) else -32002
        raise MCPError(code=code, message=f"Resource not found: {uri}", data={"uri": uri})
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
    types.Prompt(
        name="test_input_required_result_prompt",
        description="A prompt that first asks the user for context (elicitation)",
    ),
]


def user(content: Any) -> types.PromptMessage:
    return types.PromptMessage(role="user", content=content)


async def list_prompts(ctx: Any, params: Any) -> types.ListPromptsResult:
    return types.ListPromptsResult(prompts=PROMPTS)


async def get_prompt(
    ctx: Any, params: types.GetPromptRequestParams
) -> types.GetPromptResult | types.InputRequiredResult:
    args = params.arguments or {}
    if params.name == "test_input_required_result_prompt":
        question = ask_form("user_context", "What context should the prompt use?", "context")
        try:
            (answer,) = await Asker(ctx).ask(question)
        except NeedInput as need:
            return need.result()
        return types.GetPromptResult(messages=[user(text(f"Use this context: {name_of(answer, 'context')}"))])
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


# 2025: announce list changes (mcp-proxy relays them to 2026 listen streams).
NOTIFY = NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)
NAME = "mcp-proxy-conformance-test-server"


class RefServer(Server):
    def create_initialization_options(
        self, notification_options: NotificationOptions | None = None, *args: Any, **kwargs: Any
    ) -> Any:
        return super().create_initialization_options(notification_options or NOTIFY, *args, **kwargs)


def make_server() -> Server:
    server = RefServer(
        NAME,
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
        # 2026: change notifications go to subscriptions/listen streams.
        on_subscriptions_listen=ListenHandler(BUS),
    )
    # 2026: requestState is sealed (AES-GCM, a key of this process); a tampered
    # or foreign one is refused with -32602.
    server.middleware.append(RequestStateBoundary(RequestStateSecurity.ephemeral(), default_audience=NAME))
    return server


async def run_stdio(era: str) -> None:
    server = make_server()
    async with stdio_server() as (read_stream, write_stream):
        if era in ("2025", "2026"):
            # What `Server.run` serves once the first request chose an era, from
            # the first message on: the other era is refused throughout.
            async with server.lifespan(server) as lifespan_state:
                try:
                    if era == "2026":
                        await _serve_modern_stream(
                            server, read_stream, write_stream, lifespan_state=lifespan_state, raise_exceptions=False
                        )
                    else:
                        await _serve_legacy_stream(
                            server,
                            read_stream,
                            write_stream,
                            lifespan_state=lifespan_state,
                            session_id=None,
                            init_options=server.create_initialization_options(NOTIFY),
                            raise_exceptions=False,
                        )
                finally:
                    await write_stream.aclose()
        else:
            await server.run(read_stream, write_stream, server.create_initialization_options(NOTIFY))


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
    parser.add_argument(
        "--era",
        choices=["both", "2025", "2026"],
        default="both",
        help="stdio: serve both eras (the first request decides; default), 2025 only or 2026-07-28 only",
    )
    opts = parser.parse_args()
    if opts.http is not None:
        if opts.era != "both":
            parser.error("--era applies to stdio only")
        run_http(opts.http, opts.stateless)
    else:
        anyio.run(run_stdio, opts.era)


if __name__ == "__main__":
    sys.exit(main())
