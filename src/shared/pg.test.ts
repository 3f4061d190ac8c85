// PostgreSQL plumbing against servers that misbehave: nothing waits forever.
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { ensureDatabase } from "./pg.ts";

const open: net.Server[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

/** A TCP server that takes connections and never says a word (a hung or half-dead PostgreSQL). */
async function silentServer(): Promise<{ port: number; sockets: net.Socket[] }> {
  const sockets: net.Socket[] = [];
  const s = net.createServer((c) => sockets.push(c));
  open.push(s);
  s.on("close", () => {
    for (const c of sockets) c.destroy();
  });
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return { port: (s.address() as net.AddressInfo).port, sockets };
}

describe("ensureDatabase", () => {
  it("fails within its timeout when the server never answers, instead of hanging the start", async () => {
    const { port, sockets } = await silentServer();
    const t0 = Date.now();
    await expect(
      ensureDatabase(`postgres://postgres@127.0.0.1:${port}/medisync_x`, { timeoutMs: 300 }),
    ).rejects.toThrow();
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(sockets.length).toBeGreaterThan(0);
  });
});
