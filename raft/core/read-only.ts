// Owns the leader's pending ReadIndex requests (§6.4), as etcd's read_only.go owns its readOnly
// queue: which reads wait, which heartbeat round confirms each, which rounds each voter answered,
// and when an unconfirmed read expires. It decides nothing about roles or the log: RaftCore tells
// it the commit index a read gets and delivers what it hands back. Pure, like the rest of the core.
//
// Heartbeats carry a leader-made round number, not the request's context: a round answers every
// read that arrived before it was sent, so reads arriving together share one round, and an answer
// to a round sent before a request arrived can never confirm it — even when a restarted requester
// reuses an old context (docs/raft.md, "Reads").

export interface PendingRead {
  context: string;
  from: string;
  /** The leader's commit index when the request arrived; -1 until it committed an entry of its term. */
  index: number;
  /** The heartbeat round that confirms it: the first round broadcast after it arrived. */
  round: number;
  /** Dropped unanswered at this leader tick. */
  expiresAt: number;
}

function key(from: string, context: string): string {
  return `${from}\n${context}`;
}

export class ReadOnly {
  /** Requests in arrival order, so rounds and expiry times never decrease along it. */
  private queue: PendingRead[] = [];
  /** The same requests keyed by requester and context. */
  private readonly byKey = new Map<string, PendingRead>();
  /** Last heartbeat round broadcast in this term. */
  private round = 0;
  /** A queued read still needs a round broadcast (the next Ready sends it). */
  private due = false;
  /** voter → highest round it answered in this term. */
  private readonly acked = new Map<string, number>();
  /** Ticks since this node last became leader (the expiry clock). */
  private ticks = 0;

  constructor(
    private readonly timeoutTicks: number,
    private readonly pendingMax: number,
  ) {}

  /** A new term or role: every pending read is dropped unanswered (its requester retries). */
  reset(): void {
    this.queue = [];
    this.byKey.clear();
    this.round = 0;
    this.due = false;
    this.acked.clear();
    this.ticks = 0;
  }

  /** Reads waiting for confirmation (status().readsPending). */
  get pending(): number {
    return this.byKey.size;
  }

  /** Some read waits: every periodic heartbeat is then a new round. */
  get waiting(): boolean {
    return this.queue.length > 0;
  }

  /** A read needs a round broadcast before anything else confirms it. */
  get roundDue(): boolean {
    return this.due;
  }

  /** Starts the next round; its number is the heartbeats' context. */
  nextRound(): string {
    this.due = false;
    this.round++;
    return String(this.round);
  }

  /**
   * Queues a read at `index` (-1: the commit index is not known yet). False when `pendingMax` reads
   * already wait (the caller fails a local read fast; a forwarded one is dropped).
   */
  add(context: string, from: string, index: number): boolean {
    const k = key(from, context);
    const old = this.byKey.get(k);
    if (old) {
      // The same requester reusing a context (say, a restarted process counting from 0 again) is
      // making a new request: it gets a new index and a new round; the old one is not answered.
      this.queue.splice(this.queue.indexOf(old), 1);
      this.byKey.delete(k);
    } else if (this.byKey.size >= this.pendingMax) {
      return false;
    }
    const known = index >= 0;
    const r: PendingRead = {
      context,
      from,
      index,
      round: known ? this.round + 1 : 0,
      expiresAt: this.ticks + this.timeoutTicks,
    };
    this.queue.push(r);
    this.byKey.set(k, r);
    if (known) this.due = true;
    return true;
  }

  /** The oldest read still waits for the leader to learn its commit index (a commit of its term). */
  get awaitingCommitIndex(): boolean {
    const first = this.queue[0];
    return first !== undefined && first.index < 0;
  }

  /** Every queued read, removed (a single voter, or the test-only bug: no round confirms them). */
  takeAll(): PendingRead[] {
    const all = this.queue;
    this.queue = [];
    this.byKey.clear();
    return all;
  }

  /** The commit index is known now: every waiting read reads at it, confirmed by the next round. */
  readAt(index: number): void {
    for (const r of this.queue) {
      r.index = index;
      r.round = this.round + 1;
    }
    this.due = true;
  }

  /**
   * `from` answered heartbeat round `context`. Returns the reads now confirmed, in arrival order,
   * removed from the queue: those whose round a quorum of `voters` answered (the leader `self`
   * answers every round it sent).
   */
  ack(context: string, from: string, voters: string[], self: string, quorum: number): PendingRead[] {
    const round = Number(context);
    if (!Number.isSafeInteger(round) || round <= 0 || round > this.round) return [];
    if (!voters.includes(from) || (this.acked.get(from) ?? 0) >= round) return [];
    this.acked.set(from, round);
    const rounds = voters.map((v) => (v === self ? this.round : (this.acked.get(v) ?? 0)));
    rounds.sort((a, b) => b - a);
    const confirmed = rounds[quorum - 1] ?? 0;
    let k = 0;
    while (k < this.queue.length) {
      const r = this.queue[k]!;
      if (r.index < 0 || r.round > confirmed) break;
      k++;
    }
    if (k === 0) return [];
    const done = this.queue.splice(0, k);
    for (const r of done) this.byKey.delete(key(r.from, r.context));
    return done;
  }

  /** One leader tick: reads unconfirmed for timeoutTicks are dropped (their requesters retry). */
  tick(): void {
    this.ticks++;
    let k = 0;
    while (k < this.queue.length && this.queue[k]!.expiresAt <= this.ticks) k++;
    if (k === 0) return;
    for (const r of this.queue.splice(0, k)) this.byKey.delete(key(r.from, r.context));
  }
}
