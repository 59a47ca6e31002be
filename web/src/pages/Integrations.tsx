import { useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { api } from "../api/client";
import type { IntegrationSummary, ListOf } from "../api/types";
import { Empty, ErrorBox, Loading, PageHeader } from "../components/ui";
import { IntegrationPanel } from "../components/IntegrationPanel";
import { useScopeKey } from "../lib/workspace";

type Manifest = { display_name?: string; description?: string };

export function IntegrationsPage() {
  const key = useScopeKey();
  const list = useQuery({ queryKey: ["integrations", ...key], queryFn: () => api.get<ListOf<IntegrationSummary>>("/api/integrations") });
  const [open, setOpen] = useState<string | null>(null);
  return (
    <>
      <PageHeader title="Integrations">Connect the services your agents use. Credentials are stored encrypted and never shown back.</PageHeader>
      {list.isLoading && <Loading />}
      <ErrorBox error={list.error} />
      {list.data && list.data.data.length === 0 && <Empty>No integration available.</Empty>}
      <ul className="list" aria-label="Integrations">
        {list.data?.data.map((i) => {
          const m = (i.manifest ?? {}) as Manifest;
          const expanded = open === i.id;
          return (
            <li key={i.id} className="card">
              <div className="row-head">
                <div>
                  <strong>{m.display_name ?? i.id}</strong> <span className="mono small muted">{i.id}</span>
                  {m.description && <div className="small muted">{m.description}</div>}
                </div>
                <button type="button" className="btn btn-small" aria-expanded={expanded} onClick={() => setOpen(expanded ? null : i.id)}>
                  {expanded ? "Close" : "Connections"}
                </button>
              </div>
              {expanded && <IntegrationPanel id={i.id} />}
            </li>
          );
        })}
      </ul>
    </>
  );
}
