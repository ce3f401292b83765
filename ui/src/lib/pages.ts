/**
 * Paging arithmetic for a windowed query (docs/windows.md): which page holds
 * which rows, from the window the last result reported.
 */
export interface PageWindow {
  offset: number;
  total: number | null;
}

export interface PageRange {
  /** 1-based position of the first row shown; 0 when nothing is shown. */
  first: number;
  /** 1-based position of the last row shown. */
  last: number;
  /** Every match, or null when the query does not count them. */
  total: number | null;
}

export function pageRange(window: PageWindow | null, shown: number): PageRange {
  const offset = window?.offset ?? 0;
  return { first: shown ? offset + 1 : 0, last: offset + shown, total: window?.total ?? null };
}

export function pageCount(total: number | null, size: number): number {
  return total === null ? 1 : Math.max(1, Math.ceil(total / size));
}

/** The page to show: `page`, or the last one when the result shrank under it. */
export function clampPage(page: number, total: number | null, size: number): number {
  return Math.max(0, Math.min(page, pageCount(total, size) - 1));
}

export function describeRange(r: PageRange): string {
  const n = (x: number) => x.toLocaleString("en");
  if (r.total === 0 || (r.first === 0 && r.total === null)) return "No rows";
  if (r.first === 0) return `No rows here · ${n(r.total ?? 0)} in all`;
  return r.total === null ? `Rows ${n(r.first)}–${n(r.last)}` : `Rows ${n(r.first)}–${n(r.last)} of ${n(r.total)}`;
}
