import { useEffect, useRef, useState } from "react";
import { Link, NavLink, Outlet, useLocation, useNavigate } from "react-router-dom";
import { useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import { useWorkspace } from "../lib/workspace";
import { applyTheme, getTheme, type Theme } from "../lib/theme";

const NAV: [string, string][] = [
  ["/agents", "Agents"],
  ["/runs", "Runs"],
  ["/schedules", "Schedules"],
  ["/integrations", "Integrations"],
  ["/models", "Models"],
  ["/webhooks", "Webhooks"],
  ["/api-keys", "API keys"],
  ["/applications", "Applications"],
  ["/end-users", "End-users"],
  ["/members", "Members"],
  ["/settings", "Settings"],
];

export function Layout() {
  const { session, orgs, apps, orgId, appId, setOrg, setApp } = useWorkspace();
  const qc = useQueryClient();
  const navigate = useNavigate();
  const [theme, setTheme] = useState<Theme>(getTheme);
  const [menuOpen, setMenuOpen] = useState(false);
  const { pathname } = useLocation();
  const mainRef = useRef<HTMLElement>(null);
  const firstPath = useRef(pathname);
  // After a client-side navigation, move focus to the new page (as a page load would).
  useEffect(() => {
    if (pathname === firstPath.current) return;
    firstPath.current = "";
    mainRef.current?.focus({ preventScroll: true });
  }, [pathname]);

  const signOut = async () => {
    try {
      await api.post("/api/auth/sign-out", {}, { noScope: true });
    } finally {
      // Only inactive queries: removing one a mounted component observes would strand it.
      qc.removeQueries({ type: "inactive", predicate: (q) => q.queryKey[0] !== "session" });
      qc.setQueryData(["session"], null);
      navigate("/sign-in");
    }
  };

  return (
    <div className="shell">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <button
          type="button"
          className="btn btn-small menu-toggle"
          aria-expanded={menuOpen}
          aria-controls="sidenav"
          onClick={() => setMenuOpen((o) => !o)}
        >
          Menu
        </button>
        <span className="brand">Corral</span>
        <div className="switchers">
          <label className="switcher">
            <span>Organization</span>
            <select aria-label="Current organization" value={orgId ?? ""} onChange={(e) => e.target.value === "__new" ? navigate("/onboarding?new=1") : setOrg(e.target.value)}>
              {orgs?.map((o) => (
                <option key={o.id} value={o.id}>
                  {o.name}
                </option>
              ))}
              <option value="__new">+ New organization…</option>
            </select>
          </label>
          <label className="switcher">
            <span>Application</span>
            <select aria-label="Current application" value={appId ?? ""} onChange={(e) => setApp(e.target.value)}>
              {apps?.map((a) => (
                <option key={a.id} value={a.id}>
                  {a.name}
                  {a.isDefault ? " (default)" : ""}
                </option>
              ))}
            </select>
          </label>
        </div>
        <div className="topbar-right">
          <label className="switcher theme-switch">
            <span className="sr-only">Theme</span>
            <select
              value={theme}
              onChange={(e) => {
                const t = e.target.value as Theme;
                setTheme(t);
                applyTheme(t);
              }}
            >
              <option value="system">System theme</option>
              <option value="light">Light</option>
              <option value="dark">Dark</option>
            </select>
          </label>
          <Link className="user" to="/profile" title={`Profile (${session?.user?.email ?? ""})`}>
            {session?.user?.name}
          </Link>
          <button type="button" className="btn btn-small" onClick={signOut}>
            Sign out
          </button>
        </div>
      </header>
      <div className="body">
        <nav id="sidenav" className={menuOpen ? "sidenav open" : "sidenav"} aria-label="Main">
          <ul>
            {NAV.map(([to, label]) => (
              <li key={to}>
                <NavLink to={to} onClick={() => setMenuOpen(false)}>
                  {label}
                </NavLink>
              </li>
            ))}
          </ul>
        </nav>
        <main id="main" tabIndex={-1} ref={mainRef}>
          <Outlet />
        </main>
      </div>
    </div>
  );
}
