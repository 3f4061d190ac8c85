// Owns running many seeds: one seed → params → simulated run → result, and the one-line replay
// command a failure prints. Shared by the CLI, the vitest suites and the mutation tests.
import type { TestOnlyBugs } from "../core/index.ts";
import { type DriverBugs, runSimulation, type SimResult } from "./cluster.ts";
import { describeParams, type ParamOverrides, paramsForSeed } from "./params.ts";

export interface CampaignOptions {
  from: number;
  seeds: number;
  steps: number;
  overrides?: ParamOverrides;
  coreBugs?: TestOnlyBugs;
  driverBugs?: DriverBugs;
  /** Stop at the first violation. */
  stopAtFirst?: boolean;
  /** Encode and decode every message with the transport codec. */
  wireCodec?: boolean;
}

export interface CampaignSummary {
  from: number;
  seeds: number;
  steps: number;
  failures: SimResult[];
  totalSteps: number;
  committed: number;
  reads: number;
  wallMs: number;
  /** Longest heal-to-commit time seen (virtual ms). */
  maxHealToCommitMs: number;
}

/** Steps per seed unless told otherwise (the test suites and the CLI agree on it). */
export const defaultSteps = 2_000;

/** The one command that replays a seed exactly (defaults left out). */
export function replayCommand(
  seed: number,
  steps: number,
  o: ParamOverrides = {},
  bugs: string[] = [],
): string {
  const extra =
    bugs.map((b) => ` --bug ${b}`).join("") +
    (steps !== defaultSteps ? ` --steps ${steps}` : "") +
    (o.nodes ? ` --nodes ${o.nodes}` : "") +
    (o.faults === false ? " --no-faults" : "");
  return `npm run sim -- --seed ${seed}${extra}`;
}

export function runSeed(
  seed: number,
  steps: number,
  o: Omit<CampaignOptions, "from" | "seeds" | "steps"> = {},
) {
  const params = paramsForSeed(seed, o.overrides);
  const r = runSimulation({
    params,
    steps,
    coreBugs: o.coreBugs,
    driverBugs: o.driverBugs,
    wireCodec: o.wireCodec,
  });
  return r;
}

/** Names of the test-only bugs switched on, as `--bug` takes them. */
export function bugNames(o: { coreBugs?: TestOnlyBugs; driverBugs?: DriverBugs }): string[] {
  return [...Object.entries(o.coreBugs ?? {}), ...Object.entries(o.driverBugs ?? {})]
    .filter(([, on]) => on === true)
    .map(([k]) => k);
}

export function failureReport(
  r: SimResult,
  steps: number,
  o: ParamOverrides = {},
  bugs: string[] = [],
): string {
  return [
    `seed ${r.seed} FAILED after ${r.steps} steps (+${r.healSteps} after heal), virtual ${r.virtualMs}ms`,
    `  violation: ${r.violation}`,
    `  params: ${describeParams(paramsForSeed(r.seed, o))}`,
    `  replay: ${replayCommand(r.seed, steps, o, bugs)}`,
  ].join("\n");
}

export function runCampaign(o: CampaignOptions): CampaignSummary {
  const t0 = performance.now();
  const s: CampaignSummary = {
    from: o.from,
    seeds: 0,
    steps: o.steps,
    failures: [],
    totalSteps: 0,
    committed: 0,
    reads: 0,
    wallMs: 0,
    maxHealToCommitMs: 0,
  };
  for (let seed = o.from; seed < o.from + o.seeds; seed++) {
    const r = runSeed(seed, o.steps, o);
    s.seeds++;
    s.totalSteps += r.steps + r.healSteps;
    s.committed += r.committed;
    s.reads += r.reads;
    s.maxHealToCommitMs = Math.max(s.maxHealToCommitMs, r.healToCommitMs ?? 0);
    if (!r.ok) {
      s.failures.push(r);
      if (o.stopAtFirst) break;
    }
  }
  s.wallMs = performance.now() - t0;
  return s;
}
