import { describe, expect, it } from "vitest";
import { clampPage, describeRange, pageCount, pageRange } from "./pages";

describe("paging a windowed query", () => {
  it("says which rows are shown, of how many", () => {
    expect(describeRange(pageRange({ offset: 100, total: 100_000 }, 100))).toBe("Rows 101–200 of 100,000");
    expect(describeRange(pageRange({ offset: 0, total: 3 }, 3))).toBe("Rows 1–3 of 3");
    expect(describeRange(pageRange({ offset: 0, total: 0 }, 0))).toBe("No rows");
    expect(describeRange(pageRange({ offset: 200, total: 150 }, 0))).toBe("No rows here · 150 in all");
    expect(describeRange(pageRange({ offset: 0, total: null }, 10))).toBe("Rows 1–10");
  });

  it("counts pages and moves back when the result shrinks under the page", () => {
    expect(pageCount(100_000, 100)).toBe(1000);
    expect(pageCount(101, 100)).toBe(2);
    expect(pageCount(0, 100)).toBe(1);
    expect(clampPage(5, 250, 100)).toBe(2);
    expect(clampPage(1, 250, 100)).toBe(1);
    expect(clampPage(3, 0, 100)).toBe(0);
  });
});
