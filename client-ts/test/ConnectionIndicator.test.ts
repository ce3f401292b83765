import { render, screen } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import { Backoff, Commands, LiveSession, mykoContext } from "../src/index.js";
import { ConnectionIndicator } from "../src/components/index.js";
import { FakeGateway, settle } from "../src/testing/index.js";

describe("ConnectionIndicator", () => {
  it("shows live, then reconnecting when the stream drops, then live again", async () => {
    const gw = new FakeGateway();
    // A slow first retry, so the reconnecting state can be seen.
    const session = new LiveSession(gw.transport, { backoff: () => new Backoff({ initialMs: 200, maxMs: 200, random: () => 1 }) });
    render(ConnectionIndicator, { context: mykoContext({ session, commands: new Commands(gw.transport) }) });
    await settle();
    const el = screen.getByTestId("connection");
    expect(el.dataset.state).toBe("open");
    expect(el.textContent).toContain("Live");
    gw.drop();
    await settle();
    expect(el.dataset.state).toBe("reconnecting");
    expect(el.textContent).toContain("data shown may be stale");
    expect(screen.getByRole("button", { name: "Retry now" })).toBeTruthy();
    await new Promise((r) => setTimeout(r, 250));
    await settle();
    expect(el.dataset.state).toBe("open");
    session.close();
  });
});
