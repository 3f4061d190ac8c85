// Owns the callers RaftNode keeps waiting: proposals (and conf changes) waiting for their entry to
// be applied here, and ReadIndex reads waiting for the leader's confirmation and then for this
// replica to apply up to the read index. Each has a timer; each is settled exactly once — resolved
// when its outcome is known here, rejected with OUTCOME_UNKNOWN when it is not (timeout, the entry
// replaced by another leader, leadership lost), or with the error that stopped the node.
import { NodeError } from "./errors.ts";
import type { Scheduler, Timer } from "./scheduler.ts";

interface EntryWaiter {
  term: number;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  timer: Timer;
}

interface ReadWaiter {
  /** The confirmed read index; -1 until the leader confirmed it. */
  index: number;
  resolve: (index: number) => void;
  reject: (e: unknown) => void;
  timer: Timer;
}

export class Waiters {
  /** log index → the proposal appended there. */
  private readonly entries = new Map<number, EntryWaiter>();
  /** read context → the read. */
  private readonly reads = new Map<string, ReadWaiter>();

  constructor(
    private readonly clock: Scheduler,
    private readonly timeoutMs: number,
    /** The leader as this replica knows it now (named in the errors, so callers retry there). */
    private readonly leader: () => string,
  ) {}

  /** Proposals waiting to be applied. */
  get entryCount(): number {
    return this.entries.size;
  }

  /** Reads waiting. */
  get readCount(): number {
    return this.reads.size;
  }

  /** A proposal appended at `index` in `term`: settled when that index is applied here. */
  addEntry(index: number, term: number, resolve: (v: unknown) => void, reject: (e: unknown) => void): void {
    const timer = this.clock.after(this.timeoutMs, () => {
      if (this.entries.get(index)?.reject === reject) this.entries.delete(index);
      reject(new NodeError("OUTCOME_UNKNOWN", `not applied within ${this.timeoutMs} ms`));
    });
    this.entries.set(index, { term, resolve, reject, timer });
  }

  /** A read the core accepted under `context`: waits for its ReadState, then for the apply. */
  addRead(context: string, resolve: (index: number) => void, reject: (e: unknown) => void): void {
    const timer = this.clock.after(this.timeoutMs, () => {
      this.reads.delete(context);
      reject(new NodeError("OUTCOME_UNKNOWN", "leadership not confirmed in time", this.leader()));
    });
    this.reads.set(context, { index: -1, resolve, reject, timer });
  }

  /** Entry `index` of `term` was applied with `result`. */
  applied(index: number, term: number, result: unknown): void {
    const w = this.entries.get(index);
    if (w) this.settle(index, w, result, w.term !== term);
  }

  /** A snapshot up to `index` was installed: proposals at or below it were decided elsewhere. */
  snapshotInstalled(index: number): void {
    for (const [i, w] of this.entries) {
      if (i <= index) this.settle(i, w, undefined, true);
    }
  }

  /** The leader confirmed read `context` at `index` (a ReadState). */
  readConfirmed(context: string, index: number): void {
    const w = this.reads.get(context);
    if (w) w.index = index;
  }

  /** Resolves every confirmed read whose index this replica has applied. */
  serveReads(appliedIndex: number): void {
    for (const [ctx, r] of this.reads) {
      if (r.index >= 0 && r.index <= appliedIndex) {
        this.reads.delete(ctx);
        r.timer.cancel();
        r.resolve(r.index);
      }
    }
  }

  /**
   * This replica stopped leading: its pending proposals may or may not commit under the next
   * leader, and its reads were not confirmed — let callers retry.
   */
  leadershipLost(leader: string): void {
    for (const [index, w] of this.entries) this.settle(index, w, undefined, true);
    for (const [ctx, r] of this.reads) {
      this.reads.delete(ctx);
      r.timer.cancel();
      r.reject(new NodeError("NOT_LEADER", "leadership lost before the read was confirmed", leader));
    }
  }

  /** The node stopped: everyone waiting gets `err`. */
  failAll(err: NodeError): void {
    for (const [index, w] of this.entries) {
      this.entries.delete(index);
      w.timer.cancel();
      w.reject(err);
    }
    for (const [ctx, r] of this.reads) {
      this.reads.delete(ctx);
      r.timer.cancel();
      r.reject(err);
    }
  }

  private settle(index: number, w: EntryWaiter, result: unknown, unknown_: boolean): void {
    this.entries.delete(index);
    w.timer.cancel();
    if (unknown_) {
      // Our entry was overwritten by another leader's: the command may still have been applied
      // under another index (a retry of it, say), so only the caller's retry can tell.
      w.reject(new NodeError("OUTCOME_UNKNOWN", "entry replaced by another leader", this.leader()));
    } else {
      w.resolve(result);
    }
  }
}
