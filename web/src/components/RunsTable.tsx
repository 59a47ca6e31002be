import { Link } from "react-router-dom";
import { fmtDate, fmtDuration } from "../lib/format";
import type { Run } from "../api/types";
import { StatusBadge } from "./ui";

/** "Schedule: <name>" linking to the schedule that started the run. */
export function ScheduleLink({ run }: { run: Run }) {
  if (!run.scheduleId) return null;
  return (
    <Link to={`/schedules/${run.scheduleId}`} className="schedule-link">
      Schedule: {run.schedule_name || run.scheduleId}
    </Link>
  );
}

export function RunsTable({ runs, compact, hideSchedule }: { runs: Run[]; compact?: boolean; hideSchedule?: boolean }) {
  return (
    <div className="table-wrap">
      <table className="runs-table">
        <thead>
          <tr>
            <th scope="col">Run</th>
            <th scope="col">Status</th>
            {!compact && <th scope="col">Agent</th>}
            <th scope="col">Started</th>
            {!compact && <th scope="col">Duration</th>}
            {!compact && <th scope="col">By</th>}
          </tr>
        </thead>
        <tbody>
          {runs.map((r) => (
            <tr key={r.id} data-run-id={r.id}>
              <td>
                <Link to={`/runs/${r.id}`}>#{r.runNumber ?? r.id.slice(-6)}</Link>
                {!hideSchedule && r.scheduleId && (
                  <div className="small">
                    <ScheduleLink run={r} />
                  </div>
                )}
              </td>
              <td>
                <StatusBadge status={r.status} />
              </td>
              {!compact && <td className="mono small">{r.packageId ?? "inline"}</td>}
              <td>{fmtDate(r.started_at)}</td>
              {!compact && <td>{fmtDuration(r.duration)}</td>}
              {!compact && <td className="small">{r.user_name ?? r.api_key_name ?? r.end_user_name ?? (r.scheduleId ? "schedule" : "—")}</td>}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
