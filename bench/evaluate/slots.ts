// Section 1: slot query latency and throughput per cache tier (the appointment service's LRU,
// Redis, PostgreSQL), through the gateway over HTTP and straight to the appointment service over
// gRPC, at 1 and 32 connections. One client for both paths, in this process: a closed loop per
// connection recording into an HdrHistogram, reading the `keys` (clinic, date) keys round-robin.
// (wrk, bench/support/wrk.ts, sends one path only; with an LRU of one entry, one key would always
// be an LRU hit, so the Redis and database tiers need the keys rotated.) Each row's tier is
// confirmed from the appointment service's own counters.
import http from "node:http";
import { credentials } from "@grpc/grpc-js";
import { AppointmentServiceClient } from "../../src/gen/medisync/v1/appointment.ts";
import { callUnary } from "../../src/shared/grpc.ts";
import { staffAuthorizations } from "../support/auth.ts";
import { round } from "./histogram.ts";
import { closedLoop } from "./load.ts";
import type { RunInfo, SlotPath, SlotRow, SlotSpectrum, SlotsResult, Tier } from "./results.ts";
import { cacheCounters, gatewayTierHits, type SlotData, startSlotSystem, sumOf } from "./slot-system.ts";

export const connectionsList = [1, 32];
/** Slot reads are open to every role; a staff token per connection (budgets are per token). */
const reader = { role: "admin", sub: "bench-evaluate" } as const;

const tierEnv: Record<Tier, Record<string, string>> = {
  gateway: { SLOT_CACHE_MAX_ENTRIES: "10000", REDIS_URL: "redis://127.0.0.1:6379" },
  lru: { SLOT_CACHE_MAX_ENTRIES: "10000", REDIS_URL: "redis://127.0.0.1:6379" },
  redis: { SLOT_CACHE_MAX_ENTRIES: "1", REDIS_URL: "redis://127.0.0.1:6379" },
  // Port 1 refuses at once: the database path, with Redis failing fast as in an outage.
  db: { SLOT_CACHE_MAX_ENTRIES: "1", REDIS_URL: "redis://127.0.0.1:1" },
};

/** GET `path` on a kept-alive connection; resolves when the whole body is in, rejects on non-200. */
function get(agent: http.Agent, base: URL, path: string, authorization: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: base.hostname, port: base.port, path, agent, headers: { authorization } },
      (res) => {
        res.resume();
        res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`${res.statusCode}`))));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end();
  });
}

const pct = (n: number, total: number) => (total === 0 ? "0%" : `${((100 * n) / total).toFixed(1)}%`);

export async function measureSlots(
  run: RunInfo,
  data: SlotData,
  durationS: number,
  log: (s: string) => void,
): Promise<SlotsResult> {
  const rows: SlotRow[] = [];
  const spectra: SlotSpectrum[] = [];
  const paths = data.dates.map((d) => `/v1/clinics/${data.clinicId}/slots?date=${d}`);
  const tokens = await staffAuthorizations(reader, Math.max(...connectionsList));
  for (const tier of ["gateway", "lru", "redis", "db"] as const) {
    const sys = await startSlotSystem(
      tier,
      tierEnv[tier],
      tier === "gateway" ? { GATEWAY_SLOT_CACHE_MAX_ENTRIES: "10000" } : {},
    );
    const base = new URL(sys.gatewayUrl);
    const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(...connectionsList) });
    const grpc = new AppointmentServiceClient(sys.grpcAddress, credentials.createInsecure());
    try {
      // Warm every key twice (the tier under test is then the one that answers), and every token
      // once (its signature is checked once, then cached by the gateway).
      for (let i = 0; i < 2; i++) for (const p of paths) await get(agent, base, p, tokens[0]!);
      for (const t of tokens) await get(agent, base, paths[0]!, t);
      for (const p of data.dates)
        await callUnary(
          grpc.listSlots.bind(grpc),
          { clinicId: data.clinicId, date: p, practitionerId: "" },
          5_000,
        );
      const ops: Record<string, (w: number, i: number) => Promise<void>> = {
        "gateway (HTTP)": (w, i) => get(agent, base, paths[i % paths.length]!, tokens[w % tokens.length]!),
      };
      // Straight over gRPC there is no gateway: its tier has nothing to add to the lru row.
      if (tier !== "gateway")
        ops["straight gRPC"] = async (_w, i) => {
          await callUnary(
            grpc.listSlots.bind(grpc),
            { clinicId: data.clinicId, date: data.dates[i % data.dates.length]!, practitionerId: "" },
            5_000,
          );
        };
      for (const connections of connectionsList) {
        for (const [path, op] of Object.entries(ops) as [
          SlotPath,
          (w: number, i: number) => Promise<void>,
        ][]) {
          const before = await cacheCounters(sys.metricsUrl);
          const gatewayBefore = await gatewayTierHits(sys.gatewayMetricsUrl);
          const r = await closedLoop(connections, durationS, op);
          const after = await cacheCounters(sys.metricsUrl);
          const gatewayAfter = await gatewayTierHits(sys.gatewayMetricsUrl);
          const d = (k: string) => (after.lookups[k] ?? 0) - (before.lookups[k] ?? 0);
          const served = {
            gateway: gatewayAfter - gatewayBefore,
            lru: d("lru:hit"),
            redis: d("redis:hit"),
            db: d("db:hit"),
          };
          const total = sumOf(served);
          const row: SlotRow = {
            tier,
            path,
            connections,
            rps: round(r.rps, 0),
            p50: round(r.latency.ms(50), 3),
            p99: round(r.latency.ms(99), 3),
            requests: r.latency.count,
            errors: r.errors,
            servedBy: `gateway ${pct(served.gateway, total)} / lru ${pct(served.lru, total)} / redis ${pct(served.redis, total)} / db ${pct(served.db, total)}`,
          };
          rows.push(row);
          spectra.push({ tier, path, connections, points: r.latency.spectrum() });
          log(
            `slots ${tier} ${path} c=${connections}: ${row.rps} req/s p50 ${row.p50} ms p99 ${row.p99} ms (${row.servedBy}, ${row.errors} errors)`,
          );
        }
      }
    } finally {
      grpc.close();
      agent.destroy();
      await sys.close();
    }
  }
  return { run, durationS, keys: data.dates.length, rows, spectra };
}
