import { useState, type FormEvent } from "react";
import { fmtDate } from "../lib/format";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import type { ConnectionView, ListOf } from "../api/types";
import type { components } from "../api/schema";
import { ConfirmButton, ErrorBox, Loading } from "./ui";
import { SchemaForm } from "./SchemaForm";
import { initialValues, toInput, type JsonSchema } from "../lib/schema";
import { useScopeKey } from "../lib/workspace";
import { OAuthClients } from "./OAuthClients";

type Detail = components["schemas"]["IntegrationDetail"];
type Auth = components["schemas"]["AuthView"];

function FieldsConnect({ pkg, auth, onDone }: { pkg: string; auth: Auth; onDone: () => void }) {
  const schema = ((auth.credentials_schema as { schema?: JsonSchema } | null)?.schema ?? auth.credentials_schema ?? {}) as JsonSchema;
  const spec = { schema, secretPattern: /key|secret|password|token/i };
  const [values, setValues] = useState<Record<string, unknown>>(() => initialValues(spec));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [label, setLabel] = useState("");
  const connect = useMutation({
    mutationFn: (credentials: Record<string, unknown>) =>
      api.post(`/api/integrations/${encodeURIComponent(pkg)}/auths/${encodeURIComponent(auth.auth_key)}/connect/fields`, { credentials, label: label || null }),
    onSuccess: () => {
      setValues(initialValues(spec));
      onDone();
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const { input, errors } = toInput(spec, values);
    setErrors(errors);
    if (!Object.keys(errors).length) connect.mutate(input);
  };
  return (
    <form onSubmit={submit} noValidate aria-label={`Connect with ${auth.auth_key}`}>
      <ErrorBox error={connect.error} />
      <SchemaForm spec={spec} values={values} errors={errors} onChange={(k, v) => setValues((o) => ({ ...o, [k]: v }))} />
      <div className="field">
        <label htmlFor={`label-${pkg}-${auth.auth_key}`}>Connection label (optional)</label>
        <input id={`label-${pkg}-${auth.auth_key}`} value={label} onChange={(e) => setLabel(e.target.value)} />
      </div>
      <button type="submit" className="btn btn-primary btn-small" disabled={connect.isPending}>Save connection</button>
    </form>
  );
}

export function IntegrationPanel({ id }: { id: string }) {
  const key = useScopeKey();
  const qc = useQueryClient();
  const base = `/api/integrations/${encodeURIComponent(id)}`;
  const detail = useQuery({ queryKey: ["integration", ...key, id], queryFn: () => api.get<Detail>(base) });
  const conns = useQuery({ queryKey: ["connections", ...key, id], queryFn: () => api.get<ListOf<ConnectionView>>(`${base}/connections`) });
  const refresh = () => {
    void qc.invalidateQueries({ queryKey: ["connections", ...key, id] });
    void qc.invalidateQueries({ queryKey: ["integration", ...key, id] });
    void qc.invalidateQueries({ queryKey: ["readiness"] });
  };
  const oauth = useMutation({
    mutationFn: (authKey: string) => api.post<{ auth_url: string }>(`${base}/auths/${encodeURIComponent(authKey)}/connect/oauth2`, {}),
    onSuccess: (r) => window.location.assign(r.auth_url),
  });
  const remove = useMutation({ mutationFn: (cid: string) => api.del(`/api/me/connections/${encodeURIComponent(cid)}`), onSuccess: refresh });

  if (detail.isLoading) return <Loading />;
  return (
    <div className="integration-panel">
      <ErrorBox error={detail.error ?? conns.error ?? oauth.error ?? remove.error} />
      <h3 className="h4">Connections</h3>
      {conns.data && conns.data.data.length === 0 && <p className="muted small">No connection yet.</p>}
      {conns.data && conns.data.data.length > 0 && (
        <ul>
          {conns.data.data.map((c) => (
            <li key={c.id} className="row-head">
              <span>
                {c.label ?? c.account_id} <span className="muted small">({c.auth_key}, {c.owner_name ?? c.owner_type}, {fmtDate(c.createdAt)})</span>
                {c.needs_reconnection && <span className="tag">needs reconnection</span>}
              </span>
              <ConfirmButton onConfirm={() => remove.mutate(c.id)} confirmLabel="Disconnect">Disconnect</ConfirmButton>
            </li>
          ))}
        </ul>
      )}
      {detail.data?.auths.map((a) => (
        <div key={a.auth_key} className="auth-block">
          <h3 className="h4">
            Connect with {a.auth_key} <span className="muted small">({a.type})</span>
          </h3>
          {a.type === "oauth2" ? (
            <button type="button" className="btn btn-small" onClick={() => oauth.mutate(a.auth_key)} disabled={!a.has_oauth_client && !a.has_system_client}>
              Connect with OAuth
            </button>
          ) : (
            <FieldsConnect pkg={id} auth={a} onDone={refresh} />
          )}
          {a.type === "oauth2" && !a.has_oauth_client && !a.has_system_client && (
            <p className="small muted">Add an OAuth client first (admins).</p>
          )}
          {a.type === "oauth2" && detail.data && (
            <OAuthClients pkg={id} authKey={a.auth_key} redirectUri={detail.data.platform_redirect_uri} onChange={refresh} />
          )}
        </div>
      ))}
    </div>
  );
}
