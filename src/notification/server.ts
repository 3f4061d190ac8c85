// Owns the notification process: its database (created and migrated at start), the consumer of
// the event stream, the delivery worker (webhooks, and e-mail when SMTP_URL and the contact key are set), the pruner, the gRPC server, the ops HTTP server,
// and closing them in order.
import { Server } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { NotificationServiceService } from "../gen/medisync/v1/notification.ts";
import type { Config } from "../shared/config.ts";
import { bindGrpc, serverOptions } from "../shared/grpc.ts";
import { startOpsServer } from "../shared/metrics.ts";
import { createPool, ensureDatabase } from "../shared/pg.ts";
import { createRedis } from "../shared/redis.ts";
import { registerInstance } from "../shared/service-registry.ts";
import { StreamConsumer, streamConsumerMetrics } from "../shared/stream-consumer.ts";
import { callerPolicies, loadTransportSecurity } from "../shared/tls.ts";
import { ContactCipher } from "./contacts.ts";
import { DeliveryWorker, deliveryTimeoutMs } from "./deliveries.ts";
import { smtpMailer } from "./email.ts";
import { handleEvent } from "./inbox.ts";
import { migrate } from "./migrate.ts";
import { startPruner } from "./pruner.ts";
import { createNotificationHandlers } from "./service.ts";

export interface NotificationService {
  grpcPort: number;
  opsPort: number;
  consumer: string;
  close(): Promise<void>;
}

const metricsPrefix = "medisync_notification";
streamConsumerMetrics(metricsPrefix);

/** The consumer group every notification instance joins; each event is handled by one of them. */
export const consumerGroup = "notification";

export async function startNotificationService(cfg: Config, log: Logger): Promise<NotificationService> {
  const consumer = cfg.INSTANCE_ID ?? `notification-${process.pid}`;
  // First: a process that may not serve (plaintext off loopback, another's certificate) stops here.
  const security = loadTransportSecurity(cfg, log, { service: "notification" });
  await ensureDatabase(cfg.NOTIFICATION_DATABASE_URL, { timeoutMs: cfg.DB_STATEMENT_TIMEOUT_MS });
  const pool = createPool(cfg.NOTIFICATION_DATABASE_URL, cfg.DB_POOL_MAX, {
    statementTimeoutMs: cfg.DB_STATEMENT_TIMEOUT_MS,
    onIdleError: (err) => log.warn({ err: err.message }, "idle PostgreSQL client failed"),
  });
  await migrate(pool, log);
  const cipher = cfg.NOTIFICATION_CONTACT_KEY ? new ContactCipher(cfg.NOTIFICATION_CONTACT_KEY) : undefined;
  // E-mail needs both a server to send through and the key to read addresses with; either missing,
  // the channel is off (nothing enqueued, nothing sent) and the rest runs as before.
  const mailer =
    cfg.SMTP_URL && cipher
      ? smtpMailer({ url: cfg.SMTP_URL, from: cfg.NOTIFICATION_EMAIL_FROM, timeoutMs: deliveryTimeoutMs })
      : undefined;
  if (cfg.SMTP_URL && !cipher) log.warn("SMTP_URL set without NOTIFICATION_CONTACT_KEY: e-mail channel off");
  const email = mailer && cipher ? { mailer, cipher } : undefined;
  const redis = createRedis({
    url: cfg.REDIS_URL,
    commandTimeoutMs: cfg.REDIS_COMMAND_TIMEOUT_MS,
    log,
    name: "events",
  });
  const stream = new StreamConsumer({
    redis,
    stream: `${cfg.REDIS_KEY_PREFIX}events`,
    group: consumerGroup,
    deadLetterStream: `${cfg.REDIS_KEY_PREFIX}events:dead`,
    consumer,
    claimIdleMs: cfg.NOTIFICATION_CLAIM_IDLE_MS,
    deliveriesMax: cfg.NOTIFICATION_DELIVERIES_MAX,
    handle: (ev) => handleEvent(pool, ev, consumer, () => worker.kick(), { email: email !== undefined }),
    log,
    metricsPrefix,
  });
  const worker = new DeliveryWorker({
    pool,
    log,
    instance: consumer,
    attemptsMax: cfg.NOTIFICATION_WEBHOOK_ATTEMPTS_MAX,
    backoffMsBase: cfg.NOTIFICATION_WEBHOOK_BACKOFF_MS_BASE,
    allowPrivate: cfg.NOTIFICATION_WEBHOOK_ALLOW_PRIVATE,
    ...(email ? { email } : {}),
  });
  worker.start();
  stream.start();
  const pruner = startPruner({
    pool,
    retentionSeconds: cfg.NOTIFICATION_INBOX_RETENTION_SECONDS,
    intervalMs: cfg.NOTIFICATION_PRUNE_INTERVAL_MS,
    log,
  });

  let closing = false;
  const server = new Server({
    ...serverOptions,
    interceptors: security.interceptors(callerPolicies.notification),
  });
  server.addService(
    NotificationServiceService,
    createNotificationHandlers({
      pool,
      log,
      allowPrivate: cfg.NOTIFICATION_WEBHOOK_ALLOW_PRIVATE,
      ...(cipher ? { cipher } : {}),
      emailOn: email !== undefined,
    }),
  );
  const grpcPort = await bindGrpc(server, cfg.HOST, cfg.NOTIFICATION_GRPC_PORT, security.serverCredentials());
  const ops = await startOpsServer({
    host: cfg.HOST,
    port: cfg.NOTIFICATION_OPS_PORT,
    ready: async () => {
      if (closing) return false;
      await pool.query("SELECT 1");
      return redis.status === "ready";
    },
  });
  const address = ops.address();
  const opsPort = typeof address === "object" && address ? address.port : cfg.NOTIFICATION_OPS_PORT;
  log.info({ grpcPort, opsPort, consumer, email: email !== undefined }, "notification service listening");
  const registration = registerInstance(cfg, { redis, log, service: "notification", grpcPort });

  return {
    grpcPort,
    opsPort,
    consumer,
    async close() {
      closing = true;
      // Out of the registry first: callers stop picking this instance while its calls drain.
      await registration?.stop();
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => server.forceShutdown(), cfg.SHUTDOWN_DRAIN_MS);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await stream.stop();
      await worker.stop();
      mailer?.close();
      await pruner.stop();
      await new Promise<void>((resolve) => ops.close(() => resolve()));
      redis.disconnect();
      await pool.end();
    },
  };
}
