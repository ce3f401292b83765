import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { LiveBus, type LiveFrame } from "$gen/myko/v1/live_pb";
import type { QueryRequest, QueryResult } from "$gen/myko/v1/query_pb";
import type { ReportRequest, ReportResult } from "$gen/myko/v1/report_pb";
import { Backoff } from "./backoff";
import { isRetryable } from "./errors";

export type Connection = "connecting" | "open" | "reconnecting" | "closed";

export type LiveRequest =
  | { case: "query"; value: QueryRequest }
  | { case: "report"; value: ReportRequest };

export interface LiveListener {
  /** A full new value for the subscription. */
  result(value: QueryResult | ReportResult): void;
  /** The connection was lost or the upstream went away: the last value is stale until the next result. */
  stale(): void;
  /** The subscription failed for good (bad request): it will not be retried. */
  fail(err: ConnectError): void;
}

interface Sub {
  id: string;
  request: LiveRequest;
  listener: LiveListener;
  backoff: Backoff;
  retry?: ReturnType<typeof setTimeout>;
}

export interface LiveSessionOptions {
  backoff?: () => Backoff;
  /** Reconnect when nothing (not even a heartbeat) arrived for this many heartbeat intervals. */
  silenceFactor?: number;
}

/**
 * One LiveBus session per page: a single grpc-web server stream carries every
 * live query and report, so 20+ live views fit in the browser's six HTTP/1.1
 * connections per origin. Subscriptions are added and removed with short unary
 * calls; after a reconnect they are all re-sent to the new session.
 */
export class LiveSession {
  connection = $state<Connection>("connecting");
  /** When the last frame of any kind arrived (ms since epoch). */
  lastFrameAt = $state<number | null>(null);
  /** Consecutive failed connection attempts. */
  failures = $state(0);
  /** Live subscriptions right now. */
  subscriptions = $state(0);

  readonly #client: Client<typeof LiveBus>;
  readonly #subs = new Map<string, Sub>();
  readonly #backoff: Backoff;
  readonly #newBackoff: () => Backoff;
  readonly #silenceFactor: number;
  #sessionId: string | null = null;
  #abort: AbortController | null = null;
  #closed = false;
  #nextId = 0;
  #silence?: ReturnType<typeof setTimeout>;

  constructor(transport: Transport, { backoff = () => new Backoff(), silenceFactor = 3 }: LiveSessionOptions = {}) {
    this.#client = createClient(LiveBus, transport);
    this.#newBackoff = backoff;
    this.#backoff = backoff();
    this.#silenceFactor = silenceFactor;
    void this.#run();
  }

  get sessionId(): string | null {
    return this.#sessionId;
  }

  /** Starts a live subscription; returns the function that ends it. */
  subscribe(request: LiveRequest, listener: LiveListener): () => void {
    const sub: Sub = { id: `s${++this.#nextId}`, request, listener, backoff: this.#newBackoff() };
    this.#subs.set(sub.id, sub);
    this.subscriptions = this.#subs.size;
    if (this.#sessionId) void this.#send(sub, this.#sessionId);
    return () => this.#unsubscribe(sub);
  }

  /** Stops everything (page teardown, tests). */
  close(): void {
    this.#closed = true;
    this.connection = "closed";
    for (const sub of this.#subs.values()) clearTimeout(sub.retry);
    this.#subs.clear();
    this.subscriptions = 0;
    clearTimeout(this.#silence);
    this.#abort?.abort();
  }

  /** Drops the current connection and reconnects at once (e.g. a "retry now" button). */
  reconnect(): void {
    this.#backoff.reset();
    this.#abort?.abort();
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      const abort = new AbortController();
      this.#abort = abort;
      try {
        for await (const frame of this.#client.open({}, { signal: abort.signal })) {
          this.#onFrame(frame, abort);
        }
      } catch {
        // Network error, gateway gone, or our own abort: all mean reconnect.
      }
      clearTimeout(this.#silence);
      this.#sessionId = null;
      if (this.#closed) return;
      this.connection = "reconnecting";
      this.failures += 1;
      for (const sub of this.#subs.values()) {
        clearTimeout(sub.retry);
        sub.listener.stale();
      }
      await new Promise((r) => setTimeout(r, this.#backoff.next()));
    }
  }

  #onFrame(frame: LiveFrame, abort: AbortController): void {
    this.lastFrameAt = Date.now();
    const body = frame.body;
    switch (body.case) {
      case "opened": {
        this.#sessionId = body.value.sessionId;
        this.connection = "open";
        this.failures = 0;
        this.#backoff.reset();
        this.#silenceMs = (body.value.heartbeatIntervalMs || 10_000) * this.#silenceFactor;
        for (const sub of this.#subs.values()) void this.#send(sub, body.value.sessionId);
        break;
      }
      case "query":
      case "report": {
        const sub = this.#subs.get(frame.subId);
        if (sub) {
          sub.backoff.reset();
          sub.listener.result(body.value);
        }
        break;
      }
      case "error": {
        const sub = this.#subs.get(frame.subId);
        if (sub) this.#onSubError(sub, new ConnectError(body.value.message, body.value.code as Code));
        break;
      }
      default:
        break;
    }
    this.#armSilence(abort);
  }

  #silenceMs = 30_000;

  #armSilence(abort: AbortController): void {
    clearTimeout(this.#silence);
    this.#silence = setTimeout(() => abort.abort(), this.#silenceMs);
  }

  #onSubError(sub: Sub, err: ConnectError): void {
    if (!isRetryable(err)) {
      sub.listener.fail(err);
      return;
    }
    // The upstream service went away (restart, failover): keep the value, mark it stale, retry.
    sub.listener.stale();
    clearTimeout(sub.retry);
    sub.retry = setTimeout(() => {
      if (this.#subs.get(sub.id) === sub && this.#sessionId) void this.#send(sub, this.#sessionId);
    }, sub.backoff.next());
  }

  async #send(sub: Sub, sessionId: string): Promise<void> {
    try {
      await this.#client.subscribe({ sessionId, subId: sub.id, request: sub.request }, { timeoutMs: 10_000 });
    } catch (e) {
      const err = ConnectError.from(e);
      if (this.#subs.get(sub.id) !== sub || sessionId !== this.#sessionId) return;
      if (err.code === Code.NotFound) {
        // The gateway no longer knows our session (it restarted): start over.
        this.#abort?.abort();
      } else {
        this.#onSubError(sub, err);
      }
    }
  }

  #unsubscribe(sub: Sub): void {
    if (this.#subs.get(sub.id) !== sub) return;
    this.#subs.delete(sub.id);
    this.subscriptions = this.#subs.size;
    clearTimeout(sub.retry);
    const sessionId = this.#sessionId;
    if (sessionId) {
      this.#client.unsubscribe({ sessionId, subId: sub.id }, { timeoutMs: 10_000 }).catch(() => {
        // The session is gone or will be: the gateway drops its subscriptions with it.
      });
    }
  }
}
