import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// In development (and `vite preview`), /api, /health and /invite go to a running Corral
// server so that the browser sees one origin (session cookies + the server's Origin
// check). `changeOrigin: false` keeps the Host header equal to the page's origin.
const target = process.env.CORRAL_API_URL ?? "http://127.0.0.1:3000";
// Keys are regular expressions: `/api/…` only, so that the page `/api-keys` stays ours,
// and `/invite/<token>/(info|accept)` only, so that the page `/invite/<token>` does too.
const proxy = Object.fromEntries(
  ["^/api/", "^/health$", "^/invite/[^/]+/(info|accept)$"].map((p) => [p, { target, changeOrigin: false, ws: false }]),
);

export default defineConfig({
  plugins: [react()],
  server: { proxy },
  preview: { proxy },
  build: { outDir: "dist", sourcemap: false, chunkSizeWarningLimit: 900 },
});
