// Owns the simulator's command line: replay one seed (`npm run sim -- --seed N`, printing its
// parameters first and the last events on failure) or soak a range of seeds (`--seeds N [--from F]
// [--steps S] [--workers W]`), fanned out over child processes to use every core, with a summary.
import { fileURLToPath } from "node:url";
import type { TestOnlyBugs } from "../core/index.ts";
import {
  bugNames,
  type CampaignSummary,
  defaultSteps,
  failureReport,
  replayCommand,
  runCampaign,
} from "./campaign.ts";
import { type DriverBugs, runSimulation } from "./cluster.ts";
import { nodeCli } from "./node/cli.ts";
import { describeParams, type ParamOverrides, paramsForSeed } from "./params.ts";
import { runWorkers } from "./workers.ts";

interface Args {
  seed?: number;
  seeds?: number;
  from: number;
  steps: number;
  workers: number;
  trace: number;
  overrides: ParamOverrides;
  worker?: { index: number; count: number };
  driverBugs: DriverBugs;
  coreBugs: TestOnlyBugs;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    from: 1,
    steps: defaultSteps,
    workers: 1,
    trace: 40,
    overrides: {},
    driverBugs: {},
    coreBugs: {},
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    const int = () => {
      const n = Number(v());
      if (!Number.isInteger(n) || n < 0) throw new Error(`${k} needs a non-negative integer`);
      return n;
    };
    switch (k) {
      case "--seed":
        a.seed = int();
        break;
      case "--seeds":
        a.seeds = int();
        break;
      case "--from":
        a.from = int();
        break;
      case "--steps":
        a.steps = int();
        break;
      case "--workers":
        a.workers = Math.max(1, int());
        break;
      case "--trace":
        a.trace = int();
        break;
      case "--nodes": {
        const n = int();
        if (n !== 3 && n !== 5) throw new Error("--nodes is 3 or 5");
        a.overrides.nodes = n;
        break;
      }
      case "--no-faults":
        a.overrides.faults = false;
        break;
      case "--bug": {
        const b = v();
        if (
          b === "replyBeforePersist" ||
          b === "forgetVoteOnRestart" ||
          b === "reuseReadContextsAfterRestart"
        )
          a.driverBugs[b] = true;
        else if (
          b === "countOldTermEntries" ||
          b === "voteWithoutUpToDateCheck" ||
          b === "readIndexWithoutQuorum"
        )
          a.coreBugs[b] = true;
        else throw new Error(`unknown --bug ${b}`);
        break;
      }
      case "--worker-index":
        a.worker = { index: int(), count: a.worker?.count ?? 1 };
        break;
      case "--worker-count":
        a.worker = { index: a.worker?.index ?? 0, count: int() };
        break;
      default:
        throw new Error(`unknown argument ${k}`);
    }
  }
  return a;
}

function replayOne(a: Args, seed: number): number {
  const params = paramsForSeed(seed, a.overrides);
  console.log(`seed ${seed}: ${describeParams(params)}`);
  const t0 = performance.now();
  const r = runSimulation({
    params,
    steps: a.steps,
    traceEvents: a.trace,
    driverBugs: a.driverBugs,
    coreBugs: a.coreBugs,
  });
  const ms = (performance.now() - t0).toFixed(0);
  if (r.ok) {
    console.log(
      `seed ${seed} OK: ${r.steps} steps (+${r.healSteps} after heal), virtual ${r.virtualMs} ms, ` +
        `${r.committed} committed, ${r.leaders} leaders, ${r.reads} linearizable reads, ` +
        `heal→commit ${r.healToCommitMs} virtual ms; ${ms} ms wall`,
    );
    return 0;
  }
  console.log(`last events:\n  ${(r.trace ?? []).join("\n  ")}`);
  console.log(failureReport(r, a.steps, a.overrides, bugNames(a)));
  return 1;
}

/** Child process: seeds from + index, from + index + count, … */
function runWorker(a: Args): void {
  const w = a.worker!;
  const total: CampaignSummary = {
    from: a.from,
    seeds: 0,
    steps: a.steps,
    failures: [],
    totalSteps: 0,
    committed: 0,
    reads: 0,
    wallMs: 0,
    maxHealToCommitMs: 0,
  };
  const n = a.seeds ?? 0;
  for (let k = w.index; k < n; k += w.count) {
    const s = runCampaign({
      from: a.from + k,
      seeds: 1,
      steps: a.steps,
      overrides: a.overrides,
      driverBugs: a.driverBugs,
      coreBugs: a.coreBugs,
    });
    total.seeds += s.seeds;
    total.totalSteps += s.totalSteps;
    total.committed += s.committed;
    total.reads += s.reads;
    total.wallMs += s.wallMs;
    total.maxHealToCommitMs = Math.max(total.maxHealToCommitMs, s.maxHealToCommitMs);
    for (const f of s.failures) {
      total.failures.push({ ...f, trace: [] });
      process.stderr.write(`${failureReport(f, a.steps, a.overrides, bugNames(a))}\n`);
    }
    if (total.seeds % 1000 === 0) process.stderr.write(`[worker ${w.index}] ${total.seeds} seeds done\n`);
  }
  process.stdout.write(`${JSON.stringify(total)}\n`);
}

async function soak(a: Args): Promise<number> {
  const n = a.seeds ?? 0;
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  console.log(
    `soak: seeds ${a.from}..${a.from + n - 1}, ${a.steps} steps each, ${a.workers} worker(s)` +
      (a.overrides.nodes ? `, ${a.overrides.nodes} nodes` : ""),
  );
  const self = fileURLToPath(import.meta.url);
  const parts = await runWorkers<CampaignSummary>(self, process.argv.slice(2), a.workers);
  const seeds = parts.reduce((s, p) => s + p.seeds, 0);
  const steps = parts.reduce((s, p) => s + p.totalSteps, 0);
  const failures = parts.flatMap((p) => p.failures).sort((x, y) => x.seed - y.seed);
  const wall = (Date.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  console.log(
    [
      "summary:",
      `  seeds:       ${seeds} (${a.from}..${a.from + n - 1})`,
      `  steps:       ${steps} (${a.steps} faulty steps per seed + post-heal steps)`,
      `  commits:     ${parts.reduce((s, p) => s + p.committed, 0)}`,
      `  reads:       ${parts.reduce((s, p) => s + p.reads, 0)} linearizable reads checked`,
      `  max heal→commit: ${Math.max(...parts.map((p) => p.maxHealToCommitMs))} virtual ms`,
      `  duration:    ${wall.toFixed(1)} s wall (${a.workers} workers; parent cpu ${(cpu.user / 1e6).toFixed(1)} s)`,
      `  violations:  ${failures.length}`,
      ...failures
        .slice(0, 20)
        .map(
          (f) =>
            `    seed ${f.seed}: ${f.violation?.split("\n")[0]}\n      replay: ${replayCommand(f.seed, a.steps, a.overrides, bugNames(a))}`,
        ),
    ].join("\n"),
  );
  return failures.length > 0 ? 1 : 0;
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const d = argv.indexOf("--driver");
  if (d >= 0) {
    const driver = argv[d + 1];
    const rest = argv.filter((_, i) => i !== d && i !== d + 1);
    if (driver === "node") return nodeCli(rest);
    if (driver !== "core") throw new Error("--driver is core (the default) or node");
    process.argv.splice(2, process.argv.length, ...rest);
  }
  const a = parseArgs(process.argv.slice(2));
  if (a.worker) {
    runWorker(a);
    return 0;
  }
  if (a.seed !== undefined) return replayOne(a, a.seed);
  if (a.seeds !== undefined) return soak(a);
  console.log(
    "usage: npm run sim -- [--driver core|node] --seed N | --seeds N [--from F] [--steps S] [--workers W] [--nodes 3|5]",
  );
  return 2;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 2;
  },
);
