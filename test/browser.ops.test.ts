// /ops in a real browser: Debian's Chromium loads the dashboard from a real gateway in front of a
// real 3-replica inventory cluster. It must show the three replicas with one leader, and when the
// leader is SIGKILLed the page (live, over Server-Sent Events) must show the new leader and the
// leader change within seconds — with no console error and nothing fetched from elsewhere. The
// screenshot goes to docs/ops-dashboard.png.
import { rmSync } from "node:fs";
import type { BrowserContext } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { launchChromium } from "./support/chromium.ts";
import { clusterBehindGateway, type InventoryCluster } from "./support/inventory-cluster.ts";

let stack: Awaited<ReturnType<typeof clusterBehindGateway>>;
let cluster: InventoryCluster;
let browser: BrowserContext;
let profileDir: string;

beforeAll(async () => {
  stack = await clusterBehindGateway("browser_ops");
  cluster = stack.cluster;
  ({ browser, profileDir } = await launchChromium({ width: 1200, height: 900 }));
}, 120_000);

afterAll(async () => {
  await browser?.close();
  if (profileDir) rmSync(profileDir, { recursive: true, force: true });
  await stack?.close();
}, 60_000);

it("shows the three replicas and their leader, and the new leader within seconds of a kill", async () => {
  const page = await browser.newPage();
  const errors: string[] = [];
  const foreign: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("request", (r) => {
    if (!r.url().startsWith(stack.opsBase)) foreign.push(r.url());
  });
  const res = await page.goto(`${stack.opsBase}/ops`);
  expect(res?.status()).toBe(200);

  const rows = page.locator("#replicas tbody tr");
  await rows.nth(2).waitFor({ timeout: 15_000 });
  expect(await rows.count()).toBe(3);
  const leaderRow = page.locator("#replicas tbody tr.leader");
  await leaderRow.waitFor({ timeout: 15_000 });
  const leader = await cluster.waitLeader();
  expect(await leaderRow.locator("td").first().textContent()).toBe(leader);
  // Something the dashboard reads from the event stream: a low-stock alert raised on purpose.
  const client = cluster.client();
  try {
    await client.write("restock", {
      requestId: "ops-r",
      clinicId: "harbour",
      medicationCode: "ops-med",
      quantity: 5,
      lot: "L1",
      expiresOn: "",
    });
    await client.write("setReorderLevel", {
      requestId: "ops-l",
      clinicId: "harbour",
      medicationCode: "ops-med",
      level: 3,
    });
    await client.write("deduct", {
      requestId: "ops-d",
      clinicId: "harbour",
      medicationCode: "ops-med",
      quantity: 3,
    });
  } finally {
    client.close();
  }
  await page.locator("#lowstock tbody tr", { hasText: "ops-med" }).waitFor({ timeout: 15_000 });

  await cluster.signal(leader, "SIGKILL");
  const next = await cluster.waitLeader(20_000, [leader]);
  // Live: no reload; the new leader's row and the change show up as the stream brings them.
  await page.locator("#replicas tbody tr.leader", { hasText: next }).waitFor({ timeout: 10_000 });
  await page.locator("#failovers tbody tr", { hasText: leader }).first().waitFor({ timeout: 10_000 });
  await page.locator("#replicas tbody tr.down", { hasText: leader }).waitFor({ timeout: 10_000 });
  await page.screenshot({ path: "docs/ops-dashboard.png", fullPage: true });
  expect(errors).toEqual([]);
  expect(foreign).toEqual([]);
  await page.close();
}, 120_000);
