// Owns what the notification database forgets, and when: finished webhook deliveries, then
// notifications whose deliveries are all finished, then inbox rows last seen, all past
// NOTIFICATION_INBOX_RETENTION_SECONDS. Pending deliveries (and so their notifications) are never
// pruned. The retention exceeds the producers' outbox window (loadConfig checks): an event a relay
// can still replay always finds its inbox row. Deletes run in bounded batches (SKIP LOCKED), so a
// backlog never holds locks or a statement for long, and several instances may prune at once.
import type pg from "pg";
import type { Logger } from "pino";
import { counter } from "../shared/metrics.ts";

/** Rows one DELETE removes at most; a round runs at most pruneBatchesMax of them per table. */
export const pruneRowsPerBatchMax = 1_000;
const pruneBatchesMax = 50;

const pruned = counter("medisync_notification_pruned_rows_total", "rows pruned by table", ["table"]);

async function pruneTable(pool: pg.Pool, table: string, sql: string, seconds: number): Promise<number> {
  let total = 0;
  for (let batch = 0; batch < pruneBatchesMax; batch++) {
    const r = await pool.query(sql, [seconds, pruneRowsPerBatchMax]);
    const n = r.rowCount ?? 0;
    total += n;
    if (n < pruneRowsPerBatchMax) break;
  }
  if (total > 0) pruned.inc({ table }, total);
  return total;
}

export interface PruneCounts {
  deliveries: number;
  notifications: number;
  inbox: number;
}

/** One round; the clock is PostgreSQL's, the one rows are stamped with. */
export async function pruneOnce(pool: pg.Pool, retentionSeconds: number): Promise<PruneCounts> {
  const deliveries = await pruneTable(
    pool,
    "webhook_deliveries",
    `DELETE FROM webhook_deliveries WHERE id IN (
       SELECT id FROM webhook_deliveries
        WHERE status <> 'pending' AND updated_at < now() - make_interval(secs => $1)
        LIMIT $2 FOR UPDATE SKIP LOCKED)`,
    retentionSeconds,
  );
  const notifications = await pruneTable(
    pool,
    "notifications",
    `DELETE FROM notifications WHERE id IN (
       SELECT n.id FROM notifications n
        WHERE n.created_at < now() - make_interval(secs => $1)
          AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = n.event_id)
        LIMIT $2 FOR UPDATE SKIP LOCKED)`,
    retentionSeconds,
  );
  // An inbox row goes only after its notification (the notification references it).
  const inbox = await pruneTable(
    pool,
    "inbox",
    `DELETE FROM inbox WHERE event_id IN (
       SELECT i.event_id FROM inbox i
        WHERE i.seen_at < now() - make_interval(secs => $1)
          AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.event_id = i.event_id)
        LIMIT $2 FOR UPDATE SKIP LOCKED)`,
    retentionSeconds,
  );
  return { deliveries, notifications, inbox };
}

export function startPruner(opts: {
  pool: pg.Pool;
  retentionSeconds: number;
  intervalMs: number;
  log: Logger;
}): { stop(): Promise<void> } {
  let running: Promise<void> | undefined;
  let stopped = false;
  const round = async () => {
    try {
      const n = await pruneOnce(opts.pool, opts.retentionSeconds);
      if (n.deliveries > 0 || n.notifications > 0 || n.inbox > 0)
        opts.log.info({ event: "pruned", ...n }, "old rows pruned");
    } catch (err) {
      // PostgreSQL away: the next round tries again; nothing is lost by pruning late.
      opts.log.warn({ err: (err as Error).message }, "pruning round failed");
    }
  };
  const timer = setInterval(() => {
    if (stopped || running) return;
    running = round().finally(() => {
      running = undefined;
    });
  }, opts.intervalMs);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
