// Owns a PostgreSQL of a test's own: initdb into a temp dir, trust auth, a free port on loopback, and
// stop/start/restart, so a test can take PostgreSQL away for real without touching the shared one.
import { execFile } from "node:child_process";
import { chownSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { freePortRange } from "./process.ts";

const run = promisify(execFile);
const BIN = process.env.TEST_PG_BIN ?? "/usr/lib/postgresql/15/bin";
/** initdb and postgres refuse to run as root: as root, everything runs as this user. */
const PG_USER = "postgres";

export interface OwnPostgres {
  port: number;
  /** Base URL without a database name, like test/support/services.ts PG_BASE. */
  base: string;
  /** Fast shutdown: every backend is terminated, as in a real restart. */
  stop(): Promise<void>;
  start(): Promise<void>;
  restart(): Promise<void>;
  /** Stops it (if running) and removes its directory. */
  destroy(): Promise<void>;
}

async function asPgUser(cmd: string, args: string[]): Promise<string> {
  const isRoot = process.getuid?.() === 0;
  const quoted = [cmd, ...args].map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(" ");
  const { stdout } = isRoot
    ? await run("su", [PG_USER, "-s", "/bin/sh", "-c", quoted], { timeout: 60_000 })
    : await run(cmd, args, { timeout: 60_000 });
  return stdout;
}

export async function startOwnPostgres(): Promise<OwnPostgres> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "medisync-pg-"));
  const data = path.join(dir, "data");
  if (process.getuid?.() === 0) {
    const { stdout } = await run("id", ["-u", PG_USER]);
    const { stdout: gid } = await run("id", ["-g", PG_USER]);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const port = await freePortRange(1);
  await asPgUser(path.join(BIN, "initdb"), [
    "-D",
    data,
    "-U",
    "postgres",
    "--auth=trust",
    "--no-sync",
    "-E",
    "UTF8",
  ]);
  const opts = [
    `-p ${port}`,
    "-c listen_addresses=127.0.0.1",
    `-c unix_socket_directories=${dir}`,
    "-c fsync=off",
    "-c max_connections=100",
  ].join(" ");
  const ctl = (args: string[]) => asPgUser(path.join(BIN, "pg_ctl"), ["-D", data, ...args]);
  const start = async () => {
    await ctl(["-w", "-t", "60", "-o", opts, "-l", path.join(dir, "log"), "start"]);
  };
  const stop = async () => {
    await ctl(["-w", "-t", "60", "-m", "fast", "stop"]);
  };
  let running = false;
  await start();
  running = true;
  return {
    port,
    base: `postgres://postgres@127.0.0.1:${port}`,
    async stop() {
      await stop();
      running = false;
    },
    async start() {
      await start();
      running = true;
    },
    async restart() {
      await stop();
      running = false;
      await start();
      running = true;
    },
    async destroy() {
      if (running) await stop().catch(() => undefined);
      running = false;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
