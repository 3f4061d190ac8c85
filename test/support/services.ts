// Starts real appointment instances (in this process, on ephemeral ports) against the real
// PostgreSQL and Redis, each test file in a database and Redis key prefix of its own.

import { Writable } from "node:stream";
import { credentials } from "@grpc/grpc-js";
import { Redis } from "ioredis";
import pg from "pg";
import {
  type AppointmentService,
  type StartOptions,
  startAppointmentService,
} from "../../src/appointment/server.ts";
import { AppointmentServiceClient } from "../../src/gen/medisync/v1/appointment.ts";
import { type Config, loadConfig } from "../../src/shared/config.ts";
import { clientChannelOptions } from "../../src/shared/grpc.ts";
import { createLogger, type Logger } from "../../src/shared/logger.ts";
import { createPool } from "../../src/shared/pg.ts";
import { testKeys } from "./auth.ts";

export const PG_BASE = process.env.TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432";
export const REDIS_URL = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
/**
 * TEST_NS namespaces every test database and Redis prefix, so two checkouts can run their suites at
 * once on one machine without dropping each other's databases.
 */
export const TEST_NS = (process.env.TEST_NS ?? "").replace(/[^a-z0-9_]/gi, "_").toLowerCase();

/** The name a test's database and Redis prefix are built from. */
export function testName(name: string): string {
  return TEST_NS ? `${TEST_NS}_${name}` : name;
}

export function testConfig(base: string, env: Record<string, string> = {}): Config {
  const name = testName(base);
  return loadConfig({
    DATABASE_URL: `${PG_BASE}/medisync_test_${name}`,
    AUDIT_DATABASE_URL: `${PG_BASE}/medisync_test_${name}_audit`,
    REDIS_URL,
    REDIS_KEY_PREFIX: `test-${name}:`,
    APPOINTMENT_GRPC_PORT: "0",
    APPOINTMENT_OPS_PORT: "0",
    PORT: "0",
    GATEWAY_OPS_PORT: "0",
    AUTH_JWKS_FILE: testKeys().jwksFile,
    LOG_LEVEL: "silent",
    // No load balancer watches a test's /readyz: closing need not wait for one to notice.
    SHUTDOWN_UNREADY_MS: "0",
    ...env,
  });
}

/** Drops the test database and the test's Redis keys so each file starts from nothing. */
export async function resetState(cfg: Config): Promise<void> {
  const name = new URL(cfg.DATABASE_URL).pathname.slice(1);
  const admin = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await admin.end();
  }
  const redis = new Redis(REDIS_URL);
  try {
    const keys = await redis.keys(`${cfg.REDIS_KEY_PREFIX}*`);
    if (keys.length > 0) await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
}

/** Collects log lines in memory so a test can assert on them. */
export function captureLogger(service: string): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split("\n")) if (l.trim()) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { log: createLogger({ service, level: "info", destination: sink }), lines };
}

export interface Instance {
  service: AppointmentService;
  client: AppointmentServiceClient;
}

export async function startInstance(
  cfg: Config,
  log?: Logger,
  instanceId?: string,
  options: StartOptions = {},
): Promise<Instance> {
  const c = instanceId ? { ...cfg, INSTANCE_ID: instanceId } : cfg;
  const service = await startAppointmentService(
    c,
    log ?? createLogger({ service: "appointment", level: "silent" }),
    options,
  );
  const client = new AppointmentServiceClient(
    `127.0.0.1:${service.grpcPort}`,
    credentials.createInsecure(),
    clientChannelOptions,
  );
  return { service, client };
}

export async function stopInstance(i: Instance): Promise<void> {
  i.client.close();
  await i.service.close();
}

export function testPool(cfg: Config): pg.Pool {
  return createPool(cfg.DATABASE_URL, 4);
}
