import { describe, expect, it } from "vitest";
import { compareRows, compareText, nameKey, pageOf, type OrderRow } from "./order-position";

function rowsOf(n: number, name: (i: number) => string): OrderRow[] {
  return Array.from({ length: n }, (_, i) => ({ name: name(i), id: `id-${String(i).padStart(6, "0")}` })).sort(compareRows);
}

/** A probe over a sorted array, counting its rounds. */
function prober(rows: OrderRow[]) {
  const calls: number[][] = [];
  const probe = async (positions: number[]) => {
    calls.push(positions);
    return positions.map((p) => rows[p] ?? null);
  };
  return { probe, calls };
}

describe("the Targets page's order", () => {
  it("folds case as the server does, and compares by code point", () => {
    expect(nameKey("Straße B")).toBe(nameKey("STRASSE b"));
    expect(compareRows({ name: "apple", id: "z" }, { name: "Banana", id: "a" })).toBeLessThan(0);
    // Equal names: the id decides.
    expect(compareRows({ name: "Gate", id: "b" }, { name: "gate", id: "a" })).toBeGreaterThan(0);
    // U+1F600 sorts after U+FF5E by code point, though its first UTF-16 unit is smaller.
    expect(compareText("\u{1F600}", "\uFF5E")).toBeGreaterThan(0);
    expect("\u{1F600}" < "\uFF5E").toBe(true);
    expect(compareText("ab", "abc")).toBeLessThan(0);
  });
});

describe("finding the page of a row", () => {
  it("finds a row among 100,000 in two rounds of one-row windows", async () => {
    const rows = rowsOf(100_000, (i) => `Bench target ${String(i).padStart(7, "0")}`);
    for (const at of [0, 99, 100, 31_337, 99_950, 99_999]) {
      const { probe, calls } = prober(rows);
      expect(await pageOf(rows[at]!, rows.length, 100, probe)).toBe(Math.floor(at / 100));
      expect(calls.length).toBeLessThanOrEqual(2);
      expect(calls.every((c) => c.length <= 32)).toBe(true);
    }
  });

  it("breaks ties on the name by id, on a page boundary", async () => {
    // 250 rows named alike: only the id orders them.
    const rows = rowsOf(250, () => "Same name");
    const { probe } = prober(rows);
    expect(await pageOf(rows[100]!, rows.length, 100, probe, 4)).toBe(1);
    expect(await pageOf(rows[99]!, rows.length, 100, probe, 4)).toBe(0);
    expect(await pageOf(rows[249]!, rows.length, 100, probe, 4)).toBe(2);
  });

  it("asks nothing when every row is on one page", async () => {
    const rows = rowsOf(40, (i) => `t${i}`);
    const { probe, calls } = prober(rows);
    expect(await pageOf(rows[39]!, rows.length, 100, probe)).toBe(0);
    expect(calls).toEqual([]);
  });

  it("puts a row not in the order where it would go, and copes with a shrunk order", async () => {
    const rows = rowsOf(1000, (i) => `n${String(i).padStart(4, "0")}`);
    const { probe } = prober(rows);
    expect(await pageOf({ name: "n0555x", id: "new" }, rows.length, 100, probe, 8)).toBe(5);
    // The total said 5000, but the order holds 1000 now: past its end reads as "after",
    // so the row goes to the last page there is.
    expect(await pageOf({ name: "zzz", id: "new" }, 5000, 100, probe, 8)).toBe(9);
  });
});
