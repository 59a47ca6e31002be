import { useEffect, useState, type FormEvent } from "react";
import { Link, Navigate, useNavigate, useSearchParams } from "react-router-dom";
import { useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import type { Session } from "../api/types";
import { ErrorBox, Field } from "../components/ui";
import { useWorkspace } from "../lib/workspace";

export function AuthPage({ mode }: { mode: "sign-in" | "sign-up" }) {
  const { session } = useWorkspace();
  const qc = useQueryClient();
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const [name, setName] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const next = params.get("next") || "/";
  const title = mode === "sign-in" ? "Sign in to Corral" : "Create your Corral account";
  useEffect(() => {
    document.title = `${mode === "sign-in" ? "Sign in" : "Sign up"} · Corral`;
  }, [mode]);

  if (session?.user) return <Navigate to={next} replace />;

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      if (mode === "sign-up") {
        await api.post("/api/auth/sign-up/email", { name, email, password }, { noScope: true });
      } else {
        await api.post("/api/auth/sign-in/email", { email, password }, { noScope: true });
      }
      const s = await api.get<Session | null>("/api/auth/get-session", { noScope: true });
      // Only inactive queries: removing one a mounted component observes would strand it.
      qc.removeQueries({ type: "inactive", predicate: (q) => q.queryKey[0] !== "session" });
      qc.setQueryData(["session"], s);
      navigate(next, { replace: true });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" className="auth">
      <form className="card auth-card" onSubmit={submit} aria-labelledby="auth-title">
        <div className="brand big">Corral</div>
        <h1 id="auth-title">{title}</h1>
        <ErrorBox error={error} />
        {mode === "sign-up" && (
          <Field label="Name" htmlFor="name">
            <input id="name" autoComplete="name" required value={name} onChange={(e) => setName(e.target.value)} />
          </Field>
        )}
        <Field label="Email" htmlFor="email">
          <input id="email" type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        </Field>
        <Field label="Password" htmlFor="password" hint={mode === "sign-up" ? "At least 8 characters." : undefined}>
          <input
            id="password"
            type="password"
            autoComplete={mode === "sign-up" ? "new-password" : "current-password"}
            required
            minLength={mode === "sign-up" ? 8 : undefined}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </Field>
        <button type="submit" className="btn btn-primary wide" disabled={busy}>
          {mode === "sign-in" ? (busy ? "Signing in…" : "Sign in") : busy ? "Creating…" : "Create account"}
        </button>
        <p className="muted center">
          {mode === "sign-in" ? (
            <>
              No account? <Link to={`/sign-up${params.size ? `?${params}` : ""}`}>Sign up</Link>
            </>
          ) : (
            <>
              Already have an account? <Link to={`/sign-in${params.size ? `?${params}` : ""}`}>Sign in</Link>
            </>
          )}
        </p>
      </form>
    </main>
  );
}
