// A Redis server of the test's own: a temp dir, a free port, nothing kept on disk. Tests that must
// flush or restart Redis use it, so the machine's shared Redis (and every other test's keys) is
// never touched.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePortRange } from "./process.ts";

export interface OwnRedis {
  port: number;
  url: string;
  /** Every key gone, as after a restart of a Redis that keeps nothing on disk. */
  flushAll(): Promise<void>;
  /** SIGKILLs the server: clients see connections refused until `start` brings it back. */
  kill(): Promise<void>;
  /** Starts the server again on the same port, empty (it keeps nothing on disk). */
  start(): Promise<void>;
  stop(): Promise<void>;
}

const startTimeoutMs = 10_000;

async function pingable(url: string): Promise<boolean> {
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on("error", () => undefined);
  try {
    await probe.connect();
    return (await probe.ping()) === "PONG";
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

function spawnRedis(port: number, dir: string): { child: ChildProcess; exited: () => boolean } {
  const child: ChildProcess = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir],
    { stdio: "ignore" },
  );
  let exited = false;
  child.once("exit", () => {
    exited = true;
  });
  return { child, exited: () => exited };
}

async function answering(url: string, exited: () => boolean): Promise<boolean> {
  const deadline = Date.now() + startTimeoutMs;
  while (!exited() && Date.now() < deadline && !(await pingable(url))) {
    await new Promise((r) => setTimeout(r, 25));
  }
  return !exited() && (await pingable(url));
}

export async function startOwnRedis(): Promise<OwnRedis> {
  const dir = await mkdtemp(join(tmpdir(), "medisync-redis-"));
  // A port can be taken between probing and binding: try a few.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePortRange(1);
    const url = `redis://127.0.0.1:${port}`;
    let server = spawnRedis(port, dir);
    if (!(await answering(url, server.exited))) {
      if (server.exited()) continue;
      server.child.kill("SIGKILL");
      throw new Error(`own redis-server on port ${port} did not answer within ${startTimeoutMs} ms`);
    }
    const admin = new Redis(url, { maxRetriesPerRequest: 1 });
    admin.on("error", () => undefined);
    const kill = async () => {
      if (server.exited()) return;
      const gone = new Promise<void>((resolve) => server.child.once("exit", () => resolve()));
      server.child.kill("SIGKILL");
      await gone;
    };
    return {
      port,
      url,
      async flushAll() {
        await admin.flushall();
      },
      kill,
      async start() {
        if (!server.exited()) return;
        server = spawnRedis(port, dir);
        if (!(await answering(url, server.exited))) {
          throw new Error(`own redis-server did not come back on port ${port} within ${startTimeoutMs} ms`);
        }
      },
      async stop() {
        admin.disconnect();
        if (!server.exited()) {
          const gone = new Promise<void>((resolve) => server.child.once("exit", () => resolve()));
          server.child.kill("SIGTERM");
          await gone;
        }
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error("could not start an own redis-server on a free port");
}
