import { defineConfig } from "@playwright/test";
import base from "./playwright.config";

// `python -m bench`'s browser measurement (bench/ui_scale.py): e2e/*.bench.ts against
// the stack the bench started (MYKO_E2E_GATEWAY, no sign-in), in Debian's Chromium.
export default defineConfig({
  ...base,
  globalSetup: undefined,
  testMatch: "*.bench.ts",
  timeout: 300_000,
  outputDir: "../test-results/ui-bench",
});
