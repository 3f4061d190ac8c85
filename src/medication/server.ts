// Owns the medication process: its database (created and migrated at start), the clients of the
// appointment and inventory services, the saga and its recovery loop, the consumer of appointment
// events, the outbox relay, the gRPC server and the ops HTTP server, and closing them in order.
import { Server } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { MedicationServiceService } from "../gen/medisync/v1/medication.ts";
import { AppointmentClient } from "../shared/appointment-client.ts";
import type { Config } from "../shared/config.ts";
import { bindGrpc, serverOptions, shutdownGrpc } from "../shared/grpc.ts";
import { InventoryClient } from "../shared/inventory-client.ts";
import { portOf, startOpsServer } from "../shared/metrics.ts";
import { startOutboxRelay } from "../shared/outbox-relay.ts";
import { createPool, ensureDatabase } from "../shared/pg.ts";
import { createRedis } from "../shared/redis.ts";
import { discover, registerInstance, startingAddresses } from "../shared/service-registry.ts";
import { StreamConsumer, streamConsumerMetrics } from "../shared/stream-consumer.ts";
import { callerPolicies, loadTransportSecurity } from "../shared/tls.ts";
import { appointmentEventHandler, medicationGroup } from "./appointment-events.ts";
import { appointmentFacts } from "./appointments.ts";
import { migrate } from "./migrate.ts";
import { startRecovery } from "./recovery.ts";
import { Saga } from "./saga.ts";
import { createMedicationHandlers } from "./service.ts";

export interface MedicationService {
  grpcPort: number;
  opsPort: number;
  /** Runs one recovery round now (tests). */
  recover(): Promise<void>;
  close(): Promise<void>;
}

const outboxIntervalMs = 200;
const metricsPrefix = "medisync_medication";
streamConsumerMetrics(metricsPrefix);
/**
 * An appointment's cancel left pending this long (its consumer died, or it failed) is claimed again;
 * after this many deliveries it is dead-lettered. Generous: a cancel fails only while PostgreSQL is
 * away or a dispense cannot be settled (inventory down), and those pass.
 */
const eventClaimIdleMs = 10_000;
const eventDeliveriesMax = 100;

export async function startMedicationService(cfg: Config, log: Logger): Promise<MedicationService> {
  // First: a process that may not serve (plaintext off loopback, another's certificate) stops here.
  const security = loadTransportSecurity(cfg, log, { service: "medication" });
  await ensureDatabase(cfg.MEDICATION_DATABASE_URL, { timeoutMs: cfg.DB_STATEMENT_TIMEOUT_MS });
  const pool = createPool(cfg.MEDICATION_DATABASE_URL, cfg.DB_POOL_MAX, {
    statementTimeoutMs: cfg.DB_STATEMENT_TIMEOUT_MS,
    onIdleError: (err) => log.warn({ err: err.message }, "idle PostgreSQL client failed"),
  });
  await migrate(pool, log);
  const redis = createRedis({
    url: cfg.REDIS_URL,
    commandTimeoutMs: cfg.REDIS_COMMAND_TIMEOUT_MS,
    log,
    name: "medication",
  });
  const appointments = new AppointmentClient({
    addrs: startingAddresses(cfg, "appointment"),
    deadlineMs: cfg.GRPC_DEADLINE_MS,
    security,
  });
  // DISCOVERY=redis: the appointment instances come from the service registry.
  const discovery = discover(cfg, { redis, log, targets: { appointment: appointments } });
  const inventory = new InventoryClient({
    peers: cfg.INVENTORY_PEERS,
    deadlineMs: cfg.GRPC_DEADLINE_MS,
    redis,
    keyPrefix: cfg.REDIS_KEY_PREFIX,
    security,
  });
  const saga = new Saga({
    pool,
    inventory,
    appointment: appointmentFacts(appointments),
    retryWindowMs: cfg.MEDICATION_RETRY_WINDOW_MS,
    crashpoints: new Set(cfg.MEDISYNC_CRASHPOINTS),
    log,
  });
  const recovery = startRecovery({
    pool,
    saga,
    settleAfterMs: cfg.MEDICATION_SETTLE_AFTER_MS,
    intervalMs: cfg.MEDICATION_RECOVERY_INTERVAL_MS,
    log,
  });
  const relay = startOutboxRelay({
    pool,
    redis,
    stream: `${cfg.REDIS_KEY_PREFIX}events`,
    producer: "medication",
    retentionSeconds: cfg.OUTBOX_RETENTION_SECONDS,
    intervalMs: outboxIntervalMs,
    log,
  });

  const events = new StreamConsumer({
    redis,
    stream: `${cfg.REDIS_KEY_PREFIX}events`,
    group: medicationGroup,
    deadLetterStream: `${cfg.REDIS_KEY_PREFIX}events:dead:${medicationGroup}`,
    consumer: cfg.INSTANCE_ID ?? `medication-${process.pid}`,
    claimIdleMs: eventClaimIdleMs,
    deliveriesMax: eventDeliveriesMax,
    handle: appointmentEventHandler(saga),
    log,
    metricsPrefix,
  });
  events.start();

  let closing = false;
  const server = new Server({
    ...serverOptions,
    interceptors: security.interceptors(callerPolicies.medication),
  });
  server.addService(MedicationServiceService, createMedicationHandlers({ pool, saga, log }));
  const grpcPort = await bindGrpc(server, cfg.HOST, cfg.MEDICATION_GRPC_PORT, security.serverCredentials());
  const ops = await startOpsServer({
    host: cfg.HOST,
    port: cfg.MEDICATION_OPS_PORT,
    ready: async () => {
      if (closing) return false;
      await pool.query("SELECT 1");
      return true;
    },
  });
  const opsPort = portOf(ops, cfg.MEDICATION_OPS_PORT);
  log.info({ grpcPort, opsPort }, "medication service listening");
  const registration = registerInstance(cfg, { redis, log, service: "medication", grpcPort });

  return {
    grpcPort,
    opsPort,
    recover: () => recovery.round(),
    async close() {
      closing = true;
      // Out of the registry first: callers stop picking this instance while its calls drain.
      await registration?.stop();
      // In-flight calls get until the drain deadline; then the server is closed hard.
      await shutdownGrpc(server, cfg.SHUTDOWN_DRAIN_MS);
      await new Promise<void>((resolve) => ops.close(() => resolve()));
      await events.stop();
      await recovery.stop();
      await relay.stop();
      discovery.stop();
      appointments.close();
      inventory.close();
      redis.disconnect();
      await pool.end();
    },
  };
}
