// Owns opening a report page in headless Chromium (Debian's /usr/bin/chromium through
// playwright-core, which never downloads a browser), with the launch flags that work on this
// project's machines (test/support/chromium.ts), and recording any request that leaves the file.
import { rmSync } from "node:fs";
import { pathToFileURL } from "node:url";
import type { BrowserContext, Page } from "playwright-core";
import { launchChromium } from "../../test/support/chromium.ts";

export { chromiumPath } from "../../test/support/chromium.ts";

export interface OpenReport {
  page: Page;
  /** Every URL the page asked for besides its own file (a self-contained report asks for none). */
  foreign: string[];
  errors: string[];
  close(): Promise<void>;
}

export async function openReport(
  file: string,
  viewport = { width: 1440, height: 1000 },
): Promise<OpenReport> {
  const { browser: opened, profileDir } = await launchChromium(viewport, "jepsen-report-chromium-");
  const browser: BrowserContext | undefined = opened;
  try {
    const page = await browser.newPage();
    const url = pathToFileURL(file).href;
    const foreign: string[] = [];
    const errors: string[] = [];
    page.on("request", (r) => {
      if (r.url() !== url) foreign.push(r.url());
    });
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(m.text());
    });
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(url, { waitUntil: "load" });
    const b = browser;
    return {
      page,
      foreign,
      errors,
      close: async () => {
        await b.close();
        rmSync(profileDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await browser?.close();
    rmSync(profileDir, { recursive: true, force: true });
    throw err;
  }
}

/** Photographs the top of the page: the verdict, the checker's explanation and the timeline with the failing op. */
export async function screenshotFailure(r: OpenReport, png: string): Promise<void> {
  await r.page.screenshot({ path: png });
}
