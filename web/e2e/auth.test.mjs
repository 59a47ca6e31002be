import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { PASSWORD, baseUrl, launch, signUpAndOnboard, stopPreview, watchConsole } from "./harness.mjs";

let browser;
let base;
before(async () => {
  base = await baseUrl();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  stopPreview();
});

test("sign up, onboarding, sign out, sign in; a bad password shows the problem", async () => {
  const page = await browser.context.newPage();
  const errors = watchConsole(page, { allow: [/status of 401/] });

  // Signed out: any page sends you to sign-in.
  await page.goto(`${base}/runs`);
  await page.getByRole("heading", { name: "Sign in to Corral" }).waitFor();
  assert.match(page.url(), /\/sign-in\?next=%2Fruns/);

  const user = await signUpAndOnboard(page, base);
  // The org switcher shows the new org, the app switcher its default application.
  assert.equal(await page.getByLabel("Current organization").locator("option:checked").textContent(), user.org);
  assert.match(await page.getByLabel("Current application").locator("option:checked").textContent(), /Default/);
  // The system agents are listed.
  await page.getByRole("link", { name: "Hello World" }).waitFor();

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Sign in to Corral" }).waitFor();

  await page.getByLabel("Email").fill(user.email);
  await page.getByLabel("Password").fill("wrong-password!");
  await page.getByRole("button", { name: "Sign in" }).click();
  const alert = page.getByRole("alert");
  await alert.waitFor();
  assert.match(await alert.textContent(), /Request id: req_/);

  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Agents", level: 1 }).waitFor();
  // The saved org is selected again.
  assert.equal(await page.getByLabel("Current organization").locator("option:checked").textContent(), user.org);

  assert.deepEqual(errors, []);
  await page.close();
});
