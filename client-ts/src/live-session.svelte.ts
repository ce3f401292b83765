import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { LiveBus, type LiveFrame } from "./gen/myko/v1/live_pb.js";
import type { QueryRequest, QueryResult } from "./gen/myko/v1/query_pb.js";
import type { ReportRequest, ReportResult } from "./gen/myko/v1/report_pb.js";
import { Backoff } from "./backoff.js";
import { isRetryable } from "./errors.js";

const OPEN_TIMEOUT_MS = 15_000;

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
  /** Rejected for good: left out of later streams. */
  failed: boolean;
}

interface Stream {
  abort: AbortController;
  /** Replaced by a newer stream on purpose: its end is not a failure. */
  retired: boolean;
}

export interface LiveSessionOptions {
  backoff?: () => Backoff;
  /** Reconnect when nothing (not even a heartbeat) arrived for this many heartbeat intervals. */
  silenceFactor?: number;
  /** How long removals wait before the stream is reopened without them (additions go at once). */
  removalDelayMs?: number;
}

/**
 * All live queries and reports of a page over ONE grpc-web stream
 * (myko.v1.LiveBus/Open), so 20+ live views fit in the browser's six HTTP/1.1
 * connections per origin. The stream carries a fixed set of subscriptions:
 * when the set changes the session opens a new stream with the new set and
 * closes the old one once the new one is up. Each stream stands alone, so any
 * gateway replica can serve it.
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
  readonly #removalDelayMs: number;
  #live: Stream | null = null;
  #opening: Stream | null = null;
  #again = false;
  #closed = false;
  #nextId = 0;
  #timer?: ReturnType<typeof setTimeout>;
  #timerDue = Infinity;
  #silence?: ReturnType<typeof setTimeout>;
  #silenceMs = 30_000;

  constructor(
    transport: Transport,
    { backoff = () => new Backoff(), silenceFactor = 3, removalDelayMs = 1000 }: LiveSessionOptions = {},
  ) {
    this.#client = createClient(LiveBus, transport);
    this.#newBackoff = backoff;
    this.#backoff = backoff();
    this.#silenceFactor = silenceFactor;
    this.#removalDelayMs = removalDelayMs;
    this.#schedule(0);
  }

  /** Starts a live subscription; returns the function that ends it. */
  subscribe(request: LiveRequest, listener: LiveListener): () => void {
    const sub: Sub = { id: `s${++this.#nextId}`, request, listener, backoff: this.#newBackoff(), failed: false };
    this.#subs.set(sub.id, sub);
    this.subscriptions = this.#subs.size;
    // Batched: every view a component tree mounts in one tick rides the same new stream.
    this.#schedule(0);
    return () => {
      if (this.#subs.get(sub.id) !== sub) return;
      this.#subs.delete(sub.id);
      this.subscriptions = this.#subs.size;
      // Frames for it are ignored from now on; the upstream is released with the next stream.
      this.#schedule(this.#removalDelayMs);
    };
  }

  /** Stops everything (page teardown, tests). */
  close(): void {
    this.#closed = true;
    this.connection = "closed";
    clearTimeout(this.#timer);
    clearTimeout(this.#silence);
    this.#subs.clear();
    this.subscriptions = 0;
    for (const s of [this.#live, this.#opening]) {
      if (s) {
        s.retired = true;
        s.abort.abort();
      }
    }
  }

  /** Drops the current connection and reconnects at once (the "retry now" button). */
  reconnect(): void {
    this.#backoff.reset();
    if (this.#live) this.#live.abort.abort();
    else this.#schedule(0, true);
  }

  /** Opens a stream in delayMs (or sooner, if one is already due sooner). */
  #schedule(delayMs: number, force = false): void {
    if (this.#closed) return;
    const due = Date.now() + delayMs;
    if (!force && this.#timer !== undefined && this.#timerDue <= due) return;
    clearTimeout(this.#timer);
    this.#timerDue = due;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerDue = Infinity;
      void this.#open();
    }, delayMs);
  }

  async #open(): Promise<void> {
    if (this.#opening) {
      // One attempt at a time; go again with the newest set once it is up.
      this.#again = true;
      return;
    }
    this.#again = false;
    const subs = [...this.#subs.values()].filter((s) => !s.failed);
    const stream: Stream = { abort: new AbortController(), retired: false };
    this.#opening = stream;
    let opened = false;
    // A gateway that accepts the request but never answers must not stall the page.
    const openTimeout = setTimeout(() => stream.abort.abort(), OPEN_TIMEOUT_MS);
    try {
      const request = { subscriptions: subs.map((s) => ({ subId: s.id, request: s.request })) };
      for await (const frame of this.#client.open(request, { signal: stream.abort.signal })) {
        if (stream.retired) break;
        this.lastFrameAt = Date.now();
        if (frame.body.case === "opened") {
          opened = true;
          clearTimeout(openTimeout);
          this.#promote(stream, frame.body.value.heartbeatIntervalMs);
        } else if (this.#live === stream) {
          this.#dispatch(frame);
        }
        if (this.#live === stream) this.#armSilence(stream);
      }
    } catch {
      // Network error, gateway gone, a rejected request or our own abort: handled below.
    }
    clearTimeout(openTimeout);
    if (!opened && this.#opening === stream) this.#opening = null;
    if (stream.retired || this.#closed) return;
    if (this.#live === stream || this.#live === null) {
      // The stream the page relied on is gone: keep values, mark them stale, reconnect.
      this.#live = null;
      clearTimeout(this.#silence);
      this.connection = "reconnecting";
      this.failures += 1;
      for (const sub of this.#subs.values()) sub.listener.stale();
    }
    this.#schedule(this.#backoff.next(), true);
  }

  #promote(stream: Stream, heartbeatIntervalMs: number): void {
    const previous = this.#live;
    this.#live = stream;
    this.#opening = null;
    if (previous) {
      previous.retired = true;
      previous.abort.abort();
    }
    this.connection = "open";
    this.failures = 0;
    this.#backoff.reset();
    this.#silenceMs = (heartbeatIntervalMs || 10_000) * this.#silenceFactor;
    if (this.#again) this.#schedule(0, true);
  }

  #dispatch(frame: LiveFrame): void {
    const sub = this.#subs.get(frame.subId);
    if (!sub) return;
    const body = frame.body;
    if (body.case === "query" || body.case === "report") {
      sub.backoff.reset();
      sub.listener.result(body.value);
    } else if (body.case === "error") {
      const err = new ConnectError(body.value.message, body.value.code as Code);
      if (isRetryable(err)) {
        // The upstream service went away (restart, failover): keep the value, mark it stale,
        // and open a new stream (which includes this subscription again) after its backoff.
        sub.listener.stale();
        this.#schedule(sub.backoff.next());
      } else {
        sub.failed = true;
        sub.listener.fail(err);
      }
    }
  }

  #armSilence(stream: Stream): void {
    clearTimeout(this.#silence);
    this.#silence = setTimeout(() => stream.abort.abort(), this.#silenceMs);
  }
}
