import { useState, type FormEvent } from "react";
import { useNavigate } from "react-router-dom";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { agentPath, api } from "../api/client";
import type { AgentDetail, ListOf, ModelView, Run } from "../api/types";
import { useScopeKey } from "../lib/workspace";
import { ErrorBox } from "./ui";
import { SchemaForm } from "./SchemaForm";
import { initialValues, specOf, toInput } from "../lib/schema";

/** The run form generated from the agent's input schema; starts the run and opens it. */
export function RunForm({ agent, blocked, initial }: { agent: AgentDetail; blocked: boolean; initial?: Record<string, unknown> }) {
  const spec = specOf(agent);
  const qc = useQueryClient();
  const navigate = useNavigate();
  const [values, setValues] = useState<Record<string, unknown>>(() => ({
    ...initialValues(spec, agent.input.values as Record<string, unknown>),
    ...(initial ?? {}),
  }));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [modelId, setModelId] = useState("");
  const key = useScopeKey();
  const models = useQuery({ queryKey: ["models", ...key], queryFn: () => api.get<ListOf<ModelView>>("/api/models") });

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const { input, errors } = toInput(spec, values);
    setErrors(errors);
    if (Object.keys(errors).length) return;
    setBusy(true);
    setError(null);
    try {
      const run = await api.post<Run>(`/api/agents/${agentPath(agent.id)}/run`, { input, modelId: modelId || null });
      await qc.invalidateQueries({ queryKey: ["runs"] });
      navigate(`/runs/${run.id}`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form onSubmit={submit} className="card" aria-labelledby="run-form-title" noValidate>
      <h2 id="run-form-title" className="h3">
        Run this agent
      </h2>
      <ErrorBox error={error} title="The run was not started" />
      <SchemaForm
        spec={spec}
        values={values}
        errors={errors}
        onChange={(k, v) => setValues((old) => ({ ...old, [k]: v }))}
        onFileError={(msg) => setError(new Error(msg))}
      />
      {(models.data?.data.length ?? 0) > 1 && (
        <div className="field">
          <label htmlFor="run-model">Model</label>
          <select id="run-model" value={modelId} onChange={(e) => setModelId(e.target.value)}>
            <option value="">The agent&apos;s model (default)</option>
            {models.data?.data.map((m) => (
              <option key={m.id} value={m.id}>
                {m.label}
              </option>
            ))}
          </select>
        </div>
      )}
      <button type="submit" className="btn btn-primary" disabled={busy || blocked}>
        {busy ? "Starting…" : "Run"}
      </button>
      {blocked && <p className="small muted">Connect the required integrations first.</p>}
    </form>
  );
}
