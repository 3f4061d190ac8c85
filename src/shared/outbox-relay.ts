// Owns relaying a service's outbox table to the Redis Stream of domain events, at least once (the
// appointment and medication services each run one over their own database): rows are marked
// relayed only after XADD succeeded, under SKIP LOCKED so several instances share the work. When
// Redis has lost the stream (a restart of a Redis that keeps nothing on disk, a deleted key) the
// relay replays every row relayed within the retention window; consumers drop duplicates by the
// event id (their inbox).
import type { Redis } from "ioredis";
import type pg from "pg";
import type { Logger } from "pino";
import { counter } from "./metrics.ts";
import { inTransaction } from "./pg.ts";

const batchRowsMax = 100;
const streamLengthMax = 100_000;

const replays = counter(
  "medisync_outbox_replays_total",
  "times a relay found the stream lost and replayed",
  [],
);
const replayedRows = counter("medisync_outbox_replayed_rows_total", "outbox rows put back for relaying", []);

export function startOutboxRelay(opts: {
  pool: pg.Pool;
  redis: Redis;
  stream: string;
  /**
   * Names the producing service. Producers share the stream but not their outboxes, so each keeps
   * its own epoch key: one relay's replay must not hide the loss from the other.
   */
  producer: string;
  /** Rows relayed within this many seconds are replayed when the stream is lost (the pruner keeps them). */
  retentionSeconds: number;
  intervalMs: number;
  log: Logger;
}): { stop(): Promise<void> } {
  let running: Promise<void> | undefined;
  let stopped = false;
  /**
   * A key that lives and dies with the stream's Redis data: written after a replay, so its absence
   * means Redis lost its data since (or never had it: the first start replays the window once).
   */
  const epochKey = `${opts.stream}:relay-epoch:${opts.producer}`;
  /** The last entry this relay added; if the stream no longer has it, the stream was lost. */
  let lastEntryId: string | undefined;

  const streamLost = async (): Promise<boolean> => {
    const p = opts.redis.pipeline().exists(epochKey);
    if (lastEntryId) p.xrange(opts.stream, lastEntryId, lastEntryId);
    const results = await p.exec();
    if (!results || results.some(([err]) => err)) throw new Error("stream check failed");
    if (results[0]![1] === 0) return true;
    return lastEntryId !== undefined && (results[1]![1] as unknown[]).length === 0;
  };

  const replay = async () => {
    // Put back every row relayed within the window; the loop below relays them again in id order.
    const r = await opts.pool.query(
      "UPDATE outbox SET relayed_at = NULL WHERE relayed_at IS NOT NULL AND relayed_at >= now() - make_interval(secs => $1)",
      [opts.retentionSeconds],
    );
    // Only after the rows are back: a relay dying in between finds the key missing and replays again.
    await opts.redis.set(epochKey, new Date().toISOString());
    lastEntryId = undefined;
    replays.inc();
    replayedRows.inc(r.rowCount ?? 0);
    opts.log.warn(
      { event: "outbox_replay", rows: r.rowCount ?? 0 },
      "event stream lost; replaying the outbox window",
    );
  };

  const relayOnce = async () => {
    if (await streamLost()) await replay();
    // withClient: PostgreSQL going away while the client waits on Redis (checked out, between
    // statements) must fail this attempt, not the process; the next interval tries again.
    await inTransaction(opts.pool, async (client) => {
      const rows = await client.query<{ id: string; topic: string; payload: unknown }>(
        "SELECT id, topic, payload FROM outbox WHERE relayed_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        [batchRowsMax],
      );
      if (rows.rowCount === 0) return;
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
      lastEntryId = String(results[results.length - 1]![1]);
    });
  };
  const attempt = () =>
    relayOnce().catch((err: unknown) => {
      opts.log.debug({ err: (err as Error).message }, "outbox relay attempt failed");
    });
  const timer = setInterval(() => {
    if (stopped || running) return;
    running = attempt().finally(() => {
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
