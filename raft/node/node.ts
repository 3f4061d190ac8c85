// Owns the runtime of one Raft replica: it drives the pure core (raft/core) with a real clock, the
// LevelDB log, a snapshot store and a transport, through the same contract the simulator uses —
// persist (snapshot, entries, hard state) → send → apply → advance. Every core call happens on one
// serialized loop between Ready rounds; messages, ticks and proposals that arrive while a Ready is
// being persisted wait in a bounded inbox and go into the next round, so one fsync covers them all.
import { RaftCore } from "../core/raft.ts";
import {
  type ConfChange,
  type ConfState,
  copyConf,
  decodeConfState,
  type Entry,
  EntryType,
  type Message,
  RaftError,
  type Ready,
  type Snapshot,
  type Status,
} from "../core/types.ts";
import { LevelLog } from "../storage/level-log.ts";
import type { LogStore } from "../storage/log-store.ts";
import { isMessage, messageProblem } from "../transport/message-check.ts";
import { type Envelope, type Refusal, ReplicaIdentity } from "./identity.ts";
import { nodeScheduler, type Scheduler, type Timer } from "./scheduler.ts";
import { NodeStorage } from "./storage.ts";

export { isMessage };

/** The application's deterministic state machine. */
export interface StateMachine {
  /** Applies a committed entry; the value is handed to the proposer. Same input, same state, on every replica. */
  apply(index: number, data: Uint8Array): unknown;
  snapshot(): Uint8Array;
  restore(data: Uint8Array, index: number): void;
}

/** Where snapshots live (PostgreSQL in production: raft/storage/pg-snapshots.ts). */
export interface SnapshotStore {
  save(s: Snapshot): Promise<void>;
  latest(): Promise<Snapshot | undefined>;
}

export interface Transport {
  send(to: string, message: Message): void;
  /** Sends our envelope to `to` (with queued messages, or alone); `ask`: it should answer with its own. */
  hello(to: string, ask: boolean): void;
}

export interface NodeLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export type NodeErrorCode =
  | "NOT_LEADER"
  /** The command may or may not have been applied (leadership lost, timeout): retry with the same request id. */
  | "OUTCOME_UNKNOWN"
  | "OVERLOADED"
  | "STOPPED";

export class NodeError extends Error {
  override readonly name = "NodeError";
  constructor(
    readonly code: NodeErrorCode,
    message: string,
    readonly leaderId = "",
  ) {
    super(message);
  }
}

/**
 * Bugs planted on purpose (failpoints), so a chaos harness can prove it catches each one. The
 * application names and documents them (MediSync: src/shared/failpoints.ts); all off by default.
 */
export interface RaftFailpoints {
  /** The leader counts itself as a majority when it advances the commit index. */
  commitWithoutQuorum?: boolean;
  /**
   * The leader applies and acknowledges its own entries once they are in its own log, before
   * commit, and replicates them only every few heartbeat ticks (a primary with asynchronous replication).
   */
  ackBeforeCommit?: boolean;
}

/**
 * Bugs in the node's own rules, planted for the real-node simulator (raft/sim/node) to prove it
 * catches each; never set outside tests.
 */
export interface NodeTestOnlyBugs {
  /** The leader goes on (stepping answers, committing, applying) without waiting for its own write. */
  leaderCountsUndurable?: boolean;
  /** Every message leaves before this Ready's write is durable, votes and acknowledgements included. */
  ackBeforeDurable?: boolean;
  /** The log is compacted when a snapshot is taken, before the snapshot store has it. */
  compactBeforeSnapshotSaved?: boolean;
  /** Passed to the core (raft/core/raft.ts TestOnlyBugs). */
  readBeforeTermCommit?: boolean;
}

export interface RaftNodeOptions {
  id: string;
  /** Every replica of one cluster has the same; batches from another cluster are refused. */
  clusterId?: string;
  /** Initial voters (used only when there is no snapshot yet); later configurations come from the log. */
  voters: string[];
  dataDir: string;
  snapshots: SnapshotStore;
  /** Set by start(): the transport needs the node to deliver into, the node the transport to send. */
  transport?: Transport;
  fsm: StateMachine;
  log: NodeLogger;
  tickMs?: number;
  electionTicks?: number;
  heartbeatTicks?: number;
  snapshotEveryEntries?: number;
  /** Also snapshot once this many bytes of entries were applied since the last (bounds the log's memory). */
  snapshotEveryBytes?: number;
  /** Entries kept behind a snapshot so a briefly lagging follower catches up by log, not by snapshot. */
  snapshotCatchUpEntries?: number;
  /** ...and at most this many bytes of them. */
  snapshotCatchUpBytes?: number;
  /**
   * While snapshots cannot be saved (PostgreSQL down) the log cannot be compacted and grows in
   * memory: past this many bytes of entries applied since the last snapshot, proposals are refused
   * (OVERLOADED, the caller retries) until a save succeeds.
   */
  unsnapshottedBytesMax?: number;
  /** ...or this many entries. */
  unsnapshottedEntriesMax?: number;
  proposalTimeoutMs?: number;
  pendingProposalsMax?: number;
  inboxMessagesMax?: number;
  /** Bytes of peer messages waiting in the inbox (entry and snapshot data plus a per-message allowance). */
  inboxBytesMax?: number;
  /** Election jitter; defaults to the scheduler's. */
  random?: () => number;
  /** Timers, clock and randomness: Node's own unless a simulator drives the node in virtual time. */
  scheduler?: Scheduler;
  /** Opens the durable log; defaults to LevelDB in dataDir. */
  openLog?: () => Promise<LogStore>;
  /** Called on leader or term changes (the replica publishes its Redis hint from here). */
  onLeaderChange?: (leaderId: string, term: number, isSelf: boolean) => void;
  /**
   * The configuration changed here (a conf entry or a snapshot was applied), and once at start:
   * the server points its transport at the members' replicated addresses.
   */
  onConfChange?: (conf: ConfState) => void;
  /** A broken invariant: the default throws from the loop, which crashes the process — loudly. */
  onFatal?: (err: unknown) => void;
  failpoints?: RaftFailpoints;
  testOnlyBugs?: NodeTestOnlyBugs;
}

const defaults = {
  clusterId: "raft",
  tickMs: 50,
  electionTicks: 6,
  heartbeatTicks: 1,
  snapshotEveryEntries: 20_000,
  snapshotEveryBytes: 64 * 1024 * 1024,
  snapshotCatchUpEntries: 5_000,
  snapshotCatchUpBytes: 32 * 1024 * 1024,
  unsnapshottedBytesMax: 256 * 1024 * 1024,
  unsnapshottedEntriesMax: 1_000_000,
  proposalTimeoutMs: 5_000,
  pendingProposalsMax: 20_000,
  inboxMessagesMax: 100_000,
  inboxBytesMax: 64 * 1024 * 1024,
};

/** A failed snapshot save is retried after this long, doubling on each failure up to the max. */
export const snapshotRetryMinMs = 200;
export const snapshotRetryMaxMs = 5_000;

/** What a message costs in the inbox beyond its payload bytes (fields, object headers). */
const messageOverheadBytes = 256;
/** At most one log line per this many ms about malformed messages (a flood must not flood the log). */
const malformedLogEveryMs = 1_000;

/** Bytes a message holds in memory, for the inbox bound: its payloads plus a fixed allowance. */
export function messageBytes(m: Message): number {
  let n = messageOverheadBytes + (m.data?.byteLength ?? 0);
  for (const e of m.entries) n += e.data.byteLength + 32;
  return n;
}

interface Waiter {
  term: number;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  timer: Timer;
}

interface ReadWaiter {
  index: number;
  resolve: (index: number) => void;
  reject: (e: unknown) => void;
  timer: Timer;
}

export class RaftNode {
  readonly id: string;
  private readonly o: RaftNodeOptions & typeof defaults;
  private core!: RaftCore;
  private storage!: NodeStorage;
  private identity!: ReplicaIdentity;
  private inbox: (() => void)[] = [];
  private inboxMessages = 0;
  private inboxBytes = 0;
  /** When the last malformed/refused warning was written (never yet: the first is always written). */
  private malformedLoggedAt = Number.NEGATIVE_INFINITY;
  private malformedUnlogged = 0;
  private pumping = false;
  private stopped = false;
  private ticker: Timer | undefined;
  private readonly waiters = new Map<number, Waiter>();
  private readonly reads = new Map<string, ReadWaiter>();
  /**
   * Read contexts are `id/incarnation/seq`: the random incarnation makes them unique across
   * restarts, so an answer the leader sent to a previous process (or a request it still holds
   * from one) can never be taken for an answer to this process's read.
   */
  private readonly readIncarnation: string;
  private readSeq = 0;
  private appliedIndex = 0;
  /** Failpoint ack-before-commit, read once. */
  private readonly ackBeforeCommit: boolean;
  private readonly clock: Scheduler;
  private lastLeader = "";
  private lastTerm = 0;
  private idle: (() => void)[] = [];
  /** The leader our transport saw go away (connection refused or reset), until we hear from it again. */
  private suspect: string | undefined;
  private snapshotting = false;
  /** Bytes of entry data applied since the last snapshot that was saved or installed. */
  private appliedBytesSinceSnapshot = 0;
  /** Wait before the next save after a failure (0: the last save succeeded). */
  private snapshotRetryMs = 0;
  /** Set while waiting out snapshotRetryMs: no save starts before it fires. */
  private snapshotRetryTimer: Timer | undefined;
  /** Ends the backoff wait of a snapshot install whose save failed (stop() calls it). */
  private wakeInstallWait: (() => void) | undefined;
  /** Proposals waiting for the loop; they enter the core together. */
  private proposals: { data: Uint8Array; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
  /** Counters for /metrics and tests. */
  readonly stats = {
    readies: 0,
    applied: 0,
    snapshotsTaken: 0,
    snapshotsInstalled: 0,
    snapshotSaveFailures: 0,
    droppedMessages: 0,
    /** Peer messages refused by the shape check or the step-time check (also in droppedMessages). */
    malformedMessages: 0,
    /** Batches refused by cluster id or incarnation (their messages are not in droppedMessages). */
    refusedBatches: 0,
    /** Entries persisted, and time spent persisting (fsync included), over all Ready rounds. */
    persistedEntries: 0,
    persistMs: 0,
    /** Time the loop spent on Ready rounds in all (persist, send, apply). */
    readyMs: 0,
    messagesSent: 0,
  };

  constructor(options: RaftNodeOptions) {
    this.id = options.id;
    this.o = { ...defaults, ...options } as RaftNodeOptions & typeof defaults;
    this.ackBeforeCommit = options.failpoints?.ackBeforeCommit === true;
    this.clock = options.scheduler ?? nodeScheduler;
    this.readIncarnation = this.clock.uuid();
  }

  /** Opens the log, restores the newest snapshot, and starts ticking. */
  async start(transport?: Transport): Promise<void> {
    if (transport) this.o.transport = transport;
    const log = await (this.o.openLog ? this.o.openLog() : LevelLog.open(this.o.dataDir));
    let snap = await this.o.snapshots.latest();
    this.identity = await ReplicaIdentity.load(log, {
      clusterId: this.o.clusterId,
      hadSnapshot: snap !== undefined,
      newIncarnation: () => this.clock.uuid(),
      events: {
        onLost: (reason) => this.enqueue(() => this.lost(reason)),
        onMember: () =>
          this.enqueue(() => {
            this.core.setMayVote(true);
            this.o.log.info(
              { raft: this.id, incarnation: this.identity.incarnation },
              "every other voter vouched for this new replica: it may vote",
            );
          }),
        onError: (err) => this.fatal(err),
      },
    });
    if (!snap) {
      snap = {
        meta: { index: 0, term: 0, voters: [...this.o.voters], learners: [] },
        data: new Uint8Array(0),
      };
    } else {
      // A crash between saving a snapshot and compacting the log: finish the job.
      const point = { index: snap.meta.index, term: snap.meta.term };
      if (point.index > log.compactedTo.index) {
        if (log.term(point.index) === point.term) await log.compact(point);
        else await log.reset(point);
      }
      if (log.hardState.commit < point.index) {
        // The snapshot's content is committed by definition; the hard state lagged behind it.
        await log.write({ hardState: { ...log.hardState, commit: point.index } });
      }
      this.o.fsm.restore(snap.data, snap.meta.index);
    }
    this.storage = new NodeStorage(log, snap);
    // A pristine log has no conf changes of its own: the snapshot's voters are the configuration.
    await this.identity.settleAlone(this.storage.initialState().confState.voters, this.id);
    this.appliedIndex = snap.meta.index;
    this.core = new RaftCore({
      id: this.id,
      storage: this.storage,
      electionTicks: this.o.electionTicks,
      heartbeatTicks: this.o.heartbeatTicks,
      random: this.o.random ?? (() => this.clock.random()),
      preVote: true,
      checkQuorum: true,
      applied: snap.meta.index,
      mayVote: this.identity.state === "member",
      testOnlyBugs: {
        commitWithoutQuorum: this.o.failpoints?.commitWithoutQuorum === true,
        replicateOnTickOnly: this.ackBeforeCommit,
        readBeforeTermCommit: this.o.testOnlyBugs?.readBeforeTermCommit === true,
      },
    });
    this.o.log.info(
      {
        raft: this.id,
        term: log.hardState.term,
        commit: log.hardState.commit,
        firstIndex: log.firstIndex(),
        lastIndex: log.lastIndex(),
        snapshotIndex: snap.meta.index,
        clusterId: this.identity.clusterId,
        incarnation: this.identity.incarnation,
        identity: this.identity.state,
      },
      "raft node started",
    );
    if (this.identity.state === "lost") this.lost("its log is empty but its snapshot store has a snapshot");
    this.o.onConfChange?.(this.core.status().conf);
    this.ticker = this.clock.every(this.o.tickMs, () =>
      this.enqueue(() => {
        this.core.tick();
        this.introduce();
      }),
    );
    // Proposals made while starting waited in the inbox.
    if (this.inbox.length > 0) this.enqueue(() => undefined);
  }

  /**
   * A batch from peer `from` (the transport's deliver callback): its envelope decides whether its
   * messages are stepped at all (cluster id, incarnations: raft/node/identity.ts).
   */
  receive(from: string, envelope: Envelope, messages: unknown[]): void {
    if (this.stopped || !this.core) {
      this.stats.droppedMessages += messages.length;
      return;
    }
    const refusal = this.identity.admit(from, envelope, () => this.core.status().conf, this.id);
    // An introduction is answered even when refused for its incarnation: the answer is how a
    // replica with a wiped disk learns who it was. Another cluster gets nothing.
    if (envelope.hello && refusal !== "cluster") this.o.transport?.hello(from, false);
    if (refusal) {
      this.refused(from, refusal, messages.length);
      return;
    }
    for (const m of messages) {
      if (m && typeof m === "object" && (m as Message).from !== from) this.malformed(m, "from");
      else this.deliver(m);
    }
  }

  /** Our envelope for a batch to `to` (the transport asks per batch). */
  envelope(to: string): Omit<Envelope, "hello"> {
    const e = this.identity?.envelope(to);
    return e ?? { clusterId: this.o.clusterId, fromIncarnation: "", toIncarnation: "" };
  }

  /** A joining replica introduces itself to every voter that has not vouched for it yet. */
  private introduce(): void {
    if (this.identity.state !== "joining") return;
    for (const v of this.identity.unvouched(this.core.status().conf.voters, this.id)) {
      this.o.transport?.hello(v, true);
    }
  }

  /** This replica lost its durable state: it must never vote again in this life. */
  private lost(reason: string): void {
    this.core.setMayVote(false);
    this.o.log.error(
      { raft: this.id, incarnation: this.identity.incarnation, reason },
      `replica ${this.id} lost its Raft log and will not vote; to recover, remove ${this.id} from the cluster, empty its data directory and snapshot database, add it back as a learner and promote it once caught up (docs/operations.md, "A replica's disk is lost")`,
    );
  }

  private refused(from: string, why: Refusal, messages: number): void {
    this.stats.refusedBatches++;
    if (why === "pending") return; // its first batch, while we record its incarnation
    const now = this.clock.now();
    if (now - this.malformedLoggedAt < malformedLogEveryMs) {
      this.malformedUnlogged++;
      return;
    }
    this.o.log.warn(
      { raft: this.id, from: from.slice(0, 64), why, messages, alsoDropped: this.malformedUnlogged },
      "raft batch refused",
    );
    this.malformedLoggedAt = now;
    this.malformedUnlogged = 0;
  }

  /** One message from a peer whose batch was admitted. */
  private deliver(m: unknown): void {
    // Before start() the core does not exist yet: peers' messages are dropped (Raft resends).
    if (this.stopped || !this.core) {
      this.stats.droppedMessages++;
      return;
    }
    const problem = messageProblem(m) ?? ((m as Message).to !== this.id ? "to" : undefined);
    if (problem) {
      this.malformed(m, problem);
      return;
    }
    const msg = m as Message;
    const bytes = messageBytes(msg);
    if (this.inboxMessages >= this.o.inboxMessagesMax || this.inboxBytes + bytes > this.o.inboxBytesMax) {
      this.stats.droppedMessages++; // Raft tolerates loss; memory must stay bounded.
      return;
    }
    this.inboxMessages++;
    this.inboxBytes += bytes;
    if (msg.from === this.suspect) this.suspect = undefined; // it is alive after all
    this.enqueue(() => {
      this.inboxMessages--;
      this.inboxBytes -= bytes;
      // Checked against the state it meets, not the state it arrived in.
      const late = this.stepProblem(msg);
      if (late) this.malformed(msg, late);
      else this.core.step(msg);
    });
  }

  /** Bytes of peer messages waiting in the inbox (tests, metrics). */
  get inboxBytesQueued(): number {
    return this.inboxBytes;
  }

  /**
   * What a well-formed message may still claim that no correct peer sends and the core would take
   * for a broken invariant of its own (and stop): a commit beyond our log in a heartbeat, an
   * acknowledgement beyond the leader's log, another leader in the leader's own term.
   */
  private stepProblem(m: Message): string | undefined {
    const c = this.core;
    // A correct leader sends min(match, commit) in a heartbeat; a lower term is answered, not stepped.
    if (m.type === "heartbeat" && m.term >= c.currentTerm && m.commit > c.lastIndex) return "commit";
    if (m.term !== c.currentTerm) return undefined; // a higher term makes us a follower first
    if (c.currentRole !== "leader") return undefined;
    if (m.type === "app" || m.type === "heartbeat" || m.type === "snap") return "term";
    if (m.type === "appResp" && !m.reject && m.index > c.lastIndex) return "index";
    return undefined;
  }

  private malformed(m: unknown, field: string): void {
    this.stats.malformedMessages++;
    this.stats.droppedMessages++;
    const now = this.clock.now();
    if (now - this.malformedLoggedAt < malformedLogEveryMs) {
      this.malformedUnlogged++;
      return;
    }
    const x = (m && typeof m === "object" ? m : {}) as Record<string, unknown>;
    this.o.log.warn(
      {
        raft: this.id,
        field,
        type: typeof x.type === "string" ? x.type.slice(0, 32) : typeof x.type,
        from: typeof x.from === "string" ? x.from.slice(0, 64) : typeof x.from,
        alsoDropped: this.malformedUnlogged,
      },
      "malformed raft message dropped",
    );
    this.malformedLoggedAt = now;
    this.malformedUnlogged = 0;
  }

  /**
   * The transport lost its connection to `peerId` (refused or reset: the process is gone). If that
   * is our leader we do not wait out the election timeout: after a random 0–150 ms we start a
   * pre-vote round, and again every 100–250 ms while no leader emerges. A follower that still hears
   * from a live leader refuses (its CheckQuorum lease), so a live leader is not disturbed; when the
   * leader is dead, its other followers saw the same reset and drop their leases as they campaign,
   * and the jitter lets one of them win without split votes. Safety never depends on when an
   * election starts; only how soon a dead leader is replaced does.
   */
  peerUnreachable(peerId: string): void {
    this.enqueue(() => {
      if (peerId === this.id || this.core.leader !== peerId || this.suspect === peerId) return;
      this.suspect = peerId;
      this.scheduleSuspectCampaign(0, 150);
    });
  }

  private scheduleSuspectCampaign(minMs: number, maxMs: number): void {
    const random = this.o.random ?? (() => this.clock.random());
    this.clock.after(
      minMs + random() * (maxMs - minMs),
      () =>
        this.enqueue(() => {
          const s = this.suspect;
          if (s === undefined || this.stopped) return;
          const leader = this.core.leader;
          if (leader !== "" && leader !== s) {
            this.suspect = undefined; // someone else leads now
            return;
          }
          const role = this.core.currentRole;
          if (role === "follower" || role === "preCandidate") this.core.campaign();
          this.scheduleSuspectCampaign(100, 250);
        }),
      true,
    );
  }

  /** Replicates `data`; resolves with the state machine's result once applied here. */
  propose(data: Uint8Array): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.stopped) return reject(new NodeError("STOPPED", "node stopped"));
      if (this.waiters.size + this.proposals.length >= this.o.pendingProposalsMax) {
        return reject(new NodeError("OVERLOADED", "too many proposals in flight"));
      }
      if (this.snapshotOverdue()) {
        return reject(new NodeError("OVERLOADED", "snapshots are not being saved; the log is full"));
      }
      this.proposals.push({ data, resolve, reject });
      // Every proposal that arrives before the loop gets to it joins one batch: one append per
      // follower for all of them (RaftCore.proposeBatch).
      if (this.proposals.length === 1) this.enqueue(() => this.flushProposals());
    });
  }

  private flushProposals(): void {
    const batch = this.proposals;
    this.proposals = [];
    if (batch.length === 0) return;
    let at: { index: number; term: number }[];
    try {
      at = this.core.proposeBatch(batch.map((p) => p.data));
    } catch (err) {
      const e = toNodeError(err);
      for (const p of batch) p.reject(e);
      return;
    }
    batch.forEach((p, i) => {
      const { index, term } = at[i]!;
      const timer = this.clock.after(this.o.proposalTimeoutMs, () => {
        if (this.waiters.get(index)?.resolve === p.resolve) this.waiters.delete(index);
        p.reject(new NodeError("OUTCOME_UNKNOWN", `not applied within ${this.o.proposalTimeoutMs} ms`));
      });
      this.waiters.set(index, { term, resolve: p.resolve, reject: p.reject, timer });
    });
  }

  /**
   * Resolves with an index once this replica has applied every write committed before the call
   * (ReadIndex, §6.4): reading the state machine then is linearizable.
   */
  readIndex(): Promise<number> {
    return new Promise((resolve, reject) => {
      if (this.stopped) return reject(new NodeError("STOPPED", "node stopped"));
      if (this.reads.size >= this.o.pendingProposalsMax) {
        return reject(new NodeError("OVERLOADED", "too many reads waiting"));
      }
      const context = `${this.id}/${this.readIncarnation}/${++this.readSeq}`;
      this.enqueue(() => {
        try {
          this.core.readIndex(context);
        } catch (err) {
          reject(toNodeError(err));
          return;
        }
        const timer = this.clock.after(this.o.proposalTimeoutMs, () => {
          this.reads.delete(context);
          reject(new NodeError("OUTCOME_UNKNOWN", "leadership not confirmed in time", this.core.leader));
        });
        this.reads.set(context, { index: -1, resolve, reject, timer });
      });
    });
  }

  /**
   * A membership change (one server at a time, §4.1), on the leader; resolves with its index once
   * applied here. How a replica that lost its disk comes back: removeNode, then addLearner and
   * promoteLearner once it caught up (docs/raft.md).
   */
  proposeConfChange(cc: ConfChange): Promise<number> {
    return new Promise((resolve, reject) =>
      this.enqueue(() => {
        let at: { index: number; term: number };
        try {
          at = this.core.proposeConfChange(cc);
        } catch (err) {
          reject(toNodeError(err));
          return;
        }
        const timer = this.clock.after(this.o.proposalTimeoutMs, () => {
          if (this.waiters.get(at.index)?.reject === reject) this.waiters.delete(at.index);
          reject(new NodeError("OUTCOME_UNKNOWN", `not applied within ${this.o.proposalTimeoutMs} ms`));
        });
        this.waiters.set(at.index, { term: at.term, resolve: () => resolve(at.index), reject, timer });
      }),
    );
  }

  transferLeadership(to: string): Promise<void> {
    return new Promise((resolve, reject) =>
      this.enqueue(() => {
        try {
          this.core.transferLeadership(to);
          resolve();
        } catch (err) {
          reject(toNodeError(err));
        }
      }),
    );
  }

  status(): Status {
    return this.core.status();
  }

  get applied(): number {
    return this.appliedIndex;
  }

  get leader(): string {
    return this.core.leader;
  }

  /** member (may vote), joining (a new log, not yet vouched for) or lost (must not vote). */
  get identityState(): "member" | "joining" | "lost" {
    return this.identity.state;
  }

  get isLeader(): boolean {
    return this.core.currentRole === "leader";
  }

  /** Resolves when the loop has nothing left to do (tests). */
  settled(): Promise<void> {
    if (!this.pumping && this.inbox.length === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.ticker?.cancel();
    this.snapshotRetryTimer?.cancel();
    this.wakeInstallWait?.();
    while (this.pumping) await new Promise<void>((r) => this.clock.after(1, r));
    this.failAll(new NodeError("STOPPED", "node stopped"));
    await this.storage?.log.close();
  }

  // -----------------------------------------------------------------------------------------------

  private enqueue(fn: () => void): void {
    this.inbox.push(fn);
    if (!this.pumping && !this.stopped && this.core) {
      this.pumping = true;
      // Next turn: everything that arrived in this I/O phase joins the same round.
      this.clock.soon(() => void this.pump());
    }
  }

  private async pump(): Promise<void> {
    try {
      for (;;) {
        if (this.stopped) break;
        const work = this.inbox;
        this.inbox = [];
        for (const fn of work) fn();
        if (!this.core.hasReady()) {
          if (this.inbox.length === 0) break;
          continue;
        }
        const rd = this.core.ready();
        this.stats.readies++;
        const t0 = this.clock.now();
        await this.handleReady(rd);
        this.stats.readyMs += this.clock.now() - t0;
        this.core.advance(rd);
        this.maybeSnapshot();
      }
    } catch (err) {
      this.fatal(err);
    } finally {
      this.pumping = false;
      if (this.inbox.length > 0 && !this.stopped) {
        this.pumping = true;
        this.clock.soon(() => void this.pump());
      } else {
        for (const r of this.idle.splice(0)) r();
      }
    }
  }

  private async handleReady(rd: Ready): Promise<void> {
    const log = this.storage.log;
    // 1. Persist: snapshot first (it replaces the log), then entries and hard state, all durable.
    if (rd.snapshot) {
      await this.saveInstalledSnapshot(rd.snapshot);
      await log.reset({ index: rd.snapshot.meta.index, term: rd.snapshot.meta.term });
      this.storage.setSnapshot(rd.snapshot);
    }
    const transport = this.o.transport;
    const send = (ms: Message[]) => {
      this.stats.messagesSent += ms.length;
      if (transport) for (const m of ms) transport.send(m.to, m);
    };
    // The core says what may leave before this round is durable (a leader's appends and heartbeats:
    // they promise nothing of ours, Raft thesis §10.2.1) and what only after (answers, and all of a
    // round that changes term or vote). The leader counts its own entries toward a commit only at
    // advance(), after the write: no commit rests on an entry a crash here could take back.
    const bugs = this.o.testOnlyBugs ?? {};
    send(rd.messages);
    if (bugs.ackBeforeDurable) send(rd.messagesAfterPersist);
    const p0 = this.clock.now();
    if (rd.entries.length > 0 || rd.hardState) {
      this.stats.persistedEntries += rd.entries.length;
      const written = log.write({
        ...(rd.entries.length > 0 ? { entries: rd.entries } : {}),
        ...(rd.hardState ? { hardState: rd.hardState } : {}),
      });
      if (bugs.leaderCountsUndurable && this.core.currentRole === "leader") {
        written.catch((err: unknown) => this.fatal(err));
      } else await written;
    }
    this.stats.persistMs += this.clock.now() - p0;
    // 2. Send: only now may peers learn of votes and entries we promised.
    if (!bugs.ackBeforeDurable) send(rd.messagesAfterPersist);
    // 3. Apply.
    if (rd.snapshot) {
      this.o.fsm.restore(rd.snapshot.data, rd.snapshot.meta.index);
      this.appliedIndex = rd.snapshot.meta.index;
      this.appliedBytesSinceSnapshot = 0;
      this.stats.snapshotsInstalled++;
      // Proposals at or below the snapshot were decided elsewhere; their results are not known here.
      for (const [index, w] of this.waiters) {
        if (index <= rd.snapshot.meta.index) this.settle(index, w, undefined, true);
      }
      const m = rd.snapshot.meta;
      this.identity.forgetAllBut([...m.voters, ...m.learners]);
      this.o.onConfChange?.(copyConf(m));
      this.o.log.info({ raft: this.id, index: rd.snapshot.meta.index }, "snapshot installed");
    }
    // Failpoint ack-before-commit: a leader applies (and so acknowledges) what it just made durable
    // here, in order, before a majority has it; committed entries it applied early are skipped.
    if (this.ackBeforeCommit) this.applyEarly(rd);
    else for (const e of rd.committedEntries) this.applyEntry(e);
    for (const rs of rd.readStates) {
      const w = this.reads.get(rs.context);
      if (w) w.index = rs.index;
    }
    this.serveReads();
    if (rd.softState || rd.hardState) this.noteLeadership();
  }

  private applyEarly(rd: Ready): void {
    for (const e of rd.committedEntries) if (e.index > this.appliedIndex) this.applyEntry(e);
    const last = this.storage.lastIndex();
    if (this.core.currentRole !== "leader" || last <= this.appliedIndex) return;
    for (const e of this.storage.entries(this.appliedIndex + 1, last + 1, Number.POSITIVE_INFINITY)) {
      this.applyEntry(e);
    }
  }

  private applyEntry(e: Entry): void {
    if (e.index <= this.appliedIndex) {
      throw new Error(`invariant: apply ${e.index} at or below applied ${this.appliedIndex}`);
    }
    if (e.index !== this.appliedIndex + 1) {
      throw new Error(`invariant: apply ${e.index} after ${this.appliedIndex} leaves a gap`);
    }
    let result: unknown;
    if (e.type === EntryType.Normal) result = this.o.fsm.apply(e.index, e.data);
    else if (e.type === EntryType.ConfChange) {
      // A removed member's incarnation is forgotten: added back with a new disk, it is someone new.
      const c = decodeConfState(e.data);
      this.identity.forgetAllBut([...c.voters, ...c.learners]);
      this.o.onConfChange?.(c);
    }
    this.appliedIndex = e.index;
    this.appliedBytesSinceSnapshot += e.data.byteLength;
    this.stats.applied++;
    const w = this.waiters.get(e.index);
    if (w) this.settle(e.index, w, result, w.term !== e.term);
  }

  private settle(index: number, w: Waiter, result: unknown, unknown_: boolean): void {
    this.waiters.delete(index);
    w.timer.cancel();
    if (unknown_) {
      // Our entry was overwritten by another leader's: the command may still have been applied
      // under another index (a retry of it, say), so only the caller's retry can tell.
      w.reject(new NodeError("OUTCOME_UNKNOWN", "entry replaced by another leader", this.core.leader));
    } else {
      w.resolve(result);
    }
  }

  private serveReads(): void {
    for (const [ctx, r] of this.reads) {
      if (r.index >= 0 && r.index <= this.appliedIndex) {
        this.reads.delete(ctx);
        r.timer.cancel();
        r.resolve(r.index);
      }
    }
  }

  private noteLeadership(): void {
    const leader = this.core.leader;
    const term = this.core.currentTerm;
    const isLeader = this.core.currentRole === "leader";
    if (leader === this.lastLeader && term === this.lastTerm) return;
    const wasLeader = this.lastLeader === this.id;
    this.lastLeader = leader;
    this.lastTerm = term;
    if (wasLeader && !isLeader) {
      // Our pending proposals may or may not commit under the next leader: let callers retry.
      for (const [index, w] of this.waiters) this.settle(index, w, undefined, true);
      for (const [ctx, r] of this.reads) {
        this.reads.delete(ctx);
        r.timer.cancel();
        r.reject(new NodeError("NOT_LEADER", "leadership lost before the read was confirmed", leader));
      }
    }
    this.o.log.info({ raft: this.id, leader: leader || null, term, isLeader }, "raft leadership");
    this.o.onLeaderChange?.(leader, term, isLeader);
  }

  /**
   * Takes a snapshot once enough was applied since the last. The state machine is serialized here,
   * between rounds (it must match the applied index), but the save to PostgreSQL runs in the
   * background: awaiting it inside the loop stopped heartbeats long enough, with a large state, for
   * followers to start an election. The log is compacted only once the snapshot is durable.
   *
   * A failed save is retried after a backoff (snapshotRetryMinMs doubling to snapshotRetryMaxMs),
   * from a timer, so it is retried even when no more entries arrive; until then no round serializes
   * the state again. At most one serialized snapshot is held (the one being saved), and the counters
   * that make a snapshot due are cleared only by a save that succeeded.
   */
  private maybeSnapshot(): void {
    if (this.snapshotting || this.snapshotRetryTimer || this.stopped) return;
    const snap = this.storage.snapshot();
    if (
      this.appliedIndex - snap.meta.index < this.o.snapshotEveryEntries &&
      this.appliedBytesSinceSnapshot < this.o.snapshotEveryBytes
    ) {
      return;
    }
    if (this.appliedIndex === snap.meta.index) return;
    const bytesCovered = this.appliedBytesSinceSnapshot;
    const meta = this.core.snapshotMeta(this.appliedIndex);
    const s: Snapshot = { meta, data: this.o.fsm.snapshot() };
    this.snapshotting = true;
    if (this.o.testOnlyBugs?.compactBeforeSnapshotSaved) {
      const log = this.storage.log;
      if (meta.index > log.compactedTo.index) {
        log.compact({ index: meta.index, term: meta.term }).catch((err: unknown) => this.fatal(err));
      }
    }
    this.o.snapshots.save(s).then(
      () =>
        this.enqueue(() => {
          this.snapshotting = false;
          this.snapshotRetryMs = 0;
          // A snapshot installed from the leader meanwhile may already be newer.
          if (s.meta.index <= this.storage.snapshot().meta.index) return;
          // Bytes applied while the save ran still count toward the next snapshot.
          this.appliedBytesSinceSnapshot = Math.max(0, this.appliedBytesSinceSnapshot - bytesCovered);
          this.storage.setSnapshot(s);
          const log = this.storage.log;
          let keepFrom = Math.max(log.compactedTo.index, meta.index - this.o.snapshotCatchUpEntries);
          // The kept tail is bounded in bytes too: entries carrying large batches must not hold
          // hundreds of megabytes in the log's memory for the sake of a count.
          const tail = log.slice(keepFrom + 1, meta.index + 1);
          let bytes = 0;
          for (let i = tail.length - 1; i >= 0; i--) {
            bytes += tail[i]!.data.byteLength;
            if (bytes > this.o.snapshotCatchUpBytes) {
              keepFrom = tail[i]!.index;
              break;
            }
          }
          const term = log.term(keepFrom);
          if (keepFrom > log.compactedTo.index && term !== undefined) {
            log.compact({ index: keepFrom, term }).catch((err: unknown) => this.fatal(err));
          }
          this.stats.snapshotsTaken++;
          this.o.log.info(
            { raft: this.id, index: meta.index, bytes: s.data.byteLength, compactedTo: keepFrom },
            "snapshot taken",
          );
        }),
      (err: unknown) => {
        this.snapshotting = false;
        if (this.stopped) return;
        // Not fatal: the log still holds everything. Wait, then try again with a fresh snapshot.
        this.snapshotRetryMs = Math.min(
          snapshotRetryMaxMs,
          Math.max(snapshotRetryMinMs, this.snapshotRetryMs * 2),
        );
        this.stats.snapshotSaveFailures++;
        this.o.log.warn(
          { raft: this.id, index: meta.index, retryInMs: this.snapshotRetryMs, err: errorText(err) },
          "snapshot save failed",
        );
        this.snapshotRetryTimer = this.clock.after(this.snapshotRetryMs, () => {
          this.snapshotRetryTimer = undefined;
          this.enqueue(() => this.maybeSnapshot());
        });
      },
    );
  }

  /** Saves were failing for so long that the log must not grow further in memory. */
  private snapshotOverdue(): boolean {
    if (!this.storage) return false;
    return (
      this.appliedBytesSinceSnapshot >= this.o.unsnapshottedBytesMax ||
      this.appliedIndex - this.storage.snapshot().meta.index >= this.o.unsnapshottedEntriesMax
    );
  }

  /**
   * A snapshot from the leader must be durable before the log is reset to it. If the store is down
   * the loop waits here, retrying with the same backoff as background saves: the follower stops
   * answering meanwhile (the leader resends), which is better than exiting over an outage.
   */
  private async saveInstalledSnapshot(s: Snapshot): Promise<void> {
    for (let waitMs = snapshotRetryMinMs; ; waitMs = Math.min(snapshotRetryMaxMs, waitMs * 2)) {
      try {
        await this.o.snapshots.save(s);
        return;
      } catch (err) {
        if (this.stopped) throw err;
        this.stats.snapshotSaveFailures++;
        this.o.log.warn(
          { raft: this.id, index: s.meta.index, retryInMs: waitMs, err: errorText(err) },
          "snapshot save failed",
        );
        await new Promise<void>((resolve) => {
          const t = this.clock.after(waitMs, resolve);
          // stop() must not wait out the backoff.
          this.wakeInstallWait = () => {
            t.cancel();
            resolve();
          };
        });
        this.wakeInstallWait = undefined;
        if (this.stopped) throw err;
      }
    }
  }

  /** A broken invariant or a failed disk: stop loudly rather than go on with a state we cannot trust. */
  private fatal(err: unknown): void {
    if (this.stopped) return;
    this.o.log.error(
      { raft: this.id, err },
      "raft invariant broken or storage failed: stopping this replica",
    );
    this.stopped = true;
    this.ticker?.cancel();
    this.failAll(new NodeError("STOPPED", "replica stopped on a broken invariant or a storage failure"));
    if (this.o.onFatal) this.o.onFatal(err);
    else throw err;
  }

  private failAll(err: NodeError): void {
    for (const p of this.proposals.splice(0)) p.reject(err);
    for (const [index, w] of this.waiters) {
      this.waiters.delete(index);
      w.timer.cancel();
      w.reject(err);
    }
    for (const [ctx, r] of this.reads) {
      this.reads.delete(ctx);
      r.timer.cancel();
      r.reject(err);
    }
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function toNodeError(err: unknown): unknown {
  if (err instanceof RaftError) {
    if (err.code === "READ_QUEUE_FULL") return new NodeError("OVERLOADED", err.message);
    if (err.code === "NOT_LEADER" || err.code === "PROPOSAL_DROPPED" || err.code === "LEADER_TRANSFERRING") {
      return new NodeError("NOT_LEADER", err.message, err.leaderId);
    }
  }
  return err;
}
