import { useState, type FormEvent } from "react";
import { fmtDate } from "../lib/format";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import type { OrgDetail } from "../api/types";
import { ConfirmButton, CopyButton, Empty, ErrorBox, Field, Loading, PageHeader } from "../components/ui";
import { useWorkspace } from "../lib/workspace";

const ROLES = ["admin", "member", "viewer"];

export function MembersPage() {
  const { orgId, org, session } = useWorkspace();
  const qc = useQueryClient();
  const base = `/api/orgs/${encodeURIComponent(orgId ?? "")}`;
  const detail = useQuery({ queryKey: ["org", orgId], queryFn: () => api.get<OrgDetail>(base) });
  const [email, setEmail] = useState("");
  const [role, setRole] = useState("member");
  const refresh = () => qc.invalidateQueries({ queryKey: ["org", orgId] });
  const invite = useMutation({
    mutationFn: () => api.post(`${base}/members`, { email, role }),
    onSuccess: () => {
      setEmail("");
      void refresh();
    },
  });
  const setMemberRole = useMutation({
    mutationFn: ({ userId, role }: { userId: string; role: string }) => api.put(`${base}/members/${encodeURIComponent(userId)}`, { role }),
    onSuccess: () => refresh(),
  });
  const removeMember = useMutation({ mutationFn: (userId: string) => api.del(`${base}/members/${encodeURIComponent(userId)}`), onSuccess: () => refresh() });
  const revoke = useMutation({ mutationFn: (id: string) => api.del(`${base}/invitations/${encodeURIComponent(id)}`), onSuccess: () => refresh() });
  const canManage = org?.role === "owner" || org?.role === "admin";
  const submit = (e: FormEvent) => {
    e.preventDefault();
    invite.mutate();
  };

  return (
    <>
      <PageHeader title="Members">People in {org?.name}. Your role: {org?.role}.</PageHeader>
      {canManage && (
        <form className="card inline-form" onSubmit={submit} aria-label="Invite a member">
          <Field label="Email" htmlFor="inv-email">
            <input id="inv-email" type="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
          </Field>
          <Field label="Role" htmlFor="inv-role">
            <select id="inv-role" value={role} onChange={(e) => setRole(e.target.value)}>
              {ROLES.map((r) => <option key={r}>{r}</option>)}
            </select>
          </Field>
          <button type="submit" className="btn btn-primary" disabled={invite.isPending}>Invite</button>
        </form>
      )}
      <ErrorBox error={detail.error ?? invite.error ?? setMemberRole.error ?? removeMember.error ?? revoke.error} />
      {detail.isLoading && <Loading />}
      {detail.data && (
        <>
          <h2 className="h3">Members</h2>
          <div className="table-wrap">
            <table>
              <thead><tr><th scope="col">Name</th><th scope="col">Email</th><th scope="col">Role</th><th scope="col">Joined</th><th scope="col"><span className="sr-only">Actions</span></th></tr></thead>
              <tbody>
                {detail.data.members.map((m) => (
                  <tr key={m.userId}>
                    <td>{m.displayName ?? "—"}</td>
                    <td>{m.email}</td>
                    <td>
                      {canManage && m.role !== "owner" && m.userId !== session?.user?.id ? (
                        <>
                          <label className="sr-only" htmlFor={`role-${m.userId}`}>Role of {m.email}</label>
                          <select id={`role-${m.userId}`} value={m.role} onChange={(e) => setMemberRole.mutate({ userId: m.userId, role: e.target.value })}>
                            {ROLES.map((r) => <option key={r}>{r}</option>)}
                          </select>
                        </>
                      ) : (
                        m.role
                      )}
                    </td>
                    <td>{fmtDate(m.joinedAt)}</td>
                    <td>
                      {canManage && m.role !== "owner" && (
                        <ConfirmButton onConfirm={() => removeMember.mutate(m.userId)} confirmLabel={`Remove ${m.email}`}>Remove</ConfirmButton>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <h2 className="h3">Pending invitations</h2>
          {detail.data.invitations.length === 0 ? (
            <Empty>No pending invitations.</Empty>
          ) : (
            <div className="table-wrap">
              <table>
                <thead><tr><th scope="col">Email</th><th scope="col">Role</th><th scope="col">Expires</th><th scope="col">Link</th><th scope="col"><span className="sr-only">Actions</span></th></tr></thead>
                <tbody>
                  {detail.data.invitations.map((i) => (
                    <tr key={i.id}>
                      <td>{i.email}</td>
                      <td>{i.role}</td>
                      <td>{fmtDate(i.expiresAt)}</td>
                      <td><CopyButton text={`${location.origin}/invite/${i.token}`} label="Copy invite link" /></td>
                      <td>{canManage && <ConfirmButton onConfirm={() => revoke.mutate(i.id)} confirmLabel="Revoke invitation">Revoke</ConfirmButton>}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </>
      )}
    </>
  );
}
