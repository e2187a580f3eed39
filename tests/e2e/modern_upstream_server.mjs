// A 2026-07-28 MCP server on the official TypeScript SDK v2 (@modelcontextprotocol/server@2.4.0),
// for the tests of 2026 upstreams behind the proxy (tests/e2e/test_modern_upstream.py).
//
//   node modern_upstream_server.mjs --legacy reject   a 2026-only stdio server (`serveStdio`): an
//                                                     `initialize` (or any claim-less request) is
//                                                     answered -32022
//   node modern_upstream_server.mjs --legacy serve    a dual-era stdio server: `initialize` pins the
//                                                     connection to 2025, where the SDK's legacy
//                                                     shim turns input_required into real
//                                                     server->client requests
//   ... --http                                        the same over Streamable HTTP
//                                                     (`createMcpHandler` on node:http, 127.0.0.1,
//                                                     a free port; `--legacy reject` or `stateless`);
//                                                     prints "modern_upstream listening on
//                                                     http://127.0.0.1:PORT/mcp" to stderr
//   ... --scheme NAME                                 resource URIs are NAME://... (default fixture)
//
// Its tools mirror those of modern_server.py (the 2025 fixture), with the same answers, so one
// test script serves every upstream era:
//
//   echo {text}            -> "echo: <text>"
//   whoami                 -> the request's envelope as JSON text (protocolVersion, clientInfo,
//                             clientCapabilities, logLevel: what the client, or the proxy for it, sent)
//   progress {steps,delay} -> `steps` notifications/progress (when the request has a token),
//                             `delay` s apart, then "progressed <steps>"
//   log                    -> one log message at each of debug, info, warning, error, then "logged"
//   sample {prompt}        -> input_required with one sampling/createMessage (key "sample"),
//                             then "sampled: <text>"
//   elicit {message}       -> input_required with one elicitation/create (form {name}, key "name"),
//                             then "elicited: <action> <name>"
//   roots                  -> input_required with roots/list (key "roots"), then "roots: <uri> ..."
//   sample_and_elicit      -> both questions in one round, then "both: <sampled> <name>"
//   two_rounds             -> asks a name (round 1, requestState "round-1"), then a sample
//                             (round 2, requestState "round-2:<name>"), then
//                             "two rounds: <name> <sampled>"
//   slow {seconds, tag}    -> writes "modern_upstream slow started <tag>" to stderr, reports
//                             progress 1 (when asked), sleeps; when cancelled it writes
//                             "modern_upstream slow cancelled <tag>", else "slept <tag>"
//   change_tools           -> registers one more tool (and so announces a tools list change)
//   touch {uri}            -> bumps the counter of `uri` and announces resources/updated {uri}
//   ask_forever            -> input_required (an elicitation and a new requestState) every round
//   huge_state             -> input_required with a 1 MiB requestState, and done when it comes back
//
// Resources: fixture://static (text), fixture://counter (text "count <n>", bumped by touch),
// template fixture://item/{id} (text "item <id>"). Prompt: greet {name}. In the 2025 era resources/subscribe and
// unsubscribe are served and write "modern_upstream subscribe <uri>" to stderr.
//
// On start it writes "modern_upstream pid <pid> legacy=<mode>" to stderr; each request it
// receives is logged there as "modern_upstream got <method>" (so a test can see what reached it).

import http from 'node:http';
import { McpServer, ResourceTemplate, createMcpHandler, inputRequired } from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import * as z from 'zod';

function option(name, fallback) {
    const index = process.argv.indexOf(name);
    return index >= 0 ? process.argv[index + 1] : fallback;
}

const LEGACY = option('--legacy', 'reject');
const SCHEME = option('--scheme', 'fixture');
const HTTP = process.argv.includes('--http');
const STATIC_TEXT = 'the static fixture text';
const NAME_SCHEMA = { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] };
const counters = new Map();
/** Tools added by change_tools (kept across the per-request instances of the HTTP mode). */
let extraTools = 0;
/** How change announcements leave: through the instance on stdio, the handler's bus over HTTP. */
let announce = {
    toolsChanged: (server) => server.sendToolListChanged(),
    resourceUpdated: (server, uri) => server.server.sendResourceUpdated({ uri }),
};

function log(line) {
    process.stderr.write(line + '\n');
}

function text(value, isError = false) {
    return { content: [{ type: 'text', text: value }], ...(isError ? { isError: true } : {}) };
}

function sleep(ms, signal) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(resolve, ms);
        signal?.addEventListener('abort', () => {
            clearTimeout(timer);
            reject(new Error('aborted'));
        });
    });
}

function sampledText(result) {
    let content = result?.content;
    if (Array.isArray(content)) content = content[0];
    return content?.text ?? '';
}

function askName(message) {
    return inputRequired.elicit({ mode: 'form', message, requestedSchema: NAME_SCHEMA });
}

function askSample(prompt) {
    return inputRequired.createMessage({
        messages: [{ role: 'user', content: { type: 'text', text: prompt } }],
        maxTokens: 50,
    });
}

function elicited(result) {
    const name = result?.content?.name ?? '';
    return `elicited: ${result?.action ?? '?'} ${name}`.trimEnd();
}

function responses(ctx) {
    return ctx.mcpReq.inputResponses ?? {};
}

async function progress(ctx, value, total, message) {
    const token = ctx.mcpReq._meta?.progressToken;
    if (token === undefined) return;
    await ctx.mcpReq.notify({
        method: 'notifications/progress',
        params: { progressToken: token, progress: value, ...(total !== undefined ? { total } : {}), message },
    });
}

function build({ era } = {}) {
    const server = new McpServer(
        { name: 'modern-upstream-fixture', version: '2.0.0' },
        {
            capabilities: {
                tools: { listChanged: true },
                resources: { subscribe: true, listChanged: true },
                prompts: {},
                logging: {},
            },
            instructions: 'the 2026 upstream fixture',
        },
    );
    const empty = z.object({});
    server.registerTool(
        'echo',
        { description: 'Echoes its text', inputSchema: z.object({ text: z.string().optional() }) },
        async ({ text: value }) => text(`echo: ${value ?? ''}`),
    );
    server.registerTool('whoami', { description: 'Shows the envelope it got', inputSchema: empty }, async (_a, ctx) => {
        const envelope = ctx.mcpReq.envelope ?? {};
        const pick = (key) => envelope[`io.modelcontextprotocol/${key}`] ?? envelope[key] ?? null;
        return text(
            JSON.stringify({
                protocolVersion: pick('protocolVersion'),
                clientInfo: pick('clientInfo'),
                clientCapabilities: pick('clientCapabilities'),
                logLevel: pick('logLevel'),
            }),
        );
    });
    server.registerTool(
        'progress',
        {
            description: 'Reports progress, then answers',
            inputSchema: z.object({ steps: z.number().optional(), delay: z.number().optional() }),
        },
        async ({ steps = 3, delay = 0.05 }, ctx) => {
            for (let step = 1; step <= steps; step += 1) {
                await sleep(delay * 1000);
                await progress(ctx, step, steps, `step ${step}`);
            }
            return text(`progressed ${steps}`);
        },
    );
    server.registerTool('log', { description: 'Logs at four levels, then answers', inputSchema: empty }, async (_a, ctx) => {
        for (const level of ['debug', 'info', 'warning', 'error']) {
            await ctx.mcpReq.log(level, `${level} line`, 'fixture');
        }
        return text('logged');
    });
    server.registerTool(
        'sample',
        { description: 'Asks its client to sample', inputSchema: z.object({ prompt: z.string().optional() }) },
        async ({ prompt }, ctx) => {
            const answer = responses(ctx).sample;
            if (!answer) {
                return inputRequired({ inputRequests: { sample: askSample(prompt ?? 'capital of France?') } });
            }
            return text('sampled: ' + sampledText(answer));
        },
    );
    server.registerTool(
        'elicit',
        { description: 'Asks its client for a name', inputSchema: z.object({ message: z.string().optional() }) },
        async ({ message }, ctx) => {
            const answer = responses(ctx).name;
            if (!answer) return inputRequired({ inputRequests: { name: askName(message ?? 'your name?') } });
            return text(elicited(answer));
        },
    );
    server.registerTool('roots', { description: 'Asks its client for its roots', inputSchema: empty }, async (_a, ctx) => {
        const answer = responses(ctx).roots;
        if (!answer) return inputRequired({ inputRequests: { roots: inputRequired.listRoots() } });
        return text('roots: ' + (answer.roots ?? []).map((root) => root.uri).join(' '));
    });
    server.registerTool(
        'sample_and_elicit',
        { description: 'Asks for a sample and a name at once', inputSchema: empty },
        async (_a, ctx) => {
            const { sample, name } = responses(ctx);
            if (!sample || !name) {
                return inputRequired({
                    inputRequests: { sample: askSample('both?'), name: askName('both: your name?') },
                    requestState: 'both',
                });
            }
            return text(`both: ${sampledText(sample)} ${name.content?.name ?? ''}`);
        },
    );
    server.registerTool('two_rounds', { description: 'Asks twice, in two rounds', inputSchema: empty }, async (_a, ctx) => {
        const state = ctx.mcpReq.requestState();
        const answers = responses(ctx);
        if (typeof state === 'string' && state.startsWith('round-2:') && answers.sample) {
            return text(`two rounds: ${state.slice('round-2:'.length)} ${sampledText(answers.sample)}`);
        }
        if (state === 'round-1' && answers.name?.content?.name) {
            return inputRequired({
                inputRequests: { sample: askSample('second round?') },
                requestState: `round-2:${answers.name.content.name}`,
            });
        }
        return inputRequired({ inputRequests: { name: askName('first round: your name?') }, requestState: 'round-1' });
    });
    server.registerTool(
        'slow',
        {
            description: 'Sleeps; says when cancelled',
            inputSchema: z.object({ seconds: z.number().optional(), tag: z.string().optional() }),
        },
        async ({ seconds = 30, tag = '-' }, ctx) => {
            log(`modern_upstream slow started ${tag}`);
            await progress(ctx, 1, undefined, 'started');
            try {
                await sleep(seconds * 1000, ctx.mcpReq.signal);
            } catch {
                log(`modern_upstream slow cancelled ${tag}`);
                throw new Error('cancelled');
            }
            return text(`slept ${tag}`);
        },
    );
    const addExtra = (n) =>
        server.registerTool(`extra_${n}`, { description: 'added at run time', inputSchema: empty }, async () =>
            text(`extra ${n}`),
        );
    for (let n = 1; n <= extraTools; n += 1) addExtra(n);
    server.registerTool('change_tools', { description: 'Announces a tool list change', inputSchema: empty }, async () => {
        extraTools += 1;
        addExtra(extraTools); // (on stdio, registering announces the change itself)
        if (HTTP) await announce.toolsChanged(server);
        return text('tools changed');
    });
    server.registerTool(
        'touch',
        { description: 'Announces an update of a resource', inputSchema: z.object({ uri: z.string().optional() }) },
        async ({ uri = `${SCHEME}://counter` }) => {
            counters.set(uri, (counters.get(uri) ?? 0) + 1);
            await announce.resourceUpdated(server, uri);
            return text(`touched ${uri}`);
        },
    );
    let forever = 0;
    server.registerTool('ask_forever', { description: 'Never satisfied', inputSchema: empty }, async () => {
        forever += 1;
        log(`modern_upstream ask_forever round ${forever}`);
        return inputRequired({ inputRequests: { name: askName('again?') }, requestState: `forever-${forever}` });
    });
    server.registerTool('huge_state', { description: 'A 1 MiB requestState', inputSchema: empty }, async (_a, ctx) => {
        const state = ctx.mcpReq.requestState();
        if (typeof state === 'string' && state.length === 1 << 20 && responses(ctx).name) {
            return text(`huge state came back: ${state.length} bytes`);
        }
        return inputRequired({ inputRequests: { name: askName('huge?') }, requestState: 'x'.repeat(1 << 20) });
    });

    server.registerResource(
        'static',
        `${SCHEME}://static`,
        { mimeType: 'text/plain', description: 'static text' },
        async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: STATIC_TEXT }] }),
    );
    server.registerResource(
        'counter',
        `${SCHEME}://counter`,
        { mimeType: 'text/plain', description: 'changes on touch' },
        async (uri) => ({
            contents: [{ uri: uri.href, mimeType: 'text/plain', text: `count ${counters.get(uri.href) ?? 0}` }],
        }),
    );
    server.registerResource(
        'item',
        new ResourceTemplate(`${SCHEME}://item/{id}`, { list: undefined }),
        { mimeType: 'text/plain' },
        async (uri, { id }) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: `item ${id}` }] }),
    );
    server.registerPrompt(
        'greet',
        { description: 'Greets someone', argsSchema: { name: z.string() } },
        async ({ name }) => ({
            description: 'a greeting',
            messages: [{ role: 'user', content: { type: 'text', text: `Hello, ${name}!` } }],
        }),
    );
    if (era !== 'modern') {
        server.server.setRequestHandler('resources/subscribe', async (request) => {
            log(`modern_upstream subscribe ${request.params.uri}`);
            return {};
        });
        server.server.setRequestHandler('resources/unsubscribe', async (request) => {
            log(`modern_upstream unsubscribe ${request.params.uri}`);
            return {};
        });
    }
    return server;
}

function logRequests(text) {
    for (const line of text.split('\n')) {
        const match = /"method"\s*:\s*"([^"]+)"/.exec(line);
        if (match && /"id"\s*:/.test(line)) log(`modern_upstream got ${match[1]}`);
    }
}

log(`modern_upstream pid ${process.pid} legacy=${LEGACY}${HTTP ? ' http' : ''}`);
if (HTTP) {
    const handler = createMcpHandler(build, { legacy: LEGACY === 'serve' ? 'stateless' : LEGACY, keepAliveMs: 1000 });
    announce = {
        toolsChanged: () => handler.notify.toolsChanged(),
        resourceUpdated: (_server, uri) => handler.notify.resourceUpdated(uri),
    };
    const httpServer = http.createServer(async (req, res) => {
        try {
            const chunks = [];
            for await (const chunk of req) chunks.push(chunk);
            const body = Buffer.concat(chunks);
            logRequests(body.toString('utf8'));
            const controller = new AbortController();
            res.on('close', () => controller.abort());
            const response = await handler.fetch(
                new Request(`http://${req.headers.host}${req.url}`, {
                    method: req.method,
                    headers: req.headers,
                    body: ['GET', 'HEAD', 'DELETE'].includes(req.method) ? undefined : body,
                    signal: controller.signal,
                }),
            );
            res.writeHead(response.status, Object.fromEntries(response.headers.entries()));
            if (response.body) for await (const chunk of response.body) res.write(chunk);
            res.end();
        } catch (error) {
            if (!res.headersSent) res.writeHead(500);
            res.end();
            log(`modern_upstream http error: ${error?.message ?? error}`);
        }
    });
    httpServer.listen(0, '127.0.0.1', () => {
        log(`modern_upstream listening on http://127.0.0.1:${httpServer.address().port}/mcp`);
    });
    process.stdin.on('end', () => process.exit(0)); // the test closes stdin to stop it
    process.stdin.resume();
} else {
    process.stdin.on('data', (chunk) => logRequests(chunk.toString('utf8')));
    serveStdio(build, { legacy: LEGACY, onerror: (error) => log(`modern_upstream error: ${error.message}`) });
}
