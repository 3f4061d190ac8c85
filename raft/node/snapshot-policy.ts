// Owns when RaftNode snapshots and what happens around a save: a snapshot is due after
// snapshotEveryEntries entries or snapshotEveryBytes bytes applied since the last; the state
// machine is serialized on the loop, between rounds (it must match the applied index), but the save
// to the snapshot store (PostgreSQL) runs in the background — awaiting it inside the loop stopped
// heartbeats long enough, with a large state, for followers to start an election. The log is
// compacted only once the snapshot is durable, and keeps a catch-up tail behind it. A failed save
// is retried after a backoff; while saves keep failing the log cannot shrink, so past a bound
// proposals are refused (overdue()). A snapshot from the leader must be saved before the log is
// reset to it (saveInstalled()).
import type { RaftCore } from "../core/raft.ts";
import type { Snapshot } from "../core/types.ts";
import type { ResolvedNodeOptions } from "./options.ts";
import type { Scheduler, Timer } from "./scheduler.ts";
import type { NodeStorage } from "./storage.ts";

/** A failed snapshot save is retried after this long, doubling on each failure up to the max. */
export const snapshotRetryMinMs = 200;
export const snapshotRetryMaxMs = 5_000;

export interface SnapshotHost {
  readonly id: string;
  readonly o: ResolvedNodeOptions;
  readonly clock: Scheduler;
  readonly stats: { snapshotsTaken: number; snapshotSaveFailures: number };
  core(): RaftCore;
  storage(): NodeStorage | undefined;
  /** The index the state machine reflects. */
  applied(): number;
  stopped(): boolean;
  /** Runs `fn` on the node's loop, between Ready rounds. */
  enqueue(fn: () => void): void;
  /** A failed disk: stop the replica. */
  fatal(err: unknown): void;
}

export class SnapshotPolicy {
  private snapshotting = false;
  /** Bytes of entry data applied since the last snapshot that was saved or installed. */
  private appliedBytes = 0;
  /** Wait before the next save after a failure (0: the last save succeeded). */
  private retryMs = 0;
  /** Set while waiting out retryMs: no save starts before it fires. */
  private retryTimer: Timer | undefined;
  /** Ends the backoff wait of a snapshot install whose save failed (stop() calls it). */
  private wakeInstallWait: (() => void) | undefined;

  constructor(private readonly host: SnapshotHost) {}

  /** An entry of `bytes` data bytes was applied. */
  noteApplied(bytes: number): void {
    this.appliedBytes += bytes;
  }

  /** A snapshot from the leader was installed: the state machine is that snapshot now. */
  noteInstalled(): void {
    this.appliedBytes = 0;
  }

  /** The node stops: no retry starts, and an install waiting out its backoff gives up now. */
  stop(): void {
    this.retryTimer?.cancel();
    this.wakeInstallWait?.();
  }

  /**
   * Takes a snapshot once enough was applied since the last (after every Ready round). At most one
   * serialized snapshot is held (the one being saved); after a failed save no round serializes the
   * state again until the backoff timer fires, which retries even when no more entries arrive. The
   * counters that make a snapshot due are cleared only by a save that succeeded.
   */
  maybeSnapshot(): void {
    const h = this.host;
    const o = h.o;
    if (this.snapshotting || this.retryTimer || h.stopped()) return;
    const storage = h.storage()!;
    const applied = h.applied();
    const snap = storage.snapshot();
    if (applied - snap.meta.index < o.snapshotEveryEntries && this.appliedBytes < o.snapshotEveryBytes) {
      return;
    }
    if (applied === snap.meta.index) return;
    const bytesCovered = this.appliedBytes;
    const meta = h.core().snapshotMeta(applied);
    const s: Snapshot = { meta, data: o.fsm.snapshot() };
    this.snapshotting = true;
    if (o.testOnlyBugs?.compactBeforeSnapshotSaved) {
      const log = storage.log;
      if (meta.index > log.compactedTo.index) {
        log.compact({ index: meta.index, term: meta.term }).catch((err: unknown) => h.fatal(err));
      }
    }
    o.snapshots.save(s).then(
      () =>
        h.enqueue(() => {
          this.snapshotting = false;
          this.retryMs = 0;
          // A snapshot installed from the leader meanwhile may already be newer.
          if (s.meta.index <= storage.snapshot().meta.index) return;
          // Bytes applied while the save ran still count toward the next snapshot.
          this.appliedBytes = Math.max(0, this.appliedBytes - bytesCovered);
          storage.setSnapshot(s);
          const log = storage.log;
          let keepFrom = Math.max(log.compactedTo.index, meta.index - o.snapshotCatchUpEntries);
          // The kept tail is bounded in bytes too: entries carrying large batches must not hold
          // hundreds of megabytes in the log's memory for the sake of a count.
          const tail = log.slice(keepFrom + 1, meta.index + 1);
          let bytes = 0;
          for (let i = tail.length - 1; i >= 0; i--) {
            bytes += tail[i]!.data.byteLength;
            if (bytes > o.snapshotCatchUpBytes) {
              keepFrom = tail[i]!.index;
              break;
            }
          }
          const term = log.term(keepFrom);
          if (keepFrom > log.compactedTo.index && term !== undefined) {
            log.compact({ index: keepFrom, term }).catch((err: unknown) => h.fatal(err));
          }
          h.stats.snapshotsTaken++;
          o.log.info(
            { raft: h.id, index: meta.index, bytes: s.data.byteLength, compactedTo: keepFrom },
            "snapshot taken",
          );
        }),
      (err: unknown) => {
        this.snapshotting = false;
        if (h.stopped()) return;
        // Not fatal: the log still holds everything. Wait, then try again with a fresh snapshot.
        this.retryMs = Math.min(snapshotRetryMaxMs, Math.max(snapshotRetryMinMs, this.retryMs * 2));
        h.stats.snapshotSaveFailures++;
        o.log.warn(
          { raft: h.id, index: meta.index, retryInMs: this.retryMs, err: errorText(err) },
          "snapshot save failed",
        );
        this.retryTimer = h.clock.after(this.retryMs, () => {
          this.retryTimer = undefined;
          h.enqueue(() => this.maybeSnapshot());
        });
      },
    );
  }

  /** Saves were failing for so long that the log must not grow further in memory. */
  overdue(): boolean {
    const h = this.host;
    const storage = h.storage();
    if (!storage) return false;
    return (
      this.appliedBytes >= h.o.unsnapshottedBytesMax ||
      h.applied() - storage.snapshot().meta.index >= h.o.unsnapshottedEntriesMax
    );
  }

  /**
   * A snapshot from the leader must be durable before the log is reset to it. If the store is down
   * the loop waits here, retrying with the same backoff as background saves: the follower stops
   * answering meanwhile (the leader resends), which is better than exiting over an outage.
   */
  async saveInstalled(s: Snapshot): Promise<void> {
    const h = this.host;
    for (let waitMs = snapshotRetryMinMs; ; waitMs = Math.min(snapshotRetryMaxMs, waitMs * 2)) {
      try {
        await h.o.snapshots.save(s);
        return;
      } catch (err) {
        if (h.stopped()) throw err;
        h.stats.snapshotSaveFailures++;
        h.o.log.warn(
          { raft: h.id, index: s.meta.index, retryInMs: waitMs, err: errorText(err) },
          "snapshot save failed",
        );
        await new Promise<void>((resolve) => {
          const t = h.clock.after(waitMs, resolve);
          // stop() must not wait out the backoff.
          this.wakeInstallWait = () => {
            t.cancel();
            resolve();
          };
        });
        this.wakeInstallWait = undefined;
        if (h.stopped()) throw err;
      }
    }
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
