import { describe, expect, it } from "vitest";
import { PAGES } from "../pages";
import ZonePage from "../pages/ZonePage/ZonePage.svelte";
import { matchPage } from "./router.svelte";

describe("matchPage over the app's pages", () => {
  it("finds the page and decodes its path parameters", () => {
    const m = matchPage(PAGES, "/zones/harbour%20north");
    expect(m?.page.component).toBe(ZonePage);
    expect(m?.params).toEqual({ id: "harbour north" });
  });

  it("matches whole segments only, and nothing for an unknown path", () => {
    expect(matchPage(PAGES, "/zones")?.params).toEqual({});
    expect(matchPage(PAGES, "/zones/a/b")).toBeNull();
    expect(matchPage(PAGES, "/zonesx")).toBeNull();
  });
});
