// Owns publishing the inventory's low-stock events to the event stream, at least once across leader
// changes. Events are produced by applied entries, on every replica alike; only the leader
// publishes. After its XADDs succeed it proposes markEventsPublished(throughIndex) through the log,
// so the cursor is replicated (and carried in snapshots): a new leader publishes whatever the old
// one had not marked. An event's id is its entry's log index and its place in the entry, the same
// on every replica, so a republished event is a duplicate the consumers' inboxes drop.
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { counter } from "../shared/metrics.ts";
import { lowStockTopic } from "../shared/validation.ts";
import type { InventoryReplica } from "./replica.ts";
import type { LowStockEvent } from "./state-machine.ts";

/** Events published per round at most (one pipeline, one cursor write). */
const roundEventsMax = 256;
/** The stream's approximate length bound, as the outbox relays keep it. */
const streamLengthMax = 100_000;

const published = counter(
  "medisync_inventory_events_published_total",
  "low-stock events added to the event stream (republished ones included)",
  [],
);

export { lowStockTopic };

export function startLowStockRelay(o: {
  replica: InventoryReplica;
  isLeader: () => boolean;
  /** The events not yet marked published, oldest first. */
  pending: () => readonly LowStockEvent[];
  redis: Redis;
  stream: string;
  intervalMs: number;
  log: Logger;
}): { stop(): Promise<void> } {
  let running: Promise<void> | undefined;
  let stopped = false;

  const round = async () => {
    if (!o.isLeader()) return;
    // Whole entries only: the cursor marks entries, so an entry's events leave together (one entry
    // raises at most entryCommandsMax, so a round stays bounded).
    const pending = o.pending();
    const complete: LowStockEvent[] = [];
    for (const e of pending) {
      const last = complete[complete.length - 1];
      if (complete.length >= roundEventsMax && last && last.index !== e.index) break;
      complete.push(e);
    }
    if (complete.length === 0) return;
    const pipeline = o.redis.pipeline();
    let place = 0;
    complete.forEach((e, i) => {
      place = i > 0 && complete[i - 1]!.index === e.index ? place + 1 : 0;
      pipeline.xadd(
        o.stream,
        "MAXLEN",
        "~",
        streamLengthMax,
        "*",
        "id",
        `${e.index}-${place}`,
        "topic",
        lowStockTopic,
        "payload",
        JSON.stringify({
          clinic: e.clinicId,
          medicationCode: e.medicationCode,
          quantity: e.quantity,
          reorderLevel: e.reorderLevel,
          index: e.index,
        }),
      );
    });
    const results = await pipeline.exec();
    if (!results || results.some(([err]) => err)) throw new Error("XADD failed");
    published.inc(complete.length);
    const through = complete[complete.length - 1]!.index;
    const r = await o.replica.submit({
      type: "markEventsPublished",
      requestId: `events-published:${through}`,
      ts: Date.now(),
      throughIndex: through,
    });
    if (!r.ok) throw new Error(`markEventsPublished refused: ${r.code}`);
  };

  const timer = setInterval(() => {
    if (stopped || running) return;
    running = round()
      .catch((err: unknown) => {
        // Redis away, or leadership lost mid-round: the next leader or round publishes again.
        o.log.debug({ err: (err as Error).message }, "low-stock relay round failed");
      })
      .finally(() => {
        running = undefined;
      });
  }, o.intervalMs);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
    },
  };
}
