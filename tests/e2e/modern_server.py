"""A 2025-era stdio MCP server on the official Python SDK's lowlevel ``Server``, for the
tests of 2026-07-28 clients bridged by the proxy (``test_modern.py``).

The proxy initializes it itself (as a 2025 server) and serves 2026 clients from it. It has
what server-everything lacks for those tests: list changes and resource updates on demand,
a slow tool that says on stderr when it is cancelled, log messages at several levels, and a
question whose key the server names (``_meta["mcp-proxy/inputKey"]``).

Tools:

* ``echo {text}`` -> ``"echo: <text>"``
* ``progress {steps, delay}`` -> ``steps`` progress notifications ``delay`` s apart, then
  ``"progressed <steps>"``
* ``log`` -> one ``notifications/message`` at each of debug, info, warning, error, then ``"logged"``
The tools that ask their client something fail (``isError``, ``"could not ask: ..."``) when
it cannot be asked.

* ``sample {prompt}`` -> asks its client ``sampling/createMessage``, answers ``"sampled: <text>"``
* ``elicit {message}`` -> asks ``elicitation/create`` (form ``{name}``), answers
  ``"elicited: <action> <name>"``
* ``elicit_named`` -> the same question, named ``user_name`` by ``_meta["mcp-proxy/inputKey"]``
* ``roots`` -> asks ``roots/list``, answers ``"roots: <uri> <uri> ..."``
* ``sample_and_elicit`` -> asks both at once, answers ``"both: <sampled text> <name>"``
* ``progress_question`` -> reports progress 1, asks ``elicitation/create`` (form ``{name}``),
  then reports progress 2 and 3 and answers ``"progress_question: <name>"``
* ``sample_or_fail`` -> asks ``sampling/createMessage``; if that fails, the call fails
  (``isError``) with the error text
* ``slow {seconds, tag}`` -> writes ``modern_server slow started <tag>`` to stderr, reports
  progress 1 (when asked for progress), then sleeps; if cancelled (the client's ``notifications/cancelled``) it writes
  ``modern_server slow cancelled <tag>``, else answers ``"slept <tag>"``
* ``change_tools``, ``change_prompts``, ``change_resources`` -> sends the matching
  ``notifications/*/list_changed``
* ``touch {uri}`` -> sends ``notifications/resources/updated {uri}``

Prompts: ``greet {name}``. Resources: ``fixture://static`` (text) and ``fixture://other``;
template ``fixture://item/{id}``. ``resources/subscribe`` and ``unsubscribe`` are served
(each writes ``modern_server subscribe <uri>`` / ``unsubscribe <uri>`` to stderr).

On start it writes ``modern_server pid N`` to stderr.
"""

from __future__ import annotations

import os
import sys
import warnings

warnings.simplefilter("ignore")  # the SDK's deprecation notices (sampling, roots) are noise here

import anyio  # noqa: E402
import mcp_types as types  # noqa: E402
from mcp.server.lowlevel import NotificationOptions, Server  # noqa: E402
from mcp.server.runner import serve_loop  # noqa: E402
from mcp.server.stdio import stdio_server  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

#: The command line that runs this server.
COMMAND: tuple = (sys.executable, os.path.abspath(__file__))

STATIC_TEXT = "the static fixture text"
NAME_SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def log(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def text(value: str, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=value)], is_error=error)


def tool(name: str, description: str, properties: dict | None = None) -> types.Tool:
    return types.Tool(
        name=name,
        description=description,
        input_schema={"type": "object", "properties": properties or {}},
    )


TOOLS = [
    tool("echo", "Echoes its text", {"text": {"type": "string"}}),
    tool("progress", "Reports progress, then answers", {"steps": {"type": "integer"}, "delay": {"type": "number"}}),
    tool("log", "Logs at four levels, then answers"),
    tool("sample", "Asks its client to sample", {"prompt": {"type": "string"}}),
    tool("elicit", "Asks its client for a name", {"message": {"type": "string"}}),
    tool("elicit_named", "Asks its client for a name, naming the question user_name"),
    tool("roots", "Asks its client for its roots"),
    tool("sample_and_elicit", "Asks for a sample and a name at once"),
    tool("progress_question", "Reports progress around a question"),
    tool("sample_or_fail", "Asks to sample; fails if it cannot"),
    tool("slow", "Sleeps; says when cancelled", {"seconds": {"type": "number"}, "tag": {"type": "string"}}),
    tool("change_tools", "Announces a tool list change"),
    tool("change_prompts", "Announces a prompt list change"),
    tool("change_resources", "Announces a resource list change"),
    tool("touch", "Announces an update of a resource", {"uri": {"type": "string"}}),
]


async def list_tools(ctx, params) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


def sampled_text(result) -> str:
    content = result.content
    if isinstance(content, list):
        content = content[0] if content else None
    return getattr(content, "text", "") or ""


async def ask_sample(ctx, prompt: str) -> str:
    result = await ctx.session.create_message(
        [types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
        max_tokens=50,
    )
    return sampled_text(result)


async def ask_name(ctx, message: str, key: str | None = None) -> types.ElicitResult:
    params = {"mode": "form", "message": message, "requestedSchema": NAME_SCHEMA}
    if key:
        params["_meta"] = {"mcp-proxy/inputKey": key}
    request = types.ElicitRequest(params=types.ElicitRequestFormParams.model_validate(params))
    return await ctx.session.send_request(request, types.ElicitResult)


def elicited(result: types.ElicitResult) -> str:
    name = (result.content or {}).get("name", "")
    return f"elicited: {result.action} {name}".rstrip()


async def sample_and_elicit(ctx) -> str:
    found: dict[str, str] = {}

    async def sample() -> None:
        found["sample"] = await ask_sample(ctx, "both?")

    async def elicit() -> None:
        found["name"] = (await ask_name(ctx, "both: your name?")).content.get("name", "")

    async with anyio.create_task_group() as group:
        group.start_soon(sample)
        group.start_soon(elicit)
    return f"both: {found['sample']} {found['name']}"


async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
    name = params.name
    args = params.arguments or {}
    if name == "echo":
        return text(f"echo: {args.get('text', '')}")
    if name == "progress":
        steps = int(args.get("steps", 3))
        delay = float(args.get("delay", 0.05))
        for step in range(1, steps + 1):
            await anyio.sleep(delay)
            await ctx.session.report_progress(step, steps, f"step {step}")
        return text(f"progressed {steps}")
    if name == "log":
        for level in ("debug", "info", "warning", "error"):
            await ctx.session.send_log_message(
                level, f"{level} line", logger="fixture", related_request_id=ctx.request_id
            )
        return text("logged")
    try:
        if name == "sample":
            return text("sampled: " + await ask_sample(ctx, str(args.get("prompt", "capital of France?"))))
        if name == "elicit":
            return text(elicited(await ask_name(ctx, str(args.get("message", "your name?")))))
        if name == "elicit_named":
            return text(elicited(await ask_name(ctx, "your name?", key="user_name")))
        if name == "roots":
            result = await ctx.session.list_roots()
            return text("roots: " + " ".join(str(root.uri) for root in result.roots))
        if name == "sample_and_elicit":
            return text(await sample_and_elicit(ctx))
    except (MCPError, ExceptionGroup) as failed:  # the client could not be asked: the tool fails
        errors = failed.exceptions if isinstance(failed, ExceptionGroup) else [failed]
        return text("could not ask: " + "; ".join(getattr(e, "message", str(e)) for e in errors), error=True)
    if name == "progress_question":
        await ctx.session.report_progress(1, 3, "before the question")
        answer = await ask_name(ctx, "your name?")
        await ctx.session.report_progress(2, 3, "after the question")
        await anyio.sleep(0.05)
        await ctx.session.report_progress(3, 3, "done")
        return text("progress_question: " + (answer.content or {}).get("name", ""))
    if name == "sample_or_fail":
        try:
            return text("sampled: " + await ask_sample(ctx, "may I?"))
        except Exception as error:  # the client said no
            return text(f"could not sample: {error}", error=True)
    if name == "slow":
        tag = str(args.get("tag", "-"))
        log(f"modern_server slow started {tag}")
        await ctx.session.report_progress(1, None, "started")  # the client knows it runs
        try:
            await anyio.sleep(float(args.get("seconds", 30)))
        except anyio.get_cancelled_exc_class():
            log(f"modern_server slow cancelled {tag}")
            raise
        return text(f"slept {tag}")
    if name == "change_tools":
        await ctx.session.send_tool_list_changed()
        return text("tools changed")
    if name == "change_prompts":
        await ctx.session.send_prompt_list_changed()
        return text("prompts changed")
    if name == "change_resources":
        await ctx.session.send_resource_list_changed()
        return text("resources changed")
    if name == "touch":
        uri = str(args.get("uri", "fixture://static"))
        await ctx.session.send_resource_updated(uri)
        return text(f"touched {uri}")
    return text(f"unknown tool {name}", error=True)


async def list_prompts(ctx, params) -> types.ListPromptsResult:
    prompt = types.Prompt(
        name="greet",
        description="Greets someone",
        arguments=[types.PromptArgument(name="name", description="who", required=True)],
    )
    return types.ListPromptsResult(prompts=[prompt])


async def get_prompt(ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
    who = (params.arguments or {}).get("name", "nobody")
    message = types.PromptMessage(role="user", content=types.TextContent(type="text", text=f"Hello, {who}!"))
    return types.GetPromptResult(description="a greeting", messages=[message])


async def list_resources(ctx, params) -> types.ListResourcesResult:
    return types.ListResourcesResult(
        resources=[
            types.Resource(uri="fixture://static", name="static", mime_type="text/plain"),
            types.Resource(uri="fixture://other", name="other", mime_type="text/plain"),
        ]
    )


async def list_templates(ctx, params) -> types.ListResourceTemplatesResult:
    template = types.ResourceTemplate(uri_template="fixture://item/{id}", name="item", mime_type="text/plain")
    return types.ListResourceTemplatesResult(resource_templates=[template])


async def read_resource(ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
    uri = str(params.uri)
    if uri == "fixture://static":
        body = STATIC_TEXT
    elif uri == "fixture://other":
        body = "the other fixture text"
    elif uri.startswith("fixture://item/"):
        body = "item " + uri.rsplit("/", 1)[1]
    else:
        raise MCPError(-32602, f"Resource not found: {uri}", {"uri": uri})
    return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, mime_type="text/plain", text=body)])


async def subscribe(ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
    log(f"modern_server subscribe {params.uri}")
    return types.EmptyResult()


async def unsubscribe(ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
    log(f"modern_server unsubscribe {params.uri}")
    return types.EmptyResult()


server = Server(
    "modern-fixture",
    version="1.0.0",
    on_list_tools=list_tools,
    on_call_tool=call_tool,
    on_list_prompts=list_prompts,
    on_get_prompt=get_prompt,
    on_list_resources=list_resources,
    on_list_resource_templates=list_templates,
    on_read_resource=read_resource,
    on_subscribe_resource=subscribe,
    on_unsubscribe_resource=unsubscribe,
)


async def main() -> None:
    log(f"modern_server pid {os.getpid()}")
    options = server.create_initialization_options(
        NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)
    )
    async with stdio_server() as (read_stream, write_stream):
        # Handshake era only: `Server.run` would also serve 2026-07-28 (the SDK's dual-era
        # loop), and the proxy, which asks `server/discover` first, would then talk 2026 to
        # it and these tests would no longer bridge anything.
        async with server.lifespan(server) as state:
            await serve_loop(server, read_stream, write_stream, lifespan_state=state, init_options=options)


if __name__ == "__main__":
    anyio.run(main)
