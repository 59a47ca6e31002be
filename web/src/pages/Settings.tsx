import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import type { OrgDetail, OrgSettings } from "../api/types";
import { ConfirmButton, ErrorBox, Field, Loading, PageHeader } from "../components/ui";
import { useWorkspace } from "../lib/workspace";

export function SettingsPage() {
  const { orgId, org, orgs, setOrg } = useWorkspace();
  const qc = useQueryClient();
  const base = `/api/orgs/${encodeURIComponent(orgId ?? "")}`;
  const detail = useQuery({ queryKey: ["org", orgId], queryFn: () => api.get<OrgDetail>(base) });
  const settings = useQuery({ queryKey: ["orgSettings", orgId], queryFn: () => api.get<OrgSettings>(`${base}/settings`) });
  const [name, setName] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);
  const save = useMutation({
    mutationFn: () => api.put(base, { name }),
    onSuccess: () => {
      setSaved(true);
      void qc.invalidateQueries({ queryKey: ["orgs"] });
      void qc.invalidateQueries({ queryKey: ["org", orgId] });
    },
  });
  const remove = useMutation({
    mutationFn: () => api.del(base),
    onSuccess: async () => {
      const other = orgs?.find((o) => o.id !== orgId);
      if (other) setOrg(other.id);
      await qc.invalidateQueries({ queryKey: ["orgs"] });
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setSaved(false);
    save.mutate();
  };
  const d = detail.data;
  const used = d?.storage.used_bytes ?? 0;
  return (
    <>
      <PageHeader title="Organization settings" />
      {detail.isLoading && <Loading />}
      <ErrorBox error={detail.error ?? settings.error ?? save.error ?? remove.error} />
      {d && (
        <form className="card" onSubmit={submit} aria-label="Organization">
          <Field label="Name" htmlFor="org-name-edit">
            <input id="org-name-edit" required value={name ?? d.name} onChange={(e) => setName(e.target.value)} disabled={org?.role !== "owner" && org?.role !== "admin"} />
          </Field>
          <p className="small muted">Slug: <span className="mono">{d.slug}</span> · Id: <span className="mono">{d.id}</span></p>
          <p className="small muted">Storage used: {(used / 1024 / 1024).toFixed(1)} MiB{d.storage.effective_limit_bytes ? ` of ${(d.storage.effective_limit_bytes / 1024 / 1024).toFixed(0)} MiB` : ""}</p>
          {settings.data && <p className="small muted">API version: {settings.data.api_version ?? "default"}</p>}
          <button type="submit" className="btn btn-primary" disabled={save.isPending || name === null}>Save</button>
          {saved && <span role="status" className="small"> Saved.</span>}
        </form>
      )}
      {org?.role === "owner" && (
        <section className="card danger-zone" aria-labelledby="danger-title">
          <h2 id="danger-title" className="h3">Danger zone</h2>
          <p>Deleting the organization removes its applications, runs, keys and webhooks.</p>
          <ConfirmButton onConfirm={() => remove.mutate()} confirmLabel={`Delete ${org.name} for good`}>Delete organization</ConfirmButton>
        </section>
      )}
    </>
  );
}
