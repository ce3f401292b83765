import { vitePreprocess } from "@sveltejs/vite-plugin-svelte";

// svelte-package (npm run build) and the tests: TypeScript in components, runes on.
export default {
  preprocess: vitePreprocess(),
  compilerOptions: { runes: true },
};
