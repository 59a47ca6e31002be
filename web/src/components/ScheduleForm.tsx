import { useId, useMemo, useState, type FormEvent } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { agentPath, api } from "../api/client";
import type { AgentDetail, Schedule } from "../api/types";
import { initialValues, specOf, toInput } from "../lib/schema";
import { CRON_PRESETS, browserTimeZone, fieldErrors, timeZones } from "../lib/cron";
import { SchemaForm } from "./SchemaForm";
import { ErrorBox } from "./ui";

const FIELDS = ["name", "cron_expression", "timezone", "enabled"];

/**
 * Creates a schedule for `agent`, or edits `schedule`: name, cron expression (with
 * presets), timezone, the input through the agent's generated run form, enabled.
 * The server's field errors are shown next to their fields.
 */
export function ScheduleForm({
  agent,
  schedule,
  onDone,
  onCancel,
}: {
  agent: AgentDetail;
  schedule?: Schedule;
  onDone: (s: Schedule) => void;
  onCancel?: () => void;
}) {
  const base = useId();
  const qc = useQueryClient();
  const spec = specOf(agent);
  const [name, setName] = useState(schedule?.name ?? "");
  const [cron, setCron] = useState(schedule?.cron_expression ?? "0 9 * * 1-5");
  const [timezone, setTimezone] = useState(schedule?.timezone ?? browserTimeZone());
  const [enabled, setEnabled] = useState(schedule?.enabled ?? true);
  const [values, setValues] = useState<Record<string, unknown>>(() =>
    initialValues(spec, { ...(agent.input.values as Record<string, unknown>), ...((schedule?.input as Record<string, unknown>) ?? {}) }),
  );
  const [inputErrors, setInputErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const zones = useMemo(() => timeZones(timezone), [timezone]);

  const server = fieldErrors(error, FIELDS);
  const allInputErrors = { ...server.input, ...inputErrors };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const { input, errors } = toInput(spec, values);
    setInputErrors(errors);
    setError(null);
    if (Object.keys(errors).length) return;
    setBusy(true);
    const body = { name: name.trim() || null, cron_expression: cron.trim(), timezone, input, enabled };
    try {
      const saved = schedule
        ? await api.put<Schedule>(`/api/schedules/${encodeURIComponent(schedule.id)}`, body)
        : await api.post<Schedule>(`/api/agents/${agentPath(agent.id)}/schedules`, body);
      await qc.invalidateQueries({ queryKey: ["schedules"] });
      qc.setQueryData(["schedule", saved.orgId, saved.applicationId, saved.id], saved);
      onDone(saved);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const fieldError = (f: string) =>
    server.fields[f] ? (
      <div className="field-error" id={`${base}-${f}-err`}>
        {server.fields[f]}
      </div>
    ) : null;
  const invalid = (f: string) => (server.fields[f] ? { "aria-invalid": true, "aria-describedby": `${base}-${f}-err` } : {});
  const title = schedule ? "Edit schedule" : "New schedule";

  return (
    <form className="card schedule-form" onSubmit={submit} aria-labelledby={`${base}-title`} noValidate>
      <h3 id={`${base}-title`} className="h4">
        {title}
      </h3>
      {error && server.rest ? (
        <ErrorBox error={error} title="The schedule was not saved" />
      ) : error ? (
        <div className="alert alert-error" role="alert">
          <strong>The schedule was not saved</strong>: check the fields below.
        </div>
      ) : null}
      <div className="row">
        <div className="field">
          <label htmlFor={`${base}-name`}>Schedule name</label>
          <input id={`${base}-name`} value={name} onChange={(e) => setName(e.target.value)} placeholder="Morning digest" {...invalid("name")} />
          {fieldError("name")}
        </div>
        <div className="field">
          <label htmlFor={`${base}-tz`}>Timezone</label>
          <select id={`${base}-tz`} value={timezone} onChange={(e) => setTimezone(e.target.value)} {...invalid("timezone")}>
            {zones.map((z) => (
              <option key={z} value={z}>
                {z}
              </option>
            ))}
          </select>
          {fieldError("timezone")}
        </div>
      </div>
      <div className="field">
        <label htmlFor={`${base}-cron`}>Cron expression</label>
        <input
          id={`${base}-cron`}
          className="mono"
          value={cron}
          onChange={(e) => setCron(e.target.value)}
          spellCheck={false}
          autoComplete="off"
          aria-describedby={[`${base}-cron-hint`, server.fields.cron_expression ? `${base}-cron_expression-err` : ""].filter(Boolean).join(" ")}
          aria-invalid={server.fields.cron_expression ? true : undefined}
        />
        <div className="hint" id={`${base}-cron-hint`}>
          5 fields (minute hour day month weekday), or 6 with seconds first.
        </div>
        {fieldError("cron_expression")}
        <div className="presets" role="group" aria-label="Cron presets">
          {CRON_PRESETS.map((p) => (
            <button key={p.cron} type="button" className="btn btn-small" aria-pressed={cron === p.cron} onClick={() => setCron(p.cron)}>
              {p.label}
            </button>
          ))}
        </div>
      </div>
      <fieldset className="schedule-input">
        <legend>Input</legend>
        <SchemaForm
          spec={spec}
          values={values}
          errors={allInputErrors}
          onChange={(k, v) => setValues((old) => ({ ...old, [k]: v }))}
          onFileError={(msg) => setError(new Error(msg))}
        />
      </fieldset>
      <label className="check">
        <input type="checkbox" checked={enabled} onChange={(e) => setEnabled(e.target.checked)} /> Enabled
      </label>
      {fieldError("enabled")}
      <div className="actions">
        <button type="submit" className="btn btn-primary" disabled={busy}>
          {busy ? "Saving…" : schedule ? "Save schedule" : "Create schedule"}
        </button>
        {onCancel && (
          <button type="button" className="btn" onClick={onCancel}>
            Cancel
          </button>
        )}
      </div>
    </form>
  );
}
