import { svelte } from "@sveltejs/vite-plugin-svelte";
import { defaultClientConditions } from "vite";
import { defineConfig } from "vitest/config";

export default defineConfig({
  plugins: [svelte()],
  // "source": the package's own name (used by the tests' generated code) resolves
  // to src/; "browser": Svelte's browser build for component tests.
  resolve: { conditions: ["source", "browser", ...defaultClientConditions] },
  test: {
    environment: "jsdom",
    include: ["test/**/*.test.ts"],
    setupFiles: ["./test/setup.ts"],
  },
});
