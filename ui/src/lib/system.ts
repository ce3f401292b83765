import { ServiceState, type ServiceStatus } from "@myko/client";

/** How a service instance looks from here: what it last said, or that it went quiet. */
export type Health = "serving" | "not-serving" | "stopped" | "stale";

/** Reports this many intervals old (at least STALE_MIN_MS) mean the instance stopped reporting. */
export const STALE_INTERVALS = 3;
export const STALE_MIN_MS = 15_000;

export function reportedAtMs(s: ServiceStatus): number | null {
  const t = s.reportedAt;
  return t ? Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6) : null;
}

/**
 * A clean stop is its last report, so it stays "stopped"; anything else that
 * has not reported for a few of its own intervals is "stale", whatever it said
 * last (it may have crashed while serving). `now` is this browser's clock: a
 * clock far from the services' skews the staleness the same way.
 */
export function health(s: ServiceStatus, now: number): Health {
  if (s.state === ServiceState.STOPPED) return "stopped";
  const at = reportedAtMs(s);
  const limit = Math.max(STALE_MIN_MS, STALE_INTERVALS * Number(s.intervalMs));
  if (at === null || now - at > limit) return "stale";
  return s.state === ServiceState.SERVING ? "serving" : "not-serving";
}

export const HEALTH_LABEL: Record<Health, string> = {
  serving: "Serving",
  "not-serving": "Not serving",
  stopped: "Stopped",
  stale: "Not reporting",
};

export interface Summary {
  instances: number;
  serving: number;
  /** Instances that are not serving or went quiet (stopped ones do not count). */
  attention: number;
  lag: bigint;
  subscriptions: bigint;
  deadLetters: bigint;
}

/** Totals over the instances that are still reporting (a stale report's numbers are old). */
export function summarize(statuses: readonly ServiceStatus[], now: number): Summary {
  const out: Summary = { instances: 0, serving: 0, attention: 0, lag: 0n, subscriptions: 0n, deadLetters: 0n };
  for (const s of statuses) {
    const h = health(s, now);
    if (h === "stopped") continue;
    out.instances += 1;
    if (h === "serving") out.serving += 1;
    else out.attention += 1;
    if (h === "stale") continue;
    out.lag += s.lagRecords;
    out.subscriptions += s.subscriptions;
    out.deadLetters += s.deadLetters;
  }
  return out;
}
