import { defineConfig } from "vitest/config";

// Unit tests only (the e2e tests under e2e/ run with `npm run test:e2e`).
export default defineConfig({
  test: { include: ["src/**/*.test.ts"], environment: "node" },
});
