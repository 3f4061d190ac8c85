// The fault proxy against a real TCP echo server: each mode does to bytes and connections what
// proxy.ts says it does.
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LinkProxy } from "./proxy.ts";

let echo: net.Server;
let echoPort = 0;
const proxies: LinkProxy[] = [];

beforeAll(async () => {
  echo = net.createServer((s) => {
    s.on("error", () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
  echoPort = (echo.address() as net.AddressInfo).port;
});
afterAll(async () => {
  for (const p of proxies) await p.close();
  await new Promise<void>((r) => echo.close(() => r()));
});

async function proxy(random?: () => number): Promise<LinkProxy> {
  const p = await LinkProxy.start({ name: "t", targetHost: "127.0.0.1", targetPort: echoPort, random });
  proxies.push(p);
  return p;
}

interface Conn {
  sock: net.Socket;
  received: () => string;
  closed: Promise<void>;
  until(pred: (s: string) => boolean, timeoutMs?: number): Promise<string>;
}

async function connect(p: LinkProxy): Promise<Conn> {
  const sock = net.connect(p.port, "127.0.0.1");
  sock.on("error", () => undefined);
  let buf = "";
  const waiters: (() => void)[] = [];
  sock.on("data", (d) => {
    buf += d.toString();
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<void>((r) => sock.once("close", () => r()));
  await new Promise<void>((r) => sock.once("connect", () => r()));
  return {
    sock,
    received: () => buf,
    closed,
    until(pred, timeoutMs = 5_000) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out; got ${JSON.stringify(buf)}`)), timeoutMs);
        const check = () => {
          if (pred(buf)) {
            clearTimeout(t);
            resolve(buf);
          } else waiters.push(check);
        };
        check();
      });
    },
  };
}

async function poll(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("link proxy", () => {
  it("passes bytes both ways", async () => {
    const p = await proxy();
    const c = await connect(p);
    c.sock.write("hello");
    expect(await c.until((s) => s === "hello")).toBe("hello");
    expect(p.stats.bytesForwarded).toBe(10);
    c.sock.destroy();
  });

  it("blackhole drops bytes and holds the connection; healing resets it and new ones work", async () => {
    const p = await proxy();
    const c = await connect(p);
    c.sock.write("a");
    await c.until((s) => s === "a");
    p.setMode({ kind: "blackhole" });
    c.sock.write("lost");
    await poll(() => p.stats.bytesDropped >= 4);
    // The bytes reached the proxy and went nowhere: nothing echoed, the connection still open.
    expect(c.received()).toBe("a");
    expect(c.sock.destroyed).toBe(false);
    expect(p.open).toBe(1);
    // New connections are accepted, and their bytes vanish too.
    const d = await connect(p);
    d.sock.write("x");
    await poll(() => p.stats.bytesDropped >= 5);
    p.setMode({ kind: "pass" });
    await c.closed;
    await d.closed;
    const e = await connect(p);
    e.sock.write("back");
    expect(await e.until((s) => s === "back")).toBe("back");
    expect(c.received()).toBe("a");
    e.sock.destroy();
  });

  it("reset destroys open connections and every new one", async () => {
    const p = await proxy();
    const c = await connect(p);
    p.setMode({ kind: "reset" });
    await c.closed;
    const sock = net.connect(p.port, "127.0.0.1");
    const err = await new Promise<string>((resolve) => {
      sock.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      sock.once("close", () => resolve("closed"));
    });
    expect(["ECONNRESET", "closed"]).toContain(err);
    p.setMode({ kind: "pass" });
    const d = await connect(p);
    d.sock.write("ok");
    await d.until((s) => s === "ok");
    d.sock.destroy();
  });

  it("delay holds every chunk for delayMs ± jitter and keeps them in order", async () => {
    let i = 0;
    const p = await proxy(() => (i++ % 7) / 7);
    p.setMode({ kind: "delay", delayMs: 150, jitterMs: 50 });
    const c = await connect(p);
    const started = Date.now();
    c.sock.write("first");
    await c.until((s) => s === "first");
    // Two legs (there and back), each at least delayMs − jitterMs.
    expect(Date.now() - started).toBeGreaterThanOrEqual(2 * 100 - 5);
    const want = Array.from({ length: 50 }, (_, k) => `<${k}>`).join("");
    for (let k = 0; k < 50; k++) {
      c.sock.write(`<${k}>`);
      await new Promise((r) => setImmediate(r));
    }
    expect(await c.until((s) => s.length >= 5 + want.length, 10_000)).toBe("first" + want);
    c.sock.destroy();
  });

  it("loss stalls a chunk for a retransmission and everything behind it, losing nothing", async () => {
    let roll = () => 0;
    const p = await proxy(() => roll());
    p.setMode({ kind: "loss", fraction: 1, retransmitMs: 120 });
    const c = await connect(p);
    const started = Date.now();
    c.sock.write("slow");
    await c.until((s) => s === "slow");
    expect(Date.now() - started).toBeGreaterThanOrEqual(2 * 120 - 5);
    let n = 0;
    p.setMode({ kind: "loss", fraction: 0.5, retransmitMs: 30 });
    // Every other chunk stalls.
    roll = () => (n++ % 2 === 0 ? 0 : 0.9);
    const want = Array.from({ length: 20 }, (_, k) => `[${k}]`).join("");
    for (let k = 0; k < 20; k++) {
      c.sock.write(`[${k}]`);
      await new Promise((r) => setImmediate(r));
    }
    expect(await c.until((s) => s.length >= 4 + want.length, 10_000)).toBe("slow" + want);
    c.sock.destroy();
  });

  it("flaky resets a connection on a chunk with the given probability", async () => {
    // "one" passes there and back (0.9, 0.9 ≥ 0.5); "two" rolls 0.1 and takes the connection down.
    const rolls = [0.9, 0.9, 0.1];
    const p = await proxy(() => rolls.shift() ?? 0.9);
    p.setMode({ kind: "flaky", fraction: 0.5 });
    const c = await connect(p);
    c.sock.write("one");
    await c.until((s) => s === "one");
    c.sock.write("two");
    await c.closed;
    expect(p.stats.resets).toBe(1);
  });
});
