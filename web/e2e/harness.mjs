// Shared e2e setup: where the dashboard is, a headless Chromium, a fresh user.
//
// CORRAL_E2E_URL      the dashboard served by a Corral server (e.g. http://127.0.0.1:3000).
// CORRAL_E2E_API_URL  without CORRAL_E2E_URL: a Corral server; the tests then serve the
//                     built dashboard (web/dist) with `vite preview`, proxying /api to it.
// CHROMIUM_PATH       default /usr/bin/chromium.
// CORRAL_E2E_MOCK_HOST the address the server reaches this machine at, for the mock model
//                     (default 127.0.0.1).
import { spawn } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const webDir = path.join(here, "..");

async function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

async function waitFor(url, ms = 20_000) {
  const until = Date.now() + ms;
  for (;;) {
    try {
      const r = await fetch(url);
      if (r.status < 500) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > until) throw new Error(`${url} did not come up`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

let preview = null;
export async function baseUrl() {
  if (process.env.CORRAL_E2E_URL) return process.env.CORRAL_E2E_URL.replace(/\/$/, "");
  if (preview) return preview.url;
  const api = process.env.CORRAL_E2E_API_URL ?? "http://127.0.0.1:3000";
  if (!fs.existsSync(path.join(webDir, "dist", "index.html"))) throw new Error("run `npm run build` first (web/dist is missing)");
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(webDir, "node_modules", "vite", "bin", "vite.js"), "preview", "--port", String(port), "--strictPort", "--host", "127.0.0.1"], {
    cwd: webDir,
    env: { ...process.env, CORRAL_API_URL: api },
    stdio: ["ignore", "ignore", "inherit"],
  });
  const url = `http://127.0.0.1:${port}`;
  preview = { child, url };
  await waitFor(`${url}/`);
  return url;
}

export function stopPreview() {
  preview?.child.kill();
  preview = null;
}

export async function launch() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "corral-e2e-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    headless: true,
    // The server's CSP (script-src 'self') would block the inline axe-core script
    // the accessibility checks inject; the app's own pages need no exception.
    bypassCSP: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 900 },
  });
  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** Records console errors and uncaught exceptions of a page. */
export function watchConsole(page, { allow = [] } = {}) {
  const errors = [];
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    const t = m.text();
    if (allow.some((re) => re.test(t))) return;
    errors.push(t);
  });
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  return errors;
}

export function uniqueEmail(tag) {
  return `e2e-${tag}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}@example.com`;
}

export const PASSWORD = "correct-horse-battery";

/** Signs a new user up through the UI and creates their first organization. */
export async function signUpAndOnboard(page, base, { name = "Ada Lovelace", org = "Analytical Engines" } = {}) {
  const email = uniqueEmail("user");
  await page.goto(`${base}/sign-up`);
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.getByRole("heading", { name: `Welcome, ${name}` }).waitFor();
  await page.getByLabel("Organization name").fill(org);
  await page.getByRole("button", { name: "Create organization" }).click();
  await page.getByRole("heading", { name: "Agents", level: 1 }).waitFor();
  return { email, name, org };
}

/** The org and app the dashboard currently uses (from its local storage). */
export async function currentScope(page) {
  return page.evaluate(() => ({ orgId: localStorage.getItem("corral.org"), appId: localStorage.getItem("corral.app") }));
}

/** An API call with the page's session cookie (no Origin header: not a browser request). */
export async function apiCall(page, method, p, body) {
  const { orgId, appId } = await currentScope(page);
  const base = new URL(page.url()).origin;
  const res = await page.request.fetch(`${base}${p}`, {
    method,
    headers: { "X-Org-Id": orgId ?? "", "X-App-Id": appId ?? "", "content-type": "application/json" },
    data: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok()) throw new Error(`${method} ${p} → ${res.status()}: ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Gives the current org a default model served by the mock LLM at `mockUrl`. */
export async function configureMockModel(page, mockUrl) {
  const host = process.env.CORRAL_E2E_MOCK_HOST;
  const url = host ? mockUrl.replace("127.0.0.1", host) : mockUrl;
  const cred = await apiCall(page, "POST", "/api/model-provider-credentials", {
    providerId: "openai-compatible",
    apiKey: "sk-mock",
    baseUrlOverride: url,
    label: "Mock",
  });
  const model = await apiCall(page, "POST", "/api/models", { credentialId: cred.id, modelId: "mock-model" });
  await apiCall(page, "PUT", "/api/models/default", { modelId: model.id });
  return model;
}

const axeSource = fs.readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/** axe-core (WCAG 2.1 A/AA + best practices) on the page: its serious and critical violations. */
export async function axe(page) {
  if (!(await page.evaluate(() => "axe" in window))) await page.addScriptTag({ content: axeSource });
  const r = await page.evaluate(() =>
    window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] } }),
  );
  return r.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")}`);
}
