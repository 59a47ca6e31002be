import { useState, type FormEvent } from "react";
import { fmtDate } from "../lib/format";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import type { EndUserList } from "../api/types";
import { ConfirmButton, Empty, ErrorBox, Field, Loading, PageHeader } from "../components/ui";
import { useScopeKey } from "../lib/workspace";

export function EndUsersPage() {
  const key = useScopeKey();
  const qc = useQueryClient();
  const users = useQuery({ queryKey: ["endUsers", ...key], queryFn: () => api.get<EndUserList>("/api/end-users", { query: { limit: 100 } }) });
  const [name, setName] = useState("");
  const [email, setEmail] = useState("");
  const [externalId, setExternalId] = useState("");
  const refresh = () => qc.invalidateQueries({ queryKey: ["endUsers", ...key] });
  const create = useMutation({
    mutationFn: () => api.post("/api/end-users", { name: name || null, email: email || null, externalId: externalId || null }),
    onSuccess: () => {
      setName("");
      setEmail("");
      setExternalId("");
      void refresh();
    },
  });
  const remove = useMutation({ mutationFn: (id: string) => api.del(`/api/end-users/${encodeURIComponent(id)}`), onSuccess: () => refresh() });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  return (
    <>
      <PageHeader title="End-users">The people your application runs agents for.</PageHeader>
      <form className="card" onSubmit={submit} aria-label="New end-user">
        <div className="row">
          <Field label="Name" htmlFor="eu-name"><input id="eu-name" value={name} onChange={(e) => setName(e.target.value)} /></Field>
          <Field label="Email" htmlFor="eu-email"><input id="eu-email" type="email" value={email} onChange={(e) => setEmail(e.target.value)} /></Field>
          <Field label="External id" htmlFor="eu-ext"><input id="eu-ext" value={externalId} onChange={(e) => setExternalId(e.target.value)} /></Field>
        </div>
        <button type="submit" className="btn btn-primary" disabled={create.isPending}>Add end-user</button>
      </form>
      <ErrorBox error={users.error ?? create.error ?? remove.error} />
      {users.isLoading && <Loading />}
      {users.data && users.data.data.length === 0 && <Empty>No end-users yet.</Empty>}
      {users.data && users.data.data.length > 0 && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr><th scope="col">Name</th><th scope="col">Email</th><th scope="col">External id</th><th scope="col">Created</th><th scope="col"><span className="sr-only">Actions</span></th></tr>
            </thead>
            <tbody>
              {users.data.data.map((u) => (
                <tr key={u.id}>
                  <td>{u.name ?? "—"}</td>
                  <td>{u.email ?? "—"}</td>
                  <td className="mono small">{u.externalId ?? "—"}</td>
                  <td>{fmtDate(u.createdAt)}</td>
                  <td><ConfirmButton onConfirm={() => remove.mutate(u.id)} confirmLabel="Delete end-user">Delete</ConfirmButton></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
