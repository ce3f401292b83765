import { create } from "@bufbuild/protobuf";
import { render, screen } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import { ServiceState } from "@myko/client";
import { ServiceStatusSchema } from "@myko/client/myko/v1/system_pb.js";
import ServiceTable from "./ServiceTable.svelte";

const now = 1_700_000_000_000;
const at = (agoMs: number) => ({ seconds: BigInt(Math.floor((now - agoMs) / 1000)), nanos: 0 });

describe("ServiceTable", () => {
  it("has an empty state that says how statuses arrive", () => {
    render(ServiceTable, { props: { live: { status: "ready", stale: false, error: null, items: [] }, now } });
    expect(screen.getByText("No service has reported yet")).toBeTruthy();
  });

  it("shows each instance's health, lag and dead letters, and who went quiet", () => {
    const items = [
      create(ServiceStatusSchema, {
        item: { id: "command-1" },
        service: "command",
        state: ServiceState.SERVING,
        leader: true,
        reportedAt: at(2_000),
        intervalMs: 10_000n,
        lagRecords: 12n,
      }),
      create(ServiceStatusSchema, {
        item: { id: "saga-1" },
        service: "saga",
        state: ServiceState.SERVING,
        reportedAt: at(120_000),
        intervalMs: 10_000n,
        deadLetters: 3n,
      }),
    ];
    render(ServiceTable, { props: { live: { status: "ready", stale: false, error: null, items }, now } });
    const rows = screen.getAllByTestId("service-row");
    expect(rows.map((r) => r.dataset.health)).toEqual(["serving", "stale"]);
    expect(rows[0]!.textContent).toContain("leader");
    expect(rows[0]!.textContent).toContain("12");
    expect(rows[0]!.textContent).toContain("just now");
    expect(rows[1]!.textContent).toContain("Not reporting");
    expect(rows[1]!.textContent).toContain("2m ago");
  });
});
