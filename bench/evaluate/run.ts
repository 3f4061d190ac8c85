// `npm run evaluate`: the seed's four measurements in one command, and bench/reports/evaluation.md
// with its plots (bench/reports/evaluation/*.svg). It starts what it needs (the compiled build, as
// `npm start` runs it; PostgreSQL and Redis must be up on 127.0.0.1; etcd 3.4 beside it if installed):
//  1. slot query latency and throughput per cache tier, through the gateway and over gRPC (slots.ts);
//  2. failover under steady load, MediSync and etcd (failover.ts);
//  3. consistent state after a replica's recovery (recovery.ts);
//  4. LRU evictions with a small cache (evictions.ts).
// Sample logs: logs/failover.sample.log, logs/cache-evictions.sample.log.
//   npm run evaluate                  the full run (about 8 minutes on 2 cores)
//   npm run evaluate -- --quick       seconds per measurement, 3 failover trials (development)
//   … --only slots,failover,recovery,evictions   --trials N   --seconds N
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { InventoryCluster } from "../../test/support/inventory-cluster.ts";
import { machineDescription } from "../support/machine.ts";
import { useCompiledBuild } from "../support/processes.ts";
import { measureEvictions } from "./evictions.ts";
import {
  clinic,
  etcdFailover,
  type FailoverOptions,
  failoverResult,
  medication,
  medisyncFailover,
} from "./failover.ts";
import { measureRecovery } from "./recovery.ts";
import { writeReport } from "./report.ts";
import type { Evaluation, RunInfo } from "./results.ts";
import { prepareSlots } from "./slot-system.ts";
import { measureSlots } from "./slots.ts";

const sectionNames = ["slots", "failover", "recovery", "evictions"] as const;
type Section = (typeof sectionNames)[number];

export interface EvaluateOptions {
  quick: boolean;
  sections: Section[];
  slotSeconds: number;
  evictionPhaseSeconds: number;
  failover: FailoverOptions;
  recoveryWrites: number[];
  outDir: string;
}

export function parseOptions(argv: string[]): EvaluateOptions {
  const value = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const num = (name: string, dflt: number) => {
    const v = value(name);
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} wants a positive number, got ${v}`);
    return n;
  };
  const quick = argv.includes("--quick");
  const only = value("only");
  const sections = only ? only.split(",").map((s) => s.trim()) : [...sectionNames];
  for (const s of sections)
    if (!(sectionNames as readonly string[]).includes(s))
      throw new Error(`--only: unknown section ${s} (one of ${sectionNames.join(", ")})`);
  return {
    quick,
    sections: sections as Section[],
    slotSeconds: num("seconds", quick ? 2 : 10),
    evictionPhaseSeconds: quick ? 3 : 10,
    failover: {
      trials: num("trials", quick ? 3 : 20),
      ratePerSecond: 200,
      beforeMs: quick ? 500 : 1_000,
      afterMs: quick ? 500 : 1_000,
    },
    recoveryWrites: quick ? [300, 2_000] : [1_000, 5_000, 15_000, 40_000],
    outDir: value("out") ?? "bench/reports",
  };
}

function machineLine(): string {
  const cpus = os.cpus();
  return `${cpus[0]?.model ?? "unknown cpu"} × ${cpus.length}, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, ${os.type()} ${os.release()}, node ${process.version}`;
}

async function main() {
  const o = parseOptions(process.argv.slice(2));
  const command = `npm run evaluate${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`;
  const info = (): RunInfo => ({ startedAt: new Date().toISOString(), command, machine: machineLine() });
  const log = (s: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${s}`);
  const started = performance.now();
  // What `npm start` runs: the compiled build.
  useCompiledBuild();
  const e: Evaluation = { quick: o.quick, machine: machineDescription() };
  mkdirSync("logs", { recursive: true });
  if (o.sections.includes("slots") || o.sections.includes("evictions")) {
    const data = await prepareSlots(50);
    if (o.sections.includes("slots")) e.slots = await measureSlots(info(), data, o.slotSeconds, log);
    if (o.sections.includes("evictions")) {
      const { result, sample } = await measureEvictions(info(), data, o.evictionPhaseSeconds, log);
      e.evictions = result;
      writeFileSync("logs/cache-evictions.sample.log", `${sample.join("\n")}\n`);
    }
  }
  if (o.sections.includes("failover")) {
    const c = new InventoryCluster({ name: "evaluate", env: { LOG_LEVEL: "info" } });
    const run = info();
    let ours: Awaited<ReturnType<typeof medisyncFailover>>;
    try {
      await c.init();
      await c.startAll();
      await c.waitFormed();
      const seed = c.client();
      await seed.write("restock", {
        requestId: `evaluate-seed-${Date.now()}`,
        clinicId: clinic,
        medicationCode: medication,
        quantity: 1_000_000_000,
        lot: "",
        expiresOn: "",
      });
      seed.close();
      const sample: string[] = [];
      ours = await medisyncFailover(c, o.failover, log, sample);
      writeFileSync("logs/failover.sample.log", `${sample.join("\n")}\n`);
    } finally {
      await c.stop();
    }
    // Beside it, not at the same time: the same load and kills against etcd on the same cores.
    e.failover = failoverResult(run, o.failover, ours, await etcdFailover(o.failover, log));
  }
  if (o.sections.includes("recovery")) {
    // A cluster of its own packing one command per log entry, so that writes while down are entries
    // behind (batched, thousands of writes are a few dozen entries), as bench/inventory's catch-up.
    const c = new InventoryCluster({
      name: "evaluate_recovery",
      env: { LOG_LEVEL: "info", INVENTORY_ENTRY_COMMANDS_MAX: "1" },
    });
    try {
      await c.init();
      await c.startAll();
      await c.waitFormed();
      e.recovery = await measureRecovery(info(), c, o.recoveryWrites, clinic, log);
    } finally {
      await c.stop();
    }
  }
  const written = await writeReport(e, o.outDir);
  log(`wrote ${written.join(", ")} in ${((performance.now() - started) / 1_000).toFixed(0)} s`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
