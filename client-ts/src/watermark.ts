import type { Watermark } from "./gen/myko/v1/item_pb.js";

/**
 * Read-your-writes: true once `watermark` (what a result reflects) has reached
 * every position in `visibleAt` (from CommandResult.visible_at). A partition the
 * result has not read at all counts as position 0, so it does not cover.
 */
export function covers(watermark: Watermark | undefined, visibleAt: Watermark | undefined): boolean {
  if (!visibleAt || visibleAt.positions.length === 0) return true;
  if (!watermark) return false;
  const reached = new Map<string, bigint>();
  for (const p of watermark.positions) reached.set(`${p.topic}\u0000${p.partition}`, p.offset);
  return visibleAt.positions.every((need) => {
    const have = reached.get(`${need.topic}\u0000${need.partition}`);
    return have !== undefined && have >= need.offset;
  });
}
