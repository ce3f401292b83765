import { describe, expect, it } from "vitest";
import { Commands } from "../src/commands.js";
import { WatermarkSchema } from "../src/gen/myko/v1/item_pb.js";
import { FakeGateway } from "../src/testing/fake-gateway.js";
import { newTraceparent, traceIdOf } from "../src/trace.js";

const W3C = /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/;

describe("traceparent", () => {
  it("is a fresh sampled W3C traceparent each time", () => {
    const a = newTraceparent();
    const b = newTraceparent();
    expect(a).toMatch(W3C);
    expect(b).toMatch(W3C);
    expect(traceIdOf(a)).not.toBe(traceIdOf(b));
  });

  it("never has an all-zero id", () => {
    let calls = 0;
    // The first draw of each id is all zeros; the next is not.
    const random = (n: number) => (calls++ % 2 === 0 ? new Uint8Array(n) : new Uint8Array(n).fill(0xab));
    expect(newTraceparent(random)).toBe(`00-${"ab".repeat(16)}-${"ab".repeat(8)}-01`);
  });
});

describe("Commands", () => {
  it("sends each command with its own traceparent and remembers its trace id", async () => {
    const gw = new FakeGateway();
    const commands = new Commands(gw.transport);
    await commands.execute(WatermarkSchema, {});
    const first = commands.lastTraceId;
    await commands.execute(WatermarkSchema, {});
    expect(gw.commandTraceparents).toHaveLength(2);
    expect(gw.commandTraceparents[0]).toMatch(W3C);
    expect(traceIdOf(gw.commandTraceparents[0] ?? "")).toBe(first);
    expect(traceIdOf(gw.commandTraceparents[1] ?? "")).toBe(commands.lastTraceId);
    expect(first).not.toBe(commands.lastTraceId);
  });

  it("sends none when told not to", async () => {
    const gw = new FakeGateway();
    const commands = new Commands(gw.transport, { traceparent: () => undefined });
    await commands.execute(WatermarkSchema, {});
    expect(gw.commandTraceparents).toEqual([null]);
    expect(commands.lastTraceId).toBeUndefined();
  });
});
