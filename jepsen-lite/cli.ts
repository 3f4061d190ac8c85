// Owns the command line:
//   npm run jepsen -- --workload stock|bank|booking --nemesis kill,partition --time 20 [--seed N]
//     [--runs N] [--replicas 3|5] [--reads each|stale] [--failpoints a,b]
//   npm run jepsen -- --campaign smoke|full [--seed N] [--time S]
//   npm run jepsen -- --soak N [--seed N] [--time S]
// Prints one row per run; a campaign or soak also writes jepsen-lite/reports/<date>.md. Exits
// non-zero unless every run is ok.
import { parseArgs } from "node:util";
import { type FailpointName, failpointNames, isFailpointName } from "../src/shared/failpoints.ts";
import { campaignPlan, type PlannedRun, runCampaign, soakPlan } from "./campaign.ts";
import { clusterFaultKinds, type FaultKind, redisFaultKinds } from "./nemesis.ts";
import { runDefaults, runOnce, type Workload, workloads } from "./run.ts";

const { values } = parseArgs({
  options: {
    workload: { type: "string", default: "stock" },
    nemesis: { type: "string" },
    time: { type: "string", default: "20" },
    seed: { type: "string" },
    runs: { type: "string", default: "1" },
    replicas: { type: "string" },
    reads: { type: "string", default: "linearizable" },
    failpoints: { type: "string", default: "" },
    campaign: { type: "string" },
    soak: { type: "string" },
  },
});

function fail(msg: string): never {
  process.stderr.write(`jepsen-lite: ${msg}\n`);
  process.exit(2);
}

const timeS = Number(values.time);
if (!Number.isFinite(timeS) || timeS < 5 || timeS > 3_600) fail("--time: seconds, 5 to 3600");
const seed0 = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
if (!Number.isInteger(seed0)) fail("--seed: an integer");

if (values.campaign !== undefined || values.soak !== undefined) {
  let plan: PlannedRun[];
  let name: string;
  if (values.soak !== undefined) {
    const n = Number(values.soak);
    if (!Number.isInteger(n) || n < 1 || n > 10_000) fail("--soak: a number of runs, 1 to 10000");
    plan = soakPlan(n, seed0, timeS * 1_000);
    name = `soak-${n}`;
  } else {
    const p = campaignPlan(values.campaign!, seed0, timeS * 1_000);
    if (!p) fail("--campaign: smoke or full");
    plan = p;
    name = values.campaign!;
  }
  const { bad, report } = await runCampaign(name, plan, seed0, (line) => process.stdout.write(line + "\n"));
  process.stdout.write(`report: ${report}\n`);
  process.exit(bad === 0 ? 0 : 1);
}

if (!(workloads as readonly string[]).includes(values.workload)) {
  fail(`--workload: one of ${workloads.join(", ")} (got ${values.workload})`);
}
const workload = values.workload as Workload;
const kinds: readonly FaultKind[] = workload === "booking" ? redisFaultKinds : clusterFaultKinds;
const nemesisArg =
  values.nemesis ?? (workload === "booking" ? "redis-flush,redis-restart" : "kill,partition");
const faults = (nemesisArg === "none" ? [] : nemesisArg.split(/[,+]/)).map((f) => {
  if (f === "all") return kinds;
  if (!kinds.includes(f as FaultKind))
    fail(`--nemesis for ${workload}: one of ${kinds.join(", ")}, all or none`);
  return [f as FaultKind];
});
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1 || runs > 1_000) fail("--runs: 1 to 1000");
const replicas = values.replicas === undefined ? undefined : Number(values.replicas);
if (replicas !== undefined && ![3, 5].includes(replicas)) fail("--replicas: 3 or 5");
// linearizable: at the leader; each: linearizable, at every replica in turn; stale: any replica's state.
if (!["linearizable", "each", "stale"].includes(values.reads)) fail("--reads: linearizable, each or stale");
if (values.reads !== "linearizable" && workload !== "stock") fail("--reads: only for the stock workload");
const failpoints = values.failpoints
  .split(",")
  .map((f) => f.trim())
  .filter((f) => f.length > 0)
  .map(
    (f): FailpointName =>
      isFailpointName(f) ? f : fail(`--failpoints: any of ${failpointNames.join(", ")}`),
  );
if (failpoints.length && workload === "booking") fail("--failpoints: inventory replicas only (stock, bank)");

let bad = 0;
process.stdout.write(
  "run | workload | nemesis | ops | acked | indeterminate | faults | liveness ms | unavailable s | result\n",
);
for (let i = 0; i < runs; i++) {
  const r = await runOnce({
    ...runDefaults,
    workload,
    faults: [...new Set(faults.flat())],
    ...(replicas === undefined ? {} : { replicas }),
    timeMs: timeS * 1_000,
    seed: seed0 + i,
    workloadOptions: { staleReads: values.reads === "stale", readsAtEachReplica: values.reads === "each" },
    failpoints,
  });
  if (r.valid !== "ok") bad++;
  const row = [
    r.run,
    r.workload,
    r.nemesis,
    r.ops,
    r.acknowledged,
    r.indeterminate,
    r.faults.map((f) => `${f.kind}:${f.target}`).join(" "),
    Math.round(r.livenessMs),
    (r.unavailableMs / 1_000).toFixed(1),
    r.valid,
  ].join(" | ");
  process.stdout.write(row + "\n");
  if (r.check.failure) process.stdout.write(`  ${r.check.failure.explanation}\n`);
  if (r.check.reason) process.stdout.write(`  unknown: ${r.check.reason}\n`);
  if (r.livenessMs < 0) {
    process.stdout.write(
      `  liveness: no write acknowledged within ${runDefaults.livenessBoundMs} ms of the final heal\n`,
    );
  }
  process.stdout.write(`  store: ${r.dir} (report: index.html)\n`);
}
process.exit(bad === 0 ? 0 : 1);
