// Owns the runtime of one Raft replica: it drives the pure core (raft/core) with a real clock, the
// LevelDB log, a snapshot store and a transport, through the same contract the simulator uses —
// persist (snapshot, entries, hard state) → send → apply → advance. Every core call happens on one
// serialized loop between Ready rounds; messages, ticks and proposals that arrive while a Ready is
// being persisted wait in a bounded inbox and go into the next round, so one fsync covers them all.
import { RaftCore } from "../core/raft.ts";
import {
  type Entry,
  EntryType,
  type Message,
  RaftError,
  type Ready,
  type Snapshot,
  type Status,
} from "../core/types.ts";
import { LevelLog } from "../storage/level-log.ts";
import { NodeStorage } from "./storage.ts";

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

export interface RaftNodeOptions {
  id: string;
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
  proposalTimeoutMs?: number;
  pendingProposalsMax?: number;
  inboxMessagesMax?: number;
  random?: () => number;
  /** Called on leader or term changes (the replica publishes its Redis hint from here). */
  onLeaderChange?: (leaderId: string, term: number, isSelf: boolean) => void;
  /** A broken invariant: the default throws from the loop, which crashes the process — loudly. */
  onFatal?: (err: unknown) => void;
}

const defaults = {
  tickMs: 50,
  electionTicks: 6,
  heartbeatTicks: 1,
  snapshotEveryEntries: 20_000,
  snapshotEveryBytes: 64 * 1024 * 1024,
  snapshotCatchUpEntries: 5_000,
  snapshotCatchUpBytes: 32 * 1024 * 1024,
  proposalTimeoutMs: 5_000,
  pendingProposalsMax: 20_000,
  inboxMessagesMax: 100_000,
};

interface Waiter {
  term: number;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
}

interface ReadWaiter {
  index: number;
  resolve: (index: number) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
}

const messageTypes = new Set([
  "vote",
  "voteResp",
  "preVote",
  "preVoteResp",
  "app",
  "appResp",
  "heartbeat",
  "heartbeatResp",
  "snap",
  "snapResp",
  "timeoutNow",
  "readIndex",
  "readIndexResp",
]);

/** A peer's bytes are not trusted to be well formed: a bad message is dropped, not stepped. */
export function isMessage(m: unknown): m is Message {
  if (!m || typeof m !== "object") return false;
  const x = m as Record<string, unknown>;
  return (
    typeof x.type === "string" &&
    messageTypes.has(x.type) &&
    typeof x.from === "string" &&
    typeof x.to === "string" &&
    Number.isSafeInteger(x.term) &&
    Number.isSafeInteger(x.logTerm) &&
    Number.isSafeInteger(x.index) &&
    Number.isSafeInteger(x.commit) &&
    Array.isArray(x.entries) &&
    (x.entries as unknown[]).every(
      (e) =>
        !!e &&
        typeof e === "object" &&
        Number.isSafeInteger((e as Entry).index) &&
        Number.isSafeInteger((e as Entry).term) &&
        Number.isInteger((e as Entry).type) &&
        (e as Entry).data instanceof Uint8Array,
    )
  );
}

export class RaftNode {
  readonly id: string;
  private readonly o: RaftNodeOptions & typeof defaults;
  private core!: RaftCore;
  private storage!: NodeStorage;
  private inbox: (() => void)[] = [];
  private inboxMessages = 0;
  private pumping = false;
  private stopped = false;
  private ticker: NodeJS.Timeout | undefined;
  private readonly waiters = new Map<number, Waiter>();
  private readonly reads = new Map<string, ReadWaiter>();
  private readSeq = 0;
  private appliedIndex = 0;
  private lastLeader = "";
  private lastTerm = 0;
  private idle: (() => void)[] = [];
  /** The leader our transport saw go away (connection refused or reset), until we hear from it again. */
  private suspect: string | undefined;
  private snapshotting = false;
  /** Bytes of entry data applied since the last snapshot was taken or installed. */
  private appliedBytesSinceSnapshot = 0;
  /** Proposals waiting for the loop; they enter the core together. */
  private proposals: { data: Uint8Array; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] = [];
  /** Counters for /metrics and tests. */
  readonly stats = {
    readies: 0,
    applied: 0,
    snapshotsTaken: 0,
    snapshotsInstalled: 0,
    droppedMessages: 0,
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
  }

  /** Opens the log, restores the newest snapshot, and starts ticking. */
  async start(transport?: Transport): Promise<void> {
    if (transport) this.o.transport = transport;
    const log = await LevelLog.open(this.o.dataDir);
    let snap = await this.o.snapshots.latest();
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
    this.appliedIndex = snap.meta.index;
    this.core = new RaftCore({
      id: this.id,
      storage: this.storage,
      electionTicks: this.o.electionTicks,
      heartbeatTicks: this.o.heartbeatTicks,
      random: this.o.random ?? Math.random,
      preVote: true,
      checkQuorum: true,
      applied: snap.meta.index,
    });
    this.o.log.info(
      {
        raft: this.id,
        term: log.hardState.term,
        commit: log.hardState.commit,
        firstIndex: log.firstIndex(),
        lastIndex: log.lastIndex(),
        snapshotIndex: snap.meta.index,
      },
      "raft node started",
    );
    this.ticker = setInterval(() => this.enqueue(() => this.core.tick()), this.o.tickMs);
    // Proposals made while starting waited in the inbox.
    if (this.inbox.length > 0) this.enqueue(() => undefined);
  }

  /** A message from a peer (the transport's deliver callback). */
  deliver(m: unknown): void {
    // Before start() the core does not exist yet: peers' messages are dropped (Raft resends).
    if (this.stopped || !this.core) {
      this.stats.droppedMessages++;
      return;
    }
    if (!isMessage(m)) {
      this.stats.droppedMessages++;
      return;
    }
    if (this.inboxMessages >= this.o.inboxMessagesMax) {
      this.stats.droppedMessages++; // Raft tolerates loss; memory must stay bounded.
      return;
    }
    this.inboxMessages++;
    if (m.from === this.suspect) this.suspect = undefined; // it is alive after all
    this.enqueue(() => {
      this.inboxMessages--;
      this.core.step(m);
    });
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
    const random = this.o.random ?? Math.random;
    const t = setTimeout(
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
      minMs + random() * (maxMs - minMs),
    );
    t.unref();
  }

  /** Replicates `data`; resolves with the state machine's result once applied here. */
  propose(data: Uint8Array): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.stopped) return reject(new NodeError("STOPPED", "node stopped"));
      if (this.waiters.size + this.proposals.length >= this.o.pendingProposalsMax) {
        return reject(new NodeError("OVERLOADED", "too many proposals in flight"));
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
      const timer = setTimeout(() => {
        if (this.waiters.get(index)?.resolve === p.resolve) this.waiters.delete(index);
        p.reject(new NodeError("OUTCOME_UNKNOWN", `not applied within ${this.o.proposalTimeoutMs} ms`));
      }, this.o.proposalTimeoutMs);
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
      const context = `${this.id}/${++this.readSeq}`;
      this.enqueue(() => {
        try {
          this.core.readIndex(context);
        } catch (err) {
          reject(toNodeError(err));
          return;
        }
        const timer = setTimeout(() => {
          this.reads.delete(context);
          reject(new NodeError("OUTCOME_UNKNOWN", "leadership not confirmed in time", this.core.leader));
        }, this.o.proposalTimeoutMs);
        this.reads.set(context, { index: -1, resolve, reject, timer });
      });
    });
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
    if (this.ticker) clearInterval(this.ticker);
    while (this.pumping) await new Promise((r) => setTimeout(r, 1));
    this.failAll(new NodeError("STOPPED", "node stopped"));
    await this.storage?.log.close();
  }

  // -----------------------------------------------------------------------------------------------

  private enqueue(fn: () => void): void {
    this.inbox.push(fn);
    if (!this.pumping && !this.stopped && this.core) {
      this.pumping = true;
      // setImmediate: everything that arrived in this I/O phase joins the same round.
      setImmediate(() => void this.pump());
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
        const t0 = performance.now();
        await this.handleReady(rd);
        this.stats.readyMs += performance.now() - t0;
        this.core.advance(rd);
        this.maybeSnapshot();
      }
    } catch (err) {
      this.fatal(err);
    } finally {
      this.pumping = false;
      if (this.inbox.length > 0 && !this.stopped) {
        this.pumping = true;
        setImmediate(() => void this.pump());
      } else {
        for (const r of this.idle.splice(0)) r();
      }
    }
  }

  private async handleReady(rd: Ready): Promise<void> {
    const log = this.storage.log;
    // 1. Persist: snapshot first (it replaces the log), then entries and hard state, all durable.
    if (rd.snapshot) {
      await this.o.snapshots.save(rd.snapshot);
      await log.reset({ index: rd.snapshot.meta.index, term: rd.snapshot.meta.term });
      this.storage.setSnapshot(rd.snapshot);
    }
    const transport = this.o.transport;
    const send = () => {
      this.stats.messagesSent += rd.messages.length;
      if (transport) for (const m of rd.messages) transport.send(m.to, m);
    };
    // A leader whose term and vote are already on disk may send while it persists (Raft thesis
    // §10.2.1, as etcd does): its appends promise nothing of its own. It does count its own
    // unpersisted entries toward a commit, but with two or more voters a commit also needs a
    // follower's answer, and the loop steps no answer while this round's write is in flight — so no
    // commit index it sends covers entries not yet durable here. A single voter would commit alone:
    // it sends after the write. Everything else sends after the write too.
    const early =
      !rd.snapshot &&
      this.core.currentRole === "leader" &&
      this.core.status().conf.voters.length > 1 &&
      (!rd.hardState ||
        (rd.hardState.term === log.hardState.term && rd.hardState.vote === log.hardState.vote));
    if (early) send();
    const p0 = performance.now();
    if (rd.entries.length > 0 || rd.hardState) {
      this.stats.persistedEntries += rd.entries.length;
      await log.write({
        ...(rd.entries.length > 0 ? { entries: rd.entries } : {}),
        ...(rd.hardState ? { hardState: rd.hardState } : {}),
      });
    }
    this.stats.persistMs += performance.now() - p0;
    // 2. Send: only now may peers learn of votes and entries we promised.
    if (!early) send();
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
      this.o.log.info({ raft: this.id, index: rd.snapshot.meta.index }, "snapshot installed");
    }
    for (const e of rd.committedEntries) this.applyEntry(e);
    for (const rs of rd.readStates) {
      const w = this.reads.get(rs.context);
      if (w) w.index = rs.index;
    }
    this.serveReads();
    if (rd.softState || rd.hardState) this.noteLeadership();
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
    this.appliedIndex = e.index;
    this.appliedBytesSinceSnapshot += e.data.byteLength;
    this.stats.applied++;
    const w = this.waiters.get(e.index);
    if (w) this.settle(e.index, w, result, w.term !== e.term);
  }

  private settle(index: number, w: Waiter, result: unknown, unknown_: boolean): void {
    this.waiters.delete(index);
    clearTimeout(w.timer);
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
        clearTimeout(r.timer);
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
        clearTimeout(r.timer);
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
   */
  private maybeSnapshot(): void {
    if (this.snapshotting) return;
    const snap = this.storage.snapshot();
    if (
      this.appliedIndex - snap.meta.index < this.o.snapshotEveryEntries &&
      this.appliedBytesSinceSnapshot < this.o.snapshotEveryBytes
    ) {
      return;
    }
    if (this.appliedIndex === snap.meta.index) return;
    this.appliedBytesSinceSnapshot = 0;
    const meta = this.core.snapshotMeta(this.appliedIndex);
    const s: Snapshot = { meta, data: this.o.fsm.snapshot() };
    this.snapshotting = true;
    this.o.snapshots.save(s).then(
      () =>
        this.enqueue(() => {
          this.snapshotting = false;
          // A snapshot installed from the leader meanwhile may already be newer.
          if (s.meta.index <= this.storage.snapshot().meta.index) return;
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
        // Not fatal: the log still holds everything; the next round tries again.
        if (!this.stopped) this.o.log.warn({ raft: this.id, err }, "snapshot save failed");
      },
    );
  }

  /** A broken invariant or a failed disk: stop loudly rather than go on with a state we cannot trust. */
  private fatal(err: unknown): void {
    if (this.stopped) return;
    this.o.log.error(
      { raft: this.id, err },
      "raft invariant broken or storage failed: stopping this replica",
    );
    this.stopped = true;
    if (this.ticker) clearInterval(this.ticker);
    this.failAll(new NodeError("STOPPED", "replica stopped on a broken invariant or a storage failure"));
    if (this.o.onFatal) this.o.onFatal(err);
    else throw err;
  }

  private failAll(err: NodeError): void {
    for (const p of this.proposals.splice(0)) p.reject(err);
    for (const [index, w] of this.waiters) {
      this.waiters.delete(index);
      clearTimeout(w.timer);
      w.reject(err);
    }
    for (const [ctx, r] of this.reads) {
      this.reads.delete(ctx);
      clearTimeout(r.timer);
      r.reject(err);
    }
  }
}

function toNodeError(err: unknown): unknown {
  if (err instanceof RaftError) {
    if (err.code === "NOT_LEADER" || err.code === "PROPOSAL_DROPPED" || err.code === "LEADER_TRANSFERRING") {
      return new NodeError("NOT_LEADER", err.message, err.leaderId);
    }
  }
  return err;
}
