// Owns the real-node simulator's invariants, checked as the run goes: election safety (one leader
// per term), state-machine safety (the same command at an index on every replica, and the same
// state at a snapshot's index), monotonic commit within a process life, linearizable reads (a
// ReadIndex answer covers every write acknowledged before the read began, and the value read there
// is one committed at its index, no older than any write to its key acknowledged before the read
// began), durability (every
// acknowledged write is the command at its index), and that no replica stopped on a broken
// invariant of its own. The first violation wins; the run stops there.

export interface Ack {
  client: string;
  seq: number;
  index: number;
  text: string;
  startMs: number;
  endMs: number;
}

export class NodeChecker {
  violation: string | undefined;
  readonly applied = new Map<number, { text: string; by: string }>();
  private readonly states = new Map<number, { text: string; by: string }>();
  private readonly leaders = new Map<number, string>();
  readonly acks: Ack[] = [];
  /** Highest index acknowledged so far, and when: what a read that starts later must cover. */
  private ackedTop = { index: 0, atMs: -1 };
  /** Highest index a finished read answered: a read that starts later must not answer lower. */
  private readTop = 0;
  /** Per register, the highest index of an acknowledged write to it. */
  private readonly ackedByKey = new Map<string, number>();
  /** Per register, the highest write index a finished read of it returned. */
  private readonly readByKey = new Map<string, number>();
  reads = 0;
  leaderChanges = 0;

  fail(message: string): void {
    if (this.violation === undefined) this.violation = message;
  }

  onApply(node: string, index: number, text: string): void {
    const seen = this.applied.get(index);
    if (seen === undefined) this.applied.set(index, { text, by: node });
    else if (seen.text !== text) {
      this.fail(`state machine safety: ${node} applied ${text} at ${index}, ${seen.by} applied ${seen.text}`);
    }
  }

  onState(node: string, index: number, text: string, what: "snapshot" | "restore"): void {
    const seen = this.states.get(index);
    if (seen === undefined) this.states.set(index, { text, by: node });
    else if (seen.text !== text) {
      this.fail(`snapshot contents differ at ${index}: ${node}'s ${what} vs ${seen.by}'s`);
    }
  }

  onLeader(node: string, term: number): void {
    this.leaderChanges++;
    const seen = this.leaders.get(term);
    if (seen === undefined) this.leaders.set(term, node);
    else if (seen !== node) this.fail(`election safety: ${seen} and ${node} both led term ${term}`);
  }

  onAck(a: Ack): void {
    this.acks.push(a);
    const seen = this.applied.get(a.index);
    if (seen === undefined || seen.text !== a.text) {
      this.fail(
        `acknowledged ${a.text} at ${a.index}, but ${seen ? `${seen.text} was applied there` : "nothing was"}`,
      );
    }
    if (a.index > this.ackedTop.index) this.ackedTop = { index: a.index, atMs: a.endMs };
    const k = (JSON.parse(a.text) as { k: string }).k;
    if (a.index > (this.ackedByKey.get(k) ?? 0)) this.ackedByKey.set(k, a.index);
  }

  /**
   * Call when a read of register `k` begins: the write it must see, or a later one — every write
   * to `k` acknowledged before, and every one a read of `k` that finished before returned.
   */
  keyFloor(k: string): number {
    return Math.max(this.ackedByKey.get(k) ?? 0, this.readByKey.get(k) ?? 0);
  }

  /**
   * A read of `k` at a replica that answered ReadIndex: its value must be the one the committed
   * command at its index wrote, and no older than `floor` (an acknowledged write to `k` before the
   * read began). Catches what the index check cannot: a replica whose state lags its applied index.
   */
  onReadValue(node: string, k: string, floor: number, got: { v: string; index: number } | undefined): void {
    const at = got?.index ?? 0;
    if (at < floor) {
      this.fail(
        `stale read by value: ${node} answered ${k} as written at ${at}, but the write at ${floor} was acknowledged or read before the read began`,
      );
      return;
    }
    if (at > (this.readByKey.get(k) ?? 0)) this.readByKey.set(k, at);
    if (got === undefined) return;
    const entry = this.applied.get(got.index);
    const cmd = entry ? (JSON.parse(entry.text) as { k: string; v: string }) : undefined;
    if (cmd?.k !== k || cmd.v !== got.v)
      this.fail(
        `read by value: ${node} answered ${k}=${got.v} as written at ${got.index}, where ${entry?.text ?? "nothing"} was applied`,
      );
  }

  /** Call when a read begins: the index it must cover (every acknowledged write, every finished read). */
  readFloor(): number {
    return Math.max(this.ackedTop.index, this.readTop);
  }

  /** A read finished with `index`. */
  readDone(index: number): void {
    if (index > this.readTop) this.readTop = index;
  }

  onRead(node: string, floor: number, index: number, appliedThere: number): void {
    this.reads++;
    if (index < floor) {
      this.fail(
        `stale read: ${node} answered ReadIndex ${index}, but ${floor} was acknowledged or read before the read began`,
      );
    }
    if (appliedThere < index)
      this.fail(`read served at ${node} before it applied ${index} (applied ${appliedThere})`);
  }

  /**
   * At the end, on a converged replica: every acknowledged write is in its state (the first
   * application recorded per index alone would miss a write lost on every replica).
   */
  checkFinalState(node: string, doneSeq: (client: string) => number): void {
    for (const a of this.acks) {
      if (doneSeq(a.client) < a.seq) {
        this.fail(`acknowledged write lost: ${a.text} (index ${a.index}) is not in ${node}'s final state`);
        return;
      }
    }
  }

  /** Durability at the end: every acknowledged write is still the command at its index. */
  checkAcks(): void {
    for (const a of this.acks) {
      const seen = this.applied.get(a.index);
      if (!seen || seen.text !== a.text) this.fail(`acknowledged write lost: ${a.text} at ${a.index}`);
    }
  }
}
