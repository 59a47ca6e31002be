import { useState, type FormEvent } from "react";
import { Link, useNavigate, useSearchParams } from "react-router-dom";
import { useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import type { Organization } from "../api/types";
import { ErrorBox, Field } from "../components/ui";
import { useWorkspace } from "../lib/workspace";

/** First organization (and, with it, its default application). */
export function Onboarding() {
  const { session, orgs, setOrg } = useWorkspace();
  const qc = useQueryClient();
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const [name, setName] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const first = !orgs?.length;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const org = await api.post<Organization>("/api/orgs", { name }, { noScope: true });
      setOrg(org.id);
      await qc.invalidateQueries({ queryKey: ["orgs"] });
      navigate("/agents", { replace: true });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" className="auth">
      <form className="card auth-card" onSubmit={submit} aria-labelledby="onb-title">
        <div className="brand big">Corral</div>
        <h1 id="onb-title">{first ? `Welcome, ${session?.user?.name ?? ""}` : "New organization"}</h1>
        <p className="muted">
          {first
            ? "Create your organization to get started. It comes with a default application where your agents run."
            : "The new organization comes with a default application."}
        </p>
        <ErrorBox error={error} />
        <Field label="Organization name" htmlFor="org-name">
          <input id="org-name" required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} autoFocus />
        </Field>
        <button type="submit" className="btn btn-primary wide" disabled={busy}>
          {busy ? "Creating…" : "Create organization"}
        </button>
        {!first && params.get("new") && (
          <p className="center">
            <Link to="/agents">Cancel</Link>
          </p>
        )}
      </form>
    </main>
  );
}
