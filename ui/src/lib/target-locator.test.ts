import { fromBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { TargetSchema, TargetStatus } from "$gen/targets/v1/entities_pb";
import { TargetsPageSchema } from "$gen/targets/v1/queries_pb";
import { LiveSession } from "@myko/client";
import { FakeGateway, settle } from "@myko/client/testing";
import { TargetLocator } from "./target-locator";

describe("TargetLocator", () => {
  it("finds a target's page with one-row windows, a round per stream, and ends them", async () => {
    const gw = new FakeGateway();
    const session = new LiveSession(gw.transport);
    const names = Array.from({ length: 5_000 }, (_, i) => `Target ${String(i).padStart(5, "0")}`);
    const wanted = { name: names[4_321]!, id: "t-4321" };
    const found = new TargetLocator(session).page(wanted, TargetStatus.PAUSED, names.length, 100);
    let answered = 0;
    const seen = new Set<string>();
    for (let round = 0; round < 5 && answered < 2; round++) {
      await settle();
      const subs = gw.current().filter((s) => !seen.has(s.subId));
      if (subs.length === 0) continue;
      for (const sub of subs) {
        seen.add(sub.subId);
        if (sub.request.case !== "query") throw new Error("a query was expected");
        const page = fromBinary(TargetsPageSchema, sub.request.value.query!.value);
        expect(page.limit).toBe(1);
        expect(page.status).toBe(TargetStatus.PAUSED);
        expect(page.offset % 100).toBe(0);
        const i = page.offset;
        gw.emitQuery(sub.subId, TargetSchema, i < names.length ? [{ name: names[i]!, item: { id: `t-${i}` } }] : []);
      }
      answered += 1;
    }
    expect(await found).toBe(43);
    expect(answered).toBe(2); // 50 pages: 32 first rows, then the 2 left
    await settle();
    expect(session.subscriptions).toBe(0);
    session.close();
  });

  it("fails, and ends its windows, when the query is refused", async () => {
    const gw = new FakeGateway();
    const session = new LiveSession(gw.transport);
    const found = new TargetLocator(session).page({ name: "x", id: "x" }, TargetStatus.UNSPECIFIED, 1_000, 100);
    await settle();
    const sub = gw.lastSub();
    gw.emitError(sub.subId, 3, "status: unknown");
    await expect(found).rejects.toThrow(/status/);
    expect(session.subscriptions).toBe(0);
    session.close();
  });
});
