import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { apiCall, baseUrl, configureMockModel, currentScope, launch, signUpAndOnboard, stopPreview, watchConsole } from "./harness.mjs";
import { startMockLlm } from "./mock-llm.mjs";
import { agentArchive } from "./zip.mjs";

let browser;
let base;
let page;
let errors;
let mock;
let slug;
before(async () => {
  base = await baseUrl();
  mock = await startMockLlm();
  browser = await launch();
  page = await browser.context.newPage();
  errors = watchConsole(page, { allow: [/status of 403/] });
  await signUpAndOnboard(page, base, { name: "Importer", org: "Import Org" });
  await configureMockModel(page, mock.url);
  const { orgId } = await currentScope(page);
  slug = (await apiCall(page, "GET", `/api/orgs/${orgId}`)).slug;
});
after(async () => {
  await browser?.close();
  mock?.close();
  stopPreview();
});

/** Drops `bytes` as a file on the drop zone, as a drag & drop from the desktop would. */
async function dropFile(name, bytes) {
  const handle = await page.evaluateHandle(
    ({ name, b64 }) => {
      const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bin], name, { type: "application/zip" }));
      return dt;
    },
    { name, b64: bytes.toString("base64") },
  );
  await page.locator(".dropzone").dispatchEvent("dragover", { dataTransfer: handle });
  await page.locator(".dropzone").dispatchEvent("drop", { dataTransfer: handle });
}

test("import a package by drag & drop; a package outside the org's scope shows the problem", async () => {
  await dropFile("wrong.afps", agentArchive("someone-else", "nope"));
  await page.getByRole("alert").getByText(/outside this organization's scope/).waitFor();

  await dropFile("form-tester.afps", agentArchive(slug, "form-tester"));
  await page.getByRole("status").getByText(`@${slug}/form-tester`).waitFor();
  await page.getByRole("link", { name: "Form Tester" }).waitFor();

  // The same version again is a conflict; a newer one through the file picker works.
  await page.getByLabel("Package archive").setInputFiles({ name: "v2.afps", mimeType: "application/zip", buffer: agentArchive(slug, "form-tester", "1.1.0") });
  await page.getByRole("status").getByText("version 1.1.0").waitFor();
  assert.deepEqual(errors.filter((e) => !/status of 409|status of 403/.test(e)), []);
});

test("the run form follows the schema: order, defaults, types, enums, booleans, files", async () => {
  await page.getByRole("link", { name: "Form Tester" }).click();
  await page.getByRole("heading", { name: "Form Tester", level: 1 }).waitFor();
  await page.getByRole("tab", { name: /Versions/ }).click();
  await page.getByRole("cell", { name: "1.1.0" }).waitFor();

  const form = page.locator("form", { has: page.getByRole("heading", { name: "Run this agent" }) });
  const labels = (await form.locator(".schema-form .field > label").allTextContents()).map((l) => l.replace(/\s*\*?\s*\(required\)/, "").trim());
  assert.deepEqual(labels, ["tone", "topic", "count", "draft", "attachment"]);
  assert.equal(await form.getByLabel("tone").inputValue(), "formal");
  assert.equal(await form.getByLabel("count").inputValue(), "3");
  assert.equal(await form.getByLabel("count").getAttribute("type"), "number");
  assert.equal(await form.getByLabel("draft").getAttribute("type"), "checkbox");
  assert.equal(await form.getByLabel("attachment").getAttribute("type"), "file");
  assert.equal(await form.getByLabel("attachment").getAttribute("accept"), ".txt");

  await form.getByLabel("count").fill("2.5");
  await form.getByRole("button", { name: "Run" }).click();
  await form.getByText("Required", { exact: true }).waitFor();
  await form.getByText("Must be a whole number").waitFor();

  await form.getByLabel("topic").fill("ships");
  await form.getByLabel("count").fill("4");
  await form.getByLabel("draft").check();
  await form.getByLabel("attachment").setInputFiles({ name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("hello") });
  await form.getByText("1 file selected").waitFor();
  await form.getByRole("button", { name: "Run" }).click();
  await page.waitForURL(/\/runs\/run_/);
  const input = await page.getByRole("region", { name: "Input" }).textContent();
  assert.match(input, /"count": 4/);
  assert.match(input, /"draft": true/);
  assert.match(input, /"tone": "formal"/);
  assert.match(input, /"attachment": "data:text\/plain;base64,aGVsbG8="/);
  await page.locator(".page-header .badge-success, .page-header .badge-failed").first().waitFor({ timeout: 30_000 });
  assert.deepEqual(errors.filter((e) => !/status of 409|status of 403/.test(e)), []);
});

test("versions of an own agent: yank, restore as draft; delete the agent", async () => {
  await page.goto(`${base}/agents/@${slug}/form-tester`);
  await page.getByRole("heading", { name: "Form Tester", level: 1 }).waitFor();
  await page.getByRole("tab", { name: /Versions/ }).click();
  const row = page.locator("tr", { has: page.getByRole("cell", { name: "1.0.0", exact: true }) });
  await row.getByRole("button", { name: "Yank" }).click();
  await row.getByRole("button", { name: "Yank 1.0.0" }).click();
  await page.getByRole("cell", { name: "1.0.0 (yanked)" }).waitFor();
  const latest = page.locator("tr", { has: page.getByRole("cell", { name: "1.1.0", exact: true }) });
  await latest.getByRole("button", { name: "Restore as draft" }).click();
  await page.getByText("Restored 1.1.0 as the draft.").waitFor();

  await page.getByRole("button", { name: "Delete agent" }).click();
  await page.getByRole("button", { name: `Delete @${slug}/form-tester` }).click();
  await page.getByRole("heading", { name: "Agents", level: 1 }).waitFor();
  await page.getByRole("link", { name: "Hello World" }).waitFor();
  assert.equal(await page.getByRole("link", { name: "Form Tester" }).count(), 0);
  assert.deepEqual(errors.filter((e) => !/status of 409|status of 403/.test(e)), []);
});
