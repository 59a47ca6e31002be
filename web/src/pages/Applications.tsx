import { useState, type FormEvent } from "react";
import { fmtDate } from "../lib/format";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import type { Application } from "../api/types";
import { ConfirmButton, ErrorBox, Field, PageHeader } from "../components/ui";
import { useWorkspace } from "../lib/workspace";

export function ApplicationsPage() {
  const { apps, orgId, appId, setApp } = useWorkspace();
  const qc = useQueryClient();
  const [name, setName] = useState("");
  const [editing, setEditing] = useState<string | null>(null);
  const [newName, setNewName] = useState("");
  const refresh = () => qc.invalidateQueries({ queryKey: ["apps", orgId] });
  const create = useMutation({
    mutationFn: () => api.post<Application>("/api/applications", { name }),
    onSuccess: () => {
      setName("");
      void refresh();
    },
  });
  const rename = useMutation({
    mutationFn: (id: string) => api.patch(`/api/applications/${encodeURIComponent(id)}`, { name: newName }),
    onSuccess: () => {
      setEditing(null);
      void refresh();
    },
  });
  const remove = useMutation({
    mutationFn: (id: string) => api.del(`/api/applications/${encodeURIComponent(id)}`),
    onSuccess: () => refresh(),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  return (
    <>
      <PageHeader title="Applications">
        Applications separate runs, API keys, webhooks and end-users inside the organization.
      </PageHeader>
      <form className="card inline-form" onSubmit={submit} aria-label="New application">
        <Field label="New application name" htmlFor="app-name">
          <input id="app-name" required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <button type="submit" className="btn btn-primary" disabled={create.isPending}>
          Create application
        </button>
      </form>
      <ErrorBox error={create.error ?? rename.error ?? remove.error} />
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Id</th>
              <th scope="col">Created</th>
              <th scope="col"><span className="sr-only">Actions</span></th>
            </tr>
          </thead>
          <tbody>
            {apps?.map((a) => (
              <tr key={a.id}>
                <td>
                  {editing === a.id ? (
                    <form
                      onSubmit={(e) => {
                        e.preventDefault();
                        rename.mutate(a.id);
                      }}
                      className="inline-form"
                    >
                      <label className="sr-only" htmlFor={`rename-${a.id}`}>New name</label>
                      <input id={`rename-${a.id}`} value={newName} onChange={(e) => setNewName(e.target.value)} required />
                      <button className="btn btn-small" type="submit">Save</button>
                      <button className="btn btn-small" type="button" onClick={() => setEditing(null)}>Cancel</button>
                    </form>
                  ) : (
                    <>
                      {a.name} {a.isDefault && <span className="tag">default</span>} {a.id === appId && <span className="tag">current</span>}
                    </>
                  )}
                </td>
                <td className="mono small">{a.id}</td>
                <td>{fmtDate(a.createdAt)}</td>
                <td className="actions">
                  {a.id !== appId && (
                    <button type="button" className="btn btn-small" onClick={() => setApp(a.id)}>
                      Switch to
                    </button>
                  )}
                  <button type="button" className="btn btn-small" onClick={() => (setEditing(a.id), setNewName(a.name))}>
                    Rename
                  </button>
                  {!a.isDefault && (
                    <ConfirmButton onConfirm={() => remove.mutate(a.id)} confirmLabel={`Delete ${a.name}`}>
                      Delete
                    </ConfirmButton>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
