import { cleanup } from "@testing-library/svelte";
import { afterEach } from "vitest";

// Unmount what each test rendered (auto-cleanup needs vitest globals, which we don't enable).
afterEach(() => cleanup());
