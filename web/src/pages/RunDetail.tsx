import { useEffect, useState } from "react";
import { fmtDate, fmtDuration } from "../lib/format";
import { Link, useNavigate, useParams } from "react-router-dom";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import Markdown from "react-markdown";
import { agentPath, api } from "../api/client";
import type { Run } from "../api/types";
import { ErrorBox, Json, Loading, PageHeader, StatusBadge } from "../components/ui";
import { RunLogs } from "../components/RunLogs";
import { ScheduleLink } from "../components/RunsTable";
import { TERMINAL, useRunStream } from "../lib/realtime";
import { useScopeKey } from "../lib/workspace";

function Output({ result }: { result: Run["result"] }) {
  const [view, setView] = useState<"rendered" | "json">("rendered");
  if (!result) return <p className="muted">No output yet.</p>;
  const r = result as Record<string, unknown>;
  const out = "output" in r ? r.output : r;
  return (
    <>
      <div className="segmented" role="group" aria-label="Output view">
        <button type="button" className="btn btn-small" aria-pressed={view === "rendered"} onClick={() => setView("rendered")}>
          Rendered
        </button>
        <button type="button" className="btn btn-small" aria-pressed={view === "json"} onClick={() => setView("json")}>
          JSON
        </button>
      </div>
      {view === "json" ? (
        <Json value={result} label="Run result" />
      ) : typeof out === "string" ? (
        <div className="markdown" data-testid="run-output-text">
          <Markdown>{out}</Markdown>
        </div>
      ) : out && typeof out === "object" && !Array.isArray(out) ? (
        <dl className="output-fields">
          {Object.entries(out as Record<string, unknown>).map(([k, v]) => (
            <div key={k}>
              <dt>{k}</dt>
              <dd>
                {typeof v === "string" ? (
                  <div className="markdown">
                    <Markdown>{v}</Markdown>
                  </div>
                ) : (
                  <code>{JSON.stringify(v)}</code>
                )}
              </dd>
            </div>
          ))}
        </dl>
      ) : (
        <Json value={out} label="Run output" />
      )}
    </>
  );
}

/** Time since `from`, ticking every second while the run is not finished. */
function Elapsed({ from }: { from: string }) {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(t);
  }, []);
  return <>{fmtDuration(Math.max(0, now - new Date(from).getTime()))} (running)</>;
}

export function RunDetailPage() {
  const { id = "" } = useParams();
  const key = useScopeKey();
  const qc = useQueryClient();
  const navigate = useNavigate();
  const run = useQuery({
    queryKey: ["run", ...key, id],
    queryFn: () => api.get<Run>(`/api/runs/${encodeURIComponent(id)}`),
    // The live stream patches the run; while it is not over, read it again now and
    // then too, so a frame lost between the first load and the stream cannot leave
    // the page showing an old status.
    refetchInterval: (q) => (q.state.data && !TERMINAL.includes(q.state.data.status) ? 2000 : false),
  });
  const { live, state } = useRunStream(id);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  if (run.isLoading) return <Loading />;
  if (run.error || !run.data) return <ErrorBox error={run.error ?? new Error("Run not found")} />;
  const r = run.data;
  const done = TERMINAL.includes(r.status);
  const usage = (r.token_usage ?? {}) as Record<string, number>;

  const cancel = async () => {
    setBusy(true);
    setError(null);
    try {
      const updated = await api.post<Run>(`/api/runs/${encodeURIComponent(id)}/cancel`, {});
      if (updated && typeof updated === "object" && "id" in updated) qc.setQueryData(["run", ...key, id], updated);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const rerun = async () => {
    if (!r.packageId) return;
    setBusy(true);
    setError(null);
    try {
      const next = await api.post<Run>(`/api/agents/${agentPath(r.packageId)}/run`, { rerun_from: r.id });
      await qc.invalidateQueries({ queryKey: ["runs"] });
      navigate(`/runs/${next.id}`);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      <nav aria-label="Breadcrumb" className="crumbs">
        <Link to="/runs">Runs</Link> / <span className="mono">{r.id}</span>
      </nav>
      <PageHeader
        title={`Run #${r.runNumber ?? ""}`}
        actions={
          <>
            <StatusBadge status={r.status} />
            {!done && (
              <button type="button" className="btn btn-danger" onClick={cancel} disabled={busy}>
                Cancel run
              </button>
            )}
            {done && r.packageId && (
              <button type="button" className="btn" onClick={rerun} disabled={busy}>
                Re-run
              </button>
            )}
          </>
        }
      >
        {r.packageId ? (
          <>
            Agent <Link to={`/agents/${r.packageId}`}>{r.packageId}</Link> {r.version_label ? `v${r.version_label}` : ""}
          </>
        ) : (
          "Inline run"
        )}
      </PageHeader>
      <ErrorBox error={error} />
      <dl className="meta">
        <div><dt>Started</dt><dd>{fmtDate(r.started_at)}</dd></div>
        <div><dt>Completed</dt><dd>{fmtDate(r.completed_at)}</dd></div>
        <div><dt>Duration</dt><dd data-testid="run-duration">{!done && r.started_at ? <Elapsed from={r.started_at} /> : fmtDuration(r.duration)}</dd></div>
        <div><dt>Model</dt><dd>{r.model_label ?? "—"}</dd></div>
        <div><dt>Tokens</dt><dd>{usage.input_tokens !== undefined ? `${usage.input_tokens} in · ${usage.output_tokens ?? 0} out` : "—"}</dd></div>
        <div><dt>Cost</dt><dd>{r.cost !== null && r.cost !== undefined ? `$${r.cost.toFixed(4)}` : "—"}</dd></div>
        <div><dt>Runner</dt><dd>{r.runner_kind ?? "—"}</dd></div>
        <div><dt>By</dt><dd>{r.user_name ?? r.api_key_name ?? r.end_user_name ?? "—"}</dd></div>
        {r.scheduleId && <div><dt>Started by</dt><dd><ScheduleLink run={r} /></dd></div>}
      </dl>
      {r.error && (
        <div className="alert alert-error" role="alert">
          <strong>Error</strong>
          <div className="mono">{r.error}</div>
        </div>
      )}
      <div className="two-col">
        <section className="card" aria-labelledby="input-title">
          <h2 id="input-title" className="h3">Input</h2>
          <Json value={r.input ?? {}} label="Run input" />
        </section>
        <section className="card" aria-labelledby="output-title" data-testid="run-output">
          <h2 id="output-title" className="h3">Output</h2>
          <Output result={r.result} />
        </section>
      </div>
      <RunLogs runId={id} live={live} state={state} />
    </>
  );
}
