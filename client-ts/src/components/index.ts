export { default as ConnectionIndicator } from "./ConnectionIndicator.svelte";
export { default as Freshness } from "./Freshness.svelte";
export { default as MykoProvider } from "./MykoProvider.svelte";
export { default as StateNotice } from "./StateNotice.svelte";
