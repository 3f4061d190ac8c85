// Owns the real-node simulator's command line (`npm run sim -- --driver node …`): replay one seed
// with its parameters and the replicas' last log lines; soak a range of seeds over child processes
// (one per worker) with seeds per second; or --mutants: the first seed at which each planted node
// bug is caught (what docs/raft.md lists).
import { fileURLToPath } from "node:url";
import { runWorkers } from "../workers.ts";
import type { NodeSimBugs } from "./node-cluster.ts";
import { describeNodeParams, type NodeSimOverrides, nodeParamsForSeed } from "./params.ts";
import {
  addCounts,
  emptyCounts,
  type NodeCounts,
  nodeReplayCommand,
  runNodeCampaign,
  runNodeSeed,
} from "./run.ts";

const bugNames = [
  "leaderCountsUndurable",
  "ackBeforeDurable",
  "readBeforeTermCommit",
  "commitBeyondDurable",
  "compactBeforeSnapshotSaved",
  "fsmReadsLag",
  "fsmDedupIgnoresPayload",
] as const;

interface WorkerSummary extends NodeCounts {
  failures: string[];
}

interface Args {
  seed?: number;
  seeds?: number;
  from: number;
  workers: number;
  overrides: NodeSimOverrides;
  bugs: NodeSimBugs;
  mutants: boolean;
  worker?: { index: number; count: number };
}

function parse(argv: string[]): Args {
  const a: Args = { from: 1, workers: 1, overrides: {}, bugs: {}, mutants: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const int = () => {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 0) throw new Error(`${k} needs a non-negative integer`);
      return n;
    };
    if (k === "--seed") a.seed = int();
    else if (k === "--seeds") a.seeds = int();
    else if (k === "--from") a.from = int();
    else if (k === "--workers") a.workers = Math.max(1, int());
    else if (k === "--nodes") {
      const n = int();
      if (n !== 3 && n !== 5) throw new Error("--nodes is 3 or 5");
      a.overrides.nodes = n;
    } else if (k === "--ack-crash") a.overrides.ackCrashFocus = true;
    else if (k === "--client-restarts") a.overrides.clientRestarts = true;
    else if (k === "--bandwidth") a.overrides.bandwidth = true;
    else if (k === "--no-faults") a.overrides.faults = false;
    else if (k === "--mutants") a.mutants = true;
    else if (k === "--bug") {
      const b = argv[++i] as (typeof bugNames)[number];
      if (!bugNames.includes(b)) throw new Error(`unknown --bug ${b}; one of ${bugNames.join(", ")}`);
      a.bugs[b] = true;
    } else if (k === "--worker-index") a.worker = { index: int(), count: a.worker?.count ?? 1 };
    else if (k === "--worker-count") a.worker = { index: a.worker?.index ?? 0, count: int() };
    else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

async function replay(a: Args, seed: number): Promise<number> {
  console.log(`seed ${seed}: ${describeNodeParams(nodeParamsForSeed(seed, a.overrides))}`);
  const r = await runNodeSeed(seed, a.overrides, a.bugs);
  if (r.ok) {
    const { trace: _t, ...rest } = r;
    console.log(`seed ${seed} OK: ${JSON.stringify(rest)}`);
    return 0;
  }
  console.log(`last lines:\n  ${r.trace.join("\n  ")}`);
  console.log(
    `seed ${seed} FAILED: ${r.violation}\n  replay: ${nodeReplayCommand(seed, a.overrides, a.bugs)}`,
  );
  return 1;
}

async function worker(a: Args): Promise<void> {
  const w = a.worker!;
  const n = a.seeds ?? 0;
  const out: WorkerSummary = { ...emptyCounts(), failures: [] };
  for (let k = w.index; k < n; k += w.count) {
    const seed = a.from + k;
    const c = await runNodeCampaign(seed, 1, { ...a.overrides, bugs: a.bugs });
    addCounts(out, c);
    for (const f of c.failures) {
      const line = `seed ${seed}: ${f.violation}\n      replay: ${nodeReplayCommand(seed, a.overrides, a.bugs)}`;
      out.failures.push(line);
      process.stderr.write(`${line}\n`);
    }
    if (out.seeds % 1000 === 0) process.stderr.write(`[node worker ${w.index}] ${out.seeds} seeds\n`);
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

async function soak(a: Args, argv: string[]): Promise<number> {
  const n = a.seeds ?? 0;
  const t0 = Date.now();
  console.log(`node soak: seeds ${a.from}..${a.from + n - 1}, ${a.workers} worker(s)`);
  const self = fileURLToPath(import.meta.url);
  const parts = await runWorkers<WorkerSummary>(self, argv, a.workers);
  const total = emptyCounts();
  for (const p of parts) addCounts(total, p);
  const sum = (k: keyof NodeCounts) => total[k];
  const failures = parts.flatMap((p) => p.failures);
  const wall = (Date.now() - t0) / 1000;
  console.log(
    [
      "summary (real-node driver):",
      `  seeds:        ${sum("seeds")} (${a.from}..${a.from + n - 1}), ${(sum("seeds") / wall).toFixed(1)} seeds/s`,
      `  acknowledged: ${sum("acked")} writes, ${sum("reads")} ReadIndex reads checked`,
      `  crashes:      ${sum("crashes")} (${sum("lostBatches")} unsynced batches lost, ${sum("leaderFirstReadyCrashes")} of a leader in its first Ready)`,
      ...(a.overrides.clientRestarts
        ? [
            `  restarts:     ${sum("clientRestarts")} clients restarted mid-write, ${sum("reuseRefusals")} reused seqs refused`,
          ]
        : []),
      ...(a.overrides.bandwidth
        ? [
            `  snapshots:    ${sum("snapshotsInstalled")} installed, ${sum("snapChunksNeeded")} chunks needed, ${sum("snapChunksSent")} chunk messages sent`,
          ]
        : []),
      `  duration:     ${wall.toFixed(1)} s wall, ${a.workers} worker(s)`,
      `  violations:   ${failures.length}`,
      ...failures.slice(0, 20).map((f) => `    ${f}`),
    ].join("\n"),
  );
  return failures.length > 0 ? 1 : 0;
}

async function mutants(): Promise<number> {
  let missed = 0;
  for (const b of bugNames) {
    // A reused seq needs clients that restart to reuse one.
    const clientRestarts = b === "fsmDedupIgnoresPayload";
    const c = await runNodeCampaign(1, 300, {
      ackCrashFocus: true,
      clientRestarts,
      bugs: { [b]: true },
      stopAtFirst: true,
    });
    const f = c.failures[0];
    if (!f) missed++;
    console.log(`| ${b} | ${f ? f.seed : "not caught in 300"} | ${f?.violation?.split(":")[0] ?? ""} |`);
  }
  return missed > 0 ? 1 : 0;
}

export async function nodeCli(argv: string[]): Promise<number> {
  const a = parse(argv);
  if (a.worker) {
    await worker(a);
    return 0;
  }
  if (a.mutants) return mutants();
  if (a.seed !== undefined) return replay(a, a.seed);
  if (a.seeds !== undefined) return soak(a, argv);
  console.log(
    "usage: npm run sim -- --driver node (--seed N | --seeds N [--from F] [--workers W] | --mutants) [--nodes 3|5] [--ack-crash] [--client-restarts] [--bandwidth] [--no-faults] [--bug NAME]",
  );
  return 2;
}

// Run as a worker child (the soak spawns this file directly).
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  nodeCli(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exitCode = 2;
    },
  );
}
