import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Backoff, bearer, BearerToken, Commands, describeError, LiveQuery, LiveSession } from "../src/index.js";
import { FakeGateway, settle } from "../src/testing/index.js";
import { AllNotes } from "./gen/demo/v1/demo_myko.js";
import { NoteSchema } from "./gen/demo/v1/demo_pb.js";

const fast = () => new Backoff({ initialMs: 1, maxMs: 2, random: () => 0 });

/** A token source that counts how often the server refused its token. */
class Tokens extends BearerToken {
  rejections = 0;
  rejected(): void {
    this.rejections += 1;
  }
}

describe("tokens on the LiveBus stream and on commands", () => {
  let tokens: Tokens;
  let gw: FakeGateway;
  let session: LiveSession;
  let cleanups: (() => void)[];

  beforeEach(() => {
    tokens = new Tokens("t1");
    gw = new FakeGateway({ interceptors: [bearer(tokens)] });
    session = new LiveSession(gw.transport, { backoff: fast, removalDelayMs: 0, tokens });
    cleanups = [];
  });
  afterEach(() => {
    cleanups.forEach((c) => c());
    session.close();
  });

  function liveNotes() {
    let q!: LiveQuery<typeof NoteSchema>;
    cleanups.push(
      $effect.root(() => {
        q = new LiveQuery(session, () => AllNotes());
      }),
    );
    return q;
  }

  it("sends the current token as a bearer token on Open and Execute", async () => {
    liveNotes();
    await settle();
    expect(gw.openAuthorizations).toEqual(["Bearer t1"]);
    const commands = new Commands(gw.transport);
    await commands.execute(NoteSchema, { title: "x" });
    tokens.set("t2");
    await commands.execute(NoteSchema, { title: "y" });
    expect(gw.commandAuthorizations).toEqual(["Bearer t1", "Bearer t2"]);
  });

  it("a new token reopens the stream with it, and the views stay live throughout", async () => {
    const q = liveNotes();
    await settle();
    const sub = gw.lastSub();
    gw.emitQuery(sub.subId, NoteSchema, [{ title: "before" }]);
    await settle();
    expect(q.status).toBe("ready");

    tokens.set("t2");
    await settle();
    // The same subscription rides the new stream; the old one is closed once the new one opened.
    expect(gw.openAuthorizations).toEqual(["Bearer t1", "Bearer t2"]);
    expect(gw.current().map((s) => s.subId)).toEqual([sub.subId]);
    expect(gw.openStreams).toBe(1);
    expect(session.connection).toBe("open");
    // The value never went away or stale while the stream was replaced.
    expect(q.items.map((n) => n.title)).toEqual(["before"]);
    expect(q.stale).toBe(false);
    gw.emitQuery(sub.subId, NoteSchema, [{ title: "after" }]);
    await settle();
    expect(q.items.map((n) => n.title)).toEqual(["after"]);
  });

  it("signing out ends the stream; signing in again reopens it", async () => {
    const q = liveNotes();
    await settle();
    gw.emitQuery(gw.lastSub().subId, NoteSchema, [{ title: "mine" }]);
    await settle();

    tokens.set(null);
    await settle();
    expect(gw.openStreams).toBe(0);
    expect(session.connection).toBe("signed-out");
    expect(q.stale).toBe(true);
    // No attempt without a token, however long it waits.
    await new Promise((r) => setTimeout(r, 20));
    expect(gw.openAuthorizations).toEqual(["Bearer t1"]);

    tokens.set("t3");
    await settle();
    expect(gw.openAuthorizations).toEqual(["Bearer t1", "Bearer t3"]);
    expect(session.connection).toBe("open");
  });

  it("a refused token asks the source for a new one, and the new one opens the stream", async () => {
    gw.authorize = (auth) => (auth === "Bearer t1" ? new ConnectError("the token has expired", Code.Unauthenticated) : null);
    liveNotes();
    await settle();
    expect(tokens.rejections).toBeGreaterThan(0);
    expect(session.connection).not.toBe("open");
    tokens.set("t2");
    await settle();
    expect(session.connection).toBe("open");
    expect(gw.openAuthorizations.at(-1)).toBe("Bearer t2");
  });

  it("a subscription ended as UNAUTHENTICATED is kept (stale) and resumes with the next token", async () => {
    const q = liveNotes();
    await settle();
    const sub = gw.lastSub();
    gw.emitQuery(sub.subId, NoteSchema, [{ title: "kept" }]);
    await settle();
    gw.emitError(sub.subId, Code.Unauthenticated, "the token has expired");
    await settle();
    expect(tokens.rejections).toBe(1);
    expect(q.error).toBeNull();
    expect(q.items.map((n) => n.title)).toEqual(["kept"]);
    tokens.set("t2");
    await settle();
    expect(gw.current().map((s) => s.subId)).toEqual([sub.subId]);
    gw.emitQuery(sub.subId, NoteSchema, [{ title: "fresh" }]);
    await settle();
    expect(q.stale).toBe(false);
    expect(q.items.map((n) => n.title)).toEqual(["fresh"]);
  });

  it("PERMISSION_DENIED ends the subscription for good and says so", async () => {
    const q = liveNotes();
    await settle();
    gw.emitError(gw.lastSub().subId, Code.PermissionDenied, "AllNotes needs role viewer; user 'x' has roles: none");
    await settle();
    expect(q.status).toBe("error");
    expect(describeError(q.error)).toBe("Not allowed: AllNotes needs role viewer; user 'x' has roles: none");
    expect(tokens.rejections).toBe(0);
  });
});
