import { useEffect, useMemo, useRef, useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { api } from "../api/client";
import type { RunLog, RunLogList } from "../api/types";
import type { SseState } from "../lib/sse";
import { ErrorBox, Loading } from "./ui";

const LEVELS = ["debug", "info", "warn", "error"];

async function fetchAll(runId: string): Promise<RunLog[]> {
  const out: RunLog[] = [];
  let since = 0;
  for (let page = 0; page < 20; page++) {
    const r = await api.get<RunLogList>(`/api/runs/${encodeURIComponent(runId)}/logs`, { query: { since, limit: 1000 } });
    out.push(...r.data);
    if (!r.hasMore || r.data.length === 0) break;
    since = r.data[r.data.length - 1].id;
  }
  return out;
}

function text(l: RunLog): string {
  if (l.message) return l.message;
  if (l.data && Object.keys(l.data).length) return JSON.stringify(l.data);
  return l.event ?? l.type;
}

/** The run's log: history from GET …/logs merged (by id) with live SSE entries. */
export function RunLogs({ runId, live, state }: { runId: string; live: RunLog[]; state: SseState }) {
  const history = useQuery({ queryKey: ["runLogs", runId], queryFn: () => fetchAll(runId), staleTime: Infinity });
  const [level, setLevel] = useState("debug");
  const [follow, setFollow] = useState(true);
  const box = useRef<HTMLDivElement>(null);

  const logs = useMemo(() => {
    const byId = new Map<number, RunLog>();
    for (const l of history.data ?? []) byId.set(l.id, l);
    for (const l of live) byId.set(l.id, l);
    const min = LEVELS.indexOf(level);
    return [...byId.values()].filter((l) => LEVELS.indexOf(l.level) >= min).sort((a, b) => a.id - b.id);
  }, [history.data, live, level]);

  useEffect(() => {
    if (follow && box.current) box.current.scrollTop = box.current.scrollHeight;
  }, [logs, follow]);

  return (
    <section className="card" aria-labelledby="logs-title">
      <div className="logs-head">
        <h2 id="logs-title" className="h3">Logs</h2>
        <span className={`live live-${state}`} data-testid="log-stream-state">
          {state === "open" ? "Live" : state}
        </span>
        <label>
          Level
          <select value={level} onChange={(e) => setLevel(e.target.value)}>
            {LEVELS.map((l) => (
              <option key={l} value={l}>{l === "debug" ? "all" : `${l} and above`}</option>
            ))}
          </select>
        </label>
        <label className="check">
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} /> Auto-scroll
        </label>
      </div>
      {history.isLoading && <Loading label="Loading logs…" />}
      <ErrorBox error={history.error} />
      <div
        ref={box}
        className="logs"
        role="log"
        aria-label="Run logs"
        tabIndex={0}
        onScroll={(e) => {
          const el = e.currentTarget;
          const atBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
          if (atBottom !== follow) setFollow(atBottom);
        }}
      >
        {logs.length === 0 && !history.isLoading && <div className="muted">No log entries{level !== "debug" ? " at this level" : ""}.</div>}
        {logs.map((l) => (
          <div key={l.id} className={`log-line log-${l.level}`} data-log-id={l.id}>
            <time className="log-time">{new Date(l.createdAt).toLocaleTimeString()}</time>
            <span className="log-level">{l.level}</span>
            <span className="log-type">{l.type}</span>
            <span className="log-text">{text(l)}</span>
          </div>
        ))}
      </div>
    </section>
  );
}
