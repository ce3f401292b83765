import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ServiceState } from "@myko/client";
import { ServiceStatusSchema } from "@myko/client/myko/v1/system_pb.js";
import { health, summarize } from "./system";

const now = 1_700_000_000_000;

function status(state: ServiceState, agoMs: number, extra: Record<string, bigint> = {}) {
  const at = now - agoMs;
  return create(ServiceStatusSchema, {
    item: { id: `i-${state}-${agoMs}` },
    service: "repo",
    state,
    intervalMs: 10_000n,
    reportedAt: { seconds: BigInt(Math.floor(at / 1000)), nanos: (at % 1000) * 1e6 },
    ...extra,
  });
}

describe("health", () => {
  it("trusts a recent report", () => {
    expect(health(status(ServiceState.SERVING, 5_000), now)).toBe("serving");
    expect(health(status(ServiceState.NOT_SERVING, 5_000), now)).toBe("not-serving");
  });

  it("calls an instance stale after three of its intervals without a report, whatever it said", () => {
    expect(health(status(ServiceState.SERVING, 29_000), now)).toBe("serving");
    expect(health(status(ServiceState.SERVING, 31_000), now)).toBe("stale");
    expect(health(status(ServiceState.NOT_SERVING, 60_000), now)).toBe("stale");
  });

  it("keeps a clean stop as stopped, not stale", () => {
    expect(health(status(ServiceState.STOPPED, 3_600_000), now)).toBe("stopped");
  });

  it("calls a status without a report time stale", () => {
    expect(health(create(ServiceStatusSchema, { state: ServiceState.SERVING, intervalMs: 10_000n }), now)).toBe("stale");
  });
});

describe("summarize", () => {
  it("adds up the instances still reporting and counts the ones needing attention", () => {
    const s = summarize(
      [
        status(ServiceState.SERVING, 1_000, { lagRecords: 3n, subscriptions: 2n }),
        status(ServiceState.SERVING, 2_000, { deadLetters: 1n }),
        status(ServiceState.NOT_SERVING, 1_000, { lagRecords: 40n }),
        status(ServiceState.SERVING, 120_000, { lagRecords: 1000n }), // stale: its numbers are old
        status(ServiceState.STOPPED, 120_000),
      ],
      now,
    );
    expect(s).toEqual({ instances: 4, serving: 2, attention: 2, lag: 43n, subscriptions: 2n, deadLetters: 1n });
  });
});
