import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { agentPath, api } from "../api/client";
import type { AgentDetail, VersionList } from "../api/types";
import { fmtDate } from "../lib/format";
import { useScopeKey } from "../lib/workspace";
import { ConfirmButton, Empty, ErrorBox, Loading } from "./ui";

/** Published versions; for the organization's own agents: restore as draft, yank. */
export function VersionsTable({ agent }: { agent: AgentDetail }) {
  const key = useScopeKey();
  const qc = useQueryClient();
  const base = `/api/packages/agents/${agentPath(agent.id)}/versions`;
  const versions = useQuery({ queryKey: ["versions", ...key, agent.id], queryFn: () => api.get<VersionList>(base) });
  const refresh = () => {
    void qc.invalidateQueries({ queryKey: ["versions", ...key, agent.id] });
    void qc.invalidateQueries({ queryKey: ["agent", ...key, agent.id] });
  };
  const restore = useMutation({ mutationFn: (v: string) => api.post(`${base}/${encodeURIComponent(v)}/restore`, {}), onSuccess: refresh });
  const yank = useMutation({ mutationFn: (v: string) => api.del(`${base}/${encodeURIComponent(v)}`), onSuccess: refresh });
  const own = agent.source !== "system";

  if (versions.isLoading) return <Loading />;
  return (
    <>
      <ErrorBox error={versions.error ?? restore.error ?? yank.error} />
      {restore.isSuccess && (
        <p role="status" className="small">
          Restored {restore.variables} as the draft.
        </p>
      )}
      {!versions.data?.versions.length ? (
        <Empty>No published version.</Empty>
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Version</th>
                <th scope="col">Published</th>
                <th scope="col">Size</th>
                <th scope="col">Integrity</th>
                {own && <th scope="col"><span className="sr-only">Actions</span></th>}
              </tr>
            </thead>
            <tbody>
              {versions.data.versions.map((v) => (
                <tr key={v.id}>
                  <td>
                    {v.version}
                    {v.yanked ? " (yanked)" : ""}
                  </td>
                  <td>{fmtDate(v.createdAt)}</td>
                  <td>{v.artifact_size} B</td>
                  <td className="mono small truncate">{v.integrity}</td>
                  {own && (
                    <td className="actions">
                      <button type="button" className="btn btn-small" onClick={() => restore.mutate(v.version)}>
                        Restore as draft
                      </button>
                      {!v.yanked && (
                        <ConfirmButton onConfirm={() => yank.mutate(v.version)} confirmLabel={`Yank ${v.version}`}>
                          Yank
                        </ConfirmButton>
                      )}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
