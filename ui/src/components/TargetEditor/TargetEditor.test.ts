import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { fireEvent, render, screen } from "@testing-library/svelte";
import { afterEach, describe, expect, it, vi } from "vitest";
import { SetTargetSchema } from "$gen/targets/v1/commands_pb";
import { TargetStatus } from "$gen/targets/v1/entities_pb";
import { Commands, LiveSession, mykoContext } from "@myko/client";
import { FakeGateway, settle } from "@myko/client/testing";
import TargetEditor from "./TargetEditor.svelte";

describe("TargetEditor", () => {
  const gw = new FakeGateway();
  const session = new LiveSession(gw.transport);
  let n = 0;
  const commands = new Commands(gw.transport, { newTx: () => `00000000-0000-4000-8000-00000000000${++n}` });
  afterEach(() => {
    gw.commandError = null;
    gw.commands = [];
  });

  it("sends SetTarget with a fresh tx and reports the result", async () => {
    const onsaved = vi.fn();
    render(TargetEditor, { props: { onsaved, oncancel: () => {} }, context: mykoContext({ session, commands }) });
    await fireEvent.input(screen.getByPlaceholderText("e.g. North gate sensor"), { target: { value: "Gate" } });
    await fireEvent.input(screen.getByPlaceholderText("outdoor, v2"), { target: { value: "a, b ," } });
    await fireEvent.click(screen.getByRole("button", { name: "Create target" }));
    await settle();
    expect(gw.commands).toHaveLength(1);
    const req = gw.commands[0]!;
    expect(req.tx).toMatch(/^00000000-0000-4000-8000-/);
    const cmd = fromBinary(SetTargetSchema, req.command!.value);
    expect(cmd.name).toBe("Gate");
    expect(cmd.status).toBe(TargetStatus.ACTIVE);
    expect(cmd.tags).toEqual(["a", "b"]);
    expect(onsaved).toHaveBeenCalledOnce();
    expect(onsaved.mock.calls[0]![1]).toBe("Gate");
    expect(onsaved.mock.calls[0]![2]).toBe(TargetStatus.ACTIVE);
  });

  it("shows the service's error to the user instead of swallowing it", async () => {
    gw.commandError = new ConnectError("name: must not be empty", Code.InvalidArgument);
    const onsaved = vi.fn();
    render(TargetEditor, { props: { onsaved, oncancel: () => {} }, context: mykoContext({ session, commands }) });
    await fireEvent.click(screen.getByRole("button", { name: "Create target" }));
    await settle();
    expect(screen.getByRole("alert").textContent).toContain("Invalid input: name: must not be empty");
    expect(onsaved).not.toHaveBeenCalled();
  });
});
