import { timestampDate } from "@bufbuild/protobuf/wkt";
import { TargetStatus, type Target } from "$gen/targets/v1/entities_pb";
import type { MItem } from "@myko/client";

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

export function targetId(t: Target): string {
  return t.item?.id ?? "";
}
