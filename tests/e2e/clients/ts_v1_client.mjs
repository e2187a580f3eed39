// Drives the official TypeScript v1 MCP client (@modelcontextprotocol/sdk@1.32.2, a 2025-era
// client: `initialize`, a session, server->client requests on its streams) for the end-to-end
// tests of 2026 upstreams (tests/e2e/test_modern_upstream.py). Reads one JSON script on stdin,
// runs its steps through one connected Client, prints one JSON report on stdout; the script and
// report have the shape of ts_client.mjs (the v2 driver), with these steps:
//
//   {"op": "listTools"}                                  -> names
//   {"op": "callTool", "name", "arguments", "progress", "timeoutMs"} -> texts, isError, progress
//   {"op": "listResources"}                              -> uris
//   {"op": "readResource", "uri"}                        -> texts
//   {"op": "setLevel", "level"}                          -> logging/setLevel
//   {"op": "subscribe", "uri", "then": [steps], "want": {"tools": n, "updated": [uris]}, "timeoutMs"}
//        resources/subscribe (none without a uri), then the inner steps, then waits for the notifications wanted
//        -> counts, then
//   {"op": "cancelAfterProgress", "name", "arguments", "timeoutMs", "settleMs"}
//        aborts the call at its first progress event (the v1 client then sends
//        notifications/cancelled) -> completed, progressBeforeAbort, error
//
// Report: {"connected": true, "version", "server", "results", "handled", "logs"} or
//         {"connected": false, "error", "handled"}.

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
    CreateMessageRequestSchema,
    ElicitRequestSchema,
    ListRootsRequestSchema,
    LoggingMessageNotificationSchema,
    ResourceUpdatedNotificationSchema,
    ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

async function readStdin() {
    const chunks = [];
    for await (const chunk of process.stdin) chunks.push(chunk);
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function describeError(error) {
    if (error === null || typeof error !== 'object') return { message: String(error) };
    const out = { name: error.name, message: String(error.message ?? error) };
    if (error.code !== undefined) out.code = error.code;
    if (error.data !== undefined) out.data = error.data;
    return out;
}

function texts(items) {
    return (items ?? []).map((item) => item.text ?? null);
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

const script = await readStdin();
const handled = { elicitation: 0, sampling: 0, roots: 0 };
const logs = [];
const events = { tools: 0, updated: [] };
let wake = () => {};

const capabilities = script.capabilities ?? { sampling: {}, elicitation: {}, roots: {} };
const client = new Client({ name: 'mcp-proxy-e2e-ts-v1', version: '1.0.0' }, { capabilities });
if (capabilities.elicitation) {
    client.setRequestHandler(ElicitRequestSchema, async () => {
        handled.elicitation += 1;
        return { action: 'accept', content: { name: script.elicitName ?? 'Alice' } };
    });
}
if (capabilities.sampling) {
    client.setRequestHandler(CreateMessageRequestSchema, async () => {
        handled.sampling += 1;
        return {
            role: 'assistant',
            model: 'test-model',
            content: { type: 'text', text: script.sampleText ?? 'Paris' },
            stopReason: 'endTurn',
        };
    });
}
if (capabilities.roots) {
    client.setRequestHandler(ListRootsRequestSchema, async () => {
        handled.roots += 1;
        return { roots: (script.roots ?? ['file:///e2e/root']).map((uri) => ({ uri, name: 'root' })) };
    });
}
client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
    events.tools += 1;
    wake();
});
client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
    events.updated.push(notification.params.uri);
    wake();
});
client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
    logs.push({ level: notification.params.level, data: notification.params.data });
});

function satisfied(want) {
    if ((want.tools ?? 0) > events.tools) return false;
    return (want.updated ?? []).every((uri) => events.updated.includes(uri));
}

async function runStep(step) {
    switch (step.op) {
        case 'listTools': {
            const result = await client.listTools();
            return { names: result.tools.map((t) => t.name) };
        }
        case 'callTool': {
            const progress = [];
            const options = { timeout: step.timeoutMs ?? 30000 };
            if (step.progress) options.onprogress = (p) => progress.push(p);
            const result = await client.callTool({ name: step.name, arguments: step.arguments ?? {} }, undefined, options);
            return { texts: texts(result.content), isError: result.isError ?? false, progress };
        }
        case 'listResources': {
            const result = await client.listResources();
            return { uris: result.resources.map((r) => r.uri) };
        }
        case 'readResource': {
            const result = await client.readResource({ uri: step.uri });
            return { texts: result.contents.map((c) => c.text ?? null) };
        }
        case 'setLevel': {
            await client.setLoggingLevel(step.level);
            return {};
        }
        case 'subscribe': {
            events.tools = 0;
            events.updated.length = 0;
            if (step.uri) await client.subscribeResource({ uri: step.uri });
            const inner = [];
            for (const innerStep of step.then ?? []) inner.push(await guarded(innerStep));
            const deadline = Date.now() + (step.timeoutMs ?? 10000);
            while (!satisfied(step.want ?? {}) && Date.now() < deadline) {
                await Promise.race([new Promise((resolve) => (wake = resolve)), sleep(100)]);
            }
            return { counts: { tools: events.tools, updated: [...events.updated] }, then: inner };
        }
        case 'cancelAfterProgress': {
            const controller = new AbortController();
            const progress = [];
            const call = client.callTool({ name: step.name, arguments: step.arguments ?? {} }, undefined, {
                signal: controller.signal,
                timeout: step.timeoutMs ?? 30000,
                onprogress: (p) => {
                    progress.push(p);
                    controller.abort('the test cancels');
                },
            });
            try {
                const result = await call;
                return { completed: true, texts: texts(result.content), progressBeforeAbort: progress.length };
            } catch (error) {
                await sleep(step.settleMs ?? 500);
                return { completed: false, progressBeforeAbort: progress.length, error: describeError(error) };
            }
        }
        default:
            throw new Error(`unknown op ${step.op}`);
    }
}

async function guarded(step) {
    try {
        return { ok: true, ...(await runStep(step)) };
    } catch (error) {
        return { ok: false, error: describeError(error) };
    }
}

const transport = new StreamableHTTPClientTransport(new URL(script.url), {
    requestInit: { headers: script.headers ?? {} },
});
let report;
try {
    await client.connect(transport, { timeout: 20000 });
    const results = [];
    for (const step of script.steps ?? []) results.push(await guarded(step));
    report = {
        connected: true,
        era: 'legacy',
        version: transport.protocolVersion ?? null,
        server: client.getServerVersion() ?? null,
        results,
        handled,
        logs,
    };
} catch (error) {
    report = { connected: false, error: describeError(error), handled };
}
try {
    await Promise.race([client.close(), sleep(3000)]);
} catch {
    // closing is best effort
}
process.stdout.write(JSON.stringify(report) + '\n');
process.exit(0);
