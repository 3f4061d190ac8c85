// Owns the evaluation's own load loops, where wrk cannot go: a closed loop (N workers, each sending
// its next request when the last answered) into an HdrHistogram, for the latency spectra over HTTP
// and gRPC; and a steady open-model writer (a constant arrival rate, each write retried until
// acknowledged, latency from its intended start, so a failover's stall shows in full instead of
// thinning the load — the coordinated omission src/client/load.ts avoids the same way).
import { Latency } from "./histogram.ts";

export interface ClosedResult {
  latency: Latency;
  rps: number;
  errors: number;
}

/** `connections` workers call `op(worker, i)` back to back for `durationS`. */
export async function closedLoop(
  connections: number,
  durationS: number,
  op: (worker: number, i: number) => Promise<void>,
): Promise<ClosedResult> {
  const latency = new Latency();
  let errors = 0;
  let i = 0;
  const until = performance.now() + durationS * 1_000;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: connections }, async (_, w) => {
      while (performance.now() < until) {
        const t = performance.now();
        try {
          await op(w, i++);
          latency.recordMs(performance.now() - t);
        } catch {
          errors++;
        }
      }
    }),
  );
  return { latency, rps: latency.count / ((performance.now() - t0) / 1_000), errors };
}

/** One write of a steady load: ms on the load's own clock (0 = its start). */
export interface WriteRecord {
  intendedMs: number;
  sentMs: number;
  /** When it was acknowledged; NaN if it never was within the budget. */
  ackMs: number;
}

export interface SteadyLoad {
  /** Milliseconds since the load began. */
  now(): number;
  /** Stops new arrivals and resolves once every write sent has settled. */
  stop(): Promise<WriteRecord[]>;
  readonly records: WriteRecord[];
}

/**
 * Writes at `ratePerSecond`, each one `write(n)` (which retries until acknowledged and throws
 * only when it gives up). Arrivals follow the schedule whatever the system does: when the system
 * stalls they pile up in flight (bounded by `inFlightMax`; beyond it an arrival is recorded as
 * never acknowledged).
 */
export function steadyWrites(
  ratePerSecond: number,
  write: (n: number) => Promise<void>,
  inFlightMax = 2_000,
): SteadyLoad {
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const records: WriteRecord[] = [];
  const pending = new Set<Promise<void>>();
  const gapMs = 1_000 / ratePerSecond;
  let stopped = false;
  let n = 0;
  const loop = (async () => {
    while (!stopped) {
      const intendedMs = n * gapMs;
      const waitMs = intendedMs - now();
      if (waitMs > 0) {
        await new Promise((r) => setTimeout(r, Math.min(waitMs, 50)));
        continue;
      }
      const rec: WriteRecord = { intendedMs, sentMs: now(), ackMs: Number.NaN };
      records.push(rec);
      const i = n++;
      if (pending.size >= inFlightMax) continue;
      const p: Promise<void> = write(i).then(
        () => {
          rec.ackMs = now();
        },
        () => {},
      );
      pending.add(p);
      void p.finally(() => pending.delete(p));
    }
  })();
  return {
    now,
    records,
    async stop() {
      stopped = true;
      await loop;
      await Promise.all([...pending]);
      return records;
    },
  };
}

/** Resolves once `cond()` holds, polling; rejects after `timeoutMs`. */
export async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
}
