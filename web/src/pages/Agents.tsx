import { useState } from "react";
import { Link } from "react-router-dom";
import { useQuery } from "@tanstack/react-query";
import { api } from "../api/client";
import type { AgentListItem, ListOf } from "../api/types";
import { Empty, ErrorBox, Loading, PageHeader } from "../components/ui";
import { ImportPackage } from "../components/ImportPackage";
import { useScopeKey } from "../lib/workspace";

export function AgentsPage() {
  const key = useScopeKey();
  const [q, setQ] = useState("");
  const agents = useQuery({
    queryKey: ["agents", ...key],
    queryFn: () => api.get<ListOf<AgentListItem>>("/api/agents"),
  });
  const list = (agents.data?.data ?? []).filter((a) =>
    `${a.id} ${a.display_name ?? ""} ${a.description ?? ""} ${a.keywords.join(" ")}`.toLowerCase().includes(q.toLowerCase()),
  );
  return (
    <>
      <PageHeader title="Agents">Agents this application can run: your organization's and the system ones.</PageHeader>
      <ImportPackage />
      <div className="toolbar">
        <label className="sr-only" htmlFor="agent-search">
          Search agents
        </label>
        <input id="agent-search" type="search" placeholder="Search agents" value={q} onChange={(e) => setQ(e.target.value)} />
      </div>
      {agents.isLoading && <Loading />}
      <ErrorBox error={agents.error} />
      {agents.data && list.length === 0 && <Empty>{q ? "No agent matches your search." : "No agents yet. Import a package to add one."}</Empty>}
      <ul className="cards" aria-label="Agents">
        {list.map((a) => (
          <li key={a.id} className="card agent-card">
            <h2 className="h3">
              <Link to={`/agents/${a.id}`}>{a.display_name || a.id}</Link>
            </h2>
            <div className="muted small mono">
              {a.id} {a.version ? `· v${a.version}` : ""} · {a.source}
            </div>
            {a.description && <p>{a.description}</p>}
            <div className="tags">
              {Object.keys(a.dependencies.integrations).map((id) => (
                <span key={id} className="tag" title="Integration needed">
                  {id}
                </span>
              ))}
              {a.running_runs > 0 && <span className="badge badge-running">{a.running_runs} running</span>}
            </div>
          </li>
        ))}
      </ul>
    </>
  );
}
