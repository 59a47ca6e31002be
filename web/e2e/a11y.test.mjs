import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { apiCall, axe, baseUrl, configureMockModel, launch, signUpAndOnboard, stopPreview, watchConsole } from "./harness.mjs";
import { startMockLlm } from "./mock-llm.mjs";

let browser;
let base;
let page;
let errors;
let mock;
let runId;
let scheduleId;
before(async () => {
  base = await baseUrl();
  mock = await startMockLlm();
  browser = await launch();
  page = await browser.context.newPage();
  errors = watchConsole(page);
  await signUpAndOnboard(page, base, { name: "Axe Tester", org: "Accessible Co" });
  await configureMockModel(page, mock.url);
  // The run also leaves a note and a pinned value, for the agent's Memory tab.
  mock.state.script = [{ calls: [{ name: "note", args: { content: "Ada likes tea" } }, { name: "pin", args: { key: "k", value: { a: 1 } } }] }];
  const run = await apiCall(page, "POST", "/api/agents/@corral/hello-world/run", { input: { name: "Ada" } });
  runId = run.id;
  const schedule = await apiCall(page, "POST", "/api/agents/@corral/hello-world/schedules", {
    name: "Weekday greeting",
    cron_expression: "0 9 * * 1-5",
    timezone: "Europe/Paris",
    input: { name: "Ada" },
    enabled: false,
  });
  scheduleId = schedule.id;
});
after(async () => {
  await browser?.close();
  mock?.close();
  stopPreview();
});

const PAGES = [
  ["/agents", "Agents"],
  ["/agents/@corral/hello-world", "Hello World"],
  ["/runs", "Runs"],
  ["/schedules", "Schedules"],
  ["/webhooks", "Webhooks"],
  ["/api-keys", "API keys"],
  ["/models", "Models"],
  ["/integrations", "Integrations"],
  ["/applications", "Applications"],
  ["/end-users", "End-users"],
  ["/members", "Members"],
  ["/settings", "Organization settings"],
  ["/profile", "Profile"],
];

for (const theme of ["light", "dark"]) {
  test(`axe: no serious or critical violations (${theme} theme)`, async () => {
    await page.emulateMedia({ colorScheme: theme });
    const found = [];
    for (const [path, heading] of [...PAGES, [`/runs/${runId}`, "Run #"], [`/schedules/${scheduleId}`, "Weekday greeting"]]) {
      await page.goto(`${base}${path}`);
      await page.getByRole("heading", { name: heading, level: 1 }).first().waitFor();
      await page.locator(".loading").first().waitFor({ state: "detached", timeout: 10_000 }).catch(() => {});
      for (const v of await axe(page)) found.push(`${path}: ${v}`);
    }
    // Every tab of the agent page.
    await page.goto(`${base}/agents/@corral/hello-world`);
    for (const tab of ["Manifest", "Versions", "Settings", "Schedules", "Memory", "Skills & integrations"]) {
      await page.getByRole("tab", { name: new RegExp(`^${tab}`) }).click();
      await page.getByRole("tabpanel").waitFor();
      await page.locator(".loading").first().waitFor({ state: "detached", timeout: 10_000 }).catch(() => {});
      if (tab === "Schedules") await page.getByRole("tabpanel").getByRole("button", { name: "New schedule" }).click();
      if (tab === "Memory") await page.getByRole("tabpanel").getByText("Ada likes tea").waitFor();
      for (const v of await axe(page)) found.push(`agent tab ${tab}: ${v}`);
    }
    // The schedule editor.
    await page.goto(`${base}/schedules/${scheduleId}`);
    await page.getByRole("button", { name: "Edit" }).click();
    await page.getByRole("form", { name: "Edit schedule" }).waitFor();
    for (const v of await axe(page)) found.push(`schedule editor: ${v}`);
    assert.deepEqual(found, []);
    assert.deepEqual(errors, []);
  });
}

test("axe: signed-out pages (sign-in, sign-up) in both themes", async () => {
  const other = await launch();
  try {
    const p = await other.context.newPage();
    const errs = watchConsole(p);
    const found = [];
    for (const theme of ["light", "dark"]) {
      await p.emulateMedia({ colorScheme: theme });
      for (const path of ["/sign-in", "/sign-up"]) {
        await p.goto(`${base}${path}`);
        await p.getByRole("heading", { level: 1 }).waitFor();
        for (const v of await axe(p)) found.push(`${theme} ${path}: ${v}`);
      }
    }
    assert.deepEqual(found, []);
    assert.deepEqual(errs, []);
  } finally {
    await other.close();
  }
});

test("phone width: no horizontal scrolling, the menu opens and navigates", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  for (const path of ["/agents", "/agents/@corral/hello-world", "/runs", `/runs/${runId}`, "/schedules", `/schedules/${scheduleId}`, "/api-keys", "/webhooks"]) {
    await page.goto(`${base}${path}`);
    await page.getByRole("heading", { level: 1 }).first().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `${path} overflows by ${overflow}px`);
  }
  await page.getByRole("button", { name: "Menu" }).click();
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Runs" }).click();
  await page.getByRole("heading", { name: "Runs", level: 1 }).waitFor();
  await page.setViewportSize({ width: 1280, height: 900 });
  assert.deepEqual(errors, []);
});

test("keyboard: skip link and tabs work without a mouse", async () => {
  await page.goto(`${base}/agents/@corral/hello-world`);
  await page.getByRole("heading", { name: "Hello World", level: 1 }).waitFor();
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Skip to content");
  await page.getByRole("tab", { name: "Prompt" }).focus();
  await page.keyboard.press("ArrowRight");
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Manifest");
  await page.getByRole("tabpanel").getByText('"schema_version"').waitFor();
  assert.deepEqual(errors, []);
});
