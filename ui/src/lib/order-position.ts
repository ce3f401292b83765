/**
 * Where a row sits in a windowed query's order, found with a few one-row windows
 * instead of loading every page before it (docs/ui-streams.md, "Going to a new row").
 *
 * The Targets page's order is TargetsPage's: the name casefolded, ties by id
 * (examples/targets/targets/queries.py, docs/windows.md).
 */

export interface OrderRow {
  name: string;
  id: string;
}

// The folds Python's str.casefold makes beyond lower-casing that a name plausibly holds.
const FOLDS: Record<string, string> = { ß: "ss", ẞ: "ss", ς: "σ", ſ: "s", ﬁ: "fi", ﬂ: "fl" };

/**
 * The server's key for a name (Python `str.casefold`), as near as JavaScript gets:
 * lower-casing plus the common folds it lacks. Where the two still differ (rare
 * scripts), the page found may be a neighbour of the right one; the caller checks.
 */
export function nameKey(name: string): string {
  return name.toLowerCase().replace(/[ßẞςſﬁﬂ]/g, (c) => FOLDS[c] ?? c);
}

/** Compares as Python compares str: by code point (JavaScript's `<` compares UTF-16 units). */
export function compareText(a: string, b: string): number {
  if (a === b) return 0;
  const x = a[Symbol.iterator]();
  const y = b[Symbol.iterator]();
  for (;;) {
    const p = x.next();
    const q = y.next();
    if (p.done || q.done) return p.done && q.done ? 0 : p.done ? -1 : 1;
    const d = p.value.codePointAt(0)! - q.value.codePointAt(0)!;
    if (d !== 0) return d;
  }
}

/** The order of TargetsPage: name key, then id. */
export function compareRows(a: OrderRow, b: OrderRow): number {
  return compareText(nameKey(a.name), nameKey(b.name)) || compareText(a.id, b.id);
}

/** The rows at these positions of the order (null past its end), in one round trip. */
export type Probe = (positions: number[]) => Promise<(OrderRow | null)[]>;

/**
 * The page of `size` rows that holds `row` in an order of about `total` rows: the
 * last page whose first row sorts no later than `row`. Each round asks `probe` for
 * the first rows of up to `fanout` evenly spaced pages of those still possible
 * (1,000 pages, 32 a round: 2 rounds). Rows that move meanwhile only make it a
 * neighbour, which the caller sees.
 */
export async function pageOf(row: OrderRow, total: number, size: number, probe: Probe, fanout = 32): Promise<number> {
  // The page is within [low, high].
  let low = 0;
  let high = Math.max(0, Math.ceil(total / size) - 1);
  while (low < high) {
    const span = high - low; // pages low+1..high are unknown
    const count = Math.min(fanout, span);
    const pages = Array.from({ length: count }, (_, i) => low + 1 + Math.floor((i * span) / count));
    const rows = await probe(pages.map((p) => p * size));
    let nextHigh = high;
    let nextLow = low;
    for (let i = 0; i < pages.length; i++) {
      const first = rows[i] ?? null;
      if (first !== null && (first.id === row.id || compareRows(first, row) < 0)) {
        nextLow = pages[i]!;
      } else {
        nextHigh = pages[i]! - 1;
        break;
      }
    }
    low = nextLow;
    high = nextHigh;
  }
  return low;
}
