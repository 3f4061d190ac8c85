// Owns relaying the outbox to the Redis Stream of domain events, at least once: rows are marked
// relayed only after XADD succeeded, under SKIP LOCKED so several instances share the work.
import type { Redis } from "ioredis";
import type pg from "pg";
import type { Logger } from "pino";

const batchRowsMax = 100;
const streamLengthMax = 100_000;

export function startOutboxRelay(opts: {
  pool: pg.Pool;
  redis: Redis;
  stream: string;
  intervalMs: number;
  log: Logger;
}): { stop(): Promise<void> } {
  let running: Promise<void> | undefined;
  let stopped = false;
  const relayOnce = async () => {
    const client = await opts.pool.connect();
    try {
      await client.query("BEGIN");
      const rows = await client.query<{ id: string; topic: string; payload: unknown }>(
        "SELECT id, topic, payload FROM outbox WHERE relayed_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        [batchRowsMax],
      );
      if (rows.rowCount === 0) {
        await client.query("COMMIT");
        return;
      }
      const pipeline = opts.redis.pipeline();
      for (const r of rows.rows) {
        pipeline.xadd(
          opts.stream,
          "MAXLEN",
          "~",
          streamLengthMax,
          "*",
          "id",
          r.id,
          "topic",
          r.topic,
          "payload",
          JSON.stringify(r.payload),
        );
      }
      const results = await pipeline.exec();
      if (!results || results.some(([err]) => err)) throw new Error("XADD failed");
      await client.query("UPDATE outbox SET relayed_at = now() WHERE id = ANY($1::bigint[])", [
        rows.rows.map((r) => r.id),
      ]);
      await client.query("COMMIT");
    } catch (err) {
      await client.query("ROLLBACK").catch(() => undefined);
      opts.log.debug({ err: (err as Error).message }, "outbox relay attempt failed");
    } finally {
      client.release();
    }
  };
  const timer = setInterval(() => {
    if (stopped || running) return;
    running = relayOnce().finally(() => {
      running = undefined;
    });
  }, opts.intervalMs);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
