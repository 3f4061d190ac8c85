// Owns the in-memory twin of the disk under the Raft log: a KvStore that behaves as LevelDB on a
// real disk does when the power goes. Writes are visible at once; a write with sync (and every
// write before it, as LevelDB's write-ahead log is one file) is durable once its fsync completes.
// crash() keeps what was durable plus a random prefix of the writes since (the page cache may have
// flushed some of them, in order); the first write it drops is the torn one, and everything after
// it goes too — LevelDB checksums each log record and stops replay at the first bad one, so a
// batch survives whole or not at all. Without a scheduler every operation completes at once and is
// durable (unit tests); with one, operations complete in order after simulated latencies.
import type { Scheduler } from "../node/scheduler.ts";
import { inRange, type KvOp, type KvRange, type KvStore } from "./kv.ts";

/** Keys per delete batch of a range clear. */
const clearChunkKeys = 8;

export interface DiskLatency {
  /** Milliseconds for a write without sync (into the page cache). */
  writeMs: number;
  /** Milliseconds for an fsync, drawn uniformly from [min, max]. */
  syncMsMin: number;
  syncMsMax: number;
}

export interface DiskStats {
  syncs: number;
  crashes: number;
  /** Batches written but not synced that a crash threw away. */
  lostBatches: number;
}

export class MemoryDisk {
  private durable = new Map<string, Uint8Array>();
  /** Batches since the last completed fsync, in write order (what a crash may lose). */
  private unsynced: { seq: number; ops: KvOp[] }[] = [];
  private seq = 0;
  private view = new Map<string, Uint8Array>();
  /** When the device is next free: operations complete in the order they were issued. */
  private busyUntil = 0;
  /**
   * Bumped by crash(): a handle of an earlier process life does nothing and never completes (a
   * continuation of the dead process that was already queued must not write into the next life).
   */
  private generation = 0;
  readonly stats: DiskStats = { syncs: 0, crashes: 0, lostBatches: 0 };

  constructor(private readonly latency: DiskLatency = { writeMs: 0.05, syncMsMin: 0.5, syncMsMax: 3 }) {}

  /**
   * A handle for one process's life. Operations complete on `clock` (which a crash stops, so what
   * was in flight never completes for the dead process); without one, at once.
   */
  open(clock?: Scheduler): KvStore {
    const generation = this.generation;
    const complete = (syncs: boolean, batch: KvOp[] | undefined): Promise<void> => {
      if (generation !== this.generation) return new Promise<void>(() => undefined);
      if (batch) {
        this.unsynced.push({ seq: ++this.seq, ops: batch });
        for (const op of batch) {
          if (op.type === "put") this.view.set(op.key, op.value);
          else this.view.delete(op.key);
        }
      }
      const upTo = this.seq;
      const land = () => {
        if (syncs) {
          this.stats.syncs++;
          this.makeDurable(upTo);
        }
      };
      if (!clock) {
        this.makeDurable(upTo);
        return Promise.resolve();
      }
      const now = clock.now();
      const cost = syncs
        ? this.latency.syncMsMin + clock.random() * (this.latency.syncMsMax - this.latency.syncMsMin)
        : this.latency.writeMs;
      this.busyUntil = Math.max(now, this.busyUntil) + cost;
      return new Promise((resolve) =>
        clock.after(this.busyUntil - now, () => {
          if (generation !== this.generation) return;
          land();
          resolve();
        }),
      );
    };
    const sorted = (range: KvRange) =>
      [...this.view.keys()].filter((k) => inRange(k, range)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return {
      get: async (key) => {
        await complete(false, undefined);
        return this.view.get(key);
      },
      entries: async (range) => {
        await complete(false, undefined);
        return sorted(range).map((k) => [k, this.view.get(k)!] as [string, Uint8Array]);
      },
      keys: async (range) => {
        await complete(false, undefined);
        return sorted(range);
      },
      batch: (ops, o) =>
        complete(
          o.sync,
          ops.map((op) => ({ ...op })),
        ),
      put: (key, value, o) => complete(o.sync, [{ type: "put", key, value }]),
      // A range delete is not one atomic batch in LevelDB (classic-level deletes in chunks): a crash
      // may keep some chunks of it and not others.
      clear: async (range) => {
        const keys = sorted(range);
        if (keys.length === 0) return complete(false, []);
        for (let i = 0; i < keys.length; i += clearChunkKeys) {
          await complete(
            false,
            keys.slice(i, i + clearChunkKeys).map((key) => ({ type: "del", key }) as KvOp),
          );
        }
      },
      close: () => complete(false, undefined),
    };
  }

  /** The power went: keeps the durable state and a random prefix (by `random`) of what came after. */
  crash(random: () => number): void {
    this.stats.crashes++;
    this.generation++;
    const kept = Math.floor(random() * (this.unsynced.length + 1));
    if (kept > 0) this.makeDurable(this.unsynced[kept - 1]!.seq);
    this.stats.lostBatches += this.unsynced.length;
    this.unsynced = [];
    this.view = new Map(this.durable);
    this.busyUntil = 0;
  }

  /** Keys on the durable medium (tests). */
  durableKeys(): string[] {
    return [...this.durable.keys()].sort();
  }

  /** Every batch up to sequence number `seq` reaches the medium. */
  private makeDurable(seq: number): void {
    while (this.unsynced.length > 0 && this.unsynced[0]!.seq <= seq) {
      for (const op of this.unsynced.shift()!.ops) {
        if (op.type === "put") this.durable.set(op.key, op.value);
        else this.durable.delete(op.key);
      }
    }
  }
}
