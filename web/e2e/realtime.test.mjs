import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { apiCall, baseUrl, configureMockModel, launch, signUpAndOnboard, stopPreview, watchConsole } from "./harness.mjs";
import { startMockLlm } from "./mock-llm.mjs";

let browser;
let base;
let page;
let errors;
let mock;
before(async () => {
  base = await baseUrl();
  mock = await startMockLlm();
  browser = await launch();
  page = await browser.context.newPage();
  errors = watchConsole(page);
  await signUpAndOnboard(page, base, { name: "Stream Tester", org: "Streams" });
  await configureMockModel(page, mock.url);
});
after(async () => {
  await browser?.close();
  mock?.close();
  stopPreview();
});

test("run logs: a dropped stream reconnects with Last-Event-ID and gets the missed events replayed", async () => {
  const run = await apiCall(page, "POST", "/api/agents/@corral/hello-world/run", { input: { name: "Ada" } });
  for (let i = 0; i < 100; i++) {
    const r = await apiCall(page, "GET", `/api/runs/${run.id}`);
    if (r.status === "success" || r.status === "failed") break;
    await new Promise((res) => setTimeout(res, 200));
  }
  // The history endpoint answers empty, so log lines can only come from the stream.
  await page.route(`**/api/runs/${run.id}/logs**`, (route) =>
    route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify({ object: "list", data: [], hasMore: false }) }),
  );
  // First connection: one frame with id 1, then the connection drops.
  const seen = [];
  await page.route(`**/api/realtime/runs/${run.id}**`, async (route) => {
    seen.push(route.request().headers()["last-event-id"] ?? null);
    if (seen.length === 1) {
      await route.fulfill({ status: 200, headers: { "content-type": "text/event-stream" }, body: "id: 1\nevent: ping\ndata:\n\n" });
    } else {
      await route.continue();
    }
  });
  await page.goto(`${base}/runs/${run.id}`);
  const log = page.getByRole("log", { name: "Run logs" });
  await log.getByText("calling the model").first().waitFor({ timeout: 15_000 });
  await log.getByText("All done.").waitFor();
  assert.deepEqual(seen.slice(0, 2), [null, "1"]);
  await page.getByTestId("log-stream-state").getByText("Live").waitFor();
  await page.unrouteAll();
  assert.deepEqual(errors, []);
});

test("a failed run shows its error live, and the error level filter keeps it", async () => {
  const cred = await apiCall(page, "POST", "/api/model-provider-credentials", {
    providerId: "openai-compatible",
    apiKey: "sk-dead",
    baseUrlOverride: "http://127.0.0.1:9/v1",
    label: "Dead end",
  });
  await apiCall(page, "POST", "/api/models", { credentialId: cred.id, modelId: "dead-model", label: "Dead model" });
  await page.goto(`${base}/agents/@corral/hello-world`);
  const form = page.locator("form", { has: page.getByRole("heading", { name: "Run this agent" }) });
  await form.getByLabel("name").fill("Ada");
  await form.getByLabel("Model").selectOption({ label: "Dead model" });
  await form.getByRole("button", { name: "Run" }).click();
  await page.waitForURL(/\/runs\/run_/);
  await page.locator(".page-header .badge-failed").waitFor({ timeout: 30_000 });
  await page.getByRole("alert").getByText(/model request failed/).waitFor();
  await page.getByLabel("Level").selectOption("error");
  await page.getByRole("log", { name: "Run logs" }).getByText(/model request failed/).waitFor();
  assert.deepEqual(errors, []);
});
