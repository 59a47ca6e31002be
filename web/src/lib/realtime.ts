import { useCallback, useEffect, useRef, useState } from "react";
import { useQueryClient, type QueryClient } from "@tanstack/react-query";
import type { Run, RunList, RunLog } from "../api/types";
import { useSse, type SseMessage, type SseState } from "./sse";
import { useWorkspace } from "./workspace";

export const TERMINAL = ["success", "failed", "timeout", "cancelled"];

type RunPatch = Partial<Run> & { id: string; error_code?: string | null };

function scopeQuery(orgId: string | null, appId: string | null): string {
  return new URLSearchParams({ orgId: orgId ?? "", applicationId: appId ?? "" }).toString();
}

function parse<T>(m: SseMessage): T | null {
  try {
    return JSON.parse(m.data) as T;
  } catch {
    return null;
  }
}

function clean(p: Record<string, unknown>): Partial<Run> {
  const { seq: _seq, at: _at, error_code, ...rest } = p;
  void _seq;
  void _at;
  const out = rest as Partial<Run>;
  if (error_code && !out.error) out.error = String(error_code);
  return out;
}

/** Applies a run_update to every cached list and to the run's detail; true if some list held it. */
export function patchRun(qc: QueryClient, orgId: string, appId: string, patch: RunPatch): boolean {
  let found = false;
  const fields = clean(patch as Record<string, unknown>);
  qc.setQueriesData<RunList>({ queryKey: ["runs", orgId, appId] }, (old) => {
    if (!old) return old;
    let hit = false;
    const data = old.data.map((r) => {
      if (r.id !== patch.id) return r;
      hit = true;
      return { ...r, ...fields };
    });
    if (hit) found = true;
    return hit ? { ...old, data } : old;
  });
  qc.setQueryData<Run>(["run", orgId, appId, patch.id], (old) => (old ? { ...old, ...fields } : old));
  return found;
}

/**
 * Keeps every runs list of the current application live from `/api/realtime/runs`:
 * status changes patch the cache in place; a run no list knows yet (a new run) causes
 * one debounced refetch of the lists; a run reaching a terminal state refetches its
 * detail once (for the final duration and usage).
 */
export function useRunsRealtime(packageId?: string, onFrame?: (p: RunPatch) => void): SseState {
  const qc = useQueryClient();
  const { orgId, appId } = useWorkspace();
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => () => window.clearTimeout(timer.current), []);
  // The scope is in the URL too, so that switching org or app reopens the stream.
  const q = `channels=run_update&${scopeQuery(orgId, appId)}`;
  const url = !orgId || !appId
    ? null
    : packageId
      ? `/api/realtime/agents/${encodeURIComponent(packageId)}/runs?${q}`
      : `/api/realtime/runs?${q}`;
  return useSse(url, (m) => {
    if (m.event !== "run_update" || !orgId || !appId) return;
    const p = parse<RunPatch>(m);
    if (!p?.id) return;
    const known = patchRun(qc, orgId, appId, p);
    onFrame?.(p);
    if (!known) {
      window.clearTimeout(timer.current);
      timer.current = window.setTimeout(() => qc.invalidateQueries({ queryKey: ["runs", orgId, appId] }), 300);
    }
    if (p.status && TERMINAL.includes(p.status)) {
      void qc.invalidateQueries({ queryKey: ["run", orgId, appId, p.id], exact: true });
    }
  });
}

/**
 * Schedules change when their runs do (last run, running runs, next fire): refetches the
 * cached schedules (lists and details) at most once a second while run frames arrive.
 */
export function useSchedulesRefresh(): (p: RunPatch) => void {
  const qc = useQueryClient();
  const { orgId, appId } = useWorkspace();
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => () => window.clearTimeout(timer.current), []);
  return useCallback(() => {
    if (timer.current !== undefined || !orgId || !appId) return;
    timer.current = window.setTimeout(() => {
      timer.current = undefined;
      void qc.invalidateQueries({ queryKey: ["schedules", orgId, appId] });
      void qc.invalidateQueries({ queryKey: ["schedule", orgId, appId] });
    }, 1000);
  }, [qc, orgId, appId]);
}

/** Live view of one run: its log entries (by id, in order) and run/metric patches. */
export function useRunStream(runId: string): { live: RunLog[]; state: SseState } {
  const qc = useQueryClient();
  const { orgId, appId } = useWorkspace();
  const [live, setLive] = useState<RunLog[]>([]);
  const reset = useCallback(() => setLive([]), []);
  useEffect(reset, [runId, reset]);
  const url = orgId && appId ? `/api/realtime/runs/${encodeURIComponent(runId)}?verbose=true&${scopeQuery(orgId, appId)}` : null;
  const state = useSse(url, (m) => {
    if (!orgId || !appId) return;
    if (m.event === "run_log") {
      const log = parse<RunLog>(m);
      if (log) setLive((prev) => (prev.some((l) => l.id === log.id) ? prev : [...prev, log]));
    } else if (m.event === "run_update") {
      const p = parse<RunPatch>(m);
      if (!p?.id) return;
      const key = ["run", orgId, appId, runId];
      // A frame that finds the run not loaded yet cannot patch it, and the load in
      // flight may have read it before this frame (a run that ends as its page opens
      // would stay "running"): read it again.
      const loaded = qc.getQueryData<Run>(key) !== undefined;
      // The first frame is a full snapshot of the run; later ones are patches.
      patchRun(qc, orgId, appId, p);
      if (!loaded || (p.status && TERMINAL.includes(p.status) && m.id)) {
        void qc.invalidateQueries({ queryKey: key, exact: true });
      }
    } else if (m.event === "run_metric") {
      const p = parse<{ token_usage?: Run["token_usage"]; cost?: number | null }>(m);
      if (!p) return;
      qc.setQueryData<Run>(["run", orgId, appId, runId], (old) =>
        old ? { ...old, token_usage: p.token_usage ?? old.token_usage, cost: p.cost ?? old.cost } : old,
      );
    }
  });
  return { live, state };
}

/**
 * Refetches the schedules once the earliest of their next fires has passed: a fire the
 * server refuses creates no run (so no frame), yet changes `last_error` and `next_run_at`.
 */
export function useRefetchAfterFire(schedules: { enabled: boolean; next_run_at?: string | null }[] | undefined, refetch: () => void) {
  const next = (schedules ?? [])
    .filter((s) => s.enabled && s.next_run_at)
    .map((s) => new Date(s.next_run_at!).getTime())
    .filter((t) => !Number.isNaN(t))
    .sort((a, b) => a - b)[0];
  const latest = useRef(refetch);
  useEffect(() => {
    latest.current = refetch;
  });
  useEffect(() => {
    if (next === undefined) return;
    const t = window.setTimeout(() => latest.current(), Math.min(Math.max(1000, next - Date.now() + 750), 2 ** 31 - 1));
    return () => window.clearTimeout(t);
  }, [next]);
}
