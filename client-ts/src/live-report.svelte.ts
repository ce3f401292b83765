import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { Report } from "./contract.js";
import { ReportRequestSchema, type ReportResult } from "./gen/myko/v1/report_pb.js";
import type { LiveSession } from "./live-session.svelte.js";
import { LiveValue } from "./live-value.svelte.js";

/**
 * A live report: `value` is the report's value, typed by the result its
 * contract declares, replaced on every change.
 *
 *     const counts = new LiveReport(session, TargetCountsByStatus());
 *     const totals = new LiveReport(session, () => ZoneTotals({ zoneId }));
 */
export class LiveReport<R extends DescMessage> extends LiveValue<ReportResult> {
  value = $state.raw<MessageShape<R> | undefined>(undefined);
  #valueSchema: R | null = null;

  constructor(session: LiveSession, report: Report<R> | (() => Report<R> | null)) {
    super(session);
    this.track(() => {
      const r = typeof report === "function" ? report() : report;
      if (!r) return null;
      this.#valueSchema = r.result;
      return { case: "report", value: create(ReportRequestSchema, { report: r.request }) };
    });
  }

  protected accept(result: ReportResult): void {
    this.value = result.value && this.#valueSchema ? anyUnpack(result.value, this.#valueSchema) : undefined;
  }

  protected clear(): void {
    this.value = undefined;
  }
}
