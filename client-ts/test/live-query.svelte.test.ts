import { Code } from "@connectrpc/connect";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { afterEach, beforeEach, describe, expect, expectTypeOf, it } from "vitest";
import { Backoff, LiveQuery, LiveReport, LiveSession } from "../src/index.js";
import { FakeGateway, settle } from "../src/testing/index.js";
import { AllNotes, NoteCount, NotesByTag } from "./gen/demo/v1/demo_myko.js";
import { CountSchema, NoteSchema, NotesByTagSchema, type Count, type Note } from "./gen/demo/v1/demo_pb.js";

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

  function liveNotes(tag: () => string) {
    let q!: LiveQuery<typeof NoteSchema>;
    cleanups.push(
      $effect.root(() => {
        q = new LiveQuery(session, () => NotesByTag({ tag: tag() }));
      }),
    );
    return q;
  }

  it("goes from loading to ready with the unpacked items", async () => {
    const q = liveNotes(() => "work");
    expect(q.status).toBe("loading");
    await settle();
    expect(session.connection).toBe("open");
    const sub = gw.lastSub();
    expect(sub.request.case).toBe("query");
    gw.emitQuery(sub.subId, NoteSchema, [{ title: "a" }, { title: "b" }]);
    await settle();
    expect(q.status).toBe("ready");
    expect(q.items.map((t) => t.title)).toEqual(["a", "b"]);
    expect(q.stale).toBe(false);
  });

  it("reports a windowed result's place and total, and none for a plain one", async () => {
    const q = liveNotes(() => "work");
    await settle();
    const sub = gw.lastSub();
    gw.emitQuery(sub.subId, NoteSchema, [{ title: "a" }]);
    await settle();
    expect(q.window).toBeNull();
    gw.emitQuery(sub.subId, NoteSchema, [{ title: "k" }], 0n, { offset: 10n, total: 250n, counted: true });
    await settle();
    expect(q.window).toEqual({ offset: 10, total: 250 });
    gw.emitQuery(sub.subId, NoteSchema, [{ title: "top" }], 0n, { offset: 0n, total: 0n, counted: false });
    await settle();
    expect(q.window).toEqual({ offset: 0, total: null });
  });

  it("resubscribes when a parameter changes and unsubscribes when destroyed", async () => {
    let tag = $state("work");
    const q = liveNotes(() => tag);
    await settle();
    const first = gw.lastSub();
    gw.emitQuery(first.subId, NoteSchema, [{ title: "work note" }]);
    await settle();

    tag = "home";
    await settle();
    // A new stream carries the new subscription only; the old stream is closed.
    const subs = gw.current();
    expect(subs).toHaveLength(1);
    const second = subs[0]!;
    expect(second.subId).not.toBe(first.subId);
    expect(gw.openStreams).toBe(1);
    expect(q.status).toBe("loading");
    const query = second.request.case === "query" ? second.request.value.query : undefined;
    expect(anyUnpack(query!, NotesByTagSchema)?.tag).toBe("home");
    // A late frame for the old subscription must not show up.
    gw.emitQuery(first.subId, NoteSchema, [{ title: "late" }]);
    gw.emitQuery(second.subId, NoteSchema, [{ title: "home note" }]);
    await settle();
    expect(q.items.map((t) => t.title)).toEqual(["home note"]);

    cleanups.pop()!();
    await settle();
    expect(session.subscriptions).toBe(0);
    expect(gw.current()).toEqual([]);
  });

  it("puts every view mounted in one tick on a single stream", async () => {
    for (const tag of ["a", "b", "c"]) liveNotes(() => tag);
    await settle();
    expect(gw.current()).toHaveLength(3);
    expect(gw.openStreams).toBe(1);
  });

  it("hands a grouped frame to every subscription it names", async () => {
    const a = liveNotes(() => "work");
    const b = liveNotes(() => "work");
    const c = liveNotes(() => "home");
    await settle();
    expect(gw.opens.at(-1)?.groupResults).toBe(true);
    const ids = gw.current().map((s) => s.subId);
    expect(ids).toHaveLength(3);
    gw.emitQuery(ids.slice(0, 2), NoteSchema, [{ title: "shared" }]);
    await settle();
    expect(a.items.map((t) => t.title)).toEqual(["shared"]);
    expect(b.items.map((t) => t.title)).toEqual(["shared"]);
    expect(c.status).toBe("loading");
    gw.emitQuery(ids.slice(2), NoteSchema, [{ title: "own" }]);
    await settle();
    expect(c.items.map((t) => t.title)).toEqual(["own"]);
  });

  it("shows a rejected request as an error without retrying", async () => {
    const q = liveNotes(() => "work");
    await settle();
    gw.emitError(gw.lastSub().subId, Code.InvalidArgument, "tag: too long");
    await settle(20);
    expect(q.status).toBe("error");
    expect(q.error?.rawMessage).toBe("tag: too long");
    const opens = gw.opens.length;
    // Another view appearing reopens the stream, without the failed subscription.
    liveNotes(() => "home");
    await settle();
    expect(gw.opens.length).toBe(opens + 1);
    expect(gw.current()).toHaveLength(1);
  });

  it("keeps the value marked stale while the upstream restarts, then resubscribes", async () => {
    const q = liveNotes(() => "work");
    await settle();
    const sub = gw.lastSub();
    gw.emitQuery(sub.subId, NoteSchema, [{ title: "kept" }]);
    await settle();
    gw.emitError(sub.subId, Code.Unavailable, "query_svc restarting");
    await settle(2);
    expect(q.stale).toBe(true);
    expect(q.items.map((t) => t.title)).toEqual(["kept"]);
    await settle(20);
    expect(gw.opens.length).toBe(2);
    expect(gw.current().map((s) => s.subId)).toEqual([sub.subId]);
    gw.emitQuery(sub.subId, NoteSchema, [{ title: "fresh" }]);
    await settle();
    expect(q.stale).toBe(false);
    expect(q.items.map((t) => t.title)).toEqual(["fresh"]);
  });

  it("reconnects after the connection drops and resubscribes on a new stream", async () => {
    const q = liveNotes(() => "work");
    await settle();
    gw.emitQuery(gw.lastSub().subId, NoteSchema, [{ title: "before" }]);
    await settle();
    gw.drop();
    await settle(2);
    expect(q.stale).toBe(true);
    expect(q.items.map((t) => t.title)).toEqual(["before"]);
    await settle(30);
    expect(gw.opens.length).toBe(2);
    expect(session.connection).toBe("open");
    const again = gw.lastSub();
    gw.emitQuery(again.subId, NoteSchema, [{ title: "after" }]);
    await settle();
    expect(q.stale).toBe(false);
    expect(q.items.map((t) => t.title)).toEqual(["after"]);
  });

  it("resolves until(visibleAt) once the watermark passes the write", async () => {
    const q = liveNotes(() => "work");
    await settle();
    const sub = gw.lastSub();
    gw.emitQuery(sub.subId, NoteSchema, [], 3n);
    await settle();
    const visibleAt = {
      $typeName: "myko.v1.Watermark" as const,
      positions: [{ $typeName: "myko.v1.Offset" as const, topic: gw.topic, partition: 0, offset: 5n }],
    };
    expect(q.reflects(visibleAt)).toBe(false);
    let done = false;
    const waiting = q.until(visibleAt).then(() => (done = true));
    gw.emitQuery(sub.subId, NoteSchema, [{ title: "x" }], 4n);
    await settle();
    expect(done).toBe(false);
    gw.emitQuery(sub.subId, NoteSchema, [{ title: "x" }], 5n);
    await waiting;
    expect(q.reflects(visibleAt)).toBe(true);
  });

  it("delivers typed report values", async () => {
    let r!: LiveReport<typeof CountSchema>;
    cleanups.push($effect.root(() => void (r = new LiveReport(session, NoteCount()))));
    await settle();
    const sub = gw.lastSub();
    expect(sub.request.case).toBe("report");
    gw.emitReport(sub.subId, CountSchema, { total: 3n });
    await settle();
    expect(r.status).toBe("ready");
    expect(r.value?.total).toBe(3n);
  });

  it("takes the item type from the query's declared result, switching between queries", async () => {
    let tag = $state<string | null>(null);
    let q!: LiveQuery<typeof NoteSchema>;
    cleanups.push(
      $effect.root(() => {
        q = new LiveQuery(session, () => (tag === null ? AllNotes() : NotesByTag({ tag })));
      }),
    );
    // Static types follow the contract: no schema passed, no cast.
    expectTypeOf(q.items).toEqualTypeOf<Note[]>();
    await settle();
    const all = gw.lastSub();
    const query = all.request.case === "query" ? all.request.value.query : undefined;
    expect(query?.typeUrl).toBe("type.googleapis.com/demo.v1.AllNotes");
    gw.emitQuery(all.subId, NoteSchema, [{ title: "x", tag: "t" }]);
    await settle();
    expect(q.items[0]?.$typeName).toBe("demo.v1.Note");
    tag = "t";
    await settle();
    const byTag = gw.lastSub();
    expect(byTag.subId).not.toBe(all.subId);
    expect(byTag.request.case === "query" && byTag.request.value.query?.typeUrl).toBe(
      "type.googleapis.com/demo.v1.NotesByTag",
    );
  });

  it("accepts a query with fixed parameters, and pauses while the function returns null", async () => {
    let r!: LiveReport<typeof CountSchema>;
    let on = $state(false);
    let fixed!: LiveQuery<typeof NoteSchema>;
    cleanups.push(
      $effect.root(() => {
        fixed = new LiveQuery(session, AllNotes());
        r = new LiveReport(session, () => (on ? NoteCount() : null));
      }),
    );
    expectTypeOf(r.value).toEqualTypeOf<Count | undefined>();
    await settle();
    expect(gw.current()).toHaveLength(1);
    expect(fixed.status).toBe("loading");
    on = true;
    await settle();
    expect(gw.current().map((s) => s.request.case)).toEqual(["query", "report"]);
  });
});
