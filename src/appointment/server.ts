// Owns the appointment process: database (created and migrated at start), Redis, cache, outbox
// relay, the gRPC server and the ops HTTP server, and closing all of them in order.
import { Server, ServerCredentials } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { AppointmentServiceService } from "../gen/medisync/v1/appointment.ts";
import type { Config } from "../shared/config.ts";
import { serverOptions } from "../shared/grpc.ts";
import { startOpsServer } from "../shared/metrics.ts";
import { createPool, ensureDatabase } from "../shared/pg.ts";
import { createRedis, createSubscriber } from "../shared/redis.ts";
import { migrate } from "./migrate.ts";
import { startOutboxRelay } from "./outbox-relay.ts";
import { readDay } from "./repo.ts";
import { createAppointmentHandlers } from "./service.ts";
import { SlotCache } from "./slot-cache.ts";

export interface AppointmentService {
  grpcPort: number;
  opsPort: number;
  cache: SlotCache;
  close(): Promise<void>;
}

const outboxIntervalMs = 200;
const shutdownGraceMs = 2_000;

export interface StartOptions {
  /**
   * Subscribe to invalidations from other instances (default true). Correctness never depends on
   * their delivery; tests turn it off to prove that the version check alone keeps reads fresh.
   */
  pubsub?: boolean;
}

export async function startAppointmentService(
  cfg: Config,
  log: Logger,
  options: StartOptions = {},
): Promise<AppointmentService> {
  const instance = cfg.INSTANCE_ID ?? `appointment-${process.pid}`;
  await ensureDatabase(cfg.DATABASE_URL);
  const pool = createPool(cfg.DATABASE_URL, cfg.DB_POOL_MAX);
  pool.on("error", (err) => log.warn({ err: err.message }, "idle PostgreSQL client failed"));
  await migrate(pool, log);

  const redisOpts = { url: cfg.REDIS_URL, commandTimeoutMs: cfg.REDIS_COMMAND_TIMEOUT_MS, log };
  const redis = createRedis({ ...redisOpts, name: "cache" });
  const subscriber =
    options.pubsub === false ? undefined : createSubscriber({ ...redisOpts, name: "invalidations" });
  const cache = new SlotCache({
    redis,
    ...(subscriber ? { subscriber } : {}),
    keyPrefix: cfg.REDIS_KEY_PREFIX,
    lruEntriesMax: cfg.SLOT_CACHE_MAX_ENTRIES,
    lruTtlMs: cfg.SLOT_CACHE_LRU_TTL_MS,
    redisTtlSeconds: cfg.SLOT_CACHE_REDIS_TTL_SECONDS,
    evictionLogSample: cfg.CACHE_EVICTION_LOG_SAMPLE,
    instance,
    log,
    loadFromDb: (clinicId, date) => readDay(pool, clinicId, date),
  });
  // Not awaited: a Redis that is down at start must not stop the service (reads use PostgreSQL).
  cache.start().catch((err) => log.warn({ err: (err as Error).message }, "invalidation subscribe failed"));
  const relay = startOutboxRelay({
    pool,
    redis,
    stream: `${cfg.REDIS_KEY_PREFIX}events`,
    intervalMs: outboxIntervalMs,
    log,
  });

  const server = new Server(serverOptions);
  server.addService(AppointmentServiceService, createAppointmentHandlers({ pool, cache, log }));
  const grpcPort = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${cfg.HOST}:${cfg.APPOINTMENT_GRPC_PORT}`,
      ServerCredentials.createInsecure(),
      (err, port) => (err ? reject(err) : resolve(port)),
    ),
  );
  const ops = await startOpsServer({
    host: cfg.HOST,
    port: cfg.APPOINTMENT_OPS_PORT,
    ready: async () => {
      await pool.query("SELECT 1");
      return true;
    },
  });
  const address = ops.address();
  const opsPort = typeof address === "object" && address ? address.port : cfg.APPOINTMENT_OPS_PORT;
  log.info({ grpcPort, opsPort }, "appointment service listening");

  return {
    grpcPort,
    opsPort,
    cache,
    async close() {
      await new Promise<void>((resolve) => {
        // In-flight calls get a grace period; then the server is closed hard.
        const force = setTimeout(() => server.forceShutdown(), shutdownGraceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await new Promise<void>((resolve) => ops.close(() => resolve()));
      await relay.stop();
      await cache.stop();
      subscriber?.disconnect();
      redis.disconnect();
      await pool.end();
    },
  };
}
