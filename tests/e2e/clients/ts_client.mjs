// Drives the official TypeScript v2 MCP client (@modelcontextprotocol/client) for the
// end-to-end tests of mcp-proxy (tests/e2e/test_modern.py): reads one JSON script on stdin,
// runs its steps through one connected Client, and prints one JSON report on stdout.
//
// Script:
//   {
//     "url": "http://127.0.0.1:PORT/mcp",
//     "mode": "pin" | "auto" | "legacy",          // versionNegotiation: {pin: "2026-07-28"}, "auto", none
//     "headers": {"Authorization": "Bearer ..."}, // optional, on every HTTP request
//     "capabilities": {...},                      // optional; default sampling, elicitation, roots
//     "elicitName": "Alice", "sampleText": "Paris", "roots": ["file:///r"],
//     "steps": [ {"op": ...}, ... ]
//   }
// Steps (each answers {"ok": true, ...} or {"ok": false, "error": {...}}):
//   {"op": "listTools"}                                  -> names
//   {"op": "callTool", "name", "arguments", "progress"}  -> texts, isError, progress (the events the SDK delivered)
//   {"op": "listResources"}                              -> uris
//   {"op": "readResource", "uri"}                        -> texts
//   {"op": "listPrompts"}                                -> names
//   {"op": "getPrompt", "name", "arguments"}             -> texts
//   {"op": "listen", "filter", "then": [steps], "want": {"tools": n, "prompts": n, "resourcesList": n,
//        "updated": [uris]}, "timeoutMs"}                -> honored, events, then (the inner steps' results)
//   {"op": "cancelAfterProgress", "name", "arguments", "timeoutMs"}
//        calls the tool with a progress callback and aborts the call when the first progress
//        event arrives (the server is then surely running it)  -> progressBeforeAbort, error
// Report: {"connected": true, "era", "version", "server", "results": [...],
//          "handled": {"elicitation": n, "sampling": n, "roots": n}} or {"connected": false, "error"}.

import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const MODERN = '2026-07-28';

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
    if (error.status !== undefined) out.status = error.status;
    return out;
}

function texts(items) {
    return (items ?? []).map((item) => item.text ?? (item.content && item.content.text) ?? item.resource?.text ?? null);
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

const script = await readStdin();
const handled = { elicitation: 0, sampling: 0, roots: 0 };
const events = [];
let wake = () => {};

const options = {
    capabilities: script.capabilities ?? { sampling: {}, elicitation: {}, roots: {} },
};
if (script.mode === 'pin') options.versionNegotiation = { mode: { pin: MODERN } };
else if (script.mode === 'auto') options.versionNegotiation = { mode: 'auto' };

const client = new Client({ name: 'mcp-proxy-e2e-ts', version: '1.0.0' }, options);
const caps = options.capabilities;
if (caps.elicitation) {
    client.setRequestHandler('elicitation/create', async () => {
        handled.elicitation += 1;
        return { action: 'accept', content: { name: script.elicitName ?? 'Alice' } };
    });
}
if (caps.sampling) {
    client.setRequestHandler('sampling/createMessage', async () => {
        handled.sampling += 1;
        return {
            role: 'assistant',
            model: 'test-model',
            content: { type: 'text', text: script.sampleText ?? 'Paris' },
            stopReason: 'endTurn',
        };
    });
}
if (caps.roots) {
    client.setRequestHandler('roots/list', async () => {
        handled.roots += 1;
        return { roots: (script.roots ?? ['file:///e2e/root']).map((uri) => ({ uri, name: 'root' })) };
    });
}
for (const method of [
    'notifications/tools/list_changed',
    'notifications/prompts/list_changed',
    'notifications/resources/list_changed',
    'notifications/resources/updated',
]) {
    client.setNotificationHandler(method, (notification) => {
        events.push({ method, params: notification.params ?? {} });
        wake();
    });
}

function counts() {
    const count = (method) => events.filter((e) => e.method === method).length;
    return {
        tools: count('notifications/tools/list_changed'),
        prompts: count('notifications/prompts/list_changed'),
        resourcesList: count('notifications/resources/list_changed'),
        updated: events.filter((e) => e.method === 'notifications/resources/updated').map((e) => e.params.uri),
    };
}

function satisfied(want) {
    const have = counts();
    for (const key of ['tools', 'prompts', 'resourcesList']) {
        if ((want[key] ?? 0) > have[key]) return false;
    }
    return (want.updated ?? []).every((uri) => have.updated.includes(uri));
}

async function runStep(step) {
    switch (step.op) {
        case 'listTools': {
            const result = await client.listTools();
            return { names: result.tools.map((t) => t.name) };
        }
        case 'callTool': {
            const progress = [];
            const requestOptions = { timeout: step.timeoutMs ?? 30000 };
            if (step.progress) requestOptions.onprogress = (p) => progress.push(p);
            const result = await client.callTool({ name: step.name, arguments: step.arguments ?? {} }, requestOptions);
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
        case 'listPrompts': {
            const result = await client.listPrompts();
            return { names: result.prompts.map((p) => p.name) };
        }
        case 'getPrompt': {
            const result = await client.getPrompt({ name: step.name, arguments: step.arguments ?? {} });
            return { texts: result.messages.map((m) => m.content.text ?? null) };
        }
        case 'listen': {
            events.length = 0;
            const subscription = await client.listen(step.filter, { timeout: 15000 });
            const inner = [];
            for (const innerStep of step.then ?? []) inner.push(await guarded(innerStep));
            const deadline = Date.now() + (step.timeoutMs ?? 10000);
            while (!satisfied(step.want ?? {}) && Date.now() < deadline) {
                await Promise.race([new Promise((resolve) => (wake = resolve)), sleep(100)]);
            }
            await subscription.close();
            const closed = await Promise.race([subscription.closed, sleep(2000).then(() => 'still open')]);
            return { honored: subscription.honoredFilter, events: [...events], counts: counts(), then: inner, closed };
        }
        case 'cancelAfterProgress': {
            const controller = new AbortController();
            const progress = [];
            const call = client.callTool(
                { name: step.name, arguments: step.arguments ?? {} },
                {
                    signal: controller.signal,
                    timeout: step.timeoutMs ?? 30000,
                    onprogress: (p) => {
                        progress.push(p);
                        controller.abort('the test cancels');
                    },
                },
            );
            try {
                const result = await call;
                return { completed: true, texts: texts(result.content), progressBeforeAbort: progress.length };
            } catch (error) {
                // A real application goes on after it cancels: give the client time to send
                // what cancelling sends (a 2025 client POSTs notifications/cancelled).
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

// With "trace": true every HTTP exchange goes to stderr (a failed test shows it).
const traces = [];
async function tracingFetch(url, init) {
    process.stderr.write(`--- fetch ${init?.method ?? 'GET'} ${String(init?.body ?? '').slice(0, 120)}\n`);
    const response = await fetch(url, init);
    const sent = typeof init?.body === 'string' ? init.body : '';
    traces.push(
        response
            .clone()
            .text()
            .then((text) => process.stderr.write(`>>> ${init?.method ?? 'GET'} ${sent}\n<<< ${response.status} ${text}\n`))
            .catch(() => {}),
    );
    return response;
}

const headers = script.headers ?? {};
const transport = new StreamableHTTPClientTransport(new URL(script.url), {
    requestInit: { headers },
    ...(script.trace ? { fetch: tracingFetch } : {}),
});
let report;
try {
    await client.connect(transport, { timeout: 20000 });
    const results = [];
    for (const step of script.steps ?? []) results.push(await guarded(step));
    report = {
        connected: true,
        era: client.getProtocolEra?.() ?? null,
        version: client.getNegotiatedProtocolVersion?.() ?? null,
        server: client.getServerVersion?.() ?? null,
        results,
        handled,
    };
} catch (error) {
    report = { connected: false, error: describeError(error), handled };
}
try {
    await Promise.race([client.close(), sleep(3000)]);
} catch {
    // closing is best effort
}
await Promise.race([Promise.allSettled(traces), sleep(2000)]);
process.stdout.write(JSON.stringify(report) + '\n');
process.exit(0);
