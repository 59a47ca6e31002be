import { describe, expect, it } from "vitest";
import { ApiError } from "../api/client";
import { CRON_PRESETS, fieldErrors, timeZones } from "./cron";

const problem = (errors: { field: string; message: string }[]) =>
  new ApiError(400, { title: "Validation Failed", status: 400, errors: errors.map((e) => ({ ...e, code: "invalid" })) } as never);

describe("fieldErrors", () => {
  it("puts known fields and input.<key> next to their controls", () => {
    const r = fieldErrors(
      problem([
        { field: "cron_expression", message: "bad cron" },
        { field: "input.name", message: "not a string" },
      ]),
      ["cron_expression", "timezone"],
    );
    expect(r).toEqual({ fields: { cron_expression: "bad cron" }, input: { name: "not a string" }, rest: false });
  });
  it("keeps the others (and problems without errors) for the error box", () => {
    expect(fieldErrors(problem([{ field: "input", message: '"name" is a required property' }]), ["timezone"]).rest).toBe(true);
    expect(fieldErrors(new ApiError(409, { title: "Conflict" }), ["timezone"]).rest).toBe(true);
    expect(fieldErrors(new Error("boom"), []).rest).toBe(true);
    expect(fieldErrors(null, []).rest).toBe(false);
  });
});

describe("timeZones", () => {
  it("starts with UTC, includes extra values once, sorted", () => {
    const z = timeZones("Mars/Olympus", "UTC");
    expect(z[0]).toBe("UTC");
    expect(z.filter((x) => x === "UTC")).toHaveLength(1);
    expect(z).toContain("Mars/Olympus");
    const rest = z.slice(1);
    expect([...rest].sort((a, b) => a.localeCompare(b))).toEqual(rest);
  });
});

describe("presets", () => {
  it("are valid 5-field expressions", () => {
    for (const p of CRON_PRESETS) expect(p.cron.split(" ")).toHaveLength(5);
  });
});
