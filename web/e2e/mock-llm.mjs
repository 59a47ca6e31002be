// A tiny OpenAI-compatible mock model for the e2e tests (the Rust suite has
// corral-mockllm; this one needs no compilation). Each chat completion answers:
// first turn → a call to the `output` tool with a greeting built from the input;
// once a tool result is in the conversation → a short final text.
// An optional delay (ms) per reply keeps runs alive long enough to watch them live.
// `state.script` (optional) scripts the first turns instead: turn i (i = the number of
// assistant messages so far) answers `script[i]` ({text, calls: [{name, args}]}); past
// its end, one `output` call then the final text. `state.tools` keeps the last tool names offered.
import http from "node:http";

export function startMockLlm({ port = 0, delayMs = 0 } = {}) {
  const state = { delayMs };
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", async () => {
      if (req.method === "GET" && /\/models$/.test(req.url ?? "")) {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ object: "list", data: [{ id: "mock-model", object: "model" }] }));
        return;
      }
      if (!/chat\/completions$/.test(req.url ?? "")) {
        res.writeHead(404).end();
        return;
      }
      let json = {};
      try {
        json = JSON.parse(body);
      } catch {
        /* ignore */
      }
      if (state.delayMs) await new Promise((r) => setTimeout(r, state.delayMs).unref());
      const messages = Array.isArray(json.messages) ? json.messages : [];
      if (Array.isArray(json.tools)) state.tools = json.tools.map((t) => t.function?.name ?? t.name);
      const turnIndex = messages.filter((m) => m.role === "assistant").length;
      const scripted = Array.isArray(state.script) ? state.script[turnIndex] : undefined;
      const hasTool = messages.some((m) => m.role === "tool");
      const text = JSON.stringify(messages);
      const name = /Ada|Grace|Linus/.exec(text)?.[0] ?? "friend";
      const greeting = `Hello, ${name}!`;
      const turn = scripted
        ? { text: scripted.text ?? null, calls: scripted.calls ?? [] }
        : (Array.isArray(state.script) ? turnIndex > state.script.length : hasTool)
        ? { text: "All done.", calls: [] }
        : { text: null, calls: [{ name: "output", args: { greeting, length: greeting.length } }] };
      const finish = turn.calls.length ? "tool_calls" : "stop";
      const usage = { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 };
      const base = { id: "chatcmpl-mock", created: 1, model: json.model ?? "mock-model" };
      if (json.stream) {
        res.writeHead(200, { "content-type": "text/event-stream" });
        const send = (choices, extra = {}) =>
          res.write(`data: ${JSON.stringify({ ...base, object: "chat.completion.chunk", choices, ...extra })}\n\n`);
        send([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }]);
        if (turn.text) send([{ index: 0, delta: { content: turn.text }, finish_reason: null }]);
        turn.calls.forEach((c, i) =>
          send([
            {
              index: 0,
              delta: {
                tool_calls: [
                  { index: i, id: `call_${i}`, type: "function", function: { name: c.name, arguments: JSON.stringify(c.args) } },
                ],
              },
              finish_reason: null,
            },
          ]),
        );
        send([{ index: 0, delta: {}, finish_reason: finish }]);
        send([], { usage });
        res.end("data: [DONE]\n\n");
      } else {
        const message = { role: "assistant", content: turn.text };
        if (turn.calls.length)
          message.tool_calls = turn.calls.map((c, i) => ({
            id: `call_${i}`,
            type: "function",
            function: { name: c.name, arguments: JSON.stringify(c.args) },
          }));
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ ...base, object: "chat.completion", choices: [{ index: 0, message, finish_reason: finish }], usage }));
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(port, "127.0.0.1", () => {
      const addr = server.address();
      resolve({ server, state, url: `http://127.0.0.1:${addr.port}/v1`, close: () => (server.closeAllConnections(), server.close()) });
    });
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const port = Number(process.env.PORT ?? 4010);
  startMockLlm({ port, delayMs: Number(process.env.DELAY_MS ?? 0) }).then(({ url }) => console.log(`mock LLM at ${url}`));
}
