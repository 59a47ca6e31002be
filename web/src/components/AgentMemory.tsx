import { Link } from "react-router-dom";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { agentPath, api } from "../api/client";
import type { AgentDetail, Persistence, PersistenceDeleted } from "../api/types";
import { fmtDate } from "../lib/format";
import { useScopeKey } from "../lib/workspace";
import { ConfirmButton, Empty, ErrorBox, Loading } from "./ui";

function RunRef({ runId }: { runId?: string | null }) {
  return runId ? (
    <Link to={`/runs/${runId}`} className="small">
      run …{runId.slice(-6)}
    </Link>
  ) : null;
}

/** What the agent remembers for the caller: pinned slots (`pin`) and memories (`note`). */
export function AgentMemory({ agent }: { agent: AgentDetail }) {
  const key = useScopeKey();
  const qc = useQueryClient();
  const base = `/api/agents/${agentPath(agent.id)}/persistence`;
  const qk = ["persistence", ...key, agent.id];
  // Runs change it behind our back: always refetch when the tab opens.
  const data = useQuery({ queryKey: qk, queryFn: () => api.get<Persistence>(base), staleTime: 0 });
  const refresh = () => qc.invalidateQueries({ queryKey: qk });
  const delPinned = useMutation({ mutationFn: (id: number) => api.del(`${base}/pinned/${id}`), onSuccess: refresh });
  const delMemory = useMutation({ mutationFn: (id: number) => api.del(`${base}/memories/${id}`), onSuccess: refresh });
  const forget = useMutation({ mutationFn: () => api.del<PersistenceDeleted>(base), onSuccess: refresh });

  if (data.isLoading) return <Loading />;
  if (data.error || !data.data) return <ErrorBox error={data.error} />;
  const { pinned, memories } = data.data;
  const empty = pinned.length === 0 && memories.length === 0;
  return (
    <div className="agent-memory">
      <div className="row-head">
        <p className="small muted">
          What this agent keeps between your runs: values it pinned (<code>pin</code>) and notes it wrote (<code>note</code>).
        </p>
        {!empty && (
          <ConfirmButton onConfirm={() => forget.mutate()} confirmLabel="Forget everything now">
            Forget everything
          </ConfirmButton>
        )}
      </div>
      <ErrorBox error={delPinned.error ?? delMemory.error ?? forget.error} />
      {forget.data && (
        <div className="alert alert-success" role="status">
          Forgotten: {forget.data.memories_deleted} memories, {forget.data.pinned_deleted} pinned values
          {forget.data.checkpoint_deleted ? " (checkpoint included)" : ""}.
        </div>
      )}
      <section aria-labelledby="pinned-title">
        <h3 id="pinned-title" className="h4">Pinned ({pinned.length})</h3>
        {pinned.length === 0 ? (
          <Empty>Nothing pinned.</Empty>
        ) : (
          <div className="table-wrap">
            <table aria-labelledby="pinned-title">
              <thead>
                <tr>
                  <th scope="col">Key</th>
                  <th scope="col">Value</th>
                  <th scope="col">Updated</th>
                  <th scope="col"><span className="sr-only">Actions</span></th>
                </tr>
              </thead>
              <tbody>
                {pinned.map((p) => (
                  <tr key={p.id} data-pinned-key={p.key}>
                    <th scope="row" className="mono">{p.key}</th>
                    <td><code className="json-inline">{JSON.stringify(p.content)}</code></td>
                    <td>
                      {fmtDate(p.updatedAt ?? p.createdAt)} <RunRef runId={p.runId} />
                    </td>
                    <td>
                      <ConfirmButton onConfirm={() => delPinned.mutate(p.id)} confirmLabel={`Delete ${p.key}`}>
                        Delete
                      </ConfirmButton>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
      <section aria-labelledby="memories-title">
        <h3 id="memories-title" className="h4">Memories ({memories.length})</h3>
        {memories.length === 0 ? (
          <Empty>No memories yet.</Empty>
        ) : (
          <ul className="list memories" aria-labelledby="memories-title">
            {memories.map((m) => (
              <li key={m.id} className="memory">
                <p>{m.content}</p>
                <div className="small muted">
                  {fmtDate(m.createdAt)} <RunRef runId={m.runId} />{" "}
                  <ConfirmButton onConfirm={() => delMemory.mutate(m.id)} confirmLabel="Delete memory">
                    Delete
                  </ConfirmButton>
                </div>
              </li>
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}
