import { create } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { LiveSession } from "@myko/client";
import { QueryRequestSchema, type QueryResult } from "@myko/client/myko/v1/query_pb.js";
import { TargetSchema, type TargetStatus } from "$gen/targets/v1/entities_pb";
import { TargetsPage } from "$gen/targets/v1/queries_myko";
import { pageOf, type OrderRow } from "./order-position";

/**
 * Which page of the Targets page's order (TargetsPage, name then id) holds a
 * target, without loading the pages before it: each round of `pageOf` subscribes
 * one-row windows at page starts (they ride one new LiveBus stream, each a slice
 * of the order query_svc already holds for the open page), takes their first
 * results and ends them.
 */
export class TargetLocator {
  constructor(
    private readonly session: LiveSession,
    private readonly timeoutMs = 10_000,
  ) {}

  page(row: OrderRow, status: TargetStatus, total: number, size: number): Promise<number> {
    return pageOf(row, total, size, (positions) => this.#firstRows(status, positions));
  }

  #firstRows(status: TargetStatus, positions: number[]): Promise<(OrderRow | null)[]> {
    return new Promise((resolve, reject) => {
      const rows: (OrderRow | null | undefined)[] = positions.map(() => undefined);
      const ends: (() => void)[] = [];
      let waiting = positions.length;
      let done = false;
      const finish = (error: Error | null) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        for (const end of ends) end();
        if (error) reject(error);
        else resolve(rows.map((r) => r ?? null));
      };
      const timer = setTimeout(() => finish(new Error("the rows did not arrive in time")), this.timeoutMs);
      positions.forEach((offset, i) => {
        const query = TargetsPage({ status, offset, limit: 1 });
        const request = { case: "query" as const, value: create(QueryRequestSchema, { query: query.request }) };
        ends.push(
          this.session.subscribe(request, {
            result: (value) => {
              if (rows[i] !== undefined) return;
              const first = (value as QueryResult).items[0];
              const target = first ? anyUnpack(first, TargetSchema) : undefined;
              rows[i] = target ? { name: target.name, id: target.item?.id ?? "" } : null;
              if (--waiting === 0) finish(null);
            },
            stale: () => {},
            fail: (err) => finish(err),
          }),
        );
      });
      if (waiting === 0) finish(null);
    });
  }
}
