import { describe, expect, it } from "vitest";
import { initialValues, orderedKeys, toInput, type FormSpec } from "./schema";

const spec: FormSpec = {
  schema: {
    type: "object",
    properties: {
      a: { type: "string" },
      n: { type: "integer", default: 3 },
      x: { type: "number" },
      tags: { type: "array", items: { type: "string" } },
      obj: { type: "object" },
      flag: { type: "boolean" },
      tone: { type: "string", enum: ["a", "b"], default: "b" },
    },
    required: ["a", "n"],
  },
  propertyOrder: ["tone", "a"],
};

describe("schema helpers", () => {
  it("orders properties by property_order, then the schema's order", () => {
    expect(orderedKeys(spec)).toEqual(["tone", "a", "n", "x", "tags", "obj", "flag"]);
  });

  it("starts from defaults, overridden by saved values", () => {
    expect(initialValues(spec)).toEqual({ n: 3, tone: "b" });
    expect(initialValues(spec, { tone: "a", a: "hi" })).toEqual({ n: 3, tone: "a", a: "hi" });
  });

  it("flags missing required fields and bad numbers", () => {
    const { errors } = toInput(spec, { n: "2.5", x: "abc" });
    expect(errors).toEqual({ a: "Required", n: "Must be a whole number", x: "Must be a number" });
  });

  it("converts values to the schema's types and drops empty optional ones", () => {
    const { input, errors } = toInput(spec, { a: "hi", n: "4", x: "1.5", tags: ["p", "q"], obj: '{"k":1}', flag: false, tone: "a" });
    expect(errors).toEqual({});
    expect(input).toEqual({ a: "hi", n: 4, x: 1.5, tags: ["p", "q"], obj: { k: 1 }, flag: false, tone: "a" });
    expect(toInput(spec, { a: "hi", n: 1, x: "", tags: [] }).input).toEqual({ a: "hi", n: 1 });
  });

  it("rejects invalid JSON for object fields", () => {
    expect(toInput(spec, { a: "hi", n: 1, obj: "{" }).errors).toEqual({ obj: "Invalid JSON" });
  });
});
