import { useId } from "react";
import { isFile, orderedKeys, typeOf, type FormSpec } from "../lib/schema";

function readAsDataUrl(f: File): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result));
    r.onerror = () => reject(r.error);
    r.readAsDataURL(f);
  });
}

type Props = {
  spec: FormSpec;
  values: Record<string, unknown>;
  errors: Record<string, string>;
  onChange: (key: string, value: unknown) => void;
  onFileError?: (msg: string) => void;
};

/** A form generated from an agent's input schema. */
export function SchemaForm({ spec, values, errors, onChange, onFileError }: Props) {
  const base = useId();
  const req = spec.schema.required ?? [];
  const keys = orderedKeys(spec);
  if (keys.length === 0) return <p className="muted">This agent takes no input.</p>;
  return (
    <div className="schema-form">
      {keys.map((k) => {
        const p = spec.schema.properties![k];
        const hint = spec.uiHints?.[k] ?? {};
        const id = `${base}-${k}`;
        const descId = `${id}-desc`;
        const errId = `${id}-err`;
        const t = typeOf(p);
        const locked = spec.locked?.includes(k);
        const v = values[k];
        const secret = p.format === "password" || p.writeOnly === true || !!spec.secretPattern?.test(k);
        const label = hint.label ?? p.title ?? k;
        const describedBy = [p.description || hint.help ? descId : "", errors[k] ? errId : ""].filter(Boolean).join(" ") || undefined;
        const common = {
          id,
          name: k,
          "aria-describedby": describedBy,
          "aria-invalid": errors[k] ? true : undefined,
          disabled: locked,
        };
        let control;
        if (p.enum) {
          control = (
            <select {...common} required={req.includes(k)} value={v === undefined ? "" : String(v)} onChange={(e) => {
              const raw = e.target.value;
              const match = p.enum!.find((x) => String(x) === raw);
              onChange(k, raw === "" ? undefined : match);
            }}>
              {!req.includes(k) || v === undefined ? <option value="">—</option> : null}
              {p.enum.map((o) => (
                <option key={String(o)} value={String(o)}>
                  {String(o)}
                </option>
              ))}
            </select>
          );
        } else if (t === "boolean") {
          control = <input {...common} type="checkbox" checked={v === true} onChange={(e) => onChange(k, e.target.checked)} />;
        } else if (t === "number" || t === "integer") {
          control = (
            <input {...common} type="number" inputMode={t === "integer" ? "numeric" : "decimal"} step={t === "integer" ? 1 : "any"}
              min={p.minimum} max={p.maximum} required={req.includes(k)} placeholder={hint.placeholder}
              value={v === undefined ? "" : String(v)} onChange={(e) => onChange(k, e.target.value)} />
          );
        } else if (isFile(p) || (t === "array" && p.items && isFile(p.items))) {
          const multiple = t === "array";
          const fc = spec.fileConstraints?.[k];
          const names = Array.isArray(v) ? `${v.length} file(s)` : v ? "1 file" : "";
          control = (
            <>
              <input {...common} type="file" multiple={multiple} accept={fc?.accept} required={req.includes(k) && !v}
                onChange={async (e) => {
                  const files = Array.from(e.target.files ?? []);
                  const tooBig = files.find((f) => fc?.max_size && f.size > fc.max_size);
                  if (tooBig) {
                    onFileError?.(`${tooBig.name} is larger than ${Math.round((fc!.max_size ?? 0) / 1024)} KiB`);
                    return;
                  }
                  if (p.maxItems && files.length > p.maxItems) {
                    onFileError?.(`At most ${p.maxItems} files`);
                    return;
                  }
                  const urls = await Promise.all(files.map(readAsDataUrl));
                  onChange(k, multiple ? urls : urls[0]);
                }} />
              {names && <span className="small muted">{names} selected</span>}
            </>
          );
        } else if (t === "object" || t === "array") {
          const text = typeof v === "string" ? v : v === undefined ? "" : JSON.stringify(v, null, 2);
          const simpleList = t === "array" && typeOf(p.items ?? {}) === "string";
          control = simpleList ? (
            <textarea {...common} rows={3} placeholder={hint.placeholder ?? "One item per line"}
              value={Array.isArray(v) ? v.join("\n") : String(v ?? "")}
              onChange={(e) => onChange(k, e.target.value.split("\n").filter((x) => x.trim() !== ""))} />
          ) : (
            <textarea {...common} rows={5} className="mono" placeholder={hint.placeholder ?? (t === "object" ? "{ }" : "[ ]")}
              value={text} onChange={(e) => onChange(k, e.target.value)} />
          );
        } else {
          const multiline = hint.widget === "textarea" || hint.multiline || (p.maxLength ?? 0) > 200;
          control = multiline ? (
            <textarea {...common} rows={4} required={req.includes(k)} placeholder={hint.placeholder}
              minLength={p.minLength} maxLength={p.maxLength} value={String(v ?? "")} onChange={(e) => onChange(k, e.target.value)} />
          ) : (
            <input {...common} autoComplete={secret ? "off" : undefined}
              type={secret ? "password" : p.format === "email" ? "email" : p.format === "uri" ? "url" : p.format === "date" ? "date" : "text"}
              required={req.includes(k)} placeholder={hint.placeholder} minLength={p.minLength} maxLength={p.maxLength}
              value={String(v ?? "")} onChange={(e) => onChange(k, e.target.value)} />
          );
        }
        return (
          <div key={k} className={t === "boolean" ? "field field-check" : "field"}>
            <label htmlFor={id}>
              {label}
              {req.includes(k) && <span aria-hidden="true" className="req"> *</span>}
              {req.includes(k) && <span className="sr-only"> (required)</span>}
              {locked && <span className="muted small"> (locked)</span>}
            </label>
            {control}
            {(p.description || hint.help) && (
              <div className="hint" id={descId}>
                {p.description ?? hint.help}
              </div>
            )}
            {errors[k] && (
              <div className="field-error" id={errId}>
                {errors[k]}
              </div>
            )}
          </div>
        );
      })}
    </div>
  );
}
