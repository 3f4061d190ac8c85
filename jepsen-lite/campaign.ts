// Owns campaigns and soaks: a seeded plan of runs across every nemesis and workload, run one after
// another, printed as a table (run, workload, nemesis, ops, faults, result, unavailable seconds) and
// written to jepsen-lite/reports/<date>.md (committed; appended to when the day's file exists), with
// the seed, history and explanation of every run that was not ok.
import { execFileSync } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { clusterFaultKinds, type FaultKind } from "./nemesis.ts";
import { pick, seeded } from "./random.ts";
import { type RunResult, runDefaults, runOnce, type Workload } from "./run.ts";

export const reportsRoot = path.join(path.dirname(fileURLToPath(import.meta.url)), "reports");

export interface PlannedRun {
  workload: Workload;
  faults: FaultKind[];
  seed: number;
  timeMs: number;
}

/** Every workload under every nemesis it can take, once. */
export function matrix(): { workload: Workload; faults: FaultKind[] }[] {
  return [
    ...clusterFaultKinds.flatMap((k) => [
      { workload: "stock" as const, faults: [k] },
      { workload: "bank" as const, faults: [k] },
    ]),
    { workload: "booking", faults: ["redis-flush"] },
    { workload: "booking", faults: ["redis-restart"] },
    { workload: "booking", faults: ["redis-flush", "redis-restart"] },
  ];
}

function shuffle<T>(seed: number, xs: T[]): T[] {
  const r = seeded(seed);
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** N runs cycling through the matrix in a seeded order (reshuffled on each pass). */
export function soakPlan(n: number, seed: number, timeMs: number): PlannedRun[] {
  const out: PlannedRun[] = [];
  const m = matrix();
  for (let pass = 0; out.length < n; pass++) {
    for (const x of shuffle(seed + pass, m)) {
      if (out.length >= n) break;
      out.push({ ...x, seed: seed + out.length, timeMs });
    }
  }
  return out;
}

/**
 * `smoke`: six runs touching each kind of fault family (process, partition, 5-replica topology,
 * slow links, overlapping faults, Redis) and each workload; `full`: the matrix once.
 */
export function campaignPlan(name: string, seed: number, timeMs: number): PlannedRun[] | undefined {
  if (name === "full") return soakPlan(matrix().length, seed, timeMs);
  if (name !== "smoke") return undefined;
  const r = seeded(seed);
  const runs: { workload: Workload; faults: FaultKind[] }[] = [
    { workload: "stock", faults: [pick(r, ["kill-minority", "kill-all", "pause-random"] as const)] },
    { workload: "bank", faults: [pick(r, ["halves", "partition", "oneway"] as const)] },
    { workload: "stock", faults: [pick(r, ["ring", "bridge"] as const)] },
    { workload: "bank", faults: ["combo"] },
    { workload: "stock", faults: [pick(r, ["slow", "lossy"] as const)] },
    { workload: "booking", faults: ["redis-flush", "redis-restart"] },
  ];
  return runs.map((x, i) => ({ ...x, seed: seed + i, timeMs }));
}

export interface CampaignRow {
  n: number;
  planned: PlannedRun;
  result?: RunResult;
  error?: string;
  wallS: number;
}

const header = "| # | workload | nemesis | seed | ops | faults | result | unavailable s | wall s |";

function rowOf(x: CampaignRow): string {
  const r = x.result;
  // A target may hold "|" (halves, bridge): escaped, or it would split the markdown cell.
  const faults = r ? r.faults.map((f) => `${f.kind}:${f.target}`.replaceAll("|", "\\|")).join(", ") : "";
  return `| ${x.n} | ${x.planned.workload} | ${x.planned.faults.join("+")} | ${x.planned.seed} | ${r?.ops ?? "-"} | ${faults} | ${r?.valid ?? "error"} | ${r ? (r.unavailableMs / 1_000).toFixed(1) : "-"} | ${x.wallS.toFixed(0)} |`;
}

function detailOf(x: CampaignRow): string[] {
  const r = x.result;
  if (r?.valid === "ok") return [];
  const lines = [
    `### run ${x.n}: ${x.planned.workload} / ${x.planned.faults.join("+")}, seed ${x.planned.seed}`,
    "",
  ];
  if (x.error) lines.push(`The run did not complete: ${x.error}`);
  if (r) {
    lines.push(`Result \`${r.valid}\`; store \`${r.dir}\` (history.jsonl, results.json, process logs).`);
    if (r.check.failure) lines.push("", `> ${r.check.failure.explanation}`);
    if (r.check.reason) lines.push("", `Unknown: ${r.check.reason}`);
    if (r.livenessMs < 0)
      lines.push("", "Liveness: no write acknowledged within the bound after the final heal.");
    lines.push(
      "",
      `Replay: \`npm run jepsen -- --workload ${x.planned.workload} --nemesis ${x.planned.faults.join(",")} --seed ${x.planned.seed} --time ${x.planned.timeMs / 1_000}\``,
    );
  }
  return [...lines, ""];
}

export async function runCampaign(
  name: string,
  plan: PlannedRun[],
  seed: number,
  print: (line: string) => void,
  o: { storeRoot?: string; reportsDir?: string } = {},
): Promise<{ bad: number; rows: CampaignRow[]; report: string }> {
  const rows: CampaignRow[] = [];
  print(header);
  const started = new Date();
  for (const [i, p] of plan.entries()) {
    const t = Date.now();
    const row: CampaignRow = { n: i + 1, planned: p, wallS: 0 };
    try {
      row.result = await runOnce({
        ...runDefaults,
        workload: p.workload,
        faults: p.faults,
        seed: p.seed,
        timeMs: p.timeMs,
        ...(o.storeRoot ? { storeRoot: o.storeRoot } : {}),
      });
    } catch (err) {
      row.error = err instanceof Error ? err.message : String(err);
    }
    row.wallS = (Date.now() - t) / 1_000;
    rows.push(row);
    print(rowOf(row));
    for (const l of detailOf(row)) if (l) print(`  ${l}`);
  }
  const bad = rows.filter((r) => r.result?.valid !== "ok").length;
  const dir = o.reportsDir ?? reportsRoot;
  mkdirSync(dir, { recursive: true });
  const report = path.join(dir, `${started.toISOString().slice(0, 10)}.md`);
  let commit = "";
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
  } catch {
    commit = "unknown";
  }
  const totalS = rows.reduce((s, r) => s + r.wallS, 0);
  const lines = [
    ...(existsSync(report) ? [""] : [`# jepsen-lite reports, ${started.toISOString().slice(0, 10)}`, ""]),
    `## ${name}: ${rows.length} runs, ${rows.length - bad} ok, started ${started.toISOString()}`,
    "",
    `Commit ${commit}, seed ${seed}, ${(plan[0]?.timeMs ?? 0) / 1_000} s of workload per run, ${Math.round(totalS)} s in all ` +
      `(${(totalS / Math.max(1, rows.length)).toFixed(0)} s per run on average).`,
    "",
    header,
    "|---|---|---|---|---|---|---|---|---|",
    ...rows.map(rowOf),
    "",
    ...(bad === 0 ? ["Every run was ok."] : rows.flatMap(detailOf)),
    "",
  ];
  appendFileSync(report, lines.join("\n"));
  return { bad, rows, report };
}
