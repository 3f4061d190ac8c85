// Owns starting headless Chromium for the browser tests and jepsen-lite's report pages: Debian's
// /usr/bin/chromium driven by playwright-core (which never downloads a browser), with the flags that
// work on this project's machines (no sandbox as root; no background networking, which the closed
// network refuses), in a fresh profile directory.
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { type BrowserContext, chromium } from "playwright-core";

export const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export const chromiumArgs = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** A headless browser in a new profile directory (the caller removes `profileDir` after close). */
export async function launchChromium(
  viewport: { width: number; height: number },
  profilePrefix = "medisync-chromium-",
): Promise<{ browser: BrowserContext; profileDir: string }> {
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `${chromiumPath} is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does)`,
    );
  }
  const profileDir = mkdtempSync(path.join(tmpdir(), profilePrefix));
  const browser = await chromium.launchPersistentContext(profileDir, {
    executablePath: chromiumPath,
    headless: true,
    viewport,
    args: chromiumArgs,
  });
  return { browser, profileDir };
}
