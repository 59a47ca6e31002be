import { useState } from "react";
import { Link } from "react-router-dom";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import type { ListOf, Schedule } from "../api/types";
import { fmtDate, scheduleLabel } from "../lib/format";
import { ErrorBox } from "./ui";

/** The warning for a fire the server refused (`last_error`). */
export function ScheduleErrorAlert({ schedule }: { schedule: Schedule }) {
  const e = schedule.last_error;
  if (!e) return null;
  return (
    <div className="alert alert-warning" role="alert" data-testid="schedule-last-error">
      <strong>The last fire created no run</strong> <span className="mono small">({e.code})</span>
      <div>{e.message}</div>
      <div className="small muted">At {fmtDate(e.at)}</div>
    </div>
  );
}

/** An enabled/disabled switch that saves at once. */
export function EnabledSwitch({ schedule }: { schedule: Schedule }) {
  const qc = useQueryClient();
  // Set in the change handler itself, so the controlled checkbox never flips back meanwhile.
  const [pending, setPending] = useState<boolean | null>(null);
  const toggle = useMutation({
    mutationFn: (enabled: boolean) => api.put<Schedule>(`/api/schedules/${encodeURIComponent(schedule.id)}`, { enabled }),
    onSuccess: (s) => {
      qc.setQueryData(["schedule", s.orgId, s.applicationId, s.id], s);
      qc.setQueriesData<ListOf<Schedule>>({ queryKey: ["schedules", s.orgId, s.applicationId] }, (old) =>
        old ? { ...old, data: old.data.map((x) => (x.id === s.id ? s : x)) } : old,
      );
      void qc.invalidateQueries({ queryKey: ["schedules"] });
    },
    onSettled: () => setPending(null),
  });
  const on = pending ?? schedule.enabled;
  return (
    <>
      <label className="check switch">
        <input
          type="checkbox"
          role="switch"
          checked={on}
          disabled={pending !== null}
          aria-label={`Enabled: ${scheduleLabel(schedule)}`}
          onChange={(e) => {
            setPending(e.target.checked);
            toggle.mutate(e.target.checked);
          }}
        />
        <span aria-hidden="true">{on ? "On" : "Off"}</span>
      </label>
      <ErrorBox error={toggle.error} />
    </>
  );
}

export function SchedulesTable({ schedules, showAgent = true }: { schedules: Schedule[]; showAgent?: boolean }) {
  return (
    <div className="table-wrap">
      <table className="schedules-table">
        <thead>
          <tr>
            <th scope="col">Schedule</th>
            {showAgent && <th scope="col">Agent</th>}
            <th scope="col">When</th>
            <th scope="col">Enabled</th>
            <th scope="col">Next run</th>
            <th scope="col">Last run</th>
            <th scope="col">By</th>
            <th scope="col">Running</th>
          </tr>
        </thead>
        <tbody>
          {schedules.map((s) => (
            <tr key={s.id} data-schedule-id={s.id}>
              <td>
                <Link to={`/schedules/${s.id}`}>{scheduleLabel(s)}</Link>
                {s.last_error && (
                  <div className="small warn-text" title={s.last_error.message}>
                    ⚠ Last fire refused: {s.last_error.message}
                  </div>
                )}
              </td>
              {showAgent && (
                <td className="mono small">
                  <Link to={`/agents/${s.packageId}`}>{s.packageId}</Link>
                </td>
              )}
              <td>
                <code>{s.cron_expression}</code>
                <div className="small muted">{s.timezone ?? "UTC"}</div>
              </td>
              <td>
                <EnabledSwitch schedule={s} />
              </td>
              <td>
                {fmtDate(s.next_run_at)}
                {!s.enabled && <div className="small muted">paused</div>}
              </td>
              <td>{s.last_run_id ? <Link to={`/runs/${s.last_run_id}`}>{fmtDate(s.last_run_at)}</Link> : fmtDate(s.last_run_at)}</td>
              <td className="small">{s.actor_name ?? s.actor_type ?? "—"}</td>
              <td>{s.running_runs}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
