import { useState } from "react";
import { Link, useNavigate, useParams, useSearchParams } from "react-router-dom";
import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { agentPath, api } from "../api/client";
import type { AgentDetail, RunList, Schedule } from "../api/types";
import { ConfirmButton, Empty, ErrorBox, Json, Loading, PageHeader } from "../components/ui";
import { EnabledSwitch, ScheduleErrorAlert } from "../components/SchedulesTable";
import { ScheduleForm } from "../components/ScheduleForm";
import { RunsTable } from "../components/RunsTable";
import { fmtDate, scheduleLabel } from "../lib/format";
import { useRefetchAfterFire, useRunsRealtime, useSchedulesRefresh } from "../lib/realtime";
import { useScopeKey } from "../lib/workspace";

const PAGE = 10;

export function ScheduleDetailPage() {
  const { id = "" } = useParams();
  const key = useScopeKey();
  const qc = useQueryClient();
  const navigate = useNavigate();
  const [params, setParams] = useSearchParams();
  const offset = Number(params.get("offset") ?? 0) || 0;
  const [editing, setEditing] = useState(false);
  const schedule = useQuery({
    queryKey: ["schedule", ...key, id],
    queryFn: () => api.get<Schedule>(`/api/schedules/${encodeURIComponent(id)}`),
  });
  const runs = useQuery({
    queryKey: ["runs", ...key, "schedule", id, offset],
    queryFn: () => api.get<RunList>(`/api/schedules/${encodeURIComponent(id)}/runs`, { query: { limit: PAGE, offset } }),
    placeholderData: keepPreviousData,
  });
  const packageId = schedule.data?.packageId;
  const agent = useQuery({
    queryKey: ["agent", ...key, packageId],
    queryFn: () => api.get<AgentDetail>(`/api/packages/agents/${agentPath(packageId!)}`),
    enabled: editing && !!packageId,
  });
  const live = useRunsRealtime(packageId, useSchedulesRefresh());
  useRefetchAfterFire(schedule.data ? [schedule.data] : undefined, () => void schedule.refetch());
  const remove = useMutation({
    mutationFn: () => api.del(`/api/schedules/${encodeURIComponent(id)}`),
    onSuccess: async () => {
      qc.removeQueries({ queryKey: ["schedule", ...key, id] });
      await qc.invalidateQueries({ queryKey: ["schedules"] });
      navigate("/schedules");
    },
  });

  if (schedule.isLoading) return <Loading />;
  if (schedule.error || !schedule.data) return <ErrorBox error={schedule.error ?? new Error("Schedule not found")} />;
  const s = schedule.data;
  const setOffset = (o: number) => {
    const p = new URLSearchParams(params);
    if (o) p.set("offset", String(o));
    else p.delete("offset");
    setParams(p, { replace: true });
  };

  return (
    <>
      <nav aria-label="Breadcrumb" className="crumbs">
        <Link to="/schedules">Schedules</Link> / <span>{scheduleLabel(s)}</span>
      </nav>
      <PageHeader
        title={scheduleLabel(s)}
        actions={
          <>
            <span className={`live live-${live}`} role="status">{live === "open" ? "Live" : live}</span>
            <button type="button" className="btn" aria-expanded={editing} onClick={() => setEditing((e) => !e)}>
              {editing ? "Close editor" : "Edit"}
            </button>
            <ConfirmButton onConfirm={() => remove.mutate()} confirmLabel="Delete schedule">
              Delete
            </ConfirmButton>
          </>
        }
      >
        Runs <Link to={`/agents/${s.packageId}`}>{s.packageId}</Link> on <code>{s.cron_expression}</code> ({s.timezone ?? "UTC"}).
      </PageHeader>
      <ErrorBox error={remove.error} />
      <ScheduleErrorAlert schedule={s} />
      <dl className="meta">
        <div><dt>Enabled</dt><dd><EnabledSwitch schedule={s} /></dd></div>
        <div><dt>Cron</dt><dd><code data-testid="schedule-cron">{s.cron_expression}</code></dd></div>
        <div><dt>Timezone</dt><dd>{s.timezone ?? "UTC"}</dd></div>
        <div><dt>Next run</dt><dd data-testid="schedule-next-run">{fmtDate(s.next_run_at)}{!s.enabled && " (paused)"}</dd></div>
        <div><dt>Last run</dt><dd>{s.last_run_id ? <Link to={`/runs/${s.last_run_id}`}>{fmtDate(s.last_run_at)}</Link> : fmtDate(s.last_run_at)}</dd></div>
        <div><dt>Running</dt><dd>{s.running_runs}</dd></div>
        <div><dt>By</dt><dd>{s.actor_name ?? s.actor_type ?? "—"}</dd></div>
        <div><dt>Created</dt><dd>{fmtDate(s.createdAt)}</dd></div>
      </dl>
      {editing && (
        <>
          {agent.isLoading && <Loading />}
          <ErrorBox error={agent.error} />
          {agent.data && (
            <ScheduleForm
              agent={agent.data}
              schedule={s}
              onDone={() => setEditing(false)}
              onCancel={() => setEditing(false)}
            />
          )}
        </>
      )}
      <section className="card" aria-labelledby="schedule-input-title">
        <h2 id="schedule-input-title" className="h3">Input</h2>
        <Json value={s.input ?? {}} label="Schedule input" />
      </section>
      <section className="card" aria-labelledby="schedule-runs-title">
        <h2 id="schedule-runs-title" className="h3">Runs</h2>
        {runs.isLoading && <Loading />}
        <ErrorBox error={runs.error} />
        {runs.data && runs.data.data.length === 0 && <Empty>This schedule has not started a run yet.</Empty>}
        {runs.data && runs.data.data.length > 0 && <RunsTable runs={runs.data.data} hideSchedule />}
        {runs.data && (offset > 0 || runs.data.hasMore) && (
          <div className="pager">
            <button type="button" className="btn btn-small" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
              Previous
            </button>
            <span className="muted small">
              {offset + 1}–{offset + runs.data.data.length} of {runs.data.total}
            </span>
            <button type="button" className="btn btn-small" disabled={!runs.data.hasMore} onClick={() => setOffset(offset + PAGE)}>
              Next
            </button>
          </div>
        )}
      </section>
    </>
  );
}
