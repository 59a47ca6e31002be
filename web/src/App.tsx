import { useEffect } from "react";
import { Navigate, Route, Routes, useLocation, useNavigate } from "react-router-dom";
import { useQueryClient } from "@tanstack/react-query";
import { setUnauthorizedHandler } from "./api/client";
import { Layout } from "./components/Layout";
import { ErrorBox, Loading } from "./components/ui";
import { WorkspaceProvider, useWorkspace } from "./lib/workspace";
import { AuthPage } from "./pages/Auth";
import { Onboarding } from "./pages/Onboarding";
import { AgentsPage } from "./pages/Agents";
import { AgentDetailPage } from "./pages/AgentDetail";
import { RunsPage } from "./pages/Runs";
import { RunDetailPage } from "./pages/RunDetail";
import { ApiKeysPage } from "./pages/ApiKeys";
import { WebhooksPage } from "./pages/Webhooks";
import { ApplicationsPage } from "./pages/Applications";
import { EndUsersPage } from "./pages/EndUsers";
import { MembersPage } from "./pages/Members";
import { SettingsPage } from "./pages/Settings";
import { ModelsPage } from "./pages/Models";
import { IntegrationsPage } from "./pages/Integrations";
import { InvitePage } from "./pages/Invite";
import { ProfilePage } from "./pages/Profile";
import { SchedulesPage } from "./pages/Schedules";
import { ScheduleDetailPage } from "./pages/ScheduleDetail";

function Guard({ children, needOrg = true }: { children: React.ReactNode; needOrg?: boolean }) {
  const { session, sessionLoading, orgs, appId, error } = useWorkspace();
  const loc = useLocation();
  if (sessionLoading) return <Loading />;
  if (error)
    return (
      <main id="main" className="auth">
        <div className="card auth-card">
          <h1>Corral is not reachable</h1>
          <ErrorBox error={error} />
          <button type="button" className="btn btn-primary" onClick={() => window.location.reload()}>
            Try again
          </button>
        </div>
      </main>
    );
  if (!session?.user) {
    const next = loc.pathname === "/" ? "" : `?next=${encodeURIComponent(loc.pathname + loc.search)}`;
    return <Navigate to={`/sign-in${next}`} replace />;
  }
  if (needOrg && orgs && orgs.length === 0) return <Navigate to="/onboarding" replace />;
  if (needOrg && !appId) return <Loading />;
  return <>{children}</>;
}

function Unauthorized() {
  const qc = useQueryClient();
  const navigate = useNavigate();
  useEffect(() => {
    setUnauthorizedHandler(() => {
      qc.setQueryData(["session"], null);
      navigate("/sign-in");
    });
  }, [qc, navigate]);
  return null;
}

export function App() {
  return (
    <WorkspaceProvider>
      <Unauthorized />
      <Routes>
        <Route path="/sign-in" element={<AuthPage mode="sign-in" />} />
        <Route path="/sign-up" element={<AuthPage mode="sign-up" />} />
        <Route path="/invite/:token" element={<InvitePage />} />
        <Route
          path="/onboarding"
          element={
            <Guard needOrg={false}>
              <Onboarding />
            </Guard>
          }
        />
        <Route
          element={
            <Guard>
              <Layout />
            </Guard>
          }
        >
          <Route index element={<Navigate to="/agents" replace />} />
          <Route path="/agents" element={<AgentsPage />} />
          <Route path="/agents/:scope/:name" element={<AgentDetailPage />} />
          <Route path="/runs" element={<RunsPage />} />
          <Route path="/runs/:id" element={<RunDetailPage />} />
          <Route path="/schedules" element={<SchedulesPage />} />
          <Route path="/schedules/:id" element={<ScheduleDetailPage />} />
          <Route path="/api-keys" element={<ApiKeysPage />} />
          <Route path="/webhooks" element={<WebhooksPage />} />
          <Route path="/applications" element={<ApplicationsPage />} />
          <Route path="/end-users" element={<EndUsersPage />} />
          <Route path="/members" element={<MembersPage />} />
          <Route path="/settings" element={<SettingsPage />} />
          <Route path="/models" element={<ModelsPage />} />
          <Route path="/integrations" element={<IntegrationsPage />} />
          <Route path="/profile" element={<ProfilePage />} />
          <Route path="*" element={<NotFound />} />
        </Route>
      </Routes>
    </WorkspaceProvider>
  );
}

function NotFound() {
  return (
    <div>
      <h1>Not found</h1>
      <p className="muted">This page does not exist.</p>
    </div>
  );
}
