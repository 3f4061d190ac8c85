// Starts MediSync services as real child processes for benchmarks, with the same process helpers
// the tests use (test/support/process.ts), and waits for them to be ready.
import { execFileSync } from "node:child_process";
import { freePortRange, runCli, type Watched } from "../../test/support/process.ts";

/**
 * Compiles the services (npm run build) and has every process the benchmark starts run the
 * compiled JavaScript, as the Docker image does (test/support/process.ts reads MEDISYNC_COMPILED).
 */
export function useCompiledBuild(): void {
  execFileSync("npx", ["tsc", "-p", "tsconfig.build.json"], { stdio: "inherit" });
  process.env.MEDISYNC_COMPILED = "1";
}

export async function freePort(): Promise<number> {
  return freePortRange(1);
}

/**
 * `medisync <service>` configured as `npm start` runs it (its default log level: every request
 * logged) unless `env` says otherwise; its lines are in `.lines`.
 */
export function startService(service: string, env: Record<string, string>): Watched {
  return runCli([service], env);
}

export async function stop(w: Watched): Promise<void> {
  if (w.proc.exitCode !== null || w.proc.signalCode !== null) return;
  w.proc.kill("SIGTERM");
  await w.exited;
}

const pgBase = process.env.BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432";

/**
 * What a benchmark's gateway needs beside its ports: an audit database of the benchmark's own (every
 * write and every read of patient data is an audit row; a run's million rows do not belong in
 * npm start's medisync_audit). Its tokens' key comes from runCli (bench/support/auth.ts).
 */
export function benchGatewayEnv(name: string): Record<string, string> {
  return { AUDIT_DATABASE_URL: `${pgBase}/medisync_bench_${name}_audit` };
}

/** Polls a URL until it answers 200, within a bound. */
export async function waitForOk(url: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`${url} not ready after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
