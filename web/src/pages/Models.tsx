import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import type { CredentialView, ListOf, ModelView, RegistryProvider } from "../api/types";
import { ConfirmButton, Empty, ErrorBox, Field, Loading, PageHeader } from "../components/ui";
import { useScopeKey } from "../lib/workspace";

type TestResult = { ok: boolean; latency: number; message?: string | null; error?: string | null; status?: number | null };

export function ModelsPage() {
  const key = useScopeKey();
  const qc = useQueryClient();
  const models = useQuery({ queryKey: ["models", ...key], queryFn: () => api.get<ListOf<ModelView>>("/api/models") });
  const creds = useQuery({ queryKey: ["credentials", ...key], queryFn: () => api.get<ListOf<CredentialView>>("/api/model-provider-credentials") });
  const registry = useQuery({
    queryKey: ["registry", ...key],
    queryFn: () => api.get<ListOf<RegistryProvider>>("/api/model-provider-credentials/registry"),
    staleTime: Infinity,
  });
  const refresh = () => {
    void qc.invalidateQueries({ queryKey: ["models", ...key] });
    void qc.invalidateQueries({ queryKey: ["credentials", ...key] });
  };
  const [provider, setProvider] = useState("openai");
  const [apiKey, setApiKey] = useState("");
  const [baseUrl, setBaseUrl] = useState("");
  const [label, setLabel] = useState("");
  const addCred = useMutation({
    mutationFn: () => api.post<CredentialView>("/api/model-provider-credentials", { providerId: provider, apiKey, baseUrlOverride: baseUrl || null, label: label || null }),
    onSuccess: (c) => {
      setApiKey("");
      setBaseUrl("");
      setLabel("");
      setCredId(c.id);
      refresh();
    },
  });
  const delCred = useMutation({ mutationFn: (id: string) => api.del(`/api/model-provider-credentials/${encodeURIComponent(id)}`), onSuccess: refresh });
  const [credId, setCredId] = useState("");
  const [modelId, setModelId] = useState("");
  const addModel = useMutation({
    mutationFn: () => api.post("/api/models", { credentialId: credId, modelId }),
    onSuccess: () => {
      setModelId("");
      refresh();
    },
  });
  const setDefault = useMutation({ mutationFn: (id: string) => api.put("/api/models/default", { modelId: id }), onSuccess: refresh });
  const delModel = useMutation({ mutationFn: (id: string) => api.del(`/api/models/${encodeURIComponent(id)}`), onSuccess: refresh });
  const [tests, setTests] = useState<Record<string, TestResult | string>>({});
  const test = async (id: string) => {
    setTests((t) => ({ ...t, [id]: "Testing…" }));
    try {
      const r = await api.post<TestResult>(`/api/models/${encodeURIComponent(id)}/test`, {});
      setTests((t) => ({ ...t, [id]: r }));
    } catch (e) {
      setTests((t) => ({ ...t, [id]: (e as Error).message }));
    }
  };
  const cred = creds.data?.data.find((c) => c.id === credId);

  return (
    <>
      <PageHeader title="Models">The organization's models and provider keys. Keys are write-only: they are never shown back.</PageHeader>
      <ErrorBox error={models.error ?? creds.error ?? delCred.error ?? setDefault.error ?? delModel.error} />
      <h2 className="h3">Models</h2>
      {models.isLoading && <Loading />}
      {models.data && models.data.data.length === 0 && <Empty>No model yet: add a provider key, then a model.</Empty>}
      {models.data && models.data.data.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead><tr><th scope="col">Label</th><th scope="col">Provider</th><th scope="col">Model id</th><th scope="col">Source</th><th scope="col"><span className="sr-only">Actions</span></th></tr></thead>
            <tbody>
              {models.data.data.map((m) => {
                const t = tests[m.id];
                return (
                  <tr key={m.id}>
                    <td>{m.label} {m.is_default && <span className="tag">default</span>} {m.needs_reconnection && <span className="tag">needs key</span>}</td>
                    <td>{m.providerName ?? m.providerId ?? "—"}</td>
                    <td className="mono small">{m.modelId ?? "—"}</td>
                    <td>{m.source}</td>
                    <td className="actions">
                      {!m.is_default && <button type="button" className="btn btn-small" onClick={() => setDefault.mutate(m.id)}>Make default</button>}
                      <button type="button" className="btn btn-small" onClick={() => test(m.id)}>Test</button>
                      {m.source !== "system" && <ConfirmButton onConfirm={() => delModel.mutate(m.id)} confirmLabel={`Delete ${m.label}`}>Delete</ConfirmButton>}
                      {t && <span className="small" role="status">{typeof t === "string" ? t : t.ok ? `OK (${t.latency} ms)` : `Failed: ${t.error ?? t.message ?? t.status}`}</span>}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      <div className="two-col">
        <form className="card" onSubmit={(e: FormEvent) => (e.preventDefault(), addCred.mutate())} aria-labelledby="cred-title">
          <h2 id="cred-title" className="h3">Add a provider key</h2>
          <ErrorBox error={addCred.error} />
          <Field label="Provider" htmlFor="cred-provider">
            <select id="cred-provider" value={provider} onChange={(e) => setProvider(e.target.value)}>
              {registry.data?.data.map((p) => <option key={p.providerId} value={p.providerId}>{p.displayName ?? p.providerId}</option>)}
            </select>
          </Field>
          <Field label="API key" htmlFor="cred-key">
            <input id="cred-key" type="password" autoComplete="off" required value={apiKey} onChange={(e) => setApiKey(e.target.value)} />
          </Field>
          <Field label="Base URL (optional)" htmlFor="cred-base">
            <input id="cred-base" type="url" value={baseUrl} onChange={(e) => setBaseUrl(e.target.value)} placeholder="https://api.example.com/v1" />
          </Field>
          <Field label="Label (optional)" htmlFor="cred-label">
            <input id="cred-label" value={label} onChange={(e) => setLabel(e.target.value)} />
          </Field>
          <button type="submit" className="btn btn-primary" disabled={addCred.isPending}>Save key</button>
        </form>
        <form className="card" onSubmit={(e: FormEvent) => (e.preventDefault(), addModel.mutate())} aria-labelledby="model-title">
          <h2 id="model-title" className="h3">Add a model</h2>
          <ErrorBox error={addModel.error} />
          <Field label="Provider key" htmlFor="model-cred">
            <select id="model-cred" required value={credId} onChange={(e) => setCredId(e.target.value)}>
              <option value="">Choose…</option>
              {creds.data?.data.map((c) => <option key={c.id} value={c.id}>{c.label} ({c.providerId})</option>)}
            </select>
          </Field>
          <Field label="Model id" htmlFor="model-id">
            <input id="model-id" required list="model-ids" value={modelId} onChange={(e) => setModelId(e.target.value)} />
          </Field>
          <datalist id="model-ids">{cred?.available_model_ids?.map((m) => <option key={m} value={m} />)}</datalist>
          <button type="submit" className="btn btn-primary" disabled={addModel.isPending}>Add model</button>
        </form>
      </div>
      <h2 className="h3">Provider keys</h2>
      {creds.data && creds.data.data.length === 0 && <Empty>No provider key yet.</Empty>}
      <ul className="list" aria-label="Provider keys">
        {creds.data?.data.map((c) => (
          <li key={c.id} className="card row-head">
            <div>
              <strong>{c.label}</strong> <span className="muted small">{c.providerId} · {c.baseUrl ?? "default URL"} · key ••••••••</span>
              {c.needs_reconnection && <span className="tag">needs a new key</span>}
            </div>
            {c.source !== "system" && <ConfirmButton onConfirm={() => delCred.mutate(c.id)} confirmLabel={`Delete ${c.label}`}>Delete</ConfirmButton>}
          </li>
        ))}
      </ul>
    </>
  );
}
