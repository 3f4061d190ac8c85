// Owns what the appointment database forgets, and when: idempotency rows after their window,
// relayed outbox rows after their retention. Appointments, slots, versions and unrelayed outbox
// rows are never pruned. Deletes run in bounded batches, so pruning a backlog never holds locks
// or a statement for long; several instances may prune at once (a row is deleted once).
import type pg from "pg";
import type { Logger } from "pino";
import { counter } from "../shared/metrics.ts";

export interface PruneLimits {
  /** A retry with the same Idempotency-Key within this many seconds returns the first result. */
  idempotencyWindowSeconds: number;
  /** Relayed outbox rows are kept this long, so a relay can replay what a lost stream missed. */
  outboxRetentionSeconds: number;
}

/** Rows one DELETE removes at most; a round runs at most pruneBatchesMax of them per table. */
export const pruneRowsPerBatchMax = 1_000;
const pruneBatchesMax = 50;

const pruned = counter("medisync_appointment_pruned_rows_total", "rows pruned by table", ["table"]);

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

/** One pruning round; returns what it deleted. The clock is PostgreSQL's, the one rows are stamped with. */
export async function pruneOnce(
  pool: pg.Pool,
  limits: PruneLimits,
): Promise<{ idempotency: number; outbox: number }> {
  const idempotency = await pruneTable(
    pool,
    "booking_idempotency",
    `DELETE FROM booking_idempotency WHERE key IN (
       SELECT key FROM booking_idempotency WHERE created_at < now() - make_interval(secs => $1)
        LIMIT $2 FOR UPDATE SKIP LOCKED)`,
    limits.idempotencyWindowSeconds,
  );
  const outbox = await pruneTable(
    pool,
    "outbox",
    `DELETE FROM outbox WHERE id IN (
       SELECT id FROM outbox WHERE relayed_at IS NOT NULL AND relayed_at < now() - make_interval(secs => $1)
        LIMIT $2 FOR UPDATE SKIP LOCKED)`,
    limits.outboxRetentionSeconds,
  );
  return { idempotency, outbox };
}

export function startPruner(opts: { pool: pg.Pool; limits: PruneLimits; intervalMs: number; log: Logger }): {
  stop(): Promise<void>;
} {
  let running: Promise<void> | undefined;
  let stopped = false;
  const round = async () => {
    try {
      const n = await pruneOnce(opts.pool, opts.limits);
      if (n.idempotency > 0 || n.outbox > 0) opts.log.info({ event: "pruned", ...n }, "old rows pruned");
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
