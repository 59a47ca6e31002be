import { useState } from "react";
import { fmtDate } from "../lib/format";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link } from "react-router-dom";
import { api } from "../api/client";
import type { Delivery, ListOf, Webhook } from "../api/types";
import type { WebhookWithSecret } from "../pages/Webhooks";
import { ConfirmButton, Empty, ErrorBox, Loading, StatusBadge } from "./ui";
import { useScopeKey } from "../lib/workspace";

type TestResult = { deliveryId: string; success: boolean; statusCode?: number | null; latencyMs: number; error?: string | null };

export function WebhookRow({ hook, onSecret }: { hook: Webhook; onSecret: (s: string) => void }) {
  const key = useScopeKey();
  const qc = useQueryClient();
  const [open, setOpen] = useState(false);
  const base = `/api/webhooks/${encodeURIComponent(hook.id)}`;
  const deliveries = useQuery({
    queryKey: ["deliveries", ...key, hook.id],
    queryFn: () => api.get<ListOf<Delivery>>(`${base}/deliveries`, { query: { limit: 20 } }),
    enabled: open,
  });
  const refresh = () => {
    void qc.invalidateQueries({ queryKey: ["webhooks", ...key] });
    void qc.invalidateQueries({ queryKey: ["deliveries", ...key, hook.id] });
  };
  const test = useMutation({ mutationFn: () => api.post<TestResult>(`${base}/test`, {}), onSettled: refresh });
  const toggle = useMutation({ mutationFn: () => api.patch(base, { enabled: !hook.enabled }), onSuccess: refresh });
  const rotate = useMutation({
    mutationFn: () => api.post<WebhookWithSecret>(`${base}/rotate`, {}),
    onSuccess: (w) => {
      onSecret(w.secret);
      refresh();
    },
  });
  const remove = useMutation({ mutationFn: () => api.del(base), onSuccess: refresh });
  const panelId = `hook-${hook.id}`;

  return (
    <li className="card">
      <div className="row-head">
        <div>
          <div className="mono">{hook.url}</div>
          <div className="small muted">
            {hook.events.join(", ")} · {hook.payloadMode} {hook.description ? `· ${hook.description}` : ""}
          </div>
          {hook.disabledReason && <div className="small field-error">Disabled: {hook.disabledReason}</div>}
        </div>
        <div className="actions">
          <span className={hook.enabled ? "badge badge-success" : "badge"}>{hook.enabled ? "enabled" : "disabled"}</span>
          <button type="button" className="btn btn-small" onClick={() => test.mutate()} disabled={test.isPending}>
            Send test
          </button>
          <button type="button" className="btn btn-small" aria-expanded={open} aria-controls={panelId} onClick={() => setOpen((o) => !o)}>
            Deliveries
          </button>
          <button type="button" className="btn btn-small" onClick={() => toggle.mutate()}>
            {hook.enabled ? "Disable" : "Enable"}
          </button>
          <button type="button" className="btn btn-small" onClick={() => rotate.mutate()}>
            Rotate secret
          </button>
          <ConfirmButton onConfirm={() => remove.mutate()} confirmLabel="Delete webhook">
            Delete
          </ConfirmButton>
        </div>
      </div>
      <ErrorBox error={test.error ?? toggle.error ?? rotate.error ?? remove.error} />
      {test.data && (
        <div className={test.data.success ? "alert alert-success" : "alert alert-error"} role="status">
          Test delivery {test.data.success ? "succeeded" : "failed"}
          {test.data.statusCode ? ` (HTTP ${test.data.statusCode})` : ""} in {test.data.latencyMs} ms
          {test.data.error ? `: ${test.data.error}` : ""}
        </div>
      )}
      {open && (
        <div id={panelId}>
          {deliveries.isLoading && <Loading />}
          <ErrorBox error={deliveries.error} />
          {deliveries.data && deliveries.data.data.length === 0 && <Empty>No deliveries yet.</Empty>}
          {deliveries.data && deliveries.data.data.length > 0 && (
            <div className="table-wrap">
              <table>
                <thead>
                  <tr>
                    <th scope="col">Event</th>
                    <th scope="col">Status</th>
                    <th scope="col">HTTP</th>
                    <th scope="col">Attempts</th>
                    <th scope="col">When</th>
                    <th scope="col">Run</th>
                  </tr>
                </thead>
                <tbody>
                  {deliveries.data.data.map((d) => (
                    <tr key={d.id}>
                      <td className="mono small">{d.eventType}</td>
                      <td><StatusBadge status={d.status} /></td>
                      <td>{d.lastStatusCode ?? "—"}{d.lastError ? <span className="small muted"> {d.lastError}</span> : null}</td>
                      <td>{d.attempts}</td>
                      <td>{fmtDate(d.createdAt)}</td>
                      <td>{d.runId ? <Link to={`/runs/${d.runId}`}>open</Link> : "—"}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </div>
      )}
    </li>
  );
}
