import { fromBinary } from "@bufbuild/protobuf";
import { render, screen } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import { TargetSchema, TargetStatus } from "$gen/targets/v1/entities_pb";
import { TargetsPageSchema } from "$gen/targets/v1/queries_pb";
import { Commands, LiveSession, mykoContext } from "@myko/client";
import { FakeGateway, settle } from "@myko/client/testing";
import WallPage from "./WallPage.svelte";

describe("WallPage", () => {
  it("counts targets with one-row windows, never by holding them", async () => {
    const gw = new FakeGateway();
    const session = new LiveSession(gw.transport);
    render(WallPage, { context: mykoContext({ session, commands: new Commands(gw.transport) }) });
    await settle();
    const subs = gw.current();
    expect(subs).toHaveLength(24);
    const queries = subs.flatMap((s) => (s.request.case === "query" ? [{ id: s.subId, any: s.request.value.query! }] : []));
    const types = queries.map((q) => q.any.typeUrl.split("/").pop());
    // Nothing that sends every target (AllTargets, TargetsByStatus): those grow with the store.
    expect(types.filter((t) => t !== "targets.v1.TargetsPage" && t !== "targets.v1.TargetById" && t !== "targets.v1.AllZones")).toEqual([]);
    const pages = queries.filter((q) => q.any.typeUrl.endsWith("targets.v1.TargetsPage"));
    expect(pages).toHaveLength(4);
    const totals = new Map([
      [TargetStatus.UNSPECIFIED, 100_000n],
      [TargetStatus.ACTIVE, 99_000n],
      [TargetStatus.PAUSED, 600n],
      [TargetStatus.RETIRED, 400n],
    ]);
    for (const q of pages) {
      const page = fromBinary(TargetsPageSchema, q.any.value);
      expect(page.limit).toBe(1);
      const total = totals.get(page.status)!;
      gw.emitQuery(q.id, TargetSchema, [{ name: "first", item: { id: "t1" } }], 1n, { offset: 0n, total, counted: true });
    }
    await settle();
    const tile = (title: string) => screen.getAllByTestId("live-tile").find((t) => t.textContent?.includes(title))!;
    expect(tile("All targets").querySelector("[data-testid=tile-value]")?.textContent).toBe("100,000");
    expect(tile("Status · Active").querySelector("[data-testid=tile-value]")?.textContent).toBe("99,000");
    expect(tile("Status · Paused").querySelector("[data-testid=tile-value]")?.textContent).toBe("600");
    expect(tile("Status · Retired").querySelector("[data-testid=tile-value]")?.textContent).toBe("400");
    session.close();
  });
});
