import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import type { ListOf, Webhook } from "../api/types";
import { Empty, ErrorBox, Field, Loading, PageHeader, SecretOnce } from "../components/ui";
import { WebhookRow } from "../components/WebhookRow";
import { useScopeKey } from "../lib/workspace";

const EVENTS = ["run.started", "run.success", "run.failed", "run.timeout", "run.cancelled", "run.connection_missing"];
export type WebhookWithSecret = Webhook & { secret: string };

export function WebhooksPage() {
  const key = useScopeKey();
  const qc = useQueryClient();
  const hooks = useQuery({ queryKey: ["webhooks", ...key], queryFn: () => api.get<ListOf<Webhook>>("/api/webhooks") });
  const [url, setUrl] = useState("");
  const [description, setDescription] = useState("");
  const [events, setEvents] = useState<string[]>(["run.success", "run.failed"]);
  const [payloadMode, setPayloadMode] = useState("full");
  const [secret, setSecret] = useState<{ label: string; value: string } | null>(null);
  const create = useMutation({
    mutationFn: () => api.post<WebhookWithSecret>("/api/webhooks", { url, events, payloadMode, description: description || null }),
    onSuccess: (w) => {
      setSecret({ label: `Signing secret for ${w.url}`, value: w.secret });
      setUrl("");
      setDescription("");
      void qc.invalidateQueries({ queryKey: ["webhooks", ...key] });
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };

  return (
    <>
      <PageHeader title="Webhooks">Signed HTTP callbacks for this application's run events.</PageHeader>
      {secret && <SecretOnce label={secret.label} value={secret.value} onDone={() => setSecret(null)} />}
      <form className="card" onSubmit={submit} aria-labelledby="new-hook-title">
        <h2 id="new-hook-title" className="h3">New webhook</h2>
        <ErrorBox error={create.error} />
        <div className="row">
          <Field label="Endpoint URL" htmlFor="hook-url">
            <input id="hook-url" type="url" required placeholder="https://example.com/hooks/corral" value={url} onChange={(e) => setUrl(e.target.value)} />
          </Field>
          <Field label="Description (optional)" htmlFor="hook-desc">
            <input id="hook-desc" value={description} onChange={(e) => setDescription(e.target.value)} />
          </Field>
          <Field label="Payload" htmlFor="hook-mode">
            <select id="hook-mode" value={payloadMode} onChange={(e) => setPayloadMode(e.target.value)}>
              <option value="full">Full run</option>
              <option value="summary">Summary</option>
            </select>
          </Field>
        </div>
        <fieldset className="scopes">
          <legend>Events</legend>
          {EVENTS.map((ev) => (
            <label key={ev} className="check">
              <input
                type="checkbox"
                checked={events.includes(ev)}
                onChange={(e) => setEvents((c) => (e.target.checked ? [...c, ev] : c.filter((x) => x !== ev)))}
              />
              <span className="mono small">{ev}</span>
            </label>
          ))}
        </fieldset>
        <button type="submit" className="btn btn-primary" disabled={create.isPending}>
          Create webhook
        </button>
      </form>
      {hooks.isLoading && <Loading />}
      <ErrorBox error={hooks.error} />
      {hooks.data && hooks.data.data.length === 0 && <Empty>No webhooks yet.</Empty>}
      <ul className="list" aria-label="Webhooks">
        {hooks.data?.data.map((w) => (
          <WebhookRow key={w.id} hook={w} onSecret={(value) => setSecret({ label: `New signing secret for ${w.url}`, value })} />
        ))}
      </ul>
    </>
  );
}
