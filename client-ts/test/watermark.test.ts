import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { WatermarkSchema } from "../src/gen/myko/v1/item_pb.js";
import { covers } from "../src/watermark.js";

const wm = (...positions: [string, number, bigint][]) =>
  create(WatermarkSchema, { positions: positions.map(([topic, partition, offset]) => ({ topic, partition, offset })) });

describe("covers", () => {
  it("is true once every partition reached the visible_at position", () => {
    const visibleAt = wm(["t", 0, 5n], ["t", 2, 3n]);
    expect(covers(wm(["t", 0, 5n], ["t", 1, 0n], ["t", 2, 3n]), visibleAt)).toBe(true);
    expect(covers(wm(["t", 0, 9n], ["t", 2, 4n]), visibleAt)).toBe(true);
  });

  it("is false while any partition is behind or unseen", () => {
    const visibleAt = wm(["t", 0, 5n], ["t", 2, 3n]);
    expect(covers(wm(["t", 0, 4n], ["t", 2, 3n]), visibleAt)).toBe(false);
    expect(covers(wm(["t", 0, 5n]), visibleAt)).toBe(false);
    expect(covers(undefined, visibleAt)).toBe(false);
  });

  it("treats a command that wrote nothing as visible at once", () => {
    expect(covers(undefined, wm())).toBe(true);
    expect(covers(undefined, undefined)).toBe(true);
  });
});
