import { Code } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TargetSchema, TargetStatus } from "$gen/targets/v1/entities_pb";
import { TargetsByStatusSchema } from "$gen/targets/v1/queries_pb";
import { StatusCountsSchema, TargetCountsByStatusSchema } from "$gen/targets/v1/reports_pb";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Backoff } from "./backoff";
import { LiveQuery } from "./live-query.svelte";
import { LiveReport } from "./live-report.svelte";
import { LiveSession } from "./live-session.svelte";
import { pack } from "./requests";
import { FakeGateway, settle } from "./testing/fake-live-bus";

const fast = () => new Backoff({ initialMs: 1, maxMs: 2, random: () => 0 });

describe("LiveQuery over a LiveSession", () => {
  let gw: FakeGateway;
  let session: LiveSession;
  let cleanups: (() => void)[];

  beforeEach(() => {
    gw = new FakeGateway();
    session = new LiveSession(gw.transport, { backoff: fast, removalDelayMs: 0 });
    cleanups = [];
  });
  afterEach(() => {
    cleanups.forEach((c) => c());
    session.close();
  });

  function liveTargets(status: () => TargetStatus) {
    let q!: LiveQuery<typeof TargetSchema>;
    cleanups.push(
      $effect.root(() => {
        q = new LiveQuery(session, TargetSchema, () => pack(TargetsByStatusSchema, { status: status() }));
      }),
    );
    return q;
  }

  it("goes from loading to ready with the unpacked items", async () => {
    const q = liveTargets(() => TargetStatus.ACTIVE);
    expect(q.status).toBe("loading");
    await settle();
    expect(session.connection).toBe("open");
    const sub = gw.lastSub();
    expect(sub.request.case).toBe("query");
    gw.emitQuery(sub.subId, TargetSchema, [{ name: "a" }, { name: "b" }]);
    await settle();
    expect(q.status).toBe("ready");
    expect(q.items.map((t) => t.name)).toEqual(["a", "b"]);
    expect(q.stale).toBe(false);
  });

  it("resubscribes when a parameter changes and unsubscribes when destroyed", async () => {
    let status = $state(TargetStatus.ACTIVE);
    const q = liveTargets(() => status);
    await settle();
    const first = gw.lastSub();
    gw.emitQuery(first.subId, TargetSchema, [{ name: "active one" }]);
    await settle();

    status = TargetStatus.PAUSED;
    await settle();
    // A new stream carries the new subscription only; the old stream is closed.
    const subs = gw.current();
    expect(subs).toHaveLength(1);
    const second = subs[0]!;
    expect(second.subId).not.toBe(first.subId);
    expect(gw.openStreams).toBe(1);
    expect(q.status).toBe("loading");
    const query = second.request.case === "query" ? second.request.value.query : undefined;
    expect(anyUnpack(query!, TargetsByStatusSchema)?.status).toBe(TargetStatus.PAUSED);
    // A late frame for the old subscription must not show up.
    gw.emitQuery(first.subId, TargetSchema, [{ name: "late" }]);
    gw.emitQuery(second.subId, TargetSchema, [{ name: "paused one" }]);
    await settle();
    expect(q.items.map((t) => t.name)).toEqual(["paused one"]);

    cleanups.pop()!();
    await settle();
    expect(session.subscriptions).toBe(0);
    expect(gw.current()).toEqual([]);
  });

  it("puts every view mounted in one tick on a single stream", async () => {
    for (const s of [TargetStatus.ACTIVE, TargetStatus.PAUSED, TargetStatus.RETIRED]) liveTargets(() => s);
    await settle();
    expect(gw.current()).toHaveLength(3);
    expect(gw.openStreams).toBe(1);
  });

  it("shows a rejected request as an error without retrying", async () => {
    const q = liveTargets(() => TargetStatus.ACTIVE);
    await settle();
    gw.emitError(gw.lastSub().subId, Code.InvalidArgument, "status: out of range");
    await settle(20);
    expect(q.status).toBe("error");
    expect(q.error?.rawMessage).toBe("status: out of range");
    const opens = gw.opens.length;
    // Another view appearing reopens the stream, without the failed subscription.
    liveTargets(() => TargetStatus.PAUSED);
    await settle();
    expect(gw.opens.length).toBe(opens + 1);
    expect(gw.current()).toHaveLength(1);
  });

  it("keeps the value marked stale while the upstream restarts, then resubscribes", async () => {
    const q = liveTargets(() => TargetStatus.ACTIVE);
    await settle();
    const sub = gw.lastSub();
    gw.emitQuery(sub.subId, TargetSchema, [{ name: "kept" }]);
    await settle();
    gw.emitError(sub.subId, Code.Unavailable, "query_svc restarting");
    await settle(2);
    expect(q.stale).toBe(true);
    expect(q.items.map((t) => t.name)).toEqual(["kept"]);
    await settle(20);
    expect(gw.opens.length).toBe(2);
    expect(gw.current().map((s) => s.subId)).toEqual([sub.subId]);
    gw.emitQuery(sub.subId, TargetSchema, [{ name: "fresh" }]);
    await settle();
    expect(q.stale).toBe(false);
    expect(q.items.map((t) => t.name)).toEqual(["fresh"]);
  });

  it("reconnects after the connection drops and resubscribes on a new stream", async () => {
    const q = liveTargets(() => TargetStatus.ACTIVE);
    await settle();
    gw.emitQuery(gw.lastSub().subId, TargetSchema, [{ name: "before" }]);
    await settle();
    gw.drop();
    await settle(2);
    expect(q.stale).toBe(true);
    expect(q.items.map((t) => t.name)).toEqual(["before"]);
    await settle(30);
    expect(gw.opens.length).toBe(2);
    expect(session.connection).toBe("open");
    const again = gw.lastSub();
    gw.emitQuery(again.subId, TargetSchema, [{ name: "after" }]);
    await settle();
    expect(q.stale).toBe(false);
    expect(q.items.map((t) => t.name)).toEqual(["after"]);
  });

  it("resolves until(visibleAt) once the watermark passes the write", async () => {
    const q = liveTargets(() => TargetStatus.ACTIVE);
    await settle();
    const sub = gw.lastSub();
    gw.emitQuery(sub.subId, TargetSchema, [], 3n);
    await settle();
    const visibleAt = { $typeName: "myko.v1.Watermark" as const, positions: [{ $typeName: "myko.v1.Offset" as const, topic: "targets.v1.Target", partition: 0, offset: 5n }] };
    expect(q.reflects(visibleAt)).toBe(false);
    let done = false;
    const waiting = q.until(visibleAt).then(() => (done = true));
    gw.emitQuery(sub.subId, TargetSchema, [{ name: "x" }], 4n);
    await settle();
    expect(done).toBe(false);
    gw.emitQuery(sub.subId, TargetSchema, [{ name: "x" }], 5n);
    await waiting;
    expect(q.reflects(visibleAt)).toBe(true);
  });

  it("delivers typed report values", async () => {
    let r!: LiveReport<typeof StatusCountsSchema>;
    cleanups.push($effect.root(() => void (r = new LiveReport(session, StatusCountsSchema, () => pack(TargetCountsByStatusSchema)))));
    await settle();
    const sub = gw.lastSub();
    expect(sub.request.case).toBe("report");
    gw.emitReport(sub.subId, StatusCountsSchema, { total: 3n, counts: [{ status: TargetStatus.ACTIVE, count: 3n }] });
    await settle();
    expect(r.status).toBe("ready");
    expect(r.value?.total).toBe(3n);
  });
});
