import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import type { components } from "../api/schema";
import type { ListOf } from "../api/types";
import { useScopeKey } from "../lib/workspace";
import { ConfirmButton, CopyButton, ErrorBox } from "./ui";

type Client = components["schemas"]["ClientListItem"];

/** The OAuth clients of one OAuth2 auth of an integration (admins), and the redirect URI to register. */
export function OAuthClients({ pkg, authKey, redirectUri, onChange }: { pkg: string; authKey: string; redirectUri: string; onChange: () => void }) {
  const key = useScopeKey();
  const qc = useQueryClient();
  const base = `/api/integrations/${encodeURIComponent(pkg)}`;
  const clients = useQuery({
    queryKey: ["oauthClients", ...key, pkg, authKey],
    queryFn: () => api.get<ListOf<Client>>(`${base}/auths/${encodeURIComponent(authKey)}/clients`),
  });
  const refresh = () => {
    void qc.invalidateQueries({ queryKey: ["oauthClients", ...key, pkg, authKey] });
    onChange();
  };
  const [clientId, setClientId] = useState("");
  const [secret, setSecret] = useState("");
  const add = useMutation({
    mutationFn: () => api.post(`${base}/auths/${encodeURIComponent(authKey)}/oauth-clients`, { client_id: clientId, client_secret: secret || null }),
    onSuccess: () => {
      setClientId("");
      setSecret("");
      refresh();
    },
  });
  const makeDefault = useMutation({
    mutationFn: (ref: string) => api.put(`${base}/auths/${encodeURIComponent(authKey)}/default-client`, { client_ref: ref }),
    onSuccess: refresh,
  });
  const remove = useMutation({ mutationFn: (ref: string) => api.del(`${base}/oauth-clients/${encodeURIComponent(ref)}`), onSuccess: refresh });
  const id = `${pkg}-${authKey}`.replace(/[^a-z0-9-]/gi, "_");
  const submit = (e: FormEvent) => {
    e.preventDefault();
    add.mutate();
  };

  return (
    <details className="oauth-clients">
      <summary>OAuth clients</summary>
      <p className="small">
        Redirect URI to register with the provider: <code>{redirectUri}</code> <CopyButton text={redirectUri} label="Copy URI" />
      </p>
      <ErrorBox error={clients.error ?? add.error ?? makeDefault.error ?? remove.error} />
      {clients.data && clients.data.data.length > 0 && (
        <ul>
          {clients.data.data.map((c) => (
            <li key={c.client_ref} className="row-head">
              <span>
                <span className="mono">{c.client_id}</span> <span className="muted small">({c.source}{c.has_client_secret ? ", with secret" : ""})</span>{" "}
                {c.is_default && <span className="tag">default</span>}
              </span>
              <span className="actions">
                {!c.is_default && (
                  <button type="button" className="btn btn-small" onClick={() => makeDefault.mutate(c.client_ref)}>
                    Make default
                  </button>
                )}
                {c.source !== "system" && (
                  <ConfirmButton onConfirm={() => remove.mutate(c.client_ref)} confirmLabel={`Delete client ${c.client_id}`}>
                    Delete
                  </ConfirmButton>
                )}
              </span>
            </li>
          ))}
        </ul>
      )}
      <form className="inline-form" onSubmit={submit} aria-label={`New OAuth client for ${authKey}`}>
        <div className="field">
          <label htmlFor={`${id}-cid`}>Client id</label>
          <input id={`${id}-cid`} required value={clientId} onChange={(e) => setClientId(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor={`${id}-secret`}>Client secret</label>
          <input id={`${id}-secret`} type="password" autoComplete="off" value={secret} onChange={(e) => setSecret(e.target.value)} />
        </div>
        <button type="submit" className="btn btn-small" disabled={add.isPending}>
          Add client
        </button>
      </form>
    </details>
  );
}
