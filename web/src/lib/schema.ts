import type { AgentDetail } from "../api/types";

/** The JSON Schema subset agent inputs use. */
export type JsonSchema = {
  type?: string | string[];
  title?: string;
  description?: string;
  default?: unknown;
  enum?: unknown[];
  format?: string;
  contentMediaType?: string;
  items?: JsonSchema;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  maxItems?: number;
  writeOnly?: boolean;
};
export type UiHint = { placeholder?: string; widget?: string; label?: string; help?: string; multiline?: boolean };
export type FileConstraint = { accept?: string; max_size?: number };

export type FormSpec = {
  schema: JsonSchema;
  propertyOrder?: string[] | null;
  uiHints?: Record<string, UiHint> | null;
  fileConstraints?: Record<string, FileConstraint> | null;
  locked?: string[];
  /** Fields to mask (credentials): by name, or `format: password` / `writeOnly`. */
  secretPattern?: RegExp;
};

export function typeOf(s: JsonSchema): string {
  const t = Array.isArray(s.type) ? s.type.find((x) => x !== "null") : s.type;
  return t ?? (s.enum ? "string" : s.properties ? "object" : "string");
}

export function isFile(s: JsonSchema): boolean {
  return typeOf(s) === "string" && (s.format === "uri" || s.format === "data-url") && !!s.contentMediaType;
}

/** Properties in the manifest's `property_order`, then the rest in schema order. */
export function orderedKeys(spec: FormSpec): string[] {
  const keys = Object.keys(spec.schema.properties ?? {});
  const first = (spec.propertyOrder ?? []).filter((k) => keys.includes(k));
  return [...first, ...keys.filter((k) => !first.includes(k))];
}

/** Initial values: the schema's defaults, then the application's saved values. */
export function initialValues(spec: FormSpec, saved?: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, p] of Object.entries(spec.schema.properties ?? {})) {
    if (p.default !== undefined) out[k] = p.default;
  }
  return { ...out, ...(saved ?? {}) };
}

/** Strips empty optional values; parses JSON fields. Returns errors by field. */
export function toInput(spec: FormSpec, values: Record<string, unknown>): { input: Record<string, unknown>; errors: Record<string, string> } {
  const input: Record<string, unknown> = {};
  const errors: Record<string, string> = {};
  const req = spec.schema.required ?? [];
  for (const k of orderedKeys(spec)) {
    const p = spec.schema.properties![k];
    const t = typeOf(p);
    let v = values[k];
    if (v === "" || v === undefined || v === null || (Array.isArray(v) && v.length === 0)) {
      if (req.includes(k)) errors[k] = "Required";
      continue;
    }
    if ((t === "object" || (t === "array" && !p.items?.enum && !isFile(p.items ?? {}) && typeOf(p.items ?? {}) !== "string")) && typeof v === "string") {
      try {
        v = JSON.parse(v);
      } catch {
        errors[k] = "Invalid JSON";
        continue;
      }
    }
    if ((t === "number" || t === "integer") && typeof v === "string") {
      const n = Number(v);
      if (Number.isNaN(n) || (t === "integer" && !Number.isInteger(n))) {
        errors[k] = t === "integer" ? "Must be a whole number" : "Must be a number";
        continue;
      }
      v = n;
    }
    input[k] = v;
  }
  return { input, errors };
}

export function specOf(agent: AgentDetail): FormSpec {
  const i = agent.input;
  return {
    schema: (i.schema ?? {}) as JsonSchema,
    propertyOrder: i.property_order,
    uiHints: (i.ui_hints ?? null) as Record<string, UiHint> | null,
    fileConstraints: (i.file_constraints ?? null) as Record<string, FileConstraint> | null,
    locked: i.locked_fields,
  };
}
