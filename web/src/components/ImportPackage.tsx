import { useRef, useState, type DragEvent } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { api } from "../api/client";
import type { ImportResult } from "../api/types";
import { ErrorBox } from "./ui";

/** Drag & drop (or pick) a .afps / .zip package archive → POST /api/packages/import. */
export function ImportPackage() {
  const qc = useQueryClient();
  const input = useRef<HTMLInputElement>(null);
  const [over, setOver] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<ImportResult | null>(null);

  const upload = async (file: File) => {
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      const form = new FormData();
      form.append("file", file, file.name);
      const r = await api.upload<ImportResult>("/api/packages/import", form);
      setDone(r);
      await qc.invalidateQueries({ queryKey: ["agents"] });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setOver(false);
    const f = e.dataTransfer.files?.[0];
    if (f) void upload(f);
  };

  return (
    <section aria-label="Import a package">
      <div
        className={over ? "dropzone over" : "dropzone"}
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={onDrop}
      >
        <span>{busy ? "Importing…" : "Drop a package archive (.afps or .zip) here, or"}</span>
        <button type="button" className="btn btn-small" disabled={busy} onClick={() => input.current?.click()}>
          Choose a file
        </button>
        <input
          ref={input}
          type="file"
          accept=".afps,.zip,application/zip"
          className="sr-only"
          aria-label="Package archive"
          tabIndex={-1}
          onChange={(e) => {
            const f = e.target.files?.[0];
            if (f) void upload(f);
            e.target.value = "";
          }}
        />
      </div>
      <ErrorBox error={error} title="Import failed" />
      {done && (
        <div className="alert alert-success" role="status">
          Imported <strong>{done.packageId}</strong> {done.type} version {done.version}.
          {done.warnings.length > 0 && (
            <ul>
              {done.warnings.map((w, i) => (
                <li key={i}>{w}</li>
              ))}
            </ul>
          )}
        </div>
      )}
    </section>
  );
}
