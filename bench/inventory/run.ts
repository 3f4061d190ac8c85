// Benchmark of the Raft-replicated inventory on this machine, all on loopback, fsync on:
//  1. deduct throughput and p50/p99 at 1, 16 and 64 concurrent clients, through the gateway (HTTP)
//     and straight to the leader over gRPC;
//  2. failover: the leader is SIGKILLed while a client writes; time from the kill to the client's
//     first successful write, over ≥ 20 trials (median, max); one trial's logs become
//     logs/failover.sample.log;
//  3. catch-up: a follower 100,000 entries behind is restarted; time until it has applied them all
//     (on a cluster packing one command per entry: batched, 100,000 writes are far fewer entries);
//  4. where etcd is installed (Debian's etcd-server), the same put load against a 3-member etcd.
// The gateway's deducts carry pharmacist tokens of the bench clinic, one per client (staff budgets
// are per token). Writes bench/reports/inventory.md.   npm run bench:inventory [-- --seconds 8 --trials 20 --behind 100000]

import { execFileSync, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { callUnary } from "../../src/shared/grpc.ts";
import { InventoryCluster, untilAcked } from "../../test/support/inventory-cluster.ts";
import { freePortRange, runCli, type Watched } from "../../test/support/process.ts";
import { numberArg } from "../support/args.ts";
import { staffAuthorizations } from "../support/auth.ts";
import { appointmentWithClinics } from "../support/clinics.ts";
import { machineDescription, markdownTable } from "../support/machine.ts";
import { benchGatewayEnv, useCompiledBuild, waitForOk } from "../support/processes.ts";
import { type LoadResult, runLoad } from "../support/wrk.ts";

const durationS = numberArg("seconds", 8);
const trials = numberArg("trials", 20);
const behind = numberArg("behind", 100_000);
const concurrencies = [1, 16, 64];
const clinic = "bench";
const med = "paracetamol-500";
/** Who deducts through the gateway: a pharmacist of the bench clinic (stock writes are theirs). */
const pharmacist = { role: "pharmacist", sub: "bench-pharmacist", clinics: [clinic] } as const;

interface Row {
  path: string;
  clients: number;
  rps: number;
  p50: number;
  p99: number;
  ok: number;
  errors: number;
}

const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
const r2 = (x: number) => Math.round(x * 100) / 100;

async function viaGateway(base: string, clients: number): Promise<Row> {
  const r = await runLoad({
    url: base,
    method: "POST",
    path: `/v1/inventory/${clinic}/stock/${med}/deduct`,
    headers: { "content-type": "application/json" },
    body: '{"quantity":1}',
    uniqueHeader: "idempotency-key",
    authorizations: await staffAuthorizations(pharmacist, clients),
    connections: clients,
    durationS,
  });
  loadTool = r.tool;
  return rowOf("gateway (HTTP)", clients, r);
}

function rowOf(path: string, clients: number, r: LoadResult): Row {
  return { path, clients, rps: r.rps, p50: r.p50, p99: r.p99, ok: r.ok, errors: r.errors };
}

/** The HTTP load generator this run used (wrk when installed). */
let loadTool = "autocannon";

async function viaGrpc(c: InventoryCluster, leader: string, clients: number): Promise<Row> {
  const client = c.clients.get(leader)!;
  const lat: number[] = [];
  let errors = 0;
  const until = Date.now() + durationS * 1000;
  const worker = async () => {
    while (Date.now() < until) {
      const t = performance.now();
      try {
        await callUnary(
          client.deduct.bind(client),
          { requestId: randomUUID(), clinicId: clinic, medicationCode: med, quantity: 1 },
          2_000,
        );
        lat.push(performance.now() - t);
      } catch {
        errors++;
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, worker));
  const s = (performance.now() - t0) / 1000;
  return {
    path: "leader (gRPC)",
    clients,
    rps: lat.length / s,
    p50: r2(pct(lat, 50)),
    p99: r2(pct(lat, 99)),
    ok: lat.length,
    errors,
  };
}

/** Kills the leader while one client writes; ms from the kill to the client's next success. */
async function failoverTrial(c: InventoryCluster, n: number, sample: string[] | undefined): Promise<number> {
  const client = c.client(10_000);
  const old = await c.waitLeader();
  let killedAt = 0;
  /** Set once the old leader's process is gone: only writes started after it count. */
  let deadAt = 0;
  let firstOkAfter = 0;
  let stop = false;
  const writer = (async () => {
    let i = 0;
    while (!stop) {
      const requestId = `fo-${n}-${i++}`;
      const startedAt = performance.now();
      await untilAcked(() =>
        client.write("deduct", { requestId, clinicId: clinic, medicationCode: med, quantity: 1 }),
      );
      const now = performance.now();
      // A reply the old leader sent before it died may still be read after the kill: only a
      // write begun after the process is gone proves that a new leader serves.
      if (deadAt > 0 && startedAt >= deadAt && firstOkAfter === 0) {
        firstOkAfter = now;
        sample?.push(
          JSON.stringify({
            level: "info",
            time: new Date().toISOString(),
            service: "bench-client",
            requestId,
            event: "first_write_after_kill",
            ms: r2(now - killedAt),
          }),
        );
      }
    }
  })();
  await new Promise((r) => setTimeout(r, 300));
  const mark = new Map(c.ids.map((id) => [id, c.procs.get(id)!.lines.length]));
  sample?.push(
    JSON.stringify({
      level: "info",
      time: new Date().toISOString(),
      service: "bench-client",
      requestId: "-",
      event: "sigkill_leader",
      leader: old,
    }),
  );
  killedAt = performance.now();
  await c.signal(old, "SIGKILL");
  deadAt = performance.now();
  while (firstOkAfter === 0) await new Promise((r) => setTimeout(r, 1));
  stop = true;
  await writer;
  client.close();
  if (sample) {
    await new Promise((r) => setTimeout(r, 300));
    for (const id of c.ids) {
      if (id !== old)
        sample.push(
          ...c.procs
            .get(id)!
            .lines.slice(mark.get(id))
            .filter((l) => l.startsWith("{")),
        );
    }
    // One timeline, ordered by time, as an operator would read it.
    sample.sort((a, b) => (JSON.parse(a).time as string).localeCompare(JSON.parse(b).time as string));
  }
  c.start(old);
  await c.converged();
  return firstOkAfter - killedAt;
}

async function catchUp(c: InventoryCluster): Promise<{ ms: number; bySnapshot: boolean; entries: number }> {
  const leader = await c.waitLeader();
  const follower = c.ids.find((i) => i !== leader)!;
  await c.signal(follower, "SIGKILL");
  const client = c.client(10_000);
  const before = (await c.status(leader))!.commitIndex;
  let next = 0;
  const worker = async () => {
    while (next < behind) {
      const requestId = `catchup-${next++}`;
      // A client's way: the same request id until acknowledged, wherever the leader is.
      await untilAcked(() =>
        client.write("restock", {
          requestId,
          clinicId: clinic,
          medicationCode: "filler",
          quantity: 1,
          lot: "",
          expiresOn: "",
        }),
      );
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  client.close();
  const target = (await c.status(await c.waitLeader(10_000, [follower])))!.commitIndex;
  const t0 = performance.now();
  const w = c.start(follower);
  for (;;) {
    const st = await c.status(follower, 1_000);
    if (st && st.appliedIndex >= target) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const ms = performance.now() - t0;
  return {
    ms,
    bySnapshot: w.lines.some((l) => l.includes('"msg":"snapshot installed"')),
    entries: target - before,
  };
}

/** The same put load against a 3-member etcd on loopback, if Debian's etcd-server is installed. */
async function etcdRun(): Promise<Row[] | string> {
  let etcd: string;
  try {
    etcd = execFileSync("which", ["etcd"]).toString().trim();
  } catch {
    return "etcd is not installed here (apt-get install etcd-server): no comparison in this run";
  }
  const base = await freePortRange(6);
  const dir = mkdtempSync(path.join(os.tmpdir(), "bench-etcd-"));
  const names = ["e1", "e2", "e3"];
  const cluster = names.map((n, i) => `${n}=http://127.0.0.1:${base + 3 + i}`).join(",");
  const procs = names.map((n, i) =>
    spawn(
      etcd,
      [
        "--name",
        n,
        "--data-dir",
        path.join(dir, n),
        "--listen-client-urls",
        `http://127.0.0.1:${base + i}`,
        "--advertise-client-urls",
        `http://127.0.0.1:${base + i}`,
        "--listen-peer-urls",
        `http://127.0.0.1:${base + 3 + i}`,
        "--initial-advertise-peer-urls",
        `http://127.0.0.1:${base + 3 + i}`,
        "--initial-cluster",
        cluster,
        "--initial-cluster-state",
        "new",
        "--log-level",
        "error",
        "--heartbeat-interval",
        "50",
        "--election-timeout",
        "300",
      ],
      { stdio: "ignore" },
    ),
  );
  const rows: Row[] = [];
  try {
    const urls = names.map((_, i) => `http://127.0.0.1:${base + i}`);
    await waitForOk(`${urls[0]}/health`, 30_000);
    // Like for like: the load goes to etcd's leader, as MediSync's gateway sends its writes to ours.
    // A follower would forward each put to the leader, and which member leads is an election's
    // outcome: addressing the first member made etcd's rate swing by half between runs.
    const leaderUrl = await etcdLeader(urls);
    console.log(`etcd leader: ${leaderUrl}`);
    // etcd 3.4's JSON gateway (grpc-gateway): PUT through /v3/kv/put on the leader.
    for (const clients of concurrencies) {
      // The same load generator as the gateway rows; one key, a new revision per put.
      const r = await runLoad({
        url: leaderUrl,
        method: "POST",
        path: "/v3/kv/put",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ key: Buffer.from("k").toString("base64"), value: "MQ==" }),
        connections: clients,
        durationS,
      });
      rows.push(rowOf("etcd 3.4 (JSON gateway)", clients, r));
      console.log(`etcd c=${clients}: ${r.rps.toFixed(0)} puts/s`);
    }
  } finally {
    for (const p of procs) p.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

/** The client URL of the member that leads, once one does (etcd's /v3/maintenance/status). */
async function etcdLeader(urls: string[], timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const url of urls) {
      try {
        const r = await fetch(`${url}/v3/maintenance/status`, { method: "POST", body: "{}" });
        const st = (await r.json()) as { header?: { member_id?: string }; leader?: string };
        if (st.leader && st.leader !== "0" && st.header?.member_id === st.leader) return url;
      } catch {
        // not up yet
      }
    }
    if (Date.now() > deadline) throw new Error(`no etcd leader within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A bare Node HTTP server under the same load: how fast this machine is right now. */
async function calibrate(): Promise<number> {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json", "content-length": "2" });
      res.end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  try {
    const r = await runLoad({
      url: `http://127.0.0.1:${port}`,
      method: "POST",
      path: "/",
      headers: { "content-type": "application/json" },
      body: '{"quantity":1}',
      connections: 64,
      durationS: 4,
    });
    return r.rps;
  } finally {
    server.close();
  }
}

let calibration = Number.NaN;

async function main() {
  useCompiledBuild();
  calibration = await calibrate();
  console.log(`speed check: bare Node HTTP ${calibration.toFixed(0)} req/s`);
  const c = new InventoryCluster({ name: "bench_inventory", env: { LOG_LEVEL: "info" } });
  await c.init();
  await c.startAll();
  const leader = await c.waitLeader();
  const appointment = await appointmentWithClinics("bench_inventory", [clinic]);
  const port = await freePortRange(1);
  const gw: Watched = runCli(["gateway"], {
    ...benchGatewayEnv("inventory"),
    PORT: String(port),
    INVENTORY_PEERS: c.peers.map((p) => `${p.id}=${p.address}`).join(","),
    REDIS_KEY_PREFIX: c.prefix,
    APPOINTMENT_ADDRS: appointment.address,
    LOG_LEVEL: "warn",
  });
  const base = `http://127.0.0.1:${port}`;
  const rows: Row[] = [];
  let failovers: number[] = [];
  let catch_: Awaited<ReturnType<typeof catchUp>> | undefined;
  let etcd: Row[] | string = "not run";
  try {
    await waitForOk(`${base}/healthz`);
    const client = c.client();
    await client.write("restock", {
      requestId: "bench-seed",
      clinicId: clinic,
      medicationCode: med,
      quantity: 1_000_000_000,
      lot: "",
      expiresOn: "",
    });
    client.close();
    for (const n of concurrencies) {
      const g = await viaGateway(base, n);
      rows.push(g);
      console.log(
        `gateway c=${n}: ${g.rps.toFixed(0)} deducts/s p50 ${g.p50} ms p99 ${g.p99} ms (${g.errors} errors)`,
      );
      const d = await viaGrpc(c, leader, n);
      rows.push(d);
      console.log(
        `leader gRPC c=${n}: ${d.rps.toFixed(0)} deducts/s p50 ${d.p50} ms p99 ${d.p99} ms (${d.errors} errors)`,
      );
    }
    const sample: string[] = [];
    for (let t = 0; t < trials; t++) {
      const ms = await failoverTrial(c, t, t === 0 ? sample : undefined);
      failovers.push(ms);
      console.log(`failover trial ${t + 1}/${trials}: ${ms.toFixed(0)} ms`);
    }
    mkdirSync("logs", { recursive: true });
    writeFileSync("logs/failover.sample.log", `${sample.join("\n")}\n`);
    // Catch-up runs on a cluster of its own that packs one command per entry, so 100,000 writes are
    // 100,000 log entries behind (batched, they would be a few thousand).
    const cu = new InventoryCluster({
      name: "bench_catchup",
      env: { LOG_LEVEL: "info", INVENTORY_ENTRY_COMMANDS_MAX: "1" },
    });
    await cu.init();
    try {
      await cu.startAll();
      await cu.waitLeader();
      catch_ = await catchUp(cu);
    } finally {
      await cu.stop();
    }
    console.log(
      `catch-up of ${behind} writes (${catch_.entries} entries): ${catch_.ms.toFixed(0)} ms (by snapshot: ${catch_.bySnapshot})`,
    );
  } finally {
    gw.proc.kill("SIGTERM");
    await gw.exited;
    await appointment.close();
    await c.stop();
  }
  etcd = await etcdRun();
  failovers = failovers.sort((a, b) => a - b);
  const median = failovers.length ? failovers[Math.floor((failovers.length - 1) / 2)]! : Number.NaN;
  const max = failovers.at(-1) ?? Number.NaN;
  const all = typeof etcd === "string" ? rows : [...rows, ...etcd];
  const table = markdownTable(
    ["path", "clients", "deducts/s", "p50 ms", "p99 ms", "ok", "errors"],
    all.map((r) => [r.path, r.clients, r.rps.toFixed(0), r.p50, r.p99, r.ok, r.errors]),
  );
  const at = (p: string, n: number) => all.find((r) => r.path.startsWith(p) && r.clients === n);
  const ratio =
    typeof etcd === "string"
      ? etcd
      : concurrencies
          .map(
            (n) =>
              `- ${n} clients: MediSync gateway / etcd gateway = **${(at("gateway", n)!.rps / at("etcd", n)!.rps).toFixed(2)}×**`,
          )
          .join("\n");
  const report = `# Inventory benchmark

Three \`medisync inventory\` replicas (Raft, LevelDB log with fsync, PostgreSQL snapshots) and the gateway,
as separate processes on loopback, running the compiled build (\`npm run build\`, as the Docker image does);
the load generator (${loadTool}, one thread) runs on the same machine, so it shares the two cores.
Every deduct carries a fresh request id (Idempotency-Key). ${durationS} s per row. Raft: 50 ms heartbeat,
election timeout 300–600 ms.

## Machine
${machineDescription()}
- speed check: a bare Node HTTP server answered **${calibration.toFixed(0)} req/s** to the same load generator at
  64 connections, in this run (the host's speed varies between runs; compare runs by this, or by the etcd ratio)

## Deduct throughput and latency
${table}

The gateway rows go through HTTP, the gateway's direct write lane and its \`SubmitBatch\` batching (one
gRPC call and one Raft entry for many writes). The leader (gRPC) rows send one unary \`Deduct\` per
write from a grpc-js client inside the benchmark process, unbatched: there the per-call gRPC cost, on
both ends, is the limit — which is why the gateway batches.

## Against etcd (same run)
${ratio}

## Failover (leader SIGKILLed → the client's first successful write)
- trials: ${failovers.length}
- median: **${median.toFixed(0)} ms**, max: **${max.toFixed(0)} ms**
- all (ms): ${failovers.map((x) => x.toFixed(0)).join(", ")}

## Catch-up
- a follower ${catch_?.entries ?? "?"} log entries behind (${behind} writes, one command per entry:
  \`INVENTORY_ENTRY_COMMANDS_MAX=1\` on a cluster of its own), restarted: applied everything in
  **${catch_ ? catch_.ms.toFixed(0) : "?"} ms**
  (${catch_?.bySnapshot ? "by InstallSnapshot: the leader had compacted past it" : "by log replication"})

Reproduce: \`npm run bench:inventory\` (PostgreSQL and Redis on 127.0.0.1).
`;
  mkdirSync("bench/reports", { recursive: true });
  writeFileSync("bench/reports/inventory.md", report);
  console.log(
    `\n${table}\n\n${ratio}\nfailover median ${median.toFixed(0)} ms, max ${max.toFixed(0)} ms\nreport: bench/reports/inventory.md`,
  );
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
