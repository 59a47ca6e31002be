import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { apiCall, baseUrl, configureMockModel, launch, signUpAndOnboard, stopPreview, watchConsole } from "./harness.mjs";
import { startMockLlm } from "./mock-llm.mjs";

let browser;
let base;
let mock;
let page;
let errors;
before(async () => {
  base = await baseUrl();
  mock = await startMockLlm({ delayMs: 700 });
  browser = await launch();
  page = await browser.context.newPage();
  errors = watchConsole(page);
  await signUpAndOnboard(page, base, { name: "Grace Hopper", org: "Runs Inc" });
  await configureMockModel(page, mock.url);
});
after(async () => {
  await browser?.close();
  mock?.close();
  stopPreview();
});

/** Counts the requests whose path matches `re` while `fn` runs. */
async function counting(re, fn) {
  let n = 0;
  const on = (r) => {
    if (re.test(new URL(r.url()).pathname)) n++;
  };
  page.on("request", on);
  try {
    await fn();
  } finally {
    page.off("request", on);
  }
  return n;
}

test("agent detail: generated run form, validation, run with live status, logs and output", async () => {
  await page.getByRole("link", { name: "Hello World" }).click();
  await page.getByRole("heading", { name: "Hello World", level: 1 }).waitFor();
  await page.getByText("Ready to run").waitFor();

  const form = page.locator("form", { has: page.getByRole("heading", { name: "Run this agent" }) });
  // Fields follow the manifest's property_order; the enum is a select with its default.
  const labels = await form.locator(".schema-form .field > label").allTextContents();
  assert.deepEqual(labels.map((l) => l.replace(/\s*\*?\s*\(required\)/, "").trim()), ["name", "language"]);
  assert.equal(await form.getByLabel("language").inputValue(), "en");
  assert.equal(await form.getByLabel("name").getAttribute("placeholder"), "Ada");
  await form.getByText("Who to greet").waitFor();

  // Required field left empty: the form says so and sends nothing.
  const sent = await counting(/\/run$/, async () => {
    await form.getByRole("button", { name: "Run" }).click();
    await form.getByText("Required", { exact: true }).waitFor();
  });
  assert.equal(sent, 0);

  await form.getByLabel("name").fill("Ada");
  await form.getByLabel("language").selectOption("fr");
  const detailFetches = await counting(/^\/api\/runs\/run_[^/]+$/, async () => {
    await form.getByRole("button", { name: "Run" }).click();
    await page.waitForURL(/\/runs\/run_/);
    // Status, logs and output arrive over SSE: no reload, no polling.
    await page.locator(".page-header .badge-success").waitFor({ timeout: 30_000 });
  });
  assert.ok(detailFetches <= 3, `run detail fetched ${detailFetches} times`);
  await page.getByRole("log", { name: "Run logs" }).getByText("calling the model").first().waitFor();
  await page.getByTestId("run-output").getByText("Hello, Ada!").waitFor();
  await page.getByRole("button", { name: "JSON", exact: true }).click();
  await page.getByRole("region", { name: "Output" }).getByText('"greeting": "Hello, Ada!"').waitFor();
  assert.match(await page.getByRole("region", { name: "Input" }).textContent(), /"language": "fr"/);
  assert.notEqual(await page.getByTestId("run-duration").textContent(), "—");

  // Level filter.
  await page.getByLabel("Level").selectOption("warn");
  await page.getByText("No log entries at this level").waitFor();
  await page.getByLabel("Level").selectOption("debug");
  assert.deepEqual(errors, []);
});

test("runs list: a new run appears and finishes live, without polling", async () => {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Runs" }).click();
  await page.getByRole("heading", { name: "Runs", level: 1 }).waitFor();
  await page.getByText("Live", { exact: true }).waitFor();
  const before = await page.locator("tbody tr").count();
  let runId;
  const listFetches = await counting(/^\/api\/runs$/, async () => {
    const run = await apiCall(page, "POST", "/api/agents/@corral/hello-world/run", { input: { name: "Linus" } });
    runId = run.id;
    const row = page.locator(`tr[data-run-id="${runId}"]`);
    await row.waitFor({ timeout: 15_000 });
    await row.locator(".badge-success").waitFor({ timeout: 30_000 });
  });
  assert.equal(await page.locator("tbody tr").count(), before + 1);
  // One refetch when the unknown run shows up; status changes patch the cache.
  assert.ok(listFetches <= 2, `runs list fetched ${listFetches} times`);

  // Filters.
  await page.getByLabel("Status").selectOption("failed");
  await page.getByText("No runs match these filters").waitFor();
  await page.getByLabel("Status").selectOption("");
  await page.locator(`tr[data-run-id="${runId}"]`).waitFor();
  await page.getByLabel("Kind").selectOption("inline");
  await page.getByText("No runs match these filters").waitFor();
  await page.getByLabel("Kind").selectOption("package");
  await page.getByLabel("Only my runs").check();
  await page.locator(`tr[data-run-id="${runId}"]`).waitFor();
  assert.match(page.url(), /kind=package/);
  assert.match(page.url(), /user=me/);
  assert.deepEqual(errors, []);
});

test("run detail: re-run, and cancel a running run", async () => {
  await page.locator("tbody tr").first().getByRole("link").click();
  await page.locator(".page-header .badge-success").waitFor();
  const first = page.url();
  await page.getByRole("button", { name: "Re-run" }).click();
  await page.waitForURL((u) => u.toString() !== first && /\/runs\/run_/.test(u.toString()));
  await page.locator(".page-header .badge-success").waitFor({ timeout: 30_000 });

  mock.state.delayMs = 20_000;
  try {
    const run = await apiCall(page, "POST", "/api/agents/@corral/hello-world/run", { input: { name: "Ada" } });
    await page.goto(`${base}/runs/${run.id}`);
    await page.locator(".page-header .badge-running, .page-header .badge-pending").first().waitFor();
    await page.getByRole("button", { name: "Cancel run" }).click();
    await page.locator(".page-header .badge-cancelled").waitFor({ timeout: 20_000 });
  } finally {
    mock.state.delayMs = 700;
  }
  assert.deepEqual(errors, []);
});

test("agent settings: model for the agent, saved input values and locked fields reach the run form", async () => {
  await page.goto(`${base}/agents/@corral/hello-world`);
  await page.getByRole("tab", { name: "Settings" }).click();
  const panel = page.getByRole("tabpanel");
  await panel.getByLabel("Model for this agent in this application").selectOption({ label: "mock-model (default)" });
  await panel.getByRole("button", { name: "Save model" }).click();
  await panel.getByRole("form", { name: "Model" }).getByText("Saved.").waitFor();

  const input = panel.getByRole("form", { name: "Saved input" });
  await input.getByLabel("name", { exact: true }).fill("Grace");
  await input.getByLabel("language", { exact: true }).selectOption("fr");
  await input.getByRole("checkbox", { name: "Lock language" }).check();
  await input.getByRole("button", { name: "Save input settings" }).click();
  await input.getByText("Saved.").waitFor();

  const form = page.locator("form", { has: page.getByRole("heading", { name: "Run this agent" }) });
  await form.getByText("(locked)").waitFor();
  assert.equal(await form.getByLabel("name").inputValue(), "Grace");
  assert.equal(await form.getByLabel("language").inputValue(), "fr");
  assert.equal(await form.getByLabel("language").isDisabled(), true);
  await form.getByRole("button", { name: "Run" }).click();
  await page.waitForURL(/\/runs\/run_/);
  await page.getByTestId("run-output").getByText("Hello, Grace!").waitFor({ timeout: 30_000 });
  assert.deepEqual(errors, []);
});
