// Owns the notification process: its database (created and migrated at start), the consumer of
// the event stream, the ops HTTP server, and closing them in order.
import type { Logger } from "pino";
import type { Config } from "../shared/config.ts";
import { startOpsServer } from "../shared/metrics.ts";
import { createPool, ensureDatabase } from "../shared/pg.ts";
import { createRedis } from "../shared/redis.ts";
import { StreamConsumer, streamConsumerMetrics } from "../shared/stream-consumer.ts";
import { handleEvent } from "./inbox.ts";
import { migrate } from "./migrate.ts";

export interface NotificationService {
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
  await ensureDatabase(cfg.NOTIFICATION_DATABASE_URL, { timeoutMs: cfg.DB_STATEMENT_TIMEOUT_MS });
  const pool = createPool(cfg.NOTIFICATION_DATABASE_URL, cfg.DB_POOL_MAX, {
    statementTimeoutMs: cfg.DB_STATEMENT_TIMEOUT_MS,
    onIdleError: (err) => log.warn({ err: err.message }, "idle PostgreSQL client failed"),
  });
  await migrate(pool, log);
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
    handle: (ev) => handleEvent(pool, ev, consumer),
    log,
    metricsPrefix,
  });
  stream.start();

  let closing = false;
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
  log.info({ opsPort, consumer }, "notification service listening");

  return {
    opsPort,
    consumer,
    async close() {
      closing = true;
      await stream.stop();
      await new Promise<void>((resolve) => ops.close(() => resolve()));
      redis.disconnect();
      await pool.end();
    },
  };
}
