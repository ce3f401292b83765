import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { Query } from "./contract.js";
import { QueryRequestSchema, type QueryResult } from "./gen/myko/v1/query_pb.js";
import type { LiveSession } from "./live-session.svelte.js";
import { LiveValue } from "./live-value.svelte.js";

/**
 * A live query: `items` is always the full, ordered result, typed by the
 * result the query's contract declares.
 *
 *     const targets = new LiveQuery(session, () => TargetsByStatus({ status: filter }));
 *     const zones = new LiveQuery(session, AllZones());   // parameters that never change
 *
 * Create it during component initialisation: it resubscribes when the values
 * read by the function change (returning null pauses it) and unsubscribes
 * when the component is destroyed.
 */
export class LiveQuery<R extends DescMessage> extends LiveValue<QueryResult> {
  items = $state.raw<MessageShape<R>[]>([]);
  /** QueryResult.seq of the value shown. */
  seq = $state(0n);
  /**
   * For a windowed query (docs/windows.md): where `items` starts in the order
   * and how many entities match in all (`total` null when the query does not
   * count them). Null for a query without a window.
   */
  window = $state.raw<{ offset: number; total: number | null } | null>(null);
  #itemSchema: R | null = null;

  constructor(session: LiveSession, query: Query<R> | (() => Query<R> | null)) {
    super(session);
    this.track(() => {
      const q = typeof query === "function" ? query() : query;
      if (!q) return null;
      // Frames of an earlier subscription never reach accept(), so the schema follows the request.
      this.#itemSchema = q.result;
      return { case: "query", value: create(QueryRequestSchema, { query: q.request }) };
    });
  }

  protected accept(result: QueryResult): void {
    const schema = this.#itemSchema;
    if (!schema) return;
    const items: MessageShape<R>[] = [];
    for (const any of result.items) {
      const item = anyUnpack(any, schema);
      if (item) items.push(item);
    }
    this.items = items;
    this.seq = result.seq;
    const w = result.window;
    this.window = w ? { offset: Number(w.offset), total: w.counted ? Number(w.total) : null } : null;
  }

  protected clear(): void {
    this.items = [];
    this.window = null;
  }
}
