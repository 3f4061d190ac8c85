// Owns one run: start a fresh system for the workload (harness.ts), drive the workload while the
// nemesis injects faults, heal everything, require writes to succeed again within a bound
// (liveness), stop the system, check the history and write the run's store. The verdict is the
// checker's, plus the liveness check; a run that could not start its system throws.
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { FailpointName } from "../src/shared/failpoints.ts";
import type { CheckResult } from "./checker/linearizable.ts";
import type { Harness } from "./harness.ts";
import { type FaultKind, type FaultRecord, fiveReplicaFaults, Nemesis } from "./nemesis.ts";
import type { LinkStats } from "./proxy.ts";
import { seeded } from "./random.ts";
import { runDir, writeHistory, writeJson, writeLog, writeReport } from "./store.ts";
import type { BankOp, BankWorkloadOptions } from "./workloads/bank.ts";
import type { BookingOp, BookingWorkloadOptions } from "./workloads/booking.ts";
import { bookingHarness } from "./workloads/booking.ts";
import { bankHarness, stockHarness } from "./workloads/inventory-harness.ts";
import type { StockOp, StockWorkloadOptions } from "./workloads/stock.ts";

export const workloads = ["stock", "bank", "booking"] as const;
export type Workload = (typeof workloads)[number];
export type RunOp = StockOp | BankOp | BookingOp;

export interface RunOptions {
  workload: Workload;
  faults: readonly FaultKind[];
  /** Replicas of the inventory cluster: 3 unless a fault needs 5 (ring, bridge). */
  replicas?: number;
  /** Workload time, faults included. */
  timeMs: number;
  quietMs: number;
  faultMs: number;
  holdAfterLeaderMs: number;
  leaderWaitMs: number;
  /** Workload time after the final heal (the run lasts longer than timeMs if the faults do). */
  tailMs: number;
  seed: number;
  checkBudgetMs: number;
  /** What one op may spend finding a leader and getting an answer; past it the op is indeterminate. */
  opDeadlineMs: number;
  /** After the final heal, a write must be acknowledged within this. */
  livenessBoundMs: number;
  /** Store root (tests point it at a temp dir). */
  storeRoot?: string;
  name?: string;
  /** Workload knobs over the workload's defaults (e.g. staleReads, to see the checker catch them). */
  workloadOptions?: Partial<StockWorkloadOptions & BankWorkloadOptions & BookingWorkloadOptions>;
  /**
   * Failpoints switched on in every inventory replica (MEDISYNC_FAILPOINTS): bugs the run should
   * catch. Stock and bank only: the booking workload runs no inventory replica.
   */
  failpoints?: readonly FailpointName[];
}

export interface RunResult {
  run: string;
  dir: string;
  workload: string;
  nemesis: string;
  seed: number;
  failpoints: FailpointName[];
  replicas: number;
  ops: number;
  acknowledged: number;
  indeterminate: number;
  faults: FaultRecord[];
  /** ms from the final heal until a write was acknowledged; -1 if none within the bound. */
  livenessMs: number;
  /**
   * Unavailability: the summed stretches longer than `gapMs` in which no op of the workload got an
   * answer (ms), and the longest such stretch.
   */
  unavailableMs: number;
  longestGapMs: number;
  check: CheckResult;
  /** What went through each replica-to-replica proxy. */
  links: ({ link: string } & LinkStats)[];
  /** Wall time of each phase, ms: where a run's time goes. */
  phases: { startMs: number; workloadMs: number; stopMs: number; checkMs: number };
  valid: "ok" | "fail" | "unknown";
  history: RunOp[];
}

export const runDefaults: Omit<RunOptions, "faults" | "seed"> = {
  workload: "stock",
  timeMs: 20_000,
  quietMs: 2_000,
  faultMs: 3_000,
  holdAfterLeaderMs: 2_000,
  leaderWaitMs: 30_000,
  tailMs: 3_000,
  checkBudgetMs: 30_000,
  opDeadlineMs: 2_000,
  livenessBoundMs: 15_000,
};

/** A stretch without any answer longer than this counts as unavailable. */
export const gapMs = 1_000;

export function unavailability(
  history: RunOp[],
  from: number,
  to: number,
): { total: number; longest: number } {
  const times = history
    .filter((op) => op.output !== undefined && Number.isFinite(op.ret))
    .map((op) => op.ret)
    .filter((t) => t >= from && t <= to)
    .sort((a, b) => a - b);
  let total = 0;
  let longest = 0;
  let last = from;
  for (const t of [...times, to]) {
    const gap = t - last;
    if (gap > gapMs) total += gap;
    longest = Math.max(longest, gap);
    last = t;
  }
  return { total, longest };
}

export function replicasFor(faults: readonly FaultKind[], asked?: number): number {
  const need = faults.some((f) => fiveReplicaFaults.includes(f)) ? 5 : 3;
  return Math.max(asked ?? need, need);
}

function harnessFor(o: RunOptions, name: string, replicas: number): Harness<RunOp> {
  const io = { name, replicas, opDeadlineMs: o.opDeadlineMs, failpoints: o.failpoints ?? [] };
  const w = o.workloadOptions ?? {};
  if (o.workload === "bank") return bankHarness(io, w) as unknown as Harness<RunOp>;
  if (o.workload === "booking")
    return bookingHarness({ name, opDeadlineMs: o.opDeadlineMs }, w) as unknown as Harness<RunOp>;
  return stockHarness(io, w) as unknown as Harness<RunOp>;
}

export async function runOnce(o: RunOptions): Promise<RunResult> {
  const t0 = performance.now();
  const now = () => performance.now() - t0;
  const nemesisName = o.faults.join("+") || "none";
  const run = `${new Date().toISOString().replace(/[:.]/g, "-")}-${o.workload}-${nemesisName}-${o.seed}`;
  const dir = runDir(run, o.storeRoot);
  const failpoints = [...(o.failpoints ?? [])];
  if (failpoints.length && o.workload === "booking")
    throw new Error("failpoints are planted in inventory replicas: the booking workload runs none");
  const replicas = o.workload === "booking" ? 2 : replicasFor(o.faults, o.replicas);
  const h = harnessFor(o, o.name ?? `jepsen_${randomUUID().slice(0, 8)}`, replicas);
  for (const f of o.faults) {
    if (!h.system.faults[f]) throw new Error(`the ${o.workload} workload has no fault "${f}"`);
  }
  let history: RunOp[] = [];
  let nemesis: Nemesis | undefined;
  let livenessMs = -1;
  let stop = false;
  let workStart = 0;
  let workEnd = 0;
  const phases = { startMs: 0, workloadMs: 0, stopMs: 0, checkMs: 0 };
  try {
    await h.start();
    phases.startMs = now();
    workStart = now();
    const random = seeded(o.seed);
    nemesis = new Nemesis(h.system, now, seeded(o.seed ^ 0x9e3779b9));
    const until = now() + o.timeMs;
    let healedAt = Number.POSITIVE_INFINITY;
    const work = h.drive({
      random,
      now,
      stopped: () => stop || (now() >= until && now() >= healedAt + o.tailMs),
    });
    try {
      if (o.faults.length) await nemesis.run({ ...o, faults: o.faults }, until - o.tailMs);
    } finally {
      await h.healAll();
    }
    // Liveness: from the final heal, a fresh write must be acknowledged within the bound.
    healedAt = now();
    livenessMs = (await h.liveness(o.livenessBoundMs)) ? now() - healedAt : -1;
    history = await work;
    // The workload's last op, not now: the liveness write may have outlasted the clients.
    workEnd = Math.max(healedAt, ...history.map((op) => op.call));
    phases.workloadMs = now() - phases.startMs;
  } finally {
    stop = true;
    nemesis?.stop();
    for (const l of h.logs()) writeLog(dir, l.name, l.lines);
    const stopping = now();
    await h.stop();
    phases.stopMs = now() - stopping;
  }
  const checking = now();
  const check = h.check(history, o.checkBudgetMs);
  phases.checkMs = now() - checking;
  const faults = nemesis?.log ?? [];
  const valid = check.result === "ok" && livenessMs < 0 ? "fail" : check.result;
  const gaps = unavailability(history, workStart, workEnd);
  const result: RunResult = {
    run,
    dir,
    workload: o.workload,
    nemesis: nemesisName,
    seed: o.seed,
    failpoints,
    replicas,
    ops: history.length,
    acknowledged: history.filter((op) => op.output !== undefined).length,
    indeterminate: history.filter((op) => op.output === undefined).length,
    faults,
    livenessMs,
    unavailableMs: gaps.total,
    longestGapMs: gaps.longest,
    check,
    links: h.links(),
    phases,
    valid,
    history,
  };
  writeHistory(dir, history, faults);
  const { history: _h, ...summary } = result;
  writeJson(dir, "results.json", summary);
  await writeReport(dir, summary, history);
  return result;
}
