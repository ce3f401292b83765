import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { anyUnpack, type Any } from "@bufbuild/protobuf/wkt";
import { ReportRequestSchema, type ReportResult } from "$gen/myko/v1/report_pb";
import type { LiveSession } from "./live-session.svelte";
import { LiveValue } from "./live-value.svelte";

/**
 * A live report: `value` is the report's typed value, replaced on every change.
 *
 *     const counts = new LiveReport(session, StatusCountsSchema, () => pack(TargetCountsByStatusSchema));
 */
export class LiveReport<Desc extends DescMessage> extends LiveValue<ReportResult> {
  value = $state.raw<MessageShape<Desc> | undefined>(undefined);
  readonly #valueSchema: Desc;

  constructor(session: LiveSession, valueSchema: Desc, report: () => Any | null) {
    super(session);
    this.#valueSchema = valueSchema;
    this.track(() => {
      const r = report();
      return r ? { case: "report", value: create(ReportRequestSchema, { report: r }) } : null;
    });
  }

  protected accept(result: ReportResult): void {
    this.value = result.value ? anyUnpack(result.value, this.#valueSchema) : undefined;
  }

  protected clear(): void {
    this.value = undefined;
  }
}
