import { ApiError } from "../api/client";

export const CRON_PRESETS: { label: string; cron: string }[] = [
  { label: "Hourly", cron: "0 * * * *" },
  { label: "Daily 09:00", cron: "0 9 * * *" },
  { label: "Weekdays 09:00", cron: "0 9 * * 1-5" },
];

/** The browser's IANA timezone (falls back to UTC). */
export function browserTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

/** Every IANA timezone the browser knows, with `UTC` and `extra` (e.g. a saved value) included. */
export function timeZones(...extra: (string | null | undefined)[]): string[] {
  let all: string[] = [];
  try {
    all = (Intl as unknown as { supportedValuesOf?: (k: string) => string[] }).supportedValuesOf?.("timeZone") ?? [];
  } catch {
    all = [];
  }
  const set = new Set(all);
  for (const z of ["UTC", ...extra]) if (z) set.add(z);
  return [...set].sort((a, b) => (a === "UTC" ? -1 : b === "UTC" ? 1 : a.localeCompare(b)));
}

/**
 * Splits a problem's `errors[]` by field: `known` fields (and `input.<key>`, returned
 * under `input`) go next to their control; the rest stay in the error box.
 */
export function fieldErrors(
  error: unknown,
  known: string[],
): { fields: Record<string, string>; input: Record<string, string>; rest: boolean } {
  const fields: Record<string, string> = {};
  const input: Record<string, string> = {};
  let rest = false;
  if (!(error instanceof ApiError)) return { fields, input, rest: !!error };
  for (const e of error.problem.errors ?? []) {
    const f = e.field ?? "";
    if (known.includes(f)) fields[f] = e.message;
    else if (f.startsWith("input.")) input[f.slice("input.".length).split(".")[0]] = e.message;
    else rest = true;
  }
  if (!error.problem.errors?.length) rest = true;
  return { fields, input, rest };
}
