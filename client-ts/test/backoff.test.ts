import { describe, expect, it } from "vitest";
import { Backoff } from "../src/backoff.js";

describe("Backoff", () => {
  it("grows exponentially up to the cap, with jitter in the upper half", () => {
    const top = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 1 });
    expect([top.next(), top.next(), top.next(), top.next(), top.next(), top.next()]).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
    const bottom = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0 });
    expect([bottom.next(), bottom.next()]).toEqual([50, 100]);
  });

  it("starts over after reset", () => {
    const b = new Backoff({ initialMs: 100, random: () => 1 });
    b.next();
    b.next();
    b.reset();
    expect(b.attempt).toBe(0);
    expect(b.next()).toBe(100);
  });
});
