import { defineConfig } from "@playwright/test";

// Browser tests drive Debian's Chromium (never a downloaded browser) against a
// real stack that e2e/global-setup.ts starts and stops: Kafka, every service and
// the gateway. Serial: one stack, and one test restarts its gateway.
export default defineConfig({
  testDir: "e2e",
  tsconfig: "./e2e/tsconfig.json",
  globalSetup: "./e2e/global-setup.ts",
  fullyParallel: false,
  workers: 1,
  retries: 0,
  // Generous: every page signs in through the identity provider (a redirect round trip each), and
  // the test stack shares two cores with whatever else runs.
  timeout: 120_000,
  expect: { timeout: 10_000 },
  reporter: [["list"]],
  outputDir: "../test-results/e2e",
  use: {
    browserName: "chromium",
    headless: true,
    viewport: { width: 1360, height: 860 },
    launchOptions: {
      executablePath: process.env.MYKO_CHROMIUM ?? "/usr/bin/chromium",
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        // What the stack under test needs besides (the live-swarm test: trust for its certificates).
        ...(process.env.MYKO_E2E_CHROMIUM_ARGS ?? "").split(" ").filter(Boolean),
      ],
    },
    trace: "off",
    screenshot: "only-on-failure",
  },
});
