import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { anyUnpack, type Any } from "@bufbuild/protobuf/wkt";
import { QueryRequestSchema, type QueryResult } from "$gen/myko/v1/query_pb";
import type { LiveSession } from "./live-session.svelte";
import { LiveValue } from "./live-value.svelte";

/**
 * A live query: `items` is always the full, ordered result.
 *
 *     const targets = new LiveQuery(session, TargetSchema, () =>
 *       pack(TargetsByStatusSchema, { status: filter }));
 *
 * Create it during component initialisation: it resubscribes when the values
 * read by the function change and unsubscribes when the component is destroyed.
 */
export class LiveQuery<Desc extends DescMessage> extends LiveValue<QueryResult> {
  items = $state.raw<MessageShape<Desc>[]>([]);
  /** QueryResult.seq of the value shown. */
  seq = $state(0n);
  readonly #itemSchema: Desc;

  constructor(session: LiveSession, itemSchema: Desc, query: () => Any | null) {
    super(session);
    this.#itemSchema = itemSchema;
    this.track(() => {
      const q = query();
      return q ? { case: "query", value: create(QueryRequestSchema, { query: q }) } : null;
    });
  }

  protected accept(result: QueryResult): void {
    const items: MessageShape<Desc>[] = [];
    for (const any of result.items) {
      const item = anyUnpack(any, this.#itemSchema);
      if (item) items.push(item);
    }
    this.items = items;
    this.seq = result.seq;
  }

  protected clear(): void {
    this.items = [];
  }
}
