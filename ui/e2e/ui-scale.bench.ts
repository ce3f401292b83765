import { writeFileSync } from "node:fs";
import { expect, test, type Page } from "@playwright/test";
import { RecordHitsSchema, SetTargetSchema } from "$gen/targets/v1/commands_pb";
import { gatewayUrl, nodeCommands } from "./stack";

/**
 * The browser half of `python -m bench`'s UI measurement (bench/ui_scale.py), run by
 * playwright.bench.config.ts against the stack the bench filled with Targets:
 *
 * - first rows: navigation start -> the first target row in the DOM (page load,
 *   JS start-up, the gateway's stream and the query's first window included);
 * - change -> visible: a RecordHits sent from Node (another client) until the
 *   open page shows the new hit count, by the same wall clock;
 * - create -> counted: a new Target until the page's "of N" shows N + 1;
 * - next page: the click until the second page's rows are shown;
 * - the page's JS heap after a forced GC, and the rows in the DOM;
 * - the live wall (/wall, 24 views): the click until every tile is ready, and its heap.
 *
 * Writes its figures as JSON to MYKO_UI_BENCH_OUT.
 */
const CHANGES = Number(process.env.MYKO_UI_BENCH_CHANGES ?? "10");

interface Figures {
  firstRowsMs: number;
  /** Navigation start -> DOMContentLoaded: the page and its scripts, before any data. */
  loadedMs: number;
  rows: number;
  changeMs: number[];
  countMs: number[];
  nextPageMs: number;
  heapBytes: number;
  heapAfterChangesBytes: number;
  totalShown: string;
  wallReadyMs: number;
  wallHeapBytes: number;
}

async function heapAfterGc(page: Page): Promise<number> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("HeapProfiler.collectGarbage");
  const { usedSize } = await cdp.send("Runtime.getHeapUsage");
  await cdp.detach();
  return usedSize;
}

test("the Targets page over many stored Targets", async ({ page }) => {
  test.setTimeout(300_000);
  // The first target row's time, from navigation start, recorded in the page itself.
  await page.addInitScript(() => {
    const w = window as unknown as { firstRowAt?: number };
    new MutationObserver((_, observer) => {
      if (document.querySelector("[data-testid=target-row]")) {
        w.firstRowAt = performance.now();
        observer.disconnect();
      }
    }).observe(document, { childList: true, subtree: true });
  });
  await page.goto(gatewayUrl());
  await expect(page.getByTestId("target-row").first()).toBeVisible({ timeout: 60_000 });
  const firstRowsMs = await page.evaluate(() => (window as unknown as { firstRowAt: number }).firstRowAt);
  const loadedMs = await page.evaluate(
    () => (performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming).domContentLoadedEventEnd,
  );
  const rows = await page.getByTestId("target-row").count();
  const totalShown = (await page.getByTestId("target-count").textContent()) ?? "";
  const heapBytes = await heapAfterGc(page);

  const commands = nodeCommands();
  const first = page.getByTestId("target-row").first();
  const id = (await first.getAttribute("data-id")) ?? "";
  const changeMs: number[] = [];
  for (let i = 0; i < CHANGES; i++) {
    const hits = Number(((await first.locator("td.hits").textContent()) ?? "0").trim().split(/\s/)[0]);
    const sent = Date.now();
    await commands.execute(RecordHitsSchema, { id, count: 1n });
    const seen = await page.waitForFunction(
      ([rowId, want]) => {
        const cell = document.querySelector(`[data-testid=target-row][data-id="${rowId}"] td.hits`);
        return cell && Number(cell.textContent?.trim().split(/\s/)[0]) >= want ? Date.now() : 0;
      },
      [id, hits + 1] as const,
      { polling: 5, timeout: 30_000 },
    );
    changeMs.push((await seen.jsonValue()) - sent);
  }

  // A new Target sorts after the first page ("zz…"): only the count moves.
  const countMs: number[] = [];
  for (let i = 0; i < Math.min(CHANGES, 5); i++) {
    const before = (await page.getByTestId("target-count").textContent()) ?? "";
    const sent = Date.now();
    await commands.execute(SetTargetSchema, { name: `zz bench ${Date.now()} ${i}` });
    const seen = await page.waitForFunction(
      (was) => {
        const text = document.querySelector("[data-testid=target-count]")?.textContent ?? "";
        return text !== was ? Date.now() : 0;
      },
      before,
      { polling: 5, timeout: 30_000 },
    );
    countMs.push((await seen.jsonValue()) - sent);
  }

  const firstId = id;
  const clicked = Date.now();
  await page.getByTestId("page-next").click();
  const turned = await page.waitForFunction(
    (was) => {
      const row = document.querySelector("[data-testid=target-row]");
      const table = document.querySelector("[data-testid=target-table]");
      return row && row.getAttribute("data-id") !== was && !table?.classList.contains("stale") ? Date.now() : 0;
    },
    firstId,
    { polling: 5, timeout: 30_000 },
  );
  const nextPageMs = (await turned.jsonValue()) - clicked;
  const heapAfterChangesBytes = await heapAfterGc(page);

  // The wall: counts of every target, by status, reports and 17 tiles by id.
  const toWall = Date.now();
  await page.getByRole("link", { name: "Live wall" }).click();
  // -1: not every tile was ready within a minute (the figures above still count).
  const wallReadyMs = await expect(page.locator('[data-testid=live-tile][data-status="ready"]'))
    .toHaveCount(24, { timeout: 60_000 })
    .then(
      () => Date.now() - toWall,
      () => -1,
    );
  const wallHeapBytes = await heapAfterGc(page);

  const figures: Figures = {
    firstRowsMs,
    loadedMs,
    rows,
    changeMs,
    countMs,
    nextPageMs,
    heapBytes,
    heapAfterChangesBytes,
    totalShown,
    wallReadyMs,
    wallHeapBytes,
  };
  const out = process.env.MYKO_UI_BENCH_OUT;
  if (out) writeFileSync(out, JSON.stringify(figures));
  console.log(JSON.stringify(figures));
});
