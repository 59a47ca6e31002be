import { useState, type FormEvent } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import type { components } from "../api/schema";
import { ErrorBox, Field, Loading, PageHeader } from "../components/ui";

type Profile = components["schemas"]["UserProfile"];

export function ProfilePage() {
  const qc = useQueryClient();
  const profile = useQuery({ queryKey: ["profile"], queryFn: () => api.get<Profile>("/api/profile", { noScope: true }) });
  const [displayName, setDisplayName] = useState<string | null>(null);
  const [password, setPassword] = useState("");
  const save = useMutation({
    mutationFn: () => api.patch<Profile>("/api/profile", { displayName }, { noScope: true }),
    onSuccess: (p) => qc.setQueryData(["profile"], p),
  });
  const changePassword = useMutation({
    mutationFn: () => api.post("/api/profile/password", { newPassword: password }, { noScope: true }),
    onSuccess: () => setPassword(""),
  });
  if (profile.isLoading) return <Loading />;
  const p = profile.data;
  return (
    <>
      <PageHeader title="Profile">{p?.email}</PageHeader>
      <ErrorBox error={profile.error} />
      {p && (
        <form className="card" aria-label="Profile" onSubmit={(e: FormEvent) => (e.preventDefault(), save.mutate())}>
          <ErrorBox error={save.error} />
          <Field label="Display name" htmlFor="display-name">
            <input id="display-name" value={displayName ?? p.displayName ?? p.name} onChange={(e) => setDisplayName(e.target.value)} />
          </Field>
          <button type="submit" className="btn btn-primary" disabled={save.isPending || displayName === null}>Save</button>
          {save.isSuccess && <span role="status" className="small"> Saved.</span>}
        </form>
      )}
      <form className="card" aria-label="Change password" onSubmit={(e: FormEvent) => (e.preventDefault(), changePassword.mutate())}>
        <ErrorBox error={changePassword.error} />
        <Field label="New password" htmlFor="new-password" hint="At least 8 characters.">
          <input id="new-password" type="password" autoComplete="new-password" minLength={8} required value={password} onChange={(e) => setPassword(e.target.value)} />
        </Field>
        <button type="submit" className="btn" disabled={changePassword.isPending}>Change password</button>
        {changePassword.isSuccess && <span role="status" className="small"> Password changed.</span>}
      </form>
    </>
  );
}
