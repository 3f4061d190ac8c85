// Where the CPU goes under the inventory write load: runs the 64-client gateway deduct load of
// bench/inventory against three replicas and the gateway, reads each process's CPU time from
// /proc before and after, and (with --cpu-prof) writes V8 CPU profiles and prints the hottest
// functions per process. A tool for finding the next bottleneck, not a benchmark with targets.
// The deducts carry pharmacist tokens, one per client, as bench/inventory's do.
//   npm run bench:inventory-profile [-- --seconds 10 --clients 64 --cpu-prof --autocannon --tsx]

import { mkdirSync, mkdtempSync, readdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { InventoryCluster } from "../../test/support/inventory-cluster.ts";
import { freePortRange, runCli } from "../../test/support/process.ts";
import { numberArg } from "../support/args.ts";
import { staffAuthorizations } from "../support/auth.ts";
import { appointmentWithClinics } from "../support/clinics.ts";
import { hottest } from "../support/cpu-profile.ts";
import { markdownTable } from "../support/machine.ts";
import { cpuMsOfAll, cpuTimes } from "../support/proc.ts";
import { benchGatewayEnv, useCompiledBuild, waitForOk } from "../support/processes.ts";
import { runLoad } from "../support/wrk.ts";

const durationS = numberArg("seconds", 10);
const clients = numberArg("clients", 64);
const profile = process.argv.includes("--cpu-prof");
const tool = process.argv.includes("--autocannon") ? ("autocannon" as const) : undefined;
const profDir = mkdtempSync(path.join(os.tmpdir(), "medisync-prof-"));
let loadFromUs = 0;
let loadToUs = 0;

async function main() {
  if (!process.argv.includes("--tsx")) useCompiledBuild();
  const nodeArgs = (name: string) =>
    profile ? ["--cpu-prof", "--cpu-prof-dir", path.join(profDir, name)] : [];
  const c = new InventoryCluster({ name: "bench_inventory_prof", env: { LOG_LEVEL: "info" }, nodeArgs });
  await c.init();
  try {
    await c.startAll();
  } catch (err) {
    await c.stop(); // no replica may outlive a failed start
    throw err;
  }
  const leader = await c.waitLeader();
  const appointment = await appointmentWithClinics("bench_inventory_prof", ["bench"]);
  const port = await freePortRange(1);
  const gw = runCli(
    ["gateway"],
    {
      ...benchGatewayEnv("inventory_prof"),
      PORT: String(port),
      INVENTORY_PEERS: c.peers.map((p) => `${p.id}=${p.address}`).join(","),
      REDIS_KEY_PREFIX: c.prefix,
      APPOINTMENT_ADDRS: appointment.address,
      LOG_LEVEL: "warn",
    },
    nodeArgs("gateway"),
  );
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitForOk(`${base}/healthz`);
    const client = c.client();
    await client.write("restock", {
      requestId: "bench-seed",
      clinicId: "bench",
      medicationCode: "paracetamol-500",
      quantity: 1_000_000_000,
      lot: "",
      expiresOn: "",
    });
    client.close();
    const pids = new Map<string, number>([
      ...c.ids.map((id) => [id === leader ? `${id} (leader)` : id, c.procs.get(id)!.proc.pid!] as const),
      ["gateway", gw.proc.pid!],
      ["load generator", process.pid],
    ]);
    const authorizations = await staffAuthorizations(
      { role: "pharmacist", sub: "bench-pharmacist", clinics: ["bench"] },
      clients,
    );
    // The servers the gateway's audit and rate limits use: their CPU is the deducts' too. Backends
    // that end during the load are not counted (none should: the pools keep theirs).
    const servers = ["postgres", "redis-server"];
    const serversBefore = new Map(servers.map((s) => [s, cpuMsOfAll(s)]));
    const before = new Map([...pids].map(([k, pid]) => [k, cpuTimes(pid)]));
    const t0 = performance.now();
    loadFromUs = Number(process.hrtime.bigint() / 1000n);
    const result = await runLoad(
      {
        url: base,
        method: "POST",
        path: "/v1/inventory/bench/stock/paracetamol-500/deduct",
        headers: { "content-type": "application/json" },
        body: '{"quantity":1}',
        uniqueHeader: "idempotency-key",
        authorizations,
        connections: clients,
        durationS,
      },
      tool,
    );
    const wallMs = performance.now() - t0;
    if (process.env.SHOW_STATS) {
      for (const l of [...gw.lines, ...c.ids.flatMap((id) => c.procs.get(id)!.lines)])
        if (/STAT/.test(l)) console.log(l);
    }
    loadToUs = Number(process.hrtime.bigint() / 1000n);
    const n = result.ok + result.errors;
    const row = (k: string, used: number, system?: number) => [
      k,
      `${((100 * used) / wallMs).toFixed(0)}%`,
      `${((1000 * used) / n).toFixed(1)} µs`,
      system === undefined || used === 0 ? "" : `${((100 * system) / used).toFixed(0)}%`,
    ];
    const rows = [
      ...[...pids].map(([k, pid]) => {
        const now = cpuTimes(pid);
        const was = before.get(k)!;
        return row(k, now.totalMs - was.totalMs, now.systemMs - was.systemMs);
      }),
      ...servers.map((s) => row(`${s} (all processes)`, cpuMsOfAll(s) - serversBefore.get(s)!)),
    ];
    console.log(
      `${clients} clients (${result.tool}): ${result.rps.toFixed(0)} deducts/s, p50 ${result.p50} ms, p99 ${result.p99} ms, ${result.errors} errors\n`,
    );
    console.log(
      markdownTable(["process", "CPU (of one core)", "CPU per deduct", "of it in the kernel"], rows),
    );
    // The Raft loop's own counters: rounds, entries per round, time persisting.
    for (const id of c.ids) {
      const port = c.envOf(id).INVENTORY_OPS_PORT;
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const loop = text.split("\n").filter((l) => l.startsWith("medisync_raft_loop{"));
      console.log(`${id}: ${loop.map((l) => l.replace(/^.*stat="([^"]+)".*} /, "$1=")).join(" ")}`);
    }
  } finally {
    gw.proc.kill("SIGTERM");
    await gw.exited;
    for (const id of c.ids) {
      const w = c.procs.get(id)!;
      w.proc.kill("SIGTERM");
      await w.exited;
    }
    await appointment.close();
    await c.stop();
  }
  if (profile) {
    for (const name of ["gateway", ...c.ids]) {
      const dir = path.join(profDir, name);
      mkdirSync(dir, { recursive: true });
      for (const f of readdirSync(dir)) {
        console.log(`\n## ${name} (${path.join(dir, f)})`);
        console.log(hottest(path.join(dir, f), loadFromUs, loadToUs, 30));
      }
    }
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
