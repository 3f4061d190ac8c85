// Owns the appointment process: database (created and migrated at start), Redis, cache, outbox
// relay, the gRPC server and the ops HTTP server, and closing all of them in order.
import { Server } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { OpenStreams } from "../shared/call-stream.ts";
import type { Config } from "../shared/config.ts";
import { bindGrpc, serverOptions, shutdownGrpc } from "../shared/grpc.ts";
import { portOf, startOpsServer } from "../shared/metrics.ts";
import { startOutboxRelay } from "../shared/outbox-relay.ts";
import { createPool, ensureDatabase } from "../shared/pg.ts";
import { createRedis, createSubscriber } from "../shared/redis.ts";
import { registerInstance } from "../shared/service-registry.ts";
import { callerPolicies, loadTransportSecurity } from "../shared/tls.ts";
import { migrate } from "./migrate.ts";
import { startPruner } from "./pruner.ts";
import { readDay } from "./repo.ts";
import { createAppointmentHandlers } from "./service.ts";
import { appointmentServiceDefinition } from "./slot-answer.ts";
import { SlotCache, type SlotCacheOptions } from "./slot-cache.ts";

export interface AppointmentService {
  grpcPort: number;
  opsPort: number;
  cache: SlotCache;
  close(): Promise<void>;
}

const outboxIntervalMs = 200;

export interface StartOptions {
  /**
   * Subscribe to invalidations from other instances (default true). Correctness never depends on
   * their delivery; tests turn it off to prove that the version check alone keeps reads fresh.
   */
  pubsub?: boolean;
  /**
   * Wraps the cache's PostgreSQL read. Tests use it to hold a reader between its read and its fill,
   * the window a lost Redis must not be able to exploit.
   */
  wrapLoadFromDb?: (load: SlotCacheOptions["loadFromDb"]) => SlotCacheOptions["loadFromDb"];
}

export async function startAppointmentService(
  cfg: Config,
  log: Logger,
  options: StartOptions = {},
): Promise<AppointmentService> {
  const instance = cfg.INSTANCE_ID ?? `appointment-${process.pid}`;
  // First: a process that may not serve (plaintext off loopback, another's certificate) stops here.
  const security = loadTransportSecurity(cfg, log, { service: "appointment" });
  await ensureDatabase(cfg.DATABASE_URL, { timeoutMs: cfg.DB_STATEMENT_TIMEOUT_MS });
  const pool = createPool(cfg.DATABASE_URL, cfg.DB_POOL_MAX, {
    statementTimeoutMs: cfg.DB_STATEMENT_TIMEOUT_MS,
    onIdleError: (err) => log.warn({ err: err.message }, "idle PostgreSQL client failed"),
  });
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
    versionTtlSeconds: cfg.SLOT_CACHE_VERSION_TTL_SECONDS,
    evictionLogSample: cfg.CACHE_EVICTION_LOG_SAMPLE,
    instance,
    log,
    loadFromDb: (options.wrapLoadFromDb ?? ((load) => load))((clinicId, date) =>
      readDay(pool, clinicId, date),
    ),
  });
  // Not awaited: a Redis that is down at start must not stop the service (reads use PostgreSQL).
  cache.start().catch((err) => log.warn({ err: (err as Error).message }, "invalidation subscribe failed"));
  const relay = startOutboxRelay({
    pool,
    redis,
    stream: `${cfg.REDIS_KEY_PREFIX}events`,
    producer: "appointment",
    retentionSeconds: cfg.OUTBOX_RETENTION_SECONDS,
    intervalMs: outboxIntervalMs,
    log,
  });
  const pruner = startPruner({
    pool,
    limits: {
      idempotencyWindowSeconds: cfg.BOOKING_IDEMPOTENCY_WINDOW_SECONDS,
      outboxRetentionSeconds: cfg.OUTBOX_RETENTION_SECONDS,
    },
    intervalMs: cfg.APPOINTMENT_PRUNE_INTERVAL_MS,
    log,
  });

  /** Set by close(): ops /readyz answers 503 while calls in flight drain. */
  let closing = false;
  const server = new Server({
    ...serverOptions,
    interceptors: security.interceptors(callerPolicies.appointment),
  });
  const streams = new OpenStreams();
  server.addService(appointmentServiceDefinition, createAppointmentHandlers({ pool, cache, log, streams }));
  const grpcPort = await bindGrpc(server, cfg.HOST, cfg.APPOINTMENT_GRPC_PORT, security.serverCredentials());
  const ops = await startOpsServer({
    host: cfg.HOST,
    port: cfg.APPOINTMENT_OPS_PORT,
    ready: async () => {
      if (closing) return false;
      await pool.query("SELECT 1");
      return true;
    },
  });
  const opsPort = portOf(ops, cfg.APPOINTMENT_OPS_PORT);
  log.info({ grpcPort, opsPort }, "appointment service listening");
  // DISCOVERY=redis: callers find this instance in the registry once it can serve.
  const registration = registerInstance(cfg, { redis, log, service: "appointment", grpcPort });

  return {
    grpcPort,
    opsPort,
    cache,
    async close() {
      closing = true;
      // Out of the registry first: callers stop picking this instance while its calls drain.
      await registration?.stop();
      // In-flight calls get until the drain deadline; then the server is closed hard. A caller's
      // ListSlotsStream would hold the graceful shutdown that long: it ends once answered.
      streams.drain();
      await shutdownGrpc(server, cfg.SHUTDOWN_DRAIN_MS);
      await new Promise<void>((resolve) => ops.close(() => resolve()));
      await relay.stop();
      await pruner.stop();
      await cache.stop();
      subscriber?.disconnect();
      redis.disconnect();
      await pool.end();
    },
  };
}
