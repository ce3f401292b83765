import { render, screen } from "@testing-library/svelte";
import { describe, expect, it } from "vitest";
import BarChart from "./BarChart.svelte";

describe("BarChart", () => {
  it("scales bars to the largest value and labels them", () => {
    const { container } = render(BarChart, {
      props: {
        bars: [
          { label: "Active", value: 4, color: "green" },
          { label: "Paused", value: 2, color: "purple" },
        ],
      },
    });
    expect(screen.getByRole("img").getAttribute("aria-label")).toBe("Active 4, Paused 2");
    const widths = [...container.querySelectorAll<HTMLElement>(".bar")].map((b) => b.style.width);
    expect(widths).toEqual(["100%", "50%"]);
  });
});
