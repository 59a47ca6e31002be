import { useSearchParams } from "react-router-dom";
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { api } from "../api/client";
import type { RunList } from "../api/types";
import { Empty, ErrorBox, Loading, PageHeader } from "../components/ui";
import { RunsTable } from "../components/RunsTable";
import { useRunsRealtime } from "../lib/realtime";
import { useScopeKey } from "../lib/workspace";

const STATUSES = ["pending", "running", "success", "failed", "timeout", "cancelled"];
const PAGE = 25;

export function RunsPage() {
  const key = useScopeKey();
  const [params, setParams] = useSearchParams();
  const status = params.get("status") ?? "";
  const from = params.get("from") ?? "";
  const to = params.get("to") ?? "";
  const mine = params.get("user") === "me";
  const kind = params.get("kind") ?? "";
  const offset = Number(params.get("offset") ?? 0) || 0;
  const runs = useQuery({
    queryKey: ["runs", ...key, "list", { status, from, to, offset, mine, kind }],
    queryFn: () =>
      api.get<RunList>("/api/runs", {
        query: {
          status,
          kind,
          user: mine ? "me" : undefined,
          start_date: from ? new Date(from).toISOString() : undefined,
          end_date: to ? new Date(`${to}T23:59:59`).toISOString() : undefined,
          limit: PAGE,
          offset,
        },
      }),
    placeholderData: keepPreviousData,
  });
  const live = useRunsRealtime();
  const set = (k: string, v: string) => {
    const p = new URLSearchParams(params);
    if (v) p.set(k, v);
    else p.delete(k);
    if (k !== "offset") p.delete("offset");
    setParams(p, { replace: true });
  };

  return (
    <>
      <PageHeader title="Runs" actions={<span className={`live live-${live}`} role="status">{live === "open" ? "Live" : live}</span>}>
        Every run of this application, newest first. Status updates arrive live.
      </PageHeader>
      <form className="toolbar filters" onSubmit={(e) => e.preventDefault()} aria-label="Filters">
        <label>
          Status
          <select value={status} onChange={(e) => set("status", e.target.value)}>
            <option value="">All</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Kind
          <select value={kind} onChange={(e) => set("kind", e.target.value)}>
            <option value="">All</option>
            <option value="package">Agents</option>
            <option value="inline">Inline</option>
          </select>
        </label>
        <label className="check filter-check">
          <input type="checkbox" checked={mine} onChange={(e) => set("user", e.target.checked ? "me" : "")} /> Only my runs
        </label>
        <label>
          From
          <input type="date" value={from} onChange={(e) => set("from", e.target.value)} />
        </label>
        <label>
          To
          <input type="date" value={to} onChange={(e) => set("to", e.target.value)} />
        </label>
      </form>
      {runs.isLoading && <Loading />}
      <ErrorBox error={runs.error} />
      {runs.data && runs.data.data.length === 0 && (
        <Empty>No runs{status || from || to || mine || kind ? " match these filters" : " yet: start one from an agent"}.</Empty>
      )}
      {runs.data && runs.data.data.length > 0 && <RunsTable runs={runs.data.data} />}
      {runs.data && (offset > 0 || runs.data.hasMore) && (
        <div className="pager">
          <button type="button" className="btn btn-small" disabled={offset === 0} onClick={() => set("offset", String(Math.max(0, offset - PAGE)))}>
            Previous
          </button>
          <span className="muted small">
            {offset + 1}–{offset + runs.data.data.length} of {runs.data.total}
          </span>
          <button type="button" className="btn btn-small" disabled={!runs.data.hasMore} onClick={() => set("offset", String(offset + PAGE))}>
            Next
          </button>
        </div>
      )}
    </>
  );
}
