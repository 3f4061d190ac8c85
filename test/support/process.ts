// Runs MediSync entry points as real child processes and watches their output, for tests that need
// the real process model (supervisor, signals, crashes).
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import net from "node:net";

export interface Watched {
  proc: ChildProcess;
  lines: string[];
  /** Resolves with the first matching line from line number `from` on (already printed or to come). */
  waitFor(pattern: RegExp, timeoutMs?: number, from?: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * What runs: the TypeScript sources through tsx (tests), or with MEDISYNC_COMPILED=1 the compiled
 * build in dist/ (benchmarks: what the Docker image runs; tsx's transform wraps every closure in a
 * naming helper that costs a hot path real time).
 */
import { testKeys } from "./auth.ts";
import { PG_BASE } from "./services.ts";

function entryPoint(): string[] {
  return process.env.MEDISYNC_COMPILED === "1"
    ? ["dist/src/cli/main.js"]
    : ["--import", "tsx", "src/cli/main.ts"];
}

/**
 * Every child runCli started and that has not exited yet. When this process exits — normally, or of
 * an uncaught error such as the EPIPE a benchmark gets when its output pipe closes — they are
 * SIGKILLed with it, so no replica or gateway outlives its test with init as its parent, holding
 * ports. (A SIGKILL of this process itself runs no handler; nothing in Node can cover that.)
 */
const live = new Set<ChildProcess>();
let reaperInstalled = false;
function reapOnExit(proc: ChildProcess): void {
  live.add(proc);
  proc.once("exit", () => live.delete(proc));
  if (reaperInstalled) return;
  reaperInstalled = true;
  process.once("exit", () => {
    for (const p of live) p.kill("SIGKILL");
  });
}

export function runCli(args: string[], env: Record<string, string>, nodeArgs: string[] = []): Watched {
  const proc = spawn(process.execPath, [...nodeArgs, ...entryPoint(), ...args], {
    // Every gateway a test starts trusts this test process's signing key (support/auth.ts),
    // takes an ephemeral ops port, and keeps its audit trail in a test database (not the
    // developer's medisync_audit), unless the test names them.
    env: {
      AUDIT_DATABASE_URL: `${PG_BASE}/medisync_test_cli_audit`,
      ...process.env,
      AUTH_JWKS_FILE: testKeys().jwksFile,
      GATEWAY_OPS_PORT: "0",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  reapOnExit(proc);
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (l: string) => void }[] = [];
  const onLine = (l: string) => {
    lines.push(l);
    for (const w of [...waiters]) {
      if (w.pattern.test(l)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(l);
      }
    }
  };
  for (const stream of [proc.stdout!, proc.stderr!]) {
    let buf = "";
    stream.on("data", (d: Buffer) => {
      buf += d.toString();
      let i = buf.indexOf("\n");
      while (i >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
        i = buf.indexOf("\n");
      }
    });
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once("exit", (code, signal) => resolve({ code, signal })),
  );
  return {
    proc,
    lines,
    exited,
    waitFor(pattern, timeoutMs = 30_000, from = 0) {
      const seen = lines.slice(from).find((l) => pattern.test(l));
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `no line matching ${pattern} within ${timeoutMs} ms:\n${lines.slice(-20).join("\n")}`,
              ),
            ),
          timeoutMs,
        );
        waiters.push({
          pattern,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
  };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** `count` consecutive free TCP ports on loopback. */
/**
 * Below the kernel's ephemeral range: a replica restarted on its port must find it free, and a port
 * in that range can be taken meanwhile as the source port of any outgoing connection (seen: a
 * restarted follower failed with EADDRINUSE on 32888 in CI).
 */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > 12_000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}
const portsLow = 10_000;
const portsHigh = ephemeralLow();

export async function freePortRange(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = portsLow + Math.floor(Math.random() * (portsHigh - portsLow - count));
    const ok = await Promise.all(Array.from({ length: count }, (_, i) => portFree(base + i)));
    if (ok.every(Boolean)) return base;
  }
  throw new Error("no free port range");
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}
