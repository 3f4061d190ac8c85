// Benchmark: how fast the linearizability checker (jepsen-lite/checker, WGL per key) settles stock
// histories that are linearizable by construction (jepsen-lite/checker/generate.ts: a sequence run
// through the model, each op widened around its linearization point), by size and concurrency, and
// the largest history of each concurrency it settles within a 10 s budget (growing the size by half
// until it does not). Concurrency is how far ops are widened: with spread s an op's interval reaches up to
// s linearization points either side, so about s ops are open at any time across all keys. 1 % of
// ops lose their answer (half of those took effect anyway). Writes bench/reports/checker.md with the
// machine (uname -a, CPU from /proc/cpuinfo) and the load average sampled while it ran.
//   npm run bench:checker [-- --budget-ms 10000]
import { execSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runSequential, type Step, toHistory } from "../../jepsen-lite/checker/generate.ts";
import { seeded } from "../../jepsen-lite/random.ts";
import { checkStock } from "../../jepsen-lite/workloads/stock.ts";
import { numberArg } from "../support/args.ts";
import { markdownTable } from "../support/machine.ts";

const budgetMs = numberArg("budget-ms", 10_000);
const keys = 3;
const lostRate = 0.01;
const sizes = [1_000, 5_000, 10_000, 20_000];
const spreads = [2, 8, 32];
/** The growing search stops here even if the checker is still fast (memory, and the run's length). */
const largestOpsMax = 2_560_000;

function history(ops: number, spread: number, seed: number) {
  const random = seeded(seed);
  const steps: Omit<Step, "before" | "after">[] = [];
  for (let i = 0; i < ops; i++) {
    const r = random();
    steps.push({
      key: Math.floor(random() * keys),
      f: r < 0.4 ? "read" : r < 0.75 ? "deduct" : "restock",
      qty: 1 + Math.floor(random() * (r < 0.75 ? 4 : 8)),
      lost: random() < lostRate,
      applied: random() < 0.5,
      settled: false,
    });
  }
  const seq = runSequential(steps, true);
  const widen = Array.from({ length: 2 * seq.length }, () => random());
  return toHistory(seq, widen, spread);
}

interface Row {
  ops: number;
  spread: number;
  result: string;
  ms: number;
  opsPerS: number;
}

const loads: number[] = [];
const sampler = setInterval(() => loads.push(os.loadavg()[0]!), 1_000);
const load = () => os.loadavg()[0]!;

function measure(ops: number, spread: number, seed: number): Row {
  const h = history(ops, spread, seed);
  const t0 = performance.now();
  const r = checkStock(h, budgetMs);
  const ms = performance.now() - t0;
  loads.push(load());
  return { ops: h.length, spread, result: r.result, ms, opsPerS: (h.length / ms) * 1000 };
}

// Warm-up (JIT), not reported.
measure(2_000, 8, 1);

const rows: Row[] = [];
for (const spread of spreads) {
  for (const ops of sizes) {
    const row = measure(ops, spread, 100 + ops + spread);
    rows.push(row);
    process.stdout.write(`${row.ops} ops, spread ${spread}: ${row.result} in ${row.ms.toFixed(0)} ms\n`);
  }
}

const largest: { spread: number; ops: number; ms: number; next?: Row }[] = [];
for (const spread of spreads) {
  let best: Row | undefined;
  let next: Row | undefined;
  for (let ops = 1_000; ops <= largestOpsMax; ops = Math.round(ops * 1.5)) {
    const row = measure(ops, spread, 7 + spread);
    process.stdout.write(
      `  largest search, spread ${spread}: ${row.ops} ops ${row.result} in ${row.ms.toFixed(0)} ms\n`,
    );
    if (row.result !== "ok") {
      next = row;
      break;
    }
    best = row;
  }
  largest.push({ spread, ops: best?.ops ?? 0, ms: best?.ms ?? 0, ...(next ? { next } : {}) });
}
clearInterval(sampler);

const bad = [...rows, ...largest.flatMap((l) => (l.next ? [l.next] : []))].filter((r) => r.result === "fail");
const cpuinfo = readFileSync("/proc/cpuinfo", "utf8");
const model = cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1] ?? "unknown";
const cores = (cpuinfo.match(/^processor\s*:/gm) ?? []).length;
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const report = `# Linearizability checker benchmark

How fast \`checkLinearizable\` (jepsen-lite/checker: per-key WGL with memoisation) settles \`stock\`
histories that are linearizable by construction (\`jepsen-lite/checker/generate.ts\`), ${keys} keys,
${lostRate * 100} % of ops unanswered (half of those applied), reads 40 % / deducts 35 % / restocks 25 %.
**Spread** s widens every op up to s linearization points on each side: about s ops are open at any
time across the keys (s/${keys} per key), as ${keys} keys × s clients would leave them. Every verdict must be
\`ok\` (a \`fail\` here is a checker bug). One Node process, wall time of \`checkStock\` only (the
history is built before the clock starts), after a warm-up. \`npm run bench:checker\`.

- date: ${new Date().toISOString()}
- uname -a: \`${execSync("uname -a").toString().trim()}\`
- cpu (/proc/cpuinfo): ${model} × ${cores}
- memory: ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB; node ${process.version}
- load average (1 min) while it ran: min ${Math.min(...loads).toFixed(2)}, max ${Math.max(...loads).toFixed(2)}, mean ${(loads.reduce((a, b) => a + b, 0) / loads.length).toFixed(2)} (other sessions share the machine)

## Throughput by size and concurrency

${markdownTable(
  ["ops", "spread", "verdict", "ms", "ops/s"],
  rows.map((r) => [fmt(r.ops), r.spread, r.result, fmt(r.ms), fmt(r.opsPerS)]),
)}

## Largest history settled within ${budgetMs / 1000} s

Growing by half from 1,000 ops (up to ${fmt(largestOpsMax)}) until the verdict is no longer \`ok\` within the budget.

${markdownTable(
  ["spread", "largest settled (ops)", "its time (ms)", "next size"],
  largest.map((l) => [
    l.spread,
    fmt(l.ops),
    fmt(l.ms),
    l.next
      ? `${fmt(l.next.ops)} ops: ${l.next.result} after ${fmt(l.next.ms)} ms`
      : `not reached (search stops at ${fmt(largestOpsMax)})`,
  ]),
)}

## Reading

${readingOf(rows)}
${bad.length ? `\n**${bad.length} verdicts were fail on linearizable histories: a checker bug.**\n` : ""}`;
function readingOf(rs: Row[]): string {
  const at = (spread: number, ops: number) =>
    rs.find((r) => r.spread === spread && r.ops >= ops && r.ops < ops + 10);
  const a = at(spreads[0]!, sizes[0]!);
  const b = at(spreads[0]!, sizes[sizes.length - 1]!);
  const slowdown = a && b && b.result === "ok" ? (a.opsPerS / b.opsPerS).toFixed(1) : "?";
  return `Throughput per op falls as histories grow even at spread ${spreads[0]} (${slowdown}× fewer ops/s at ${fmt(sizes[sizes.length - 1]!)} ops than at ${fmt(sizes[0]!)}): the memo of explored (linearized set, state) pairs keys on a bitset over all of a key's ops, so each step of the search costs time in proportion to the history's length and the whole search grows with its square, not linearly. Concurrency adds the search's branching on top. A 4-client \`stock\` run records about 100 ops/s (about 600 ops in the mutation test's 6 s runs), so a 10 s budget settles runs of a few minutes at the workload's concurrency; longer soaks want the history cut into independent segments (or a bitset over only the ops not yet linearized) rather than a longer budget.`;
}

const out = join(dirname(fileURLToPath(import.meta.url)), "../reports/checker.md");
writeFileSync(out, report);
process.stdout.write(`${out}\n`);
