import { useState } from "react";
import { useNavigate } from "react-router-dom";
import { useQuery } from "@tanstack/react-query";
import { agentPath, api } from "../api/client";
import type { AgentDetail, ListOf, Schedule } from "../api/types";
import { useScopeKey } from "../lib/workspace";
import { useRefetchAfterFire } from "../lib/realtime";
import { ScheduleForm } from "./ScheduleForm";
import { SchedulesTable } from "./SchedulesTable";
import { Empty, ErrorBox, Loading } from "./ui";

/** The agent's schedules in this application, and the form to add one. */
export function AgentSchedules({ agent }: { agent: AgentDetail }) {
  const key = useScopeKey();
  const navigate = useNavigate();
  const [adding, setAdding] = useState(false);
  const schedules = useQuery({
    queryKey: ["schedules", ...key, "agent", agent.id],
    queryFn: () => api.get<ListOf<Schedule>>(`/api/agents/${agentPath(agent.id)}/schedules`),
  });
  useRefetchAfterFire(schedules.data?.data, () => void schedules.refetch());
  return (
    <div className="agent-schedules">
      <div className="row-head">
        <p className="small muted">Run this agent on a cron schedule, with a saved input.</p>
        {!adding && (
          <button type="button" className="btn btn-primary" onClick={() => setAdding(true)}>
            New schedule
          </button>
        )}
      </div>
      {adding && (
        <ScheduleForm agent={agent} onDone={(s) => navigate(`/schedules/${s.id}`)} onCancel={() => setAdding(false)} />
      )}
      {schedules.isLoading && <Loading />}
      <ErrorBox error={schedules.error} />
      {schedules.data && schedules.data.data.length === 0 && !adding && <Empty>This agent has no schedule yet.</Empty>}
      {schedules.data && schedules.data.data.length > 0 && <SchedulesTable schedules={schedules.data.data} showAgent={false} />}
    </div>
  );
}
