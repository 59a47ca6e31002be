import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { agentPath, api } from "../api/client";
import type { components } from "../api/schema";
import type { AgentDetail, ListOf, ModelView } from "../api/types";
import { ErrorBox, Loading } from "./ui";
import { SchemaForm } from "./SchemaForm";
import { orderedKeys, specOf, toInput } from "../lib/schema";
import { useScopeKey } from "../lib/workspace";

type AgentModel = components["schemas"]["AgentModel"];

/** The application's settings for one agent: its model, saved input values, locked fields. */
export function AgentSettings({ agent }: { agent: AgentDetail }) {
  const key = useScopeKey();
  const qc = useQueryClient();
  const base = `/api/agents/${agentPath(agent.id)}`;
  const models = useQuery({ queryKey: ["models", ...key], queryFn: () => api.get<ListOf<ModelView>>("/api/models") });
  const current = useQuery({ queryKey: ["agentModel", ...key, agent.id], queryFn: () => api.get<AgentModel>(`${base}/model`) });
  const [modelId, setModelId] = useState<string | null>(null);
  const saveModel = useMutation({
    mutationFn: () => api.put<AgentModel>(`${base}/model`, { modelId: modelId || null }),
    onSuccess: (m) => qc.setQueryData(["agentModel", ...key, agent.id], m),
  });

  // Saved values are optional defaults: nothing is required here.
  const full = specOf(agent);
  const spec = { ...full, schema: { ...full.schema, required: [] }, locked: [] };
  const [values, setValues] = useState<Record<string, unknown>>(() => ({ ...(agent.input.values as Record<string, unknown>) }));
  const [locked, setLocked] = useState<string[]>(agent.input.locked_fields);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const saveInput = useMutation({
    mutationFn: (v: Record<string, unknown>) => api.put(`${base}/input-settings`, { values: v, locked_fields: locked }),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["agent", ...key, agent.id] }),
  });
  const submitInput = (e: FormEvent) => {
    e.preventDefault();
    const { input, errors } = toInput(spec, values);
    setErrors(errors);
    if (!Object.keys(errors).length) saveInput.mutate(input);
  };

  return (
    <div className="two-col">
      <form className="card" aria-labelledby="agent-model-title" onSubmit={(e) => (e.preventDefault(), saveModel.mutate())}>
        <h3 id="agent-model-title" className="h4">Model</h3>
        {(models.isLoading || current.isLoading) && <Loading />}
        <ErrorBox error={models.error ?? current.error ?? saveModel.error} />
        <div className="field">
          <label htmlFor="agent-model">Model for this agent in this application</label>
          <select id="agent-model" value={modelId ?? current.data?.modelId ?? ""} onChange={(e) => setModelId(e.target.value)}>
            <option value="">Organization default</option>
            {models.data?.data.map((m) => (
              <option key={m.id} value={m.id}>
                {m.label}
                {m.is_default ? " (default)" : ""}
              </option>
            ))}
          </select>
        </div>
        <button type="submit" className="btn btn-primary" disabled={saveModel.isPending || modelId === null}>
          Save model
        </button>
        {saveModel.isSuccess && <span role="status" className="small"> Saved.</span>}
      </form>
      <form className="card" aria-labelledby="agent-input-title" onSubmit={submitInput} noValidate>
        <h3 id="agent-input-title" className="h4">Saved input</h3>
        <p className="small muted">Values pre-filled in the run form; locked fields cannot be changed when running.</p>
        <ErrorBox error={saveInput.error} />
        <SchemaForm spec={spec} values={values} errors={errors} onChange={(k, v) => setValues((o) => ({ ...o, [k]: v }))} />
        <fieldset className="scopes">
          <legend>Locked fields</legend>
          {orderedKeys(spec).map((k) => (
            <label key={k} className="check">
              <input type="checkbox" aria-label={`Lock ${k}`} checked={locked.includes(k)} onChange={(e) => setLocked((l) => (e.target.checked ? [...l, k] : l.filter((x) => x !== k)))} />
              <span className="mono small" aria-hidden="true">{k}</span>
            </label>
          ))}
        </fieldset>
        <button type="submit" className="btn btn-primary" disabled={saveInput.isPending}>
          Save input settings
        </button>
        {saveInput.isSuccess && <span role="status" className="small"> Saved.</span>}
      </form>
    </div>
  );
}
