import { LiveQuery, type LiveSession } from "@myko/client";
import { TargetStatus, type TargetSchema } from "$gen/targets/v1/entities_pb";
import { TargetsPage } from "$gen/targets/v1/queries_myko";

/**
 * How many targets there are (all, or of one status), live, without holding them:
 * a one-row window of TargetsPage carries the count of every match
 * (`window.total`, docs/windows.md), so the browser keeps one row however many
 * targets the store holds. Create it during component initialisation, as any LiveQuery.
 */
export class TargetCount {
  readonly live: LiveQuery<typeof TargetSchema>;

  constructor(session: LiveSession, status: TargetStatus = TargetStatus.UNSPECIFIED) {
    this.live = new LiveQuery(session, TargetsPage({ status, limit: 1 }));
  }

  /** Null until the first result. */
  get count(): number | null {
    return this.live.window?.total ?? null;
  }
}
