import { useEffect, useRef, useState } from "react";
import { scope } from "../api/client";

export type SseMessage = { event: string; data: string; id?: string };
export type SseState = "connecting" | "open" | "reconnecting" | "closed";

/**
 * Server-Sent Events over fetch (not EventSource) so that the scope headers go with
 * the request and a reconnect sends `Last-Event-ID` itself: after a drop the server
 * replays every event after the last one seen, then continues live.
 */
export function openSse(
  url: string,
  onMessage: (m: SseMessage) => void,
  onState: (s: SseState) => void,
  opts: { headers?: Record<string, string>; lastEventId?: string } = {},
): () => void {
  const ctrl = new AbortController();
  let lastId = opts.lastEventId;
  let retryMs = 1000;
  let stopped = false;

  const run = async () => {
    let first = true;
    while (!stopped) {
      onState(first ? "connecting" : "reconnecting");
      first = false;
      try {
        const headers: Record<string, string> = { accept: "text/event-stream", ...opts.headers };
        if (scope.orgId) headers["X-Org-Id"] = scope.orgId;
        if (scope.appId) headers["X-App-Id"] = scope.appId;
        if (lastId) headers["Last-Event-ID"] = lastId;
        const res = await fetch(url, { headers, credentials: "same-origin", signal: ctrl.signal, cache: "no-store" });
        if (res.status === 401 || res.status === 403 || res.status === 404) {
          onState("closed");
          return;
        }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        onState("open");
        retryMs = 1000;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value.replace(/\r\n?/g, "\n");
          let idx;
          while ((idx = buf.indexOf("\n\n")) >= 0) {
            const frame = buf.slice(0, idx);
            buf = buf.slice(idx + 2);
            const m: SseMessage = { event: "message", data: "" };
            const data: string[] = [];
            for (const line of frame.split("\n")) {
              if (!line || line.startsWith(":")) continue;
              const c = line.indexOf(":");
              const field = c < 0 ? line : line.slice(0, c);
              const val = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
              if (field === "event") m.event = val;
              else if (field === "data") data.push(val);
              else if (field === "id") m.id = val;
              else if (field === "retry" && /^\d+$/.test(val)) retryMs = Number(val);
            }
            m.data = data.join("\n");
            if (m.id) lastId = m.id;
            // A frame without data (a comment, a lone id) dispatches nothing.
            if (data.length > 0 && m.event !== "ping") onMessage(m);
          }
        }
      } catch (e) {
        if (stopped || (e as Error).name === "AbortError") return;
      }
      if (stopped) return;
      onState("reconnecting");
      await new Promise((r) => setTimeout(r, retryMs));
      retryMs = Math.min(retryMs * 2, 15_000);
    }
  };
  void run();
  return () => {
    stopped = true;
    ctrl.abort();
  };
}

/** Subscribes while mounted (and `url` is set); the handler may change between renders. */
export function useSse(url: string | null, onMessage: (m: SseMessage) => void): SseState {
  const [state, setState] = useState<SseState>("connecting");
  const handler = useRef(onMessage);
  useEffect(() => {
    handler.current = onMessage;
  });
  useEffect(() => {
    if (!url) return;
    return openSse(url, (m) => handler.current(m), setState);
  }, [url]);
  return url ? state : "closed";
}
