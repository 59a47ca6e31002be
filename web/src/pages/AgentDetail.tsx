import { Link, useNavigate, useParams } from "react-router-dom";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { agentPath, api } from "../api/client";
import type { AgentDetail, Readiness, RunList } from "../api/types";
import { ConfirmButton, Empty, ErrorBox, Json, Loading, PageHeader } from "../components/ui";
import { RunForm } from "../components/RunForm";
import { AgentSettings } from "../components/AgentSettings";
import { VersionsTable } from "../components/VersionsTable";
import { Tabs } from "../components/Tabs";
import { RunsTable } from "../components/RunsTable";
import { AgentSchedules } from "../components/AgentSchedules";
import { AgentMemory } from "../components/AgentMemory";
import { useRunsRealtime } from "../lib/realtime";
import { useScopeKey } from "../lib/workspace";

export function AgentDetailPage() {
  const { scope, name } = useParams();
  const id = `${scope}/${name}`;
  const key = useScopeKey();
  const agent = useQuery({
    queryKey: ["agent", ...key, id],
    queryFn: () => api.get<AgentDetail>(`/api/packages/agents/${agentPath(id)}`),
  });
  const readiness = useQuery({
    queryKey: ["readiness", ...key, id],
    queryFn: () => api.get<Readiness>(`/api/agents/${agentPath(id)}/connection-readiness`),
  });
  const runs = useQuery({
    queryKey: ["runs", ...key, "agent", id],
    queryFn: () => api.get<RunList>(`/api/agents/${agentPath(id)}/runs`, { query: { limit: 10 } }),
  });
  useRunsRealtime(id);
  const qc = useQueryClient();
  const navigate = useNavigate();
  const remove = useMutation({
    mutationFn: () => api.del(`/api/packages/agents/${agentPath(id)}`),
    onSuccess: async () => {
      await qc.invalidateQueries({ queryKey: ["agents"] });
      navigate("/agents");
    },
  });

  if (agent.isLoading) return <Loading />;
  if (agent.error || !agent.data) return <ErrorBox error={agent.error ?? new Error("Agent not found")} />;
  const a = agent.data;
  const blocked = !!readiness.data?.blocks_run;
  const deps = a.dependencies;

  return (
    <>
      <nav aria-label="Breadcrumb" className="crumbs">
        <Link to="/agents">Agents</Link> / <span>{a.id}</span>
      </nav>
      <PageHeader
        title={a.display_name || a.id}
        actions={
          a.source !== "system" && (
            <ConfirmButton onConfirm={() => remove.mutate()} confirmLabel={`Delete ${a.id}`}>
              Delete agent
            </ConfirmButton>
          )
        }
      >
        {a.description}
      </PageHeader>
      <ErrorBox error={remove.error} />
      <dl className="meta">
        <div><dt>Id</dt><dd className="mono">{a.id}</dd></div>
        <div><dt>Version</dt><dd>{a.version ?? "draft"}</dd></div>
        <div><dt>Source</dt><dd>{a.source}</dd></div>
        <div><dt>Timeout</dt><dd>{a.effective_timeout_seconds} s</dd></div>
        <div><dt>Running</dt><dd>{a.running_runs}</dd></div>
      </dl>

      <section className="card" aria-labelledby="ready-title">
        <h2 id="ready-title" className="h3">Readiness</h2>
        {readiness.isLoading && <Loading />}
        <ErrorBox error={readiness.error} />
        {readiness.data && (
          <>
            <p>
              {blocked ? (
                <span className="badge badge-failed">Not ready to run</span>
              ) : (
                <span className="badge badge-success">Ready to run</span>
              )}
            </p>
            {readiness.data.integrations.length === 0 ? (
              <p className="muted small">This agent needs no integration.</p>
            ) : (
              <ul>
                {readiness.data.integrations.map((i) => (
                  <li key={i.integration_id}>
                    <span className="mono">{i.integration_id}</span>:{" "}
                    {i.run_blocking ? <strong>needs a connection</strong> : "connected"}{" "}
                    <Link to="/integrations">Manage</Link>
                  </li>
                ))}
              </ul>
            )}
            {readiness.data.errors.map((e, i) => (
              <p key={i} className="field-error">{e.message}</p>
            ))}
          </>
        )}
      </section>

      <div className="two-col">
        <RunForm key={JSON.stringify([a.input.values, a.input.locked_fields])} agent={a} blocked={blocked} />
        <section className="card" aria-labelledby="recent-title">
          <h2 id="recent-title" className="h3">Recent runs</h2>
          {runs.isLoading && <Loading />}
          <ErrorBox error={runs.error} />
          {runs.data && runs.data.data.length === 0 && <Empty>No runs yet.</Empty>}
          {runs.data && runs.data.data.length > 0 && <RunsTable runs={runs.data.data} compact />}
        </section>
      </div>

      <Tabs
        label="Agent details"
        tabs={[
          {
            id: "prompt",
            label: "Prompt",
            content: a.prompt ? <pre className="prompt">{a.prompt}</pre> : <Empty>No prompt.</Empty>,
          },
          { id: "manifest", label: "Manifest", content: <Json value={a.manifest} label="Manifest" /> },
          {
            id: "versions",
            label: `Versions (${a.version_count})`,
            content: <VersionsTable agent={a} />,
          },
          { id: "settings", label: "Settings", content: <AgentSettings agent={a} /> },
          { id: "schedules", label: "Schedules", content: <AgentSchedules agent={a} /> },
          { id: "memory", label: "Memory", content: <AgentMemory agent={a} /> },
          {
            id: "deps",
            label: "Skills & integrations",
            content: (
              <div className="deps">
                {(["skills", "integrations", "mcp_servers"] as const).map((k) => (
                  <div key={k}>
                    <h3 className="h4">{k === "mcp_servers" ? "MCP servers" : k[0].toUpperCase() + k.slice(1)}</h3>
                    {deps[k].length === 0 ? (
                      <p className="muted small">None.</p>
                    ) : (
                      <ul>
                        {deps[k].map((d) => (
                          <li key={d.id}><span className="mono">{d.id}</span> <span className="muted">{d.version}</span></li>
                        ))}
                      </ul>
                    )}
                  </div>
                ))}
              </div>
            ),
          },
        ]}
      />
    </>
  );
}
