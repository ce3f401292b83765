import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { render, screen } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import { TargetSchema, TargetStatus } from "$gen/targets/v1/entities_pb";
import { Commands, LiveSession, mykoContext } from "@myko/client";
import { FakeGateway } from "@myko/client/testing";
import { accessContext } from "$lib/access.svelte";
import TargetTable from "./TargetTable.svelte";

const gw = new FakeGateway();
const myko = mykoContext({ session: new LiveSession(gw.transport), commands: new Commands(gw.transport) });
const context = new Map<symbol, unknown>([...myko, ...accessContext(true)]);
const viewerContext = new Map<symbol, unknown>([...myko, ...accessContext(false)]);
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

  it("offers a viewer no write controls, and says why", () => {
    const items = [create(TargetSchema, { item: { id: "t1", version: 1n }, name: "Gate", status: TargetStatus.ACTIVE })];
    const live = { status: "ready" as const, stale: false, error: null, items };
    render(TargetTable, { props: { ...base, live }, context: viewerContext });
    for (const name of ["Edit", "Delete", "Record a hit on Gate"]) {
      const button = screen.getByRole("button", { name }) as HTMLButtonElement;
      expect(button.disabled).toBe(true);
    }
    expect(screen.getByRole("button", { name: "Record a hit on Gate" }).title).toContain("Read only");
  });

  it("offers an operator every control", () => {
    const items = [create(TargetSchema, { item: { id: "t1", version: 1n }, name: "Gate", status: TargetStatus.ACTIVE })];
    const live = { status: "ready" as const, stale: false, error: null, items };
    render(TargetTable, { props: { ...base, live }, context });
    for (const name of ["Edit", "Delete", "Record a hit on Gate"]) {
      expect((screen.getByRole("button", { name }) as HTMLButtonElement).disabled).toBe(false);
    }
  });
});
