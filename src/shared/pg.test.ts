// PostgreSQL plumbing against servers that misbehave: nothing waits forever.
import { spawn } from "node:child_process";
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

describe("createPool", () => {
  // Seen in CI: an appointment process died of this during test/pg-outage.test.ts. The pool hands a
  // client to a waiting withClient while parsing the client's ReadyForQuery; withClient attaches its
  // listener one promise turn later, and a 57P01 parsed from the same chunk had nobody to hear it.
  it("a server's goodbye in the same chunk as the answer that frees the client fails the waiter, not the process", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", "test/fixtures/pg-error-gap.ts"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
    expect(code, err).toBe(0);
    const outcome = JSON.parse(/outcome (.*)/.exec(out)?.[1] ?? "null");
    // The query whose answer was complete gets it; the waiter gets a dead client and says so.
    expect(outcome.first).toBe(42);
    expect(outcome.second).toMatch(/^rejected: /);
  }, 30_000);
});
