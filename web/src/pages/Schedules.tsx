import { Link } from "react-router-dom";
import { useQuery } from "@tanstack/react-query";
import { api } from "../api/client";
import type { ListOf, Schedule } from "../api/types";
import { Empty, ErrorBox, Loading, PageHeader } from "../components/ui";
import { SchedulesTable } from "../components/SchedulesTable";
import { useRefetchAfterFire, useRunsRealtime, useSchedulesRefresh } from "../lib/realtime";
import { useScopeKey } from "../lib/workspace";

export function SchedulesPage() {
  const key = useScopeKey();
  const schedules = useQuery({
    queryKey: ["schedules", ...key, "all"],
    queryFn: () => api.get<ListOf<Schedule>>("/api/schedules"),
  });
  useRunsRealtime(undefined, useSchedulesRefresh());
  useRefetchAfterFire(schedules.data?.data, () => void schedules.refetch());
  const list = schedules.data?.data ?? [];
  const failing = list.filter((s) => s.last_error);
  return (
    <>
      <PageHeader title="Schedules">Agents run on a cron schedule in this application. Create one from an agent&apos;s Schedules tab.</PageHeader>
      {failing.length > 0 && (
        <div className="alert alert-warning" role="alert">
          <strong>
            {failing.length === 1 ? "1 schedule" : `${failing.length} schedules`} could not start a run on the last fire.
          </strong>
          <ul>
            {failing.map((s) => (
              <li key={s.id}>
                <Link to={`/schedules/${s.id}`}>{s.name || s.id}</Link>: {s.last_error?.message}
              </li>
            ))}
          </ul>
        </div>
      )}
      {schedules.isLoading && <Loading />}
      <ErrorBox error={schedules.error} />
      {schedules.data && list.length === 0 && (
        <Empty>
          No schedules yet. Open an <Link to="/agents">agent</Link> and use its Schedules tab.
        </Empty>
      )}
      {list.length > 0 && <SchedulesTable schedules={list} />}
    </>
  );
}
