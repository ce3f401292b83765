import type { Page } from "$lib/router.svelte";
import TargetsPage from "./pages/TargetsPage/TargetsPage.svelte";
import SystemPage from "./pages/SystemPage/SystemPage.svelte";
import WallPage from "./pages/WallPage/WallPage.svelte";
import ZonePage from "./pages/ZonePage/ZonePage.svelte";
import ZonesPage from "./pages/ZonesPage/ZonesPage.svelte";

/**
 * Every page of the app, first match wins. Adding a page: a component under
 * pages/ and one line here (`nav` puts it in the header). docs/ui-streams.md
 * walks through it.
 */
export const PAGES: readonly Page[] = [
  { path: "/", component: TargetsPage, nav: "Targets" },
  { path: "/targets", component: TargetsPage },
  { path: "/zones", component: ZonesPage, nav: "Zones" },
  { path: "/zones/:id", component: ZonePage },
  { path: "/wall", component: WallPage, nav: "Live wall" },
  { path: "/system", component: SystemPage, nav: "System" },
];
