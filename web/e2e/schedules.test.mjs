import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { apiCall, axe, baseUrl, configureMockModel, launch, signUpAndOnboard, stopPreview, watchConsole } from "./harness.mjs";
import { startMockLlm } from "./mock-llm.mjs";

let browser;
let base;
let mock;
let page;
let errors;
before(async () => {
  base = await baseUrl();
  mock = await startMockLlm();
  browser = await launch();
  page = await browser.context.newPage();
  // The bad cron expression is refused with a 400 on purpose.
  errors = watchConsole(page, { allow: [/status of 400/] });
  // No model yet: the first test needs a fire the server refuses.
  await signUpAndOnboard(page, base, { name: "Ada Lovelace", org: "Schedules Inc" });
});
after(async () => {
  await browser?.close();
  mock?.close();
  stopPreview();
});

const nav = () => page.getByRole("navigation", { name: "Main" });

test("schedules page: a fire the server refused shows its last error as a warning", async () => {
  const s = await apiCall(page, "POST", "/api/agents/@corral/hello-world/schedules", {
    name: "No model yet",
    cron_expression: "*/2 * * * * *",
    input: { name: "Ada" },
  });
  try {
    await nav().getByRole("link", { name: "Schedules" }).click();
    await page.getByRole("heading", { name: "Schedules", level: 1 }).waitFor();
    const row = page.locator(`tr[data-schedule-id="${s.id}"]`);
    await row.waitFor();
    await row.getByRole("link", { name: "@corral/hello-world" }).waitFor();
    await row.getByText("*/2 * * * * *").waitFor();
    // The refusal arrives within a couple of seconds: the page refetches once the next
    // fire time has passed (a refused fire creates no run, so no run frame tells it).
    const alert = page.getByRole("alert").filter({ hasText: "could not start a run" });
    await alert.getByText(/no model is configured/).waitFor({ timeout: 15_000 });
    await row.getByText(/Last fire refused/).waitFor();
    // The warning is readable in both themes.
    for (const theme of ["light", "dark"]) {
      await page.emulateMedia({ colorScheme: theme });
      assert.deepEqual(await axe(page), [], `${theme} theme`);
    }
    await page.emulateMedia({ colorScheme: "light" });

    await row.getByRole("link", { name: "No model yet" }).click();
    const detail = page.getByTestId("schedule-last-error");
    await detail.getByText("model_not_configured").waitFor();
    await detail.getByText(/no model is configured/).waitFor();
  } finally {
    await apiCall(page, "DELETE", `/api/schedules/${s.id}`);
  }
  assert.deepEqual(errors, []);
});

test("schedule: create from the agent page, fires, live runs, disable, edit with a cron error, delete", async () => {
  await configureMockModel(page, mock.url);
  await page.goto(`${base}/agents/@corral/hello-world`);
  await page.getByRole("heading", { name: "Hello World", level: 1 }).waitFor();
  await page.getByRole("tab", { name: "Schedules" }).click();
  const panel = page.getByRole("tabpanel");
  await panel.getByText("This agent has no schedule yet.").waitFor();
  await panel.getByRole("button", { name: "New schedule" }).click();
  const form = panel.getByRole("form", { name: "New schedule" });

  // Presets fill the cron expression; the timezone defaults to the browser's.
  await form.getByRole("button", { name: "Daily 09:00" }).click();
  assert.equal(await form.getByLabel("Cron expression").inputValue(), "0 9 * * *");
  const tz = await page.evaluate(() => Intl.DateTimeFormat().resolvedOptions().timeZone);
  assert.equal(await form.getByLabel("Timezone").inputValue(), tz);
  assert.ok((await form.getByLabel("Timezone").locator("option").count()) > 100);

  // The same generated input form as the run form: required field checked before sending.
  await form.getByLabel("Schedule name").fill("Every two seconds");
  await form.getByLabel("Cron expression").fill("*/2 * * * * *");
  await form.getByRole("button", { name: "Create schedule" }).click();
  await form.getByText("Required", { exact: true }).waitFor();
  await form.getByLabel(/^name\b/).fill("Grace");
  await form.getByLabel("language").selectOption("fr");
  await form.getByRole("button", { name: "Create schedule" }).click();

  // The schedule's page: next run, then a fire whose run shows up and finishes live.
  await page.waitForURL(/\/schedules\/sched_/);
  const scheduleUrl = page.url();
  const id = scheduleUrl.split("/schedules/")[1];
  await page.getByRole("heading", { name: "Every two seconds", level: 1 }).waitFor();
  await page.getByText("Live", { exact: true }).waitFor();
  assert.notEqual((await page.getByTestId("schedule-next-run").textContent()).trim(), "—");
  const runs = page.getByRole("region", { name: "Runs" });
  const row = runs.locator("tbody tr").first();
  await row.waitFor({ timeout: 15_000 });
  await row.locator(".badge-success").waitFor({ timeout: 30_000 });

  // Disable it at once (it fires every two seconds).
  await page.getByRole("switch", { name: "Enabled: Every two seconds" }).uncheck();
  await page.getByText("(paused)").waitFor();
  assert.equal((await apiCall(page, "GET", `/api/schedules/${id}`)).enabled, false);

  // The run says which schedule started it, and links back.
  await row.getByRole("link").first().click();
  await page.waitForURL(/\/runs\/run_/);
  await page.getByTestId("run-output").getByText("Hello, Grace!").waitFor({ timeout: 30_000 });
  assert.match(await page.getByRole("region", { name: "Input" }).textContent(), /"language": "fr"/);
  await page.getByRole("link", { name: "Schedule: Every two seconds" }).click();
  await page.waitForURL(scheduleUrl);

  // The runs list names the schedule too.
  await nav().getByRole("link", { name: "Runs" }).click();
  await page.getByRole("heading", { name: "Runs", level: 1 }).waitFor();
  await page.getByRole("link", { name: "Schedule: Every two seconds" }).first().waitFor();
  await page.goBack();

  // Edit: a bad cron expression is refused with the error next to the field.
  await page.getByRole("heading", { name: "Every two seconds", level: 1 }).waitFor();
  await page.getByRole("button", { name: "Edit" }).click();
  const edit = page.getByRole("form", { name: "Edit schedule" });
  await edit.getByLabel("Cron expression").fill("99 * *");
  await edit.getByRole("button", { name: "Save schedule" }).click();
  const cron = edit.getByLabel("Cron expression");
  await edit.locator(".field-error").filter({ hasText: /has 3/ }).waitFor();
  assert.equal(await cron.getAttribute("aria-invalid"), "true");
  await edit.getByRole("button", { name: "Weekdays 09:00" }).click();
  await edit.getByRole("button", { name: "Save schedule" }).click();
  await edit.waitFor({ state: "detached" });
  assert.equal(await page.getByTestId("schedule-cron").textContent(), "0 9 * * 1-5");
  const saved = await apiCall(page, "GET", `/api/schedules/${id}`);
  assert.equal(saved.cron_expression, "0 9 * * 1-5");
  assert.equal(saved.input.name, "Grace");

  // Enable again from the list, then delete (with a confirmation).
  await nav().getByRole("link", { name: "Schedules" }).click();
  const listRow = page.locator(`tr[data-schedule-id="${id}"]`);
  await listRow.getByRole("switch", { name: "Enabled: Every two seconds" }).check();
  await listRow.getByText("paused").waitFor({ state: "detached" });
  await listRow.getByRole("link", { name: "Every two seconds" }).click();
  await page.getByRole("button", { name: "Delete", exact: true }).click();
  await page.getByRole("button", { name: "Delete schedule" }).click();
  await page.waitForURL(/\/schedules$/);
  await page.getByText("No schedules yet.").waitFor();
  assert.deepEqual(errors, []);
});

test("agent memory: notes and pinned values written by a run are listed, deleted, forgotten", async () => {
  mock.state.script = [
    {
      calls: [
        { name: "note", args: { content: "Grace prefers answers in French" } },
        { name: "pin", args: { key: "k", value: { color: "blue", n: 2 } } },
      ],
    },
  ];
  await page.goto(`${base}/agents/@corral/hello-world`);
  await page.getByRole("tab", { name: "Memory" }).click();
  let panel = page.getByRole("tabpanel");
  await panel.getByText("Nothing pinned.").waitFor();
  await panel.getByText("No memories yet.").waitFor();

  let runId;
  try {
    const form = page.locator("form", { has: page.getByRole("heading", { name: "Run this agent" }) });
    await form.getByLabel("name").fill("Grace");
    await form.getByRole("button", { name: "Run" }).click();
    await page.waitForURL(/\/runs\/run_/);
    runId = page.url().split("/runs/")[1];
    await page.locator(".page-header .badge-success").waitFor({ timeout: 30_000 });
  } finally {
    mock.state.script = undefined;
  }

  await page.getByRole("link", { name: "@corral/hello-world" }).click();
  await page.getByRole("tab", { name: "Memory" }).click();
  panel = page.getByRole("tabpanel");
  const pinned = panel.locator('tr[data-pinned-key="k"]');
  await pinned.getByText('{"color":"blue","n":2}').waitFor();
  const memory = panel.locator(".memory", { hasText: "Grace prefers answers in French" });
  await memory.waitFor();
  await memory.getByRole("link", { name: `run …${runId.slice(-6)}` }).waitFor();

  // Delete the memory (confirmed), then forget everything.
  await memory.getByRole("button", { name: "Delete" }).click();
  await memory.getByRole("button", { name: "Delete memory" }).click();
  await panel.getByText("No memories yet.").waitFor();
  await pinned.waitFor();
  await panel.getByRole("button", { name: "Forget everything" }).click();
  await panel.getByRole("button", { name: "Forget everything now" }).click();
  await panel.getByText(/Forgotten: 0 memories, \d+ pinned value/).waitFor();
  await panel.getByText("Nothing pinned.").waitFor();
  const left = await apiCall(page, "GET", "/api/agents/@corral/hello-world/persistence");
  assert.deepEqual(left, { pinned: [], memories: [] });
  assert.deepEqual(errors, []);
});
