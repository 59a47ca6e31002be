import { afterEach, describe, expect, it, vi } from "vitest";
import { openSse, type SseMessage, type SseState } from "./sse";

function streamOf(chunks: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const ch of chunks) c.enqueue(enc.encode(ch));
      c.close();
    },
  });
}

afterEach(() => vi.unstubAllGlobals());

describe("openSse", () => {
  it("parses frames split across chunks, skips pings and reconnects with Last-Event-ID", async () => {
    const calls: Record<string, string>[] = [];
    const bodies = [
      ["retry: 5\n", "event: ping\ndata:\n\n", "id: 7\r\nevent: run_log\r\ndata: {\"a\":", "1}\r\n\r\n", ": comment\n\n"],
      ["id: 8\nevent: run_update\ndata: line1\ndata: line2\n\n"],
    ];
    vi.stubGlobal(
      "fetch",
      vi.fn(async (_url: string, init: RequestInit) => {
        calls.push({ ...(init.headers as Record<string, string>) });
        const body = bodies.shift();
        if (!body) return new Promise(() => {}); // stays open
        return new Response(streamOf(body), { status: 200, headers: { "content-type": "text/event-stream" } });
      }),
    );
    const got: SseMessage[] = [];
    const states: SseState[] = [];
    const stop = openSse("/api/realtime/runs", (m) => got.push(m), (s) => states.push(s));
    await vi.waitFor(() => expect(got).toHaveLength(2), { timeout: 2000 });
    stop();
    expect(got[0]).toEqual({ event: "run_log", data: '{"a":1}', id: "7" });
    expect(got[1]).toEqual({ event: "run_update", data: "line1\nline2", id: "8" });
    expect(calls[0]["Last-Event-ID"]).toBeUndefined();
    expect(calls[1]["Last-Event-ID"]).toBe("7");
    expect(states.slice(0, 3)).toEqual(["connecting", "open", "reconnecting"]);
  });

  it("stops on 401 without retrying", async () => {
    const f = vi.fn(async () => new Response("{}", { status: 401 }));
    vi.stubGlobal("fetch", f);
    const states: SseState[] = [];
    openSse("/x", () => {}, (s) => states.push(s));
    await vi.waitFor(() => expect(states).toContain("closed"));
    expect(f).toHaveBeenCalledTimes(1);
  });
});
