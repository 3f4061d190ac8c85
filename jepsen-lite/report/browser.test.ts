// The report in a real browser (headless Chromium): the page loads with no error and asks for
// nothing beyond its own file, and the op the checker cannot place is visible in the timeline — on
// screen, drawn in the highlight colour — with the checker's explanation above it. Chromium missing
// is a failure, not a skip.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openReport } from "./browser.ts";
import { fixtureBlocked, fixtureHistory, fixtureRun } from "./fixture.ts";
import { renderReport } from "./html.ts";

/** The browser's global, as the callbacks below see it there (this project compiles without the DOM lib). */
type Window = { getComputedStyle(e: unknown): { fill: string } };

const dir = mkdtempSync(path.join(tmpdir(), "jepsen-report-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("report in Chromium", { timeout: 60_000 }, () => {
  it("shows the failing op highlighted and its explanation, fetching nothing", async () => {
    const run = fixtureRun();
    const file = path.join(dir, "index.html");
    writeFileSync(file, await renderReport(run, fixtureHistory));
    const r = await openReport(file);
    try {
      const { page } = r;
      const blocked = page.locator(`#op-${fixtureBlocked}`);
      await blocked.scrollIntoViewIfNeeded();
      expect(await blocked.isVisible()).toBe(true);
      const box = await blocked.boundingBox();
      expect(box).not.toBeNull();
      expect(box!.width).toBeGreaterThan(1);
      // Inside the viewport, and painted in the highlight colour by the page's own style.
      const vp = page.viewportSize()!;
      expect(box!.x + box!.width).toBeLessThanOrEqual(vp.width);
      expect(box!.y + box!.height).toBeLessThanOrEqual(vp.height);
      expect(await blocked.evaluate((e) => (globalThis as unknown as Window).getComputedStyle(e).fill)).toBe(
        "rgb(213, 0, 0)",
      );
      // Every other op is not.
      const others = await page
        .locator("rect.op")
        .evaluateAll(
          (es) =>
            es.filter((e) => (globalThis as unknown as Window).getComputedStyle(e).fill === "rgb(213, 0, 0)")
              .length,
        );
      expect(others).toBe(1);
      // biome-ignore lint/performance/useDomNodeTextContent: the rendered text is the point
      const explanation = await page.locator("#explanation").innerText();
      expect(explanation).toBe(run.check.failure!.explanation);
      expect(await page.locator(".blocked-marker").isVisible()).toBe(true);
      expect(await page.locator("#latency svg").isVisible()).toBe(true);
      expect(await page.locator("#throughput svg").isVisible()).toBe(true);
      expect(r.errors).toEqual([]);
      expect(r.foreign).toEqual([]);
    } finally {
      await r.close();
    }
  });
});
