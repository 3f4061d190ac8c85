// /docs in a real browser: Debian's Chromium (driven by playwright-core, which never downloads a
// browser) loads the page from a real gateway in front of a real appointment instance. The page
// must render without console errors or requests leaving this machine, and show the booking request
// body's fields (not a bare $ref). The screenshot goes to docs/api-docs.png. Chromium missing is a
// failure, not a skip: .ci/run installs it.
import { rmSync } from "node:fs";
import type { BrowserContext, Locator } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium } from "./support/chromium.ts";
import { startGateway, type TestGateway } from "./support/gateway.ts";
import { type Instance, startInstance, stopInstance, testConfig } from "./support/services.ts";

const cfg = testConfig("browser_docs");
let inst: Instance;
let gw: TestGateway;
let browser: BrowserContext;
let profileDir: string;

// What a reader sees (rendered text, hidden tabs excluded), which is what these checks are about.
// biome-ignore lint/performance/useDomNodeTextContent: the rendered text is the point
const visibleText = (l: Locator) => l.innerText();

beforeAll(async () => {
  inst = await startInstance(cfg, undefined, "browser-docs");
  gw = await startGateway(cfg, [inst]);
  ({ browser, profileDir } = await launchChromium({ width: 1280, height: 1100 }));
}, 60_000);

afterAll(async () => {
  await browser?.close();
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  await gw?.close();
  if (inst) await stopInstance(inst);
});

describe("/docs in Chromium", () => {
  it("renders the booking request body's fields, with no console error and nothing fetched from elsewhere", async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    const foreign: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(m.text());
    });
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("requestfailed", (r) => errors.push(`request failed: ${r.url()}`));
    page.on("request", (r) => {
      if (!r.url().startsWith(gw.base) && !r.url().startsWith("data:")) foreign.push(r.url());
    });

    const res = await page.goto(`${gw.base}/docs`, { waitUntil: "networkidle" });
    expect(res?.status()).toBe(200);
    // The booking operation, as the renderer lists it; opening it shows its request body.
    const booking = page.locator(".opblock-post", { has: page.locator('[data-path="/v1/appointments"]') });
    await booking.locator(".opblock-summary").first().click({ timeout: 15_000 });
    const body = booking.locator(".opblock-section-request-body");
    await body.waitFor({ timeout: 15_000 });
    const bodyText = await visibleText(body);
    expect(bodyText).toContain("slotId");
    expect(bodyText).toContain("patientId");
    expect(bodyText).not.toContain("$ref");
    // The fields themselves, in the schema view, not only in an example.
    await body.getByText("Schema", { exact: true }).click();
    const schemaText = await visibleText(body);
    expect(schemaText).toMatch(/slotId[\s\S]*patientId|patientId[\s\S]*slotId/);
    await body.getByText("Example Value", { exact: true }).click();
    // Problem responses are documented too.
    expect(await visibleText(booking.locator(".responses-table"))).toContain("409");

    await booking.scrollIntoViewIfNeeded();
    await page.screenshot({ path: "docs/api-docs.png" });
    expect(errors).toEqual([]);
    expect(foreign).toEqual([]);
    await page.close();
  }, 90_000);

  it("serves the renderer's files itself, and nothing else of the package", async () => {
    const css = await fetch(`${gw.base}/docs/swagger-ui.css`);
    expect(css.status).toBe(200);
    expect(css.headers.get("content-type")).toMatch(/text\/css/);
    const other = await fetch(`${gw.base}/docs/package.json`);
    expect(other.status).toBe(404);
    expect(other.headers.get("content-type")).toMatch(/application\/problem\+json/);
  });
});
