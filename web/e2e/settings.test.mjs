import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { PASSWORD, apiCall, baseUrl, launch, signUpAndOnboard, stopPreview, uniqueEmail, watchConsole } from "./harness.mjs";

let browser;
let base;
let page;
let errors;
let receiver;
let received = [];
before(async () => {
  base = await baseUrl();
  receiver = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      received.push({ headers: req.headers, body });
      res.writeHead(200).end("ok");
    });
  });
  await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
  browser = await launch();
  await browser.context.grantPermissions(["clipboard-read", "clipboard-write"]);
  page = await browser.context.newPage();
  errors = watchConsole(page);
  await signUpAndOnboard(page, base, { name: "Linus", org: "Keys & Hooks" });
});
after(async () => {
  await browser?.close();
  receiver?.closeAllConnections();
  receiver?.close();
  stopPreview();
});

const nav = (name) => page.getByRole("navigation", { name: "Main" }).getByRole("link", { name, exact: true }).click();

test("API keys: created key shown once with a copy button, listed by prefix, revoked", async () => {
  await nav("API keys");
  await page.getByText("No API keys yet.").waitFor();
  await page.getByLabel("Name", { exact: true }).fill("ci key");
  await page.getByLabel("runs:read").check();
  await page.getByRole("button", { name: "Create key" }).click();
  const secret = await page.getByTestId("secret-value").textContent();
  assert.match(secret, /^ask_/);
  await page.getByRole("button", { name: "Copy", exact: true }).click();
  await page.getByRole("button", { name: "Copied" }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret);
  // The key works against the API.
  const res = await page.request.get(`${new URL(page.url()).origin}/api/runs`, { headers: { Authorization: `Bearer ${secret}` } });
  assert.equal(res.status(), 200);
  await page.getByRole("button", { name: "Done" }).click();
  assert.equal(await page.getByTestId("secret-value").count(), 0);
  const row = page.locator("tr", { hasText: "ci key" });
  await row.waitFor();
  assert.ok((await row.textContent()).includes(secret.slice(0, 8)));
  assert.ok(!(await page.content()).includes(secret), "the key is not shown again");
  await row.getByRole("button", { name: "Revoke" }).click();
  await row.getByRole("button", { name: "Revoke ci key" }).click();
  await page.getByText("No API keys yet.").waitFor();
  assert.deepEqual(errors, []);
});

test("webhooks: secret shown once, test delivery, deliveries listed", async () => {
  await nav("Webhooks");
  await page.getByText("No webhooks yet.").waitFor();
  const url = `http://127.0.0.1:${receiver.address().port}/hook`;
  await page.getByLabel("Endpoint URL").fill(url);
  await page.getByLabel("run.started").check();
  await page.getByRole("button", { name: "Create webhook" }).click();
  assert.match(await page.getByTestId("secret-value").textContent(), /^whsec_/);
  await page.getByRole("button", { name: "Done" }).click();
  const item = page.locator("li.card", { hasText: url });
  await item.waitFor();
  assert.match(await item.textContent(), /run\.started/);
  await item.getByRole("button", { name: "Send test" }).click();
  const outcome = item.getByText(/Test delivery (succeeded|failed)/);
  await outcome.waitFor({ timeout: 20_000 });
  const text = await outcome.textContent();
  if (/succeeded/.test(text)) assert.ok(received.length >= 1);
  await item.getByRole("button", { name: "Deliveries" }).click();
  await item.locator("tbody tr").first().waitFor();
  // Rotating shows a new secret once.
  await item.getByRole("button", { name: "Rotate secret" }).click();
  assert.match(await page.getByTestId("secret-value").textContent(), /^whsec_/);
  await page.getByRole("button", { name: "Done" }).click();
  await item.getByRole("button", { name: "Disable" }).click();
  await item.getByRole("button", { name: "Enable" }).waitFor();
  assert.deepEqual(errors, []);
});

test("applications and the app switcher: each app has its own runs and keys", async () => {
  await nav("Applications");
  await page.getByLabel("New application name").fill("Staging");
  await page.getByRole("button", { name: "Create application" }).click();
  await page.locator("tr", { hasText: "Staging" }).waitFor();
  const before = await apiCall(page, "GET", "/api/applications");
  assert.equal(before.data.length, 2);
  await page.getByLabel("Current application").selectOption({ label: "Staging" });
  await page.locator("tr", { hasText: "Staging" }).getByText("current").waitFor();
  const staging = before.data.find((a) => a.name === "Staging");
  assert.equal((await page.evaluate(() => localStorage.getItem("corral.app"))), staging.id);
  await nav("Webhooks");
  await page.getByText("No webhooks yet.").waitFor();
  await page.getByLabel("Current application").selectOption({ label: "Default (default)" });
  await page.locator("li.card", { hasText: "/hook" }).waitFor();
  assert.deepEqual(errors, []);
});

const friend = uniqueEmail("friend");

test("org switcher, members and settings", async () => {
  await page.getByLabel("Current organization").selectOption("__new");
  await page.getByRole("heading", { name: "New organization" }).waitFor();
  await page.getByLabel("Organization name").fill("Second Org");
  await page.getByRole("button", { name: "Create organization" }).click();
  await page.getByRole("heading", { name: "Agents", level: 1 }).waitFor();
  assert.equal(await page.getByLabel("Current organization").locator("option:checked").textContent(), "Second Org");
  await nav("Members");
  await page.getByRole("cell", { name: "owner" }).waitFor();
  await page.getByLabel("Email").fill(friend);
  await page.getByRole("button", { name: "Invite" }).click();
  await page.getByRole("cell", { name: friend }).waitFor();
  await nav("Settings");
  await page.getByLabel("Name").fill("Second Org Renamed");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Saved.").waitFor();
  await page.getByLabel("Current organization").locator("option", { hasText: "Second Org Renamed" }).waitFor({ state: "attached" });
  await page.getByLabel("Current organization").selectOption({ label: "Keys & Hooks" });
  await nav("Webhooks");
  await page.locator("li.card", { hasText: "/hook" }).waitFor();
  assert.deepEqual(errors, []);
});

test("an invited person signs up from the invitation link and joins the organization", async () => {
  const second = (await apiCall(page, "GET", "/api/me/orgs")).data.find((o) => o.name === "Second Org Renamed");
  const org = await page.request.get(`${new URL(page.url()).origin}/api/orgs/${second.id}`, { headers: { "X-Org-Id": second.id } }).then((r) => r.json());
  const inv = org.invitations.find((i) => i.email === friend);
  assert.ok(inv, `no invitation for ${friend}`);
  const other = await launch();
  try {
    const p = await other.context.newPage();
    const errs = watchConsole(p);
    await p.goto(`${base}/invite/${inv.token}`);
    await p.getByText(/invited/).waitFor().catch(async (e) => {
      throw new Error(`${e.message}\n${await p.locator("body").textContent()}`);
    });
    assert.match(await p.locator("main").textContent(), /Second Org Renamed/);
    await p.getByRole("link", { name: "Create an account" }).click();
    await p.getByLabel("Name").fill("Friend");
    await p.getByLabel("Email").fill(friend);
    await p.getByLabel("Password").fill(PASSWORD);
    await p.getByRole("button", { name: "Create account" }).click();
    await p.getByRole("button", { name: "Join Second Org Renamed" }).click();
    await p.getByRole("heading", { name: "Agents", level: 1 }).waitFor();
    assert.equal(await p.getByLabel("Current organization").locator("option:checked").textContent(), "Second Org Renamed");
    assert.deepEqual(errs, []);
  } finally {
    await other.close();
  }
});
