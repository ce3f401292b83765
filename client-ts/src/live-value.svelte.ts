import { toBinary } from "@bufbuild/protobuf";
import type { ConnectError } from "@connectrpc/connect";
import { untrack } from "svelte";
import type { Watermark } from "./gen/myko/v1/item_pb.js";
import type { QueryResult } from "./gen/myko/v1/query_pb.js";
import type { ReportResult } from "./gen/myko/v1/report_pb.js";
import type { LiveListener, LiveRequest, LiveSession } from "./live-session.svelte.js";
import { covers } from "./watermark.js";
import { QueryRequestSchema } from "./gen/myko/v1/query_pb.js";
import { ReportRequestSchema } from "./gen/myko/v1/report_pb.js";

/**
 * - loading: no value yet for the current parameters
 * - ready:   a value is shown (check `stale`)
 * - error:   the request was rejected (bad parameters); `error` says why
 */
export type LiveStatus = "loading" | "ready" | "error";

interface Waiter {
  visibleAt: Watermark;
  resolve: () => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** What LiveQuery and LiveReport share: state, staleness, watermark, subscription lifecycle. */
export abstract class LiveValue<R extends QueryResult | ReportResult> {
  status = $state<LiveStatus>("loading");
  /** True while the value shown may be out of date (connection lost, upstream restarting). */
  stale = $state(false);
  error = $state<ConnectError | null>(null);
  watermark = $state.raw<Watermark | undefined>(undefined);
  /** When the last value arrived (ms since epoch). */
  updatedAt = $state<number | null>(null);

  readonly #session: LiveSession;
  #unsubscribe: (() => void) | null = null;
  #key: string | null = null;
  #waiters = new Set<Waiter>();

  constructor(session: LiveSession) {
    this.#session = session;
  }

  /**
   * Subscribes to the request `params()` builds, and again whenever what it reads
   * changes; unsubscribes when the owning component (or effect root) is destroyed.
   * Returning null pauses the subscription.
   */
  protected track(params: () => LiveRequest | null): void {
    $effect.pre(() => {
      const request = params();
      untrack(() => this.#switch(request));
    });
    $effect.pre(() => () => untrack(() => this.#switch(null)));
  }

  /** Whether the current value already reflects a write (CommandResult.visible_at). */
  reflects(visibleAt: Watermark | undefined): boolean {
    return this.status === "ready" && !this.stale && covers(this.watermark, visibleAt);
  }

  /** Resolves once the value reflects the write; rejects after timeoutMs. */
  until(visibleAt: Watermark | undefined, timeoutMs = 10_000): Promise<void> {
    if (this.reflects(visibleAt)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        visibleAt: visibleAt!,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(new Error("the change is not visible yet"));
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  protected abstract accept(result: R): void;
  protected abstract clear(): void;

  #switch(request: LiveRequest | null): void {
    const key = request ? keyOf(request) : null;
    if (key === this.#key) return;
    this.#unsubscribe?.();
    this.#unsubscribe = null;
    this.#key = key;
    if (!request) return;
    this.status = "loading";
    this.error = null;
    this.stale = false;
    const listener: LiveListener = {
      result: (r) => {
        if (this.#key !== key) return;
        this.accept(r as R);
        this.watermark = r.watermark;
        this.updatedAt = Date.now();
        this.status = "ready";
        this.stale = false;
        this.error = null;
        this.#settleWaiters();
      },
      stale: () => {
        if (this.#key === key) this.stale = true;
      },
      fail: (err) => {
        if (this.#key !== key) return;
        this.error = err;
        this.status = "error";
        this.clear();
      },
    };
    this.#unsubscribe = this.#session.subscribe(request, listener);
  }

  #settleWaiters(): void {
    for (const w of this.#waiters) {
      if (covers(this.watermark, w.visibleAt)) {
        clearTimeout(w.timer);
        this.#waiters.delete(w);
        w.resolve();
      }
    }
  }
}

function keyOf(request: LiveRequest): string {
  const bytes =
    request.case === "query"
      ? toBinary(QueryRequestSchema, request.value)
      : toBinary(ReportRequestSchema, request.value);
  return `${request.case}:${Array.from(bytes).join(",")}`;
}
