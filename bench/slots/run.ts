// Benchmark: slot queries through the gateway on loopback (the compiled build, as `npm start` runs
// it), served by each cache tier in turn:
// the in-process LRU, Redis, and PostgreSQL (LRU of one entry and Redis unreachable). The same 50
// (clinic, date) keys are read in every mode; each mode's tier is confirmed from the appointment
// service's own /metrics. Every request carries an admin token (the gateway wants a token on every
// /v1 route; a staff token, not a patient's, whose 600 requests a minute would measure the limiter).
// Prints a table and writes bench/reports/slots.md.
//   npm run bench:slots [-- --seconds 10]
import { randomUUID } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { credentials } from "@grpc/grpc-js";
import autocannon from "autocannon";
import pg from "pg";
import { migrate } from "../../src/appointment/migrate.ts";
import { createSlots, insertClinic, insertPractitioner } from "../../src/appointment/repo.ts";
import { AppointmentServiceClient } from "../../src/gen/medisync/v1/appointment.ts";
import { callUnary } from "../../src/shared/grpc.ts";
import { createLogger } from "../../src/shared/logger.ts";
import { createPool, ensureDatabase } from "../../src/shared/pg.ts";
import { authHeader, staffAuthorizations } from "../support/auth.ts";
import { machineDescription, markdownTable } from "../support/machine.ts";
import {
  benchGatewayEnv,
  freePort,
  startService,
  stop,
  useCompiledBuild,
  waitForOk,
} from "../support/processes.ts";

const secondsArg = process.argv.indexOf("--seconds");
const durationS = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 10;
const pgBase = process.env.BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432";
const databaseUrl = `${pgBase}/medisync_bench_slots`;
const keyCount = 50;
const connectionsList = [1, 32];
/** The reader: an admin (slot reads are open to every role; staff budgets are per token). */
const reader = { role: "admin", sub: "bench-slots" } as const;

async function prepare(): Promise<{ clinicId: string; dates: string[] }> {
  const admin = new pg.Client({ connectionString: `${pgBase}/postgres` });
  await admin.connect();
  await admin.query('DROP DATABASE IF EXISTS "medisync_bench_slots" WITH (FORCE)');
  await admin.end();
  await ensureDatabase(databaseUrl);
  const pool = createPool(databaseUrl, 4);
  await migrate(pool, createLogger({ service: "bench", level: "silent" }));
  const clinicId = randomUUID();
  const practitionerId = randomUUID();
  await insertClinic(pool, { id: clinicId, name: "Bench Clinic", timeZone: "UTC" });
  await insertPractitioner(pool, { id: practitionerId, clinicId, name: "Bench Practitioner" });
  const dates: string[] = [];
  for (let i = 0; i < keyCount; i++) {
    const d = new Date(Date.UTC(2033, 0, 1 + i)).toISOString().slice(0, 10);
    dates.push(d);
    const start = new Date(`${d}T09:00:00Z`);
    await createSlots(pool, {
      clinicId,
      practitionerId,
      start,
      end: new Date(start.getTime() + 8 * 3_600_000),
      minutes: 30,
    });
  }
  await pool.end();
  return { clinicId, dates };
}

type Mode = "lru" | "redis" | "db";

async function tierCounts(opsPort: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${opsPort}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(
    /medisync_slot_cache_lookups_total\{[^}]*tier="(\w+)",result="(\w+)"\} (\d+)/g,
  )) {
    out[`${m[1]}:${m[2]}`] = (out[`${m[1]}:${m[2]}`] ?? 0) + Number(m[3]);
  }
  return out;
}

interface Row {
  mode: Mode | "floor" | "grpc";
  connections: number;
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  servedBy: string;
}

async function runMode(mode: Mode, clinicId: string, dates: string[]): Promise<Row[]> {
  const [grpcPort, opsPort, httpPort] = [await freePort(), await freePort(), await freePort()];
  const prefix = `bench-slots-${mode}:`;
  const appointment = startService("appointment", {
    DATABASE_URL: databaseUrl,
    APPOINTMENT_GRPC_PORT: String(grpcPort),
    APPOINTMENT_OPS_PORT: String(opsPort),
    REDIS_KEY_PREFIX: prefix,
    SLOT_CACHE_MAX_ENTRIES: mode === "lru" ? "1000" : "1",
    // Port 1 refuses at once: the database path, with Redis failing fast as in an outage.
    REDIS_URL: mode === "db" ? "redis://127.0.0.1:1" : "redis://127.0.0.1:6379",
    INSTANCE_ID: `bench-${mode}`,
  });
  const gateway = startService("gateway", {
    ...benchGatewayEnv("slots"),
    PORT: String(httpPort),
    APPOINTMENT_ADDRS: `127.0.0.1:${grpcPort}`,
    REDIS_KEY_PREFIX: prefix,
    // The appointment service's tiers are what this bench measures (npm run evaluate has the
    // gateway's own tier beside them).
    GATEWAY_SLOT_CACHE_MAX_ENTRIES: "0",
  });
  const auth = await authHeader(reader);
  const rows: Row[] = [];
  try {
    await waitForOk(`http://127.0.0.1:${opsPort}/readyz`);
    await waitForOk(`http://127.0.0.1:${httpPort}/healthz`);
    const paths = dates.map((d) => `/v1/clinics/${clinicId}/slots?date=${d}`);
    // Warm every key twice so the tier under test is the one that answers.
    for (let i = 0; i < 2; i++)
      for (const p of paths) {
        const r = await fetch(`http://127.0.0.1:${httpPort}${p}`, { headers: auth });
        if (r.status !== 200) throw new Error(`warming ${p}: ${r.status} ${await r.text()}`);
      }
    // Each token of the load once, so its signature check (once per token, then cached) is not measured.
    for (const authorization of await staffAuthorizations(reader, Math.max(...connectionsList))) {
      const r = await fetch(`http://127.0.0.1:${httpPort}${paths[0]}`, { headers: { authorization } });
      if (r.status !== 200) throw new Error(`warming a token: ${r.status} ${await r.text()}`);
    }
    if (mode === "lru") {
      // The floor: the gateway answering /healthz with no gRPC behind it.
      for (const connections of connectionsList) {
        const r = await autocannon({
          url: `http://127.0.0.1:${httpPort}/healthz`,
          connections,
          duration: durationS,
        });
        rows.push({
          mode: "floor",
          connections,
          rps: r.requests.average,
          p50: r.latency.p50,
          p99: r.latency.p99,
          requests: r.requests.total,
          servedBy: "gateway only (/healthz)",
        });
      }
      // The gRPC hop alone: ListSlots straight to the appointment service, LRU hits, no gateway.
      const client = new AppointmentServiceClient(`127.0.0.1:${grpcPort}`, credentials.createInsecure());
      for (const connections of connectionsList) {
        const lat: number[] = [];
        let k = 0;
        const until = Date.now() + durationS * 1000;
        const t0 = performance.now();
        await Promise.all(
          Array.from({ length: connections }, async () => {
            while (Date.now() < until) {
              const t = performance.now();
              await callUnary(
                client.listSlots.bind(client),
                { clinicId, date: dates[k++ % dates.length]!, practitionerId: "" },
                2_000,
              );
              lat.push(performance.now() - t);
            }
          }),
        );
        lat.sort((a, b) => a - b);
        rows.push({
          mode: "grpc",
          connections,
          rps: lat.length / ((performance.now() - t0) / 1000),
          p50: Math.round(lat[Math.floor(lat.length / 2)]! * 100) / 100,
          p99: Math.round(lat[Math.floor(lat.length * 0.99)]! * 100) / 100,
          requests: lat.length,
          servedBy: "appointment over gRPC, no gateway (LRU)",
        });
      }
      client.close();
    }
    for (const connections of connectionsList) {
      const before = await tierCounts(opsPort);
      // One admin token per connection, sent in turn: each token's staff budget takes a share.
      const tokens = await staffAuthorizations(reader, connections);
      let next = 0;
      const result = await autocannon({
        url: `http://127.0.0.1:${httpPort}`,
        connections,
        duration: durationS,
        requests: [
          {
            method: "GET",
            setupRequest: (req) => {
              const n = next++;
              req.path = paths[n % paths.length]!;
              req.headers = { ...req.headers, authorization: tokens[n % tokens.length]! };
              return req;
            },
          },
        ],
      });
      const after = await tierCounts(opsPort);
      const delta = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
      const served = { lru: delta("lru:hit"), redis: delta("redis:hit"), db: delta("db:hit") };
      const total = served.lru + served.redis + served.db;
      const servedBy = `lru ${pct(served.lru, total)} / redis ${pct(served.redis, total)} / db ${pct(served.db, total)}`;
      if (result.non2xx > 0 || result.errors > 0)
        throw new Error(`${mode}: ${result.non2xx} non-2xx, ${result.errors} errors`);
      rows.push({
        mode,
        connections,
        rps: result.requests.average,
        p50: result.latency.p50,
        p99: result.latency.p99,
        requests: result.requests.total,
        servedBy,
      });
    }
  } finally {
    await stop(gateway);
    await stop(appointment);
  }
  return rows;
}

/**
 * A real run with a small LRU (10 entries) read over 50 keys: every eviction is one structured log
 * line. The appointment service's own output is written to logs/cache-evictions.sample.log.
 */
async function evictionSample(clinicId: string, dates: string[]): Promise<number> {
  const [grpcPort, opsPort, httpPort] = [await freePort(), await freePort(), await freePort()];
  const appointment = startService("appointment", {
    DATABASE_URL: databaseUrl,
    APPOINTMENT_GRPC_PORT: String(grpcPort),
    APPOINTMENT_OPS_PORT: String(opsPort),
    REDIS_KEY_PREFIX: "bench-slots-evictions:",
    SLOT_CACHE_MAX_ENTRIES: "10",
    CACHE_EVICTION_LOG_SAMPLE: "1",
    INSTANCE_ID: "appointment-1",
    LOG_LEVEL: "info",
  });
  const gateway = startService("gateway", {
    ...benchGatewayEnv("slots"),
    PORT: String(httpPort),
    APPOINTMENT_ADDRS: `127.0.0.1:${grpcPort}`,
  });
  const auth = await authHeader(reader);
  try {
    await waitForOk(`http://127.0.0.1:${opsPort}/readyz`);
    await waitForOk(`http://127.0.0.1:${httpPort}/healthz`);
    for (const d of dates.slice(0, 50)) {
      await fetch(`http://127.0.0.1:${httpPort}/v1/clinics/${clinicId}/slots?date=${d}`, {
        headers: { "X-Request-Id": `sample-${d}`, ...auth },
      });
    }
  } finally {
    await stop(gateway);
    await stop(appointment);
  }
  mkdirSync("logs", { recursive: true });
  const lines = appointment.lines.filter((l) => l.startsWith("{"));
  writeFileSync("logs/cache-evictions.sample.log", `${lines.join("\n")}\n`);
  return lines.filter((l) => l.includes('"event":"cache_eviction"')).length;
}

const pct = (n: number, total: number) => (total === 0 ? "0%" : `${((100 * n) / total).toFixed(1)}%`);

async function main() {
  // What `npm start` runs: the compiled build at its default log level.
  useCompiledBuild();
  const { clinicId, dates } = await prepare();
  const rows: Row[] = [];
  for (const mode of ["lru", "redis", "db"] as const) {
    const r = await runMode(mode, clinicId, dates);
    rows.push(...r);
    for (const x of r)
      console.log(`${x.mode} c=${x.connections}: ${x.rps.toFixed(0)} req/s p50 ${x.p50} ms p99 ${x.p99} ms`);
  }
  const at = (mode: Mode, c: number) => rows.find((x) => x.mode === mode && x.connections === c)!;
  const ratios = connectionsList.map(
    (c) =>
      `- ${c} connection(s): LRU / database = **${(at("lru", c).rps / at("db", c).rps).toFixed(2)}×** req/s; Redis / database = ${(at("redis", c).rps / at("db", c).rps).toFixed(2)}×`,
  );
  const table = markdownTable(
    ["tier", "connections", "req/s", "p50 ms", "p99 ms", "requests", "served by (from /metrics)"],
    rows.map((x) => [x.mode, x.connections, x.rps.toFixed(0), x.p50, x.p99, x.requests, x.servedBy]),
  );
  const report = `# Slot query benchmark

Through the gateway (HTTP on loopback) → one appointment instance (gRPC) → the tier under test, with
autocannon as the client on the same machine (so client and server share its cores). ${keyCount}
(clinic, date) keys of 16 slots each, read round-robin; ${durationS} s per row. Every request carries
a bearer token, as the gateway requires on every \`/v1\` route: admin tokens, one per connection (a
staff token's budget is \`RATE_LIMIT_STAFF_PER_MINUTE\`, 600,000 a minute; a patient token's 600 a minute
would measure the rate limiter, not the cache), verified once and then served from the gateway's token cache.

- **lru**: LRU large enough for every key; each read still checks the Redis version (one round trip).
- **redis**: LRU of one entry, so each read misses it and is served from Redis (two round trips).
- **db**: LRU of one entry and Redis unreachable (a refused port), so each read queries PostgreSQL.
- **floor**: the gateway's own /healthz, no gRPC call: what HTTP alone costs here.
- **grpc**: ListSlots straight to the appointment service (LRU hits), no gateway: what the gRPC hop costs.

Every tier pays the HTTP request and one gRPC call; on this machine a grpc-js call (HTTP/2 stream,
headers, deadline) costs about a millisecond of CPU between client and server, several times the
LRU lookup and of the same order as the PostgreSQL query it saves, which bounds what the LRU can gain
over the database through the gateway.

## Machine
${machineDescription()}

## Results
${table}

## Ratios (same run)
${ratios.join("\n")}

Reproduce: \`npm run bench:slots\` (PostgreSQL and Redis on 127.0.0.1).
`;
  const evictions = await evictionSample(clinicId, dates);
  console.log(`eviction sample: ${evictions} evictions logged → logs/cache-evictions.sample.log`);
  mkdirSync("bench/reports", { recursive: true });
  writeFileSync("bench/reports/slots.md", report);
  console.log(`\n${table}\n\n${ratios.join("\n")}\n\nreport: bench/reports/slots.md`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
