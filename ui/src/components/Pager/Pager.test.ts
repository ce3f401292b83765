import { fireEvent, render, screen } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import Pager from "./Pager.svelte";

describe("Pager", () => {
  it("shows the rows of the page and moves between pages", async () => {
    render(Pager, { props: { page: 0, size: 100, window: { offset: 0, total: 250 }, shown: 100 } });
    expect(screen.getByTestId("target-count").textContent).toBe("Rows 1–100 of 250");
    expect(screen.getByTestId("page-number").textContent).toBe("1 / 3");
    expect((screen.getByTestId("page-prev") as HTMLButtonElement).disabled).toBe(true);
    await fireEvent.click(screen.getByTestId("page-next"));
    expect(screen.getByTestId("page-number").textContent).toBe("2 / 3");
    expect((screen.getByTestId("page-prev") as HTMLButtonElement).disabled).toBe(false);
  });

  it("cannot go past the last page", () => {
    render(Pager, { props: { page: 2, size: 100, window: { offset: 200, total: 250 }, shown: 50 } });
    expect(screen.getByTestId("target-count").textContent).toBe("Rows 201–250 of 250");
    expect((screen.getByTestId("page-next") as HTMLButtonElement).disabled).toBe(true);
  });
});
