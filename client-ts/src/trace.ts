/**
 * W3C trace context for the calls a page makes (docs/observability.md).
 *
 * Each command starts a new sampled trace here, in the browser: the gateway's
 * span, and everything the command causes (its Kafka write, repo_svc's batch,
 * the emissions, sagas) belong to it. The page exports no spans itself, so
 * the trace's root is this id alone; find it in the request's `traceparent`
 * header (the browser's network panel) or in `Commands.lastTraceId`.
 */

const hex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/** `00-<trace id>-<parent id>-01`: version 00, a fresh trace and span id, sampled. */
export function newTraceparent(random: (n: number) => Uint8Array = (n) => crypto.getRandomValues(new Uint8Array(n))): string {
  // All-zero ids are invalid (W3C); with 16 random bytes that is one chance in 2^128, but it costs one test.
  let traceId = "";
  while (!/[1-9a-f]/.test(traceId)) traceId = hex(random(16));
  let spanId = "";
  while (!/[1-9a-f]/.test(spanId)) spanId = hex(random(8));
  return `00-${traceId}-${spanId}-01`;
}

/** The trace id of a traceparent (its second field). */
export function traceIdOf(traceparent: string): string {
  return traceparent.split("-")[1] ?? "";
}
