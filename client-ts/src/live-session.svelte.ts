import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { LiveBus, type LiveFrame } from "./gen/myko/v1/live_pb.js";
import type { QueryRequest, QueryResult } from "./gen/myko/v1/query_pb.js";
import type { ReportRequest, ReportResult } from "./gen/myko/v1/report_pb.js";
import { Backoff } from "./backoff.js";
import { isRetryable } from "./errors.js";
import type { TokenSource } from "./tokens.js";

const OPEN_TIMEOUT_MS = 15_000;

export type Connection = "connecting" | "open" | "reconnecting" | "signed-out" | "closed";

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
  /**
   * The same token source the transport sends (gatewayTransport({ tokens })). A new
   * token reopens the stream with it, the old stream serving until the new one is
   * open; no token (signed out) ends the streams until there is one again.
   */
  tokens?: TokenSource;
}

/**
 * All live queries and reports of a page over ONE grpc-web stream
 * (myko.v1.LiveBus/Open), so 20+ live views fit in the browser's six HTTP/1.1
 * connections per origin. The stream carries a fixed set of subscriptions:
 * when the set changes the session opens a new stream with the new set and
 * closes the old one once the new one is up. Each stream stands alone, so any
 * gateway replica can serve it. A stream carries the token it was opened with,
 * so a new token (a refresh) reopens it the same way, without a gap.
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
  readonly #tokens?: TokenSource;
  readonly #unsubscribeTokens?: () => void;
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
    { backoff = () => new Backoff(), silenceFactor = 3, removalDelayMs = 1000, tokens }: LiveSessionOptions = {},
  ) {
    this.#client = createClient(LiveBus, transport);
    this.#newBackoff = backoff;
    this.#backoff = backoff();
    this.#silenceFactor = silenceFactor;
    this.#removalDelayMs = removalDelayMs;
    this.#tokens = tokens;
    this.#unsubscribeTokens = tokens?.subscribe(() => this.#tokenChanged());
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
    this.#unsubscribeTokens?.();
    clearTimeout(this.#timer);
    clearTimeout(this.#silence);
    this.#subs.clear();
    this.subscriptions = 0;
    this.#endStreams();
  }

  /** Drops the current connection and reconnects at once (the "retry now" button). */
  reconnect(): void {
    this.#backoff.reset();
    if (this.#live) this.#live.abort.abort();
    else this.#schedule(0, true);
  }

  #endStreams(): void {
    for (const s of [this.#live, this.#opening]) {
      if (s) {
        s.retired = true;
        s.abort.abort();
      }
    }
    this.#live = null;
    this.#opening = null;
  }

  #signedOut(): boolean {
    return this.#tokens !== undefined && this.#tokens.token() === null;
  }

  #tokenChanged(): void {
    if (this.#closed) return;
    if (this.#signedOut()) {
      // Nothing may keep flowing to a signed-out page: end the streams now, keep the values.
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#timerDue = Infinity;
      clearTimeout(this.#silence);
      this.#endStreams();
      this.connection = "signed-out";
      for (const sub of this.#subs.values()) sub.listener.stale();
      return;
    }
    // A new stream with the new token; the current one serves until the new one is open.
    this.#backoff.reset();
    this.#schedule(0, true);
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
    if (this.#signedOut()) {
      // Reopened when a token arrives (#tokenChanged).
      this.connection = "signed-out";
      return;
    }
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
      // groupResults: a result shared by several subscriptions may come once, naming them all.
      const request = {
        subscriptions: subs.map((s) => ({ subId: s.id, request: s.request })),
        groupResults: true,
      };
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
    } catch (e) {
      // Network error, gateway gone, a rejected request or our own abort: handled below.
      if (!stream.retired && ConnectError.from(e).code === Code.Unauthenticated) this.#tokens?.rejected?.();
    }
    clearTimeout(openTimeout);
    if (!opened && this.#opening === stream) this.#opening = null;
    if (stream.retired || this.#closed || this.#signedOut()) return;
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
    const body = frame.body;
    if (body.case === "query" || body.case === "report") {
      for (const subId of [frame.subId, ...frame.moreSubIds]) {
        const sub = this.#subs.get(subId);
        if (!sub) continue;
        sub.backoff.reset();
        sub.listener.result(body.value);
      }
      return;
    }
    const sub = this.#subs.get(frame.subId);
    if (!sub) return;
    if (body.case === "error") {
      const err = new ConnectError(body.value.message, body.value.code as Code);
      if (err.code === Code.Unauthenticated) {
        // The token ran out (or was revoked) under this stream: keep the value, mark it
        // stale, ask for a new token; the new token reopens the stream (#tokenChanged),
        // or the backoff retries with whatever token there is then.
        sub.listener.stale();
        this.#tokens?.rejected?.();
        this.#schedule(sub.backoff.next());
      } else if (isRetryable(err)) {
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
