// Owns the leader's view of each follower (etcd raft tracker/progress.go): what it has (match), what
// to send next (next), and how to send — probe (one append at a time until the logs match),
// replicate (pipelined, at most inflightMessagesMax appends unacknowledged) or snapshot (a snapshot
// is being streamed in chunks, one chunk in flight at a time; appends pause until it lands).
import { assert } from "./assert.ts";
import type { ProgressState, Snapshot } from "./types.ts";

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = "probe";
  /** Probe: an append is outstanding; cleared by a heartbeat response so a lost probe is retried. */
  probeSent = false;
  /** Heard from since the last CheckQuorum round (or ever, for snapshot decisions). */
  recentActive = false;
  /** Last index of each unacknowledged append, oldest first (replicate state). */
  inflights: number[] = [];
  /** Snapshot being streamed: what, and the offset of the one chunk in flight. */
  pendingSnapshot: Snapshot | undefined;
  snapshotOffset = 0;
  /** Ticks since that chunk was sent: it is sent again only when this reaches the timeout. */
  snapshotIdleTicks = 0;
  /** The chunk in flight was sent more than once (its answer then says nothing about the round trip). */
  snapshotResent = false;
  /** Ticks the last chunk sent only once took to be answered (Karn's rule): the timeout follows it. */
  snapshotRttTicks = 0;

  constructor(
    next: number,
    public learner: boolean,
    private readonly inflightMessagesMax: number,
  ) {
    this.next = next;
  }

  private reset(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.inflights = [];
    this.pendingSnapshot = undefined;
    this.snapshotOffset = 0;
    this.snapshotIdleTicks = 0;
    this.snapshotResent = false;
  }

  becomeProbe(): void {
    // After a snapshot the follower has at least the snapshot; resume right after it.
    const snapIndex = this.pendingSnapshot?.meta.index ?? 0;
    this.reset("probe");
    this.next = Math.max(this.match + 1, snapIndex + 1);
  }

  becomeReplicate(): void {
    this.reset("replicate");
    this.next = this.match + 1;
  }

  becomeSnapshot(s: Snapshot): void {
    this.reset("snapshot");
    this.pendingSnapshot = s;
  }

  /** Acknowledged up to `n`; false when the ack is stale. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /** Replicate state: `last` was sent; assume it will arrive (pipelining). */
  optimisticUpdate(last: number): void {
    this.next = last + 1;
    this.inflights.push(last);
    assert(this.inflights.length <= this.inflightMessagesMax, "inflight window overflow");
  }

  /**
   * The follower rejected an append at `rejected`; `matchHint` is where logs may match. False when
   * the rejection is stale (answers an append we have since moved past).
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  freeInflightsTo(index: number): void {
    let k = 0;
    while (k < this.inflights.length && this.inflights[k]! <= index) k++;
    if (k > 0) this.inflights = this.inflights.slice(k);
  }

  inflightsFull(): boolean {
    return this.inflights.length >= this.inflightMessagesMax;
  }

  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflightsFull();
      case "snapshot":
        return true;
    }
  }
}
