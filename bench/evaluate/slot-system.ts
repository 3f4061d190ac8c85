// Owns the slot-query system the evaluation measures: a database of its own with one clinic and a
// day of slots on each of `keys` dates, and per run one appointment service and one gateway as
// `npm start` runs them (bench/support/processes.ts: real processes, the compiled build, the default
// log level), configured for the tier under test; and reading the appointment service's /metrics.
import { randomUUID } from "node:crypto";
import pg from "pg";
import { migrate } from "../../src/appointment/migrate.ts";
import { createSlots, insertClinic, insertPractitioner } from "../../src/appointment/repo.ts";
import { createLogger } from "../../src/shared/logger.ts";
import { createPool, ensureDatabase } from "../../src/shared/pg.ts";
import type { Watched } from "../../test/support/process.ts";
import { benchGatewayEnv, freePort, startService, stop, waitForOk } from "../support/processes.ts";

const pgBase = process.env.BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432";
const dbName = "medisync_bench_evaluate";
export const databaseUrl = `${pgBase}/${dbName}`;

export interface SlotData {
  clinicId: string;
  dates: string[];
}

/** A fresh database: one clinic, one practitioner, 16 half-hour slots on each of `keys` days. */
export async function prepareSlots(keys: number): Promise<SlotData> {
  const admin = new pg.Client({ connectionString: `${pgBase}/postgres` });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
  await admin.end();
  await ensureDatabase(databaseUrl);
  const pool = createPool(databaseUrl, 4);
  try {
    await migrate(pool, createLogger({ service: "bench", level: "silent" }));
    const clinicId = randomUUID();
    const practitionerId = randomUUID();
    await insertClinic(pool, { id: clinicId, name: "Evaluation Clinic", timeZone: "UTC" });
    await insertPractitioner(pool, { id: practitionerId, clinicId, name: "Evaluation Practitioner" });
    const dates: string[] = [];
    for (let i = 0; i < keys; i++) {
      const d = new Date(Date.UTC(2034, 0, 1 + i)).toISOString().slice(0, 10);
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
    return { clinicId, dates };
  } finally {
    await pool.end();
  }
}

export interface SlotSystem {
  appointment: Watched;
  gateway: Watched;
  grpcAddress: string;
  gatewayUrl: string;
  metricsUrl: string;
  /** The gateway's ops port /metrics (its slot tier's counters). */
  gatewayMetricsUrl: string;
  close(): Promise<void>;
}

/** Starts an appointment service (with `env` on top) and a gateway in front of it. */
export async function startSlotSystem(
  name: string,
  env: Record<string, string>,
  gatewayEnv: Record<string, string> = {},
): Promise<SlotSystem> {
  const [grpcPort, opsPort, httpPort, gatewayOpsPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const prefix = `bench-evaluate-${name}:`;
  const appointment = startService("appointment", {
    DATABASE_URL: databaseUrl,
    APPOINTMENT_GRPC_PORT: String(grpcPort),
    APPOINTMENT_OPS_PORT: String(opsPort),
    REDIS_KEY_PREFIX: prefix,
    INSTANCE_ID: `evaluate-${name}`,
    ...env,
  });
  const gateway = startService("gateway", {
    ...benchGatewayEnv("evaluate"),
    PORT: String(httpPort),
    APPOINTMENT_ADDRS: `127.0.0.1:${grpcPort}`,
    REDIS_KEY_PREFIX: prefix,
    GATEWAY_OPS_PORT: String(gatewayOpsPort),
    // The service's tiers are measured with the gateway's own off unless the caller turns it on.
    GATEWAY_SLOT_CACHE_MAX_ENTRIES: "0",
    ...gatewayEnv,
  });
  const close = async () => {
    await stop(gateway);
    await stop(appointment);
  };
  try {
    await waitForOk(`http://127.0.0.1:${opsPort}/readyz`, 60_000);
    await waitForOk(`http://127.0.0.1:${httpPort}/healthz`, 60_000);
    // Ready, not just up: a gateway that has not yet reached the appointment service answers
    // its first slot reads 503 (one such run of the db tier died in its warm-up).
    await waitForOk(`http://127.0.0.1:${gatewayOpsPort}/readyz`, 60_000);
  } catch (err) {
    await close();
    throw new Error(
      `${String(err)}\nappointment:\n${appointment.lines.slice(-10).join("\n")}\ngateway:\n${gateway.lines.slice(-10).join("\n")}`,
    );
  }
  return {
    appointment,
    gateway,
    grpcAddress: `127.0.0.1:${grpcPort}`,
    gatewayUrl: `http://127.0.0.1:${httpPort}`,
    metricsUrl: `http://127.0.0.1:${opsPort}/metrics`,
    gatewayMetricsUrl: `http://127.0.0.1:${gatewayOpsPort}/metrics`,
    close,
  };
}

export interface CacheCounters {
  /** Lookups by `${tier}:${result}` (lru:hit, lru:miss, redis:hit, db:hit, …). */
  lookups: Record<string, number>;
  /** LRU evictions by reason (evict: the LRU was full; expire: past SLOT_CACHE_LRU_TTL_MS). */
  evictions: Record<string, number>;
}

/** The slot cache's counters from the appointment service's /metrics. */
export async function cacheCounters(metricsUrl: string): Promise<CacheCounters> {
  const text = await (await fetch(metricsUrl)).text();
  const lookups: Record<string, number> = {};
  for (const m of text.matchAll(
    /medisync_slot_cache_lookups_total\{[^}]*tier="(\w+)",result="(\w+)"[^}]*\} (\d+)/g,
  )) {
    const k = `${m[1]}:${m[2]}`;
    lookups[k] = (lookups[k] ?? 0) + Number(m[3]);
  }
  const evictions: Record<string, number> = {};
  for (const m of text.matchAll(/medisync_slot_cache_evictions_total\{[^}]*reason="(\w+)"[^}]*\} (\d+)/g)) {
    evictions[m[1]!] = (evictions[m[1]!] ?? 0) + Number(m[2]);
  }
  return { lookups, evictions };
}

/** Hits of the gateway's own slot tier, from the gateway's /metrics. */
export async function gatewayTierHits(metricsUrl: string): Promise<number> {
  const text = await (await fetch(metricsUrl)).text();
  const m = /medisync_gateway_slot_tier_total\{[^}]*result="hit"[^}]*\} (\d+)/.exec(text);
  return m ? Number(m[1]) : 0;
}

export const sumOf = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);
