import { svelte } from "@sveltejs/vite-plugin-svelte";
import { fileURLToPath } from "node:url";
import { defaultClientConditions, defineConfig } from "vite";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

// The gateway serves dist/ and the API on one origin; `npm run dev` proxies the
// API to a running gateway (MYKO_GATEWAY_URL, default the `make run` one).
const gateway = process.env.MYKO_GATEWAY_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [svelte()],
  resolve: {
    // "source": @myko/client (the client-ts/ workspace) from its sources, so a
    // change there shows up without building the package.
    conditions: ["source", ...defaultClientConditions],
    alias: {
      $gen: here("../gen/ts"),
      $lib: here("./src/lib"),
      $components: here("./src/components"),
    },
  },
  server: {
    fs: { allow: [here("..")] },
    proxy: {
      "/myko.v1.": { target: gateway, changeOrigin: false },
      // How to sign in (the gateway's issuer); the identity provider allows this origin too.
      "/myko-auth.json": { target: gateway, changeOrigin: false },
    },
  },
  build: { outDir: "dist", emptyOutDir: true, target: "es2022" },
});
