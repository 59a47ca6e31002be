import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { baseUrl, launch, signUpAndOnboard, stopPreview, watchConsole } from "./harness.mjs";
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
  await signUpAndOnboard(page, base, { name: "Integrator", org: "Connected" });
});
after(async () => {
  await browser?.close();
  mock?.close();
  stopPreview();
});

const nav = (name) => page.getByRole("navigation", { name: "Main" }).getByRole("link", { name, exact: true }).click();

test("models: add a provider key (never shown back), a model, make it the default, test it", async () => {
  await nav("Models");
  await page.getByRole("heading", { name: "Models", level: 1 }).waitFor();
  const key = `sk-secret-${Date.now()}`;
  await page.getByLabel("Provider", { exact: true }).selectOption("openai-compatible");
  await page.getByLabel("API key").fill(key);
  assert.equal(await page.getByLabel("API key").getAttribute("type"), "password");
  const host = process.env.CORRAL_E2E_MOCK_HOST;
  await page.getByLabel("Base URL (optional)").fill(host ? mock.url.replace("127.0.0.1", host) : mock.url);
  await page.getByLabel("Label (optional)").fill("Mock provider");
  await page.getByRole("button", { name: "Save key" }).click();
  await page.getByRole("list", { name: "Provider keys" }).getByText("Mock provider").waitFor();
  assert.equal(await page.getByLabel("API key").inputValue(), "");
  assert.ok(!(await page.content()).includes(key), "the key is not shown back");

  await page.getByLabel("Provider key", { exact: true }).selectOption({ label: "Mock provider (openai-compatible)" });
  await page.getByLabel("Model id").fill("mock-model");
  await page.getByRole("button", { name: "Add model" }).click();
  const row = page.locator("tr", { hasText: "mock-model" });
  await row.waitFor();
  if (await row.getByRole("button", { name: "Make default" }).count()) {
    await row.getByRole("button", { name: "Make default" }).click();
  }
  await row.getByText("default", { exact: true }).waitFor();
  await row.getByRole("button", { name: "Test" }).click();
  await row.getByText(/^OK \(/).waitFor({ timeout: 20_000 });
  assert.deepEqual(errors, []);
});

test("integrations: connect an API-key integration from its credential schema; the agent becomes ready", async () => {
  await page.goto(`${base}/agents/@corral/http-fetcher`);
  await page.getByText("Not ready to run").waitFor();
  await page.getByText("needs a connection").waitFor();
  assert.equal(await page.getByRole("button", { name: "Run" }).isDisabled(), true);

  await nav("Integrations");
  const item = page.locator("li.card", { hasText: "@corral/http-api" });
  await item.getByRole("button", { name: "Connections" }).click();
  await item.getByText("No connection yet.").waitFor();
  const form = item.getByRole("form", { name: "Connect with api_key" });
  assert.equal(await form.getByLabel("api_key").getAttribute("type"), "password");
  assert.equal(await form.getByLabel("header_name").inputValue(), "X-API-Key");
  await form.getByRole("button", { name: "Save connection" }).click();
  await form.getByText("Required", { exact: true }).waitFor();
  await form.getByLabel("api_key").fill("k-123");
  await form.getByLabel("Connection label (optional)").fill("Staging API");
  await form.getByRole("button", { name: "Save connection" }).click();
  await item.getByText("Staging API").waitFor();

  await page.goto(`${base}/agents/@corral/http-fetcher`);
  await page.getByText("Ready to run", { exact: true }).waitFor();
  assert.equal(await page.getByRole("button", { name: "Run" }).isDisabled(), false);

  await nav("Integrations");
  await item.getByRole("button", { name: "Connections" }).click();
  await item.getByRole("button", { name: "Disconnect" }).click();
  await item.getByRole("button", { name: "Disconnect" }).click();
  await item.getByText("No connection yet.").waitFor();
  assert.deepEqual(errors, []);
});

test("end-users: add, list, delete", async () => {
  await nav("End-users");
  await page.getByText("No end-users yet.").waitFor();
  await page.getByLabel("Name").fill("Customer One");
  await page.getByLabel("Email").fill("customer@example.com");
  await page.getByLabel("External id").fill("cust_1");
  await page.getByRole("button", { name: "Add end-user" }).click();
  const row = page.locator("tr", { hasText: "Customer One" });
  await row.waitFor();
  await row.getByRole("button", { name: "Delete" }).click();
  await row.getByRole("button", { name: "Delete end-user" }).click();
  await page.getByText("No end-users yet.").waitFor();
  assert.deepEqual(errors, []);
});

test("OAuth: add a client, then Connect sends the browser to the provider with PKCE", async () => {
  await nav("Integrations");
  const item = page.locator("li.card", { hasText: "@corral/github" });
  await item.getByRole("button", { name: "Connections" }).click();
  const connect = item.getByRole("button", { name: "Connect with OAuth" });
  await connect.waitFor();
  assert.equal(await connect.isDisabled(), true);
  await item.getByText("OAuth clients").click();
  assert.match(await item.locator(".oauth-clients code").first().textContent(), /\/api\/integrations\/callback$/);
  await item.getByLabel("Client id").fill("my-client-id");
  await item.getByLabel("Client secret").fill("my-client-secret");
  await item.getByRole("button", { name: "Add client" }).click();
  await item.getByText("my-client-id").waitFor();
  assert.ok(!(await page.content()).includes("my-client-secret"), "the client secret is not shown back");
  await item.getByRole("button", { name: "Connect with OAuth" }).and(page.locator(":enabled")).waitFor();

  // No network: the provider's authorize page is answered here.
  let authorizeUrl = null;
  await page.context().route(/^https:\/\/github\.com\//, (route) => {
    authorizeUrl = route.request().url();
    return route.fulfill({ status: 200, contentType: "text/html", body: "<!doctype html><link rel=\"icon\" href=\"data:,\"><title>GitHub</title><main><h1>Authorize</h1></main>" });
  });
  await item.getByRole("button", { name: "Connect with OAuth" }).click();
  await page.waitForURL(/github\.com/);
  const u = new URL(authorizeUrl);
  assert.equal(u.searchParams.get("client_id"), "my-client-id");
  assert.equal(u.searchParams.get("code_challenge_method"), "S256");
  assert.ok(u.searchParams.get("state"));
  assert.match(u.searchParams.get("redirect_uri") ?? "", /\/api\/integrations\/callback$/);
  await page.context().unrouteAll();
  await page.goto(`${base}/integrations`);
  assert.deepEqual(errors, []);
});
