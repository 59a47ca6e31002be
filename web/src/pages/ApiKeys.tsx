import { useState, type FormEvent } from "react";
import { fmtDate } from "../lib/format";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import type { ApiKeyInfo, CreatedKey, ListOf } from "../api/types";
import { ConfirmButton, Empty, ErrorBox, Field, Loading, PageHeader, SecretOnce } from "../components/ui";
import { useScopeKey } from "../lib/workspace";

export function ApiKeysPage() {
  const key = useScopeKey();
  const qc = useQueryClient();
  const keys = useQuery({ queryKey: ["apiKeys", ...key], queryFn: () => api.get<ListOf<ApiKeyInfo>>("/api/api-keys") });
  const scopes = useQuery({
    queryKey: ["apiKeyScopes", ...key],
    queryFn: () => api.get<{ data: string[] }>("/api/api-keys/available-scopes"),
    staleTime: Infinity,
  });
  const [name, setName] = useState("");
  const [chosen, setChosen] = useState<string[]>([]);
  const [expires, setExpires] = useState("");
  const [created, setCreated] = useState<CreatedKey | null>(null);
  const create = useMutation({
    mutationFn: () =>
      api.post<CreatedKey>("/api/api-keys", {
        name,
        scopes: chosen.length ? chosen : null,
        expiresAt: expires ? new Date(`${expires}T23:59:59`).toISOString() : null,
      }),
    onSuccess: (k) => {
      setCreated(k);
      setName("");
      setChosen([]);
      setExpires("");
      void qc.invalidateQueries({ queryKey: ["apiKeys", ...key] });
    },
  });
  const revoke = useMutation({
    mutationFn: (id: string) => api.del(`/api/api-keys/${encodeURIComponent(id)}`),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["apiKeys", ...key] }),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  const active = (keys.data?.data ?? []).filter((k) => !k.revokedAt);

  return (
    <>
      <PageHeader title="API keys">Keys for this application's API. A key is shown once, when it is created.</PageHeader>
      {created && <SecretOnce label={`API key “${created.name}”`} value={created.key} onDone={() => setCreated(null)} />}
      <form className="card" onSubmit={submit} aria-labelledby="new-key-title">
        <h2 id="new-key-title" className="h3">New API key</h2>
        <ErrorBox error={create.error} />
        <div className="row">
          <Field label="Name" htmlFor="key-name">
            <input id="key-name" required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
          </Field>
          <Field label="Expires (optional)" htmlFor="key-exp">
            <input id="key-exp" type="date" value={expires} onChange={(e) => setExpires(e.target.value)} />
          </Field>
        </div>
        <fieldset className="scopes">
          <legend>Scopes (none selected: all scopes your role allows)</legend>
          {scopes.data?.data.map((s) => (
            <label key={s} className="check">
              <input
                type="checkbox"
                checked={chosen.includes(s)}
                onChange={(e) => setChosen((c) => (e.target.checked ? [...c, s] : c.filter((x) => x !== s)))}
              />
              <span className="mono small">{s}</span>
            </label>
          ))}
        </fieldset>
        <button type="submit" className="btn btn-primary" disabled={create.isPending}>
          Create key
        </button>
      </form>
      <ErrorBox error={keys.error ?? revoke.error} />
      {keys.isLoading && <Loading />}
      {keys.data && active.length === 0 && <Empty>No API keys yet.</Empty>}
      {active.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Prefix</th>
                <th scope="col">Scopes</th>
                <th scope="col">Created</th>
                <th scope="col">Last used</th>
                <th scope="col">Expires</th>
                <th scope="col"><span className="sr-only">Actions</span></th>
              </tr>
            </thead>
            <tbody>
              {active.map((k) => (
                <tr key={k.id}>
                  <td>{k.name}</td>
                  <td className="mono">{k.keyPrefix}…</td>
                  <td className="small">{k.scopes.length > 4 ? `${k.scopes.length} scopes` : k.scopes.join(", ")}</td>
                  <td>{fmtDate(k.createdAt)}</td>
                  <td>{fmtDate(k.lastUsedAt)}</td>
                  <td>{fmtDate(k.expiresAt)}</td>
                  <td>
                    <ConfirmButton onConfirm={() => revoke.mutate(k.id)} confirmLabel={`Revoke ${k.name}`}>
                      Revoke
                    </ConfirmButton>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
