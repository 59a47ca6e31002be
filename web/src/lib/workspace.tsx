import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { useQuery } from "@tanstack/react-query";
import { api, scope } from "../api/client";
import type { Application, ListOf, Organization, Session } from "../api/types";

type Workspace = {
  session: Session | null | undefined;
  sessionLoading: boolean;
  /** The session, organizations or applications could not be loaded. */
  error: unknown;
  orgs: Organization[] | undefined;
  apps: Application[] | undefined;
  orgId: string | null;
  appId: string | null;
  org: Organization | undefined;
  app: Application | undefined;
  setOrg: (id: string) => void;
  setApp: (id: string) => void;
};

const Ctx = createContext<Workspace | null>(null);
const ORG_KEY = "corral.org";
const APP_KEY = "corral.app";

export function WorkspaceProvider({ children }: { children: ReactNode }) {
  const sessionQ = useQuery({
    queryKey: ["session"],
    queryFn: () => api.get<Session | null>("/api/auth/get-session", { noScope: true }),
    staleTime: 60_000,
  });
  const signedIn = !!sessionQ.data?.user;
  const orgsQ = useQuery({
    queryKey: ["orgs", sessionQ.data?.user?.id],
    queryFn: () => api.get<ListOf<Organization>>("/api/me/orgs", { noScope: true }),
    enabled: signedIn,
  });
  const [wantedOrg, setWantedOrg] = useState<string | null>(() => localStorage.getItem(ORG_KEY));
  const [wantedApp, setWantedApp] = useState<string | null>(() => localStorage.getItem(APP_KEY));

  const orgs = orgsQ.data?.data;
  const org = orgs?.find((o) => o.id === wantedOrg) ?? orgs?.[0];
  const orgId = org?.id ?? null;

  const appsQ = useQuery({
    queryKey: ["apps", orgId],
    queryFn: () => api.get<ListOf<Application>>("/api/applications", { noScope: true, headers: { "X-Org-Id": orgId! } }),
    enabled: !!orgId,
  });
  const apps = appsQ.data?.data;
  const app = apps?.find((a) => a.id === wantedApp) ?? apps?.find((a) => a.isDefault) ?? apps?.[0];
  const appId = app?.id ?? null;

  // The API client sends these as X-Org-Id / X-App-Id (set during render so that
  // queries started by children in the same render already use them).
  scope.orgId = orgId;
  scope.appId = appId;

  useEffect(() => {
    if (orgId) localStorage.setItem(ORG_KEY, orgId);
    if (appId) localStorage.setItem(APP_KEY, appId);
  }, [orgId, appId]);

  const setOrg = useCallback(
    (id: string) => {
      setWantedOrg(id);
      setWantedApp(null);
      localStorage.setItem(ORG_KEY, id);
      localStorage.removeItem(APP_KEY);
    },
    [],
  );
  const setApp = useCallback((id: string) => {
    setWantedApp(id);
    localStorage.setItem(APP_KEY, id);
  }, []);

  const value = useMemo<Workspace>(
    () => ({
      session: sessionQ.data,
      sessionLoading: sessionQ.isLoading || (signedIn && orgsQ.isLoading) || (!!orgId && appsQ.isLoading),
      error: sessionQ.error ?? orgsQ.error ?? appsQ.error,
      orgs,
      apps,
      orgId,
      appId,
      org,
      app,
      setOrg,
      setApp,
    }),
    [sessionQ.data, sessionQ.isLoading, sessionQ.error, orgsQ.error, appsQ.error, signedIn, orgsQ.isLoading, appsQ.isLoading, orgs, apps, orgId, appId, org, app, setOrg, setApp],
  );
  return <Ctx.Provider value={value}>{children}</Ctx.Provider>;
}

// eslint-disable-next-line react-refresh/only-export-components
export function useWorkspace(): Workspace {
  const v = useContext(Ctx);
  if (!v) throw new Error("useWorkspace outside WorkspaceProvider");
  return v;
}

/** Query key prefix of everything scoped to the current org and app. */
// eslint-disable-next-line react-refresh/only-export-components
export function useScopeKey(): [string | null, string | null] {
  const { orgId, appId } = useWorkspace();
  return [orgId, appId];
}
