import { timestampDate } from "@bufbuild/protobuf/wkt";
import { TargetStatus, type Target } from "$gen/targets/v1/entities_pb";
import type { MItem } from "$gen/myko/v1/item_pb";

export const STATUSES = [TargetStatus.ACTIVE, TargetStatus.PAUSED, TargetStatus.RETIRED] as const;

export function statusLabel(status: TargetStatus): string {
  switch (status) {
    case TargetStatus.ACTIVE:
      return "Active";
    case TargetStatus.PAUSED:
      return "Paused";
    case TargetStatus.RETIRED:
      return "Retired";
    default:
      return "Unset";
  }
}

export function statusKey(status: TargetStatus): string {
  return statusLabel(status).toLowerCase();
}

export function updatedAt(item: MItem | undefined): Date | null {
  return item?.updatedAt ? timestampDate(item.updatedAt) : null;
}

export function relativeTime(then: Date | number | null, now: number): string {
  if (then === null) return "—";
  const ms = now - (typeof then === "number" ? then : then.getTime());
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 5) return "just now";
  if (s < 60) return `${s}s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m}m ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h}h ago`;
  return `${Math.round(h / 24)}d ago`;
}

export function targetId(t: Target): string {
  return t.item?.id ?? "";
}
