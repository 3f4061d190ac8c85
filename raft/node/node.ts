// Owns the runtime of one Raft replica: it drives the pure core (raft/core) with a real clock, the
// LevelDB log, a snapshot store and a transport, through the same contract the simulator uses —
// persist (snapshot, entries, hard state) → send → apply → advance. Every core call happens on one
// serialized loop between Ready rounds; messages, ticks and proposals that arrive while a Ready is
// being persisted wait in a bounded inbox and go into the next round, so one fsync covers them all.
// This file holds the loop (inbox, Ready rounds, apply) and the public API; its parts live beside
// it: waiters.ts (callers waiting for an apply or a read), snapshot-policy.ts (when to snapshot,
// background saves, compaction), suspect-leader.ts (the early election after a leader's connection
// resets), identity.ts (cluster id and incarnations), and options.ts, seams.ts and errors.ts.
import { assert } from "../core/assert.ts";
import { RaftCore } from "../core/raft.ts";
import {
  type ConfChange,
  copyConf,
  decodeConfState,
  type Entry,
  EntryType,
  type Message,
  type Ready,
  type Status,
} from "../core/types.ts";
import { LevelLog } from "../storage/level-log.ts";
import { isMessage, messageProblem } from "../transport/message-check.ts";
import { NodeError, toNodeError } from "./errors.ts";
import { type Envelope, type Refusal, ReplicaIdentity } from "./identity.ts";
import { defaults, type RaftNodeOptions, type ResolvedNodeOptions } from "./options.ts";
import { nodeScheduler, type Scheduler, type Timer } from "./scheduler.ts";
import type { Transport } from "./seams.ts";
import { SnapshotPolicy } from "./snapshot-policy.ts";
import { NodeStorage } from "./storage.ts";
import { SuspectLeader } from "./suspect-leader.ts";
import { Waiters } from "./waiters.ts";

// The node's public surface stays importable from here (raft/index.ts, tests, the simulator).
export { NodeError, type NodeErrorCode } from "./errors.ts";
export type { NodeTestOnlyBugs, RaftFailpoints, RaftNodeOptions } from "./options.ts";
export type { NodeLogger, SnapshotStore, StateMachine, Transport } from "./seams.ts";
export { snapshotRetryMaxMs, snapshotRetryMinMs } from "./snapshot-policy.ts";
export { isMessage };

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

export class RaftNode {
  readonly id: string;
  private readonly o: ResolvedNodeOptions;
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
  private readonly waiters: Waiters;
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
  private readonly suspects: SuspectLeader;
  private readonly snapshots: SnapshotPolicy;
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
    this.o = { ...defaults, ...options } as ResolvedNodeOptions;
    this.ackBeforeCommit = options.failpoints?.ackBeforeCommit === true;
    this.clock = options.scheduler ?? nodeScheduler;
    this.readIncarnation = this.clock.uuid();
    this.waiters = new Waiters(this.clock, this.o.proposalTimeoutMs, () => this.core.leader);
    const host = {
      id: this.id,
      o: this.o,
      clock: this.clock,
      stats: this.stats,
      random: () => (this.o.random ?? (() => this.clock.random()))(),
      core: () => this.core,
      storage: () => this.storage as NodeStorage | undefined,
      applied: () => this.appliedIndex,
      stopped: () => this.stopped,
      enqueue: (fn: () => void) => this.enqueue(fn),
      fatal: (err: unknown) => this.fatal(err),
    };
    this.suspects = new SuspectLeader(host);
    this.snapshots = new SnapshotPolicy(host);
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
      ...(this.o.snapshotChunkBytesMax !== undefined
        ? { snapshotChunkBytesMax: this.o.snapshotChunkBytesMax }
        : {}),
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
    this.suspects.heardFrom(msg.from); // a suspected leader is alive after all
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
   * is our leader we do not wait out the election timeout (suspect-leader.ts).
   */
  peerUnreachable(peerId: string): void {
    this.suspects.unreachable(peerId);
  }

  /** Replicates `data`; resolves with the state machine's result once applied here. */
  propose(data: Uint8Array): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.stopped) return reject(new NodeError("STOPPED", "node stopped"));
      if (this.waiters.entryCount + this.proposals.length >= this.o.pendingProposalsMax) {
        return reject(new NodeError("OVERLOADED", "too many proposals in flight"));
      }
      if (this.snapshots.overdue()) {
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
      this.waiters.addEntry(index, term, p.resolve, p.reject);
    });
  }

  /**
   * Resolves with an index once this replica has applied every write committed before the call
   * (ReadIndex, §6.4): reading the state machine then is linearizable.
   */
  readIndex(): Promise<number> {
    return new Promise((resolve, reject) => {
      if (this.stopped) return reject(new NodeError("STOPPED", "node stopped"));
      if (this.waiters.readCount >= this.o.pendingProposalsMax) {
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
        this.waiters.addRead(context, resolve, reject);
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
        this.waiters.addEntry(at.index, at.term, () => resolve(at.index), reject);
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
    this.snapshots.stop();
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
        this.snapshots.maybeSnapshot();
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
      await this.snapshots.saveInstalled(rd.snapshot);
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
      this.snapshots.noteInstalled();
      this.stats.snapshotsInstalled++;
      // Proposals at or below the snapshot were decided elsewhere; their results are not known here.
      this.waiters.snapshotInstalled(rd.snapshot.meta.index);
      const m = rd.snapshot.meta;
      this.identity.forgetAllBut([...m.voters, ...m.learners]);
      this.o.onConfChange?.(copyConf(m));
      this.o.log.info({ raft: this.id, index: rd.snapshot.meta.index }, "snapshot installed");
    }
    // Failpoint ack-before-commit: a leader applies (and so acknowledges) what it just made durable
    // here, in order, before a majority has it; committed entries it applied early are skipped.
    if (this.ackBeforeCommit) this.applyEarly(rd);
    else for (const e of rd.committedEntries) this.applyEntry(e);
    for (const rs of rd.readStates) this.waiters.readConfirmed(rs.context, rs.index);
    this.waiters.serveReads(this.appliedIndex);
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
    assert(
      e.index > this.appliedIndex,
      () => `invariant: apply ${e.index} at or below applied ${this.appliedIndex}`,
    );
    assert(
      e.index === this.appliedIndex + 1,
      () => `invariant: apply ${e.index} after ${this.appliedIndex} leaves a gap`,
    );
    let result: unknown;
    if (e.type === EntryType.Normal) result = this.o.fsm.apply(e.index, e.data);
    else if (e.type === EntryType.ConfChange) {
      // A removed member's incarnation is forgotten: added back with a new disk, it is someone new.
      const c = decodeConfState(e.data);
      this.identity.forgetAllBut([...c.voters, ...c.learners]);
      this.o.onConfChange?.(c);
    }
    this.appliedIndex = e.index;
    this.snapshots.noteApplied(e.data.byteLength);
    this.stats.applied++;
    this.waiters.applied(e.index, e.term, result);
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
      this.waiters.leadershipLost(leader);
    }
    this.o.log.info({ raft: this.id, leader: leader || null, term, isLeader }, "raft leadership");
    this.o.onLeaderChange?.(leader, term, isLeader);
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
    this.waiters.failAll(err);
  }
}
