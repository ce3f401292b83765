import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { render, screen } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import { TargetSchema, TargetStatus } from "$gen/targets/v1/entities_pb";
import { Commands, LiveSession, mykoContext } from "@myko/client";
import { FakeGateway } from "@myko/client/testing";
import TargetTable from "./TargetTable.svelte";

const gw = new FakeGateway();
const context = mykoContext({ session: new LiveSession(gw.transport), commands: new Commands(gw.transport) });
const base = { onedit: () => {}, onerror: () => {} };

describe("TargetTable", () => {
  it("has a loading state", () => {
    render(TargetTable, { props: { ...base, live: { status: "loading", stale: false, error: null, items: [] } }, context });
    expect(screen.getByText("Loading targets…")).toBeTruthy();
  });

  it("has an empty state", () => {
    render(TargetTable, { props: { ...base, live: { status: "ready", stale: false, error: null, items: [] } }, context });
    expect(screen.getByText("No targets yet.")).toBeTruthy();
  });

  it("shows why the list failed", () => {
    const error = new ConnectError("unknown query", Code.NotFound);
    render(TargetTable, { props: { ...base, live: { status: "error", stale: false, error, items: [] } }, context });
    expect(screen.getByRole("alert").textContent).toContain("Not found: unknown query");
  });

  it("lists targets with status, score and zone", () => {
    const items = [
      create(TargetSchema, { item: { id: "t1", version: 2n }, name: "Gate", status: TargetStatus.PAUSED, score: 1.5, zoneId: "z1" }),
    ];
    render(TargetTable, {
      props: { ...base, live: { status: "ready", stale: true, error: null, items }, zoneNames: new Map([["z1", "Harbour"]]) },
      context,
    });
    const row = screen.getByTestId("target-row");
    expect(row.textContent).toContain("Gate");
    expect(row.textContent).toContain("Paused");
    expect(row.textContent).toContain("1.5");
    expect(row.textContent).toContain("Harbour");
    expect(screen.getByTestId("target-table").classList.contains("stale")).toBe(true);
  });
});
