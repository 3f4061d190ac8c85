// Owns one deterministic simulated run: a virtual clock and event queue, a faulty network, replicas
// each driven by the driver contract the real node uses (send what may leave now → persist → send
// the answers → apply → advance), a "disk" per replica that keeps only what the driver finished persisting, a key-value
// state machine with deduplicating clients, and the safety/liveness invariants checked after every
// step. Everything random comes from the seed, so a failing run replays exactly.
import {
  type ConfState,
  decodeConfState,
  type Entry,
  EntryType,
  MemoryStorage,
  type Message,
  RaftCore,
  RaftError,
  RaftInvariantError,
  type RaftStorage,
  type ReadState,
  type Ready,
  type TestOnlyBugs,
} from "../core/index.ts";
import { decodeMessage, encodeMessage } from "../transport/codec.ts";
import { EventHeap } from "./heap.ts";
import type { PartitionKind, SimParams } from "./params.ts";
import { deriveSeed, Rng } from "./prng.ts";

/** Broken drivers, to prove the invariants catch them. Never in production. */
export interface DriverBugs {
  /** Send a Ready's messages before persisting it (a crash in between loses acknowledged state). */
  replyBeforePersist?: boolean;
  /** Restart with the persisted vote cleared (can vote twice in one term). */
  forgetVoteOnRestart?: boolean;
  /**
   * Number read contexts `id/seq` from 1 again in every incarnation, as raft/node did before it
   * added a random incarnation part: a restarted node takes an answer meant for its previous
   * incarnation's read as the answer to its own.
   */
  reuseReadContextsAfterRestart?: boolean;
}

export interface SimOptions {
  params: SimParams;
  /** Events processed while faults are injected; then faults heal and liveness is checked. */
  steps: number;
  coreBugs?: TestOnlyBugs;
  driverBugs?: DriverBugs;
  /** Keep the last events for a failure report. */
  traceEvents?: number;
  /**
   * Pass every message through the real wire codec (raft/transport/codec.ts, v8 serialize) instead
   * of handing the object over: proves messages are plain data and nothing relies on identity.
   */
  wireCodec?: boolean;
}

export interface SimResult {
  seed: number;
  ok: boolean;
  violation?: string;
  steps: number;
  healSteps: number;
  virtualMs: number;
  /** Highest index committed (applied) anywhere. */
  committed: number;
  leaders: number;
  reads: number;
  /** Virtual ms from healing to the first committed probe proposal. */
  healToCommitMs?: number;
  /** What the run exercised: messages by type, snapshots installed, conf changes applied, faults. */
  stats: Record<string, number>;
  trace?: string[];
}

export class Violation extends Error {
  override readonly name = "Violation";
}

interface KvState {
  applied: number;
  kv: Record<string, number>;
  /** Per client, the highest request sequence applied (dedupe of retried requests). */
  seen: Record<string, number>;
}

interface Command {
  c: string;
  s: number;
  k: string;
  v: number;
}

interface ClientOp {
  kind: "put" | "read";
  seq: number;
  key: string;
  value: number;
  /** Node the request is outstanding at ("" = not yet accepted anywhere). */
  target: string;
  started: number;
  context: string;
  /** Highest log index of a write acknowledged before this read started. */
  ackedAtStart: number;
}

interface Client {
  id: string;
  seq: number;
  hint: string;
  op: ClientOp | undefined;
}

interface HeldAnswer {
  m: Message;
  afterReads: number;
  done: boolean;
}

class SimNode {
  core: RaftCore | undefined;
  sm: KvState = emptyKv();
  paused = false;
  removed = false;
  /** In the configuration as of some applied entry (a node started for addLearner is not, yet). */
  member = false;
  held: Message[] = [];
  lastCommit = 0;
  readsWaiting: ReadState[] = [];
  incarnation = 0;
  /** Reads this incarnation started (the driver numbers read contexts, as raft/node does). */
  readSeq = 0;
  /** Answers to an earlier incarnation's reads the network holds back (reader bounces). */
  answersHeld: HeldAnswer[] = [];
  constructor(
    readonly id: string,
    readonly disk: MemoryStorage,
  ) {}
}

const enc = new TextEncoder();
const dec = new TextDecoder();
/** Events allowed after healing before giving up (the virtual-time bound normally ends it first). */
const healStepsMax = 200_000;

function emptyKv(): KvState {
  return { applied: 0, kv: {}, seen: {} };
}

function encodeKv(s: KvState): Uint8Array {
  return enc.encode(JSON.stringify(s));
}

function decodeKv(b: Uint8Array, index: number): KvState {
  if (b.byteLength === 0) return { ...emptyKv(), applied: index };
  const s = JSON.parse(dec.decode(b)) as KvState;
  if (s.applied !== index) throw new Violation(`snapshot data at ${s.applied} labelled ${index}`);
  return s;
}

/** A storage view that loses the persisted vote on load (the forgetVoteOnRestart bug). */
function forgetfulView(disk: MemoryStorage): RaftStorage {
  return {
    initialState: () => {
      const s = disk.initialState();
      return { ...s, hardState: { ...s.hardState, vote: "" } };
    },
    entries: (lo, hi, bytesMax) => disk.entries(lo, hi, bytesMax),
    term: (i) => disk.term(i),
    firstIndex: () => disk.firstIndex(),
    lastIndex: () => disk.lastIndex(),
    snapshot: () => disk.snapshot(),
  };
}

function sameEntry(a: Entry, b: Entry): boolean {
  if (a === b) return true;
  if (a.index !== b.index || a.term !== b.term || a.type !== b.type) return false;
  if (a.data.byteLength !== b.data.byteLength) return false;
  for (let i = 0; i < a.data.byteLength; i++) if (a.data[i] !== b.data[i]) return false;
  return true;
}

export class Cluster {
  readonly p: SimParams;
  private readonly heap = new EventHeap();
  private readonly rng: Rng;
  private readonly netRng: Rng;
  private readonly nodes = new Map<string, SimNode>();
  private readonly spareIds: string[] = [];
  private readonly clients: Client[] = [];
  now = 0;
  private faulting = true;
  private dropRate: number;
  private duplicateRate: number;
  private reorderRate: number;
  private crashMidReadyRate: number;
  private bounceRate: number;
  private leaderCrashRate: number;
  private readerBounceRate: number;
  private blocked: ((a: string, b: string) => boolean) | undefined;
  private readonly coreBugs: TestOnlyBugs;
  private readonly driverBugs: DriverBugs;
  private readonly opTimeoutMs: number;
  private readonly electionMs: number;
  private readonly cmdCache = new WeakMap<Uint8Array, Command>();
  /** Snapshot transfer → furthest chunk sent (countChunk). */
  private readonly transfers = new Map<string, number>();

  // Invariant state
  private readonly leaderOfTerm = new Map<number, string>();
  /** index → the entry committed (applied) there, first seen. */
  private readonly committedLog = new Map<number, Entry>();
  private maxCommitted = 0;
  /**
   * index → lowest term in which some replica saw it committed. A replica learns of a commit in a
   * term ≥ the committing leader's, so this bounds the commit term from above: checking leaders of
   * later terms only is sound (no false alarms) — a stale candidate of an older term may lack it.
   */
  private readonly commitTerm = new Map<number, number>();
  /** index → term → (entry, term of the entry before it): log matching, checked on every append. */
  private readonly appended = new Map<number, Map<number, { e: Entry; prevTerm: number | undefined }>>();
  private maxAckedIndex = 0;
  private reads = 0;
  private probeSeq = 0;
  private probeDoneAt: number | undefined;
  private readonly trace: string[] = [];
  private readonly stats: Record<string, number> = {};
  private readonly traceMax: number;

  constructor(private readonly o: SimOptions) {
    this.p = o.params;
    this.rng = new Rng(deriveSeed(this.p.seed, "sim"));
    this.netRng = new Rng(deriveSeed(this.p.seed, "net"));
    this.dropRate = this.p.dropRate;
    this.duplicateRate = this.p.duplicateRate;
    this.reorderRate = this.p.reorderRate;
    this.crashMidReadyRate = this.p.crashMidReadyRate;
    this.bounceRate = this.p.bounceRate;
    this.leaderCrashRate = this.p.leaderCrashRate;
    this.readerBounceRate = this.p.readerBounceRate;
    this.coreBugs = o.coreBugs ?? {};
    this.driverBugs = o.driverBugs ?? {};
    this.electionMs = this.p.electionTicks * this.p.tickMs;
    this.opTimeoutMs = 2 * this.electionMs;
    this.traceMax = o.traceEvents ?? 0;
    const ids = Array.from({ length: this.p.nodes }, (_, i) => `n${i + 1}`);
    for (let i = this.p.nodes + 1; i <= this.p.nodes + 2; i++) this.spareIds.push(`n${i}`);
    for (const id of ids) {
      const n = new SimNode(id, new MemoryStorage({ voters: ids, learners: [] }));
      n.member = true;
      this.nodes.set(id, n);
      this.startNode(n);
    }
    for (let c = 0; c < this.p.clients; c++) {
      const cl: Client = { id: `c${c + 1}`, seq: 0, hint: "", op: undefined };
      this.clients.push(cl);
      this.heap.push(this.rng.int(0, this.p.clientOpEveryMs), () => this.clientEvent(cl));
    }
    if (this.p.faultEveryMs > 0)
      this.heap.push(this.rng.int(1, this.p.faultEveryMs), () => this.faultEvent());
  }

  run(): SimResult {
    let steps = 0;
    let healSteps = 0;
    let healedAt = 0;
    try {
      while (steps < this.o.steps && this.step()) steps++;
      this.heal();
      healedAt = this.now;
      // Liveness (docs/raft.md, "Simulator"): with faults healed, a leader must be elected and a
      // new proposal committed within a bound of virtual time.
      const boundMs = this.livenessBoundMs();
      this.heap.push(this.now, () => this.probeEvent());
      while (this.probeDoneAt === undefined && this.now - healedAt <= boundMs && healSteps < healStepsMax) {
        if (!this.step()) break;
        healSteps++;
      }
      if (this.probeDoneAt === undefined) {
        throw new Violation(
          `liveness: no proposal committed within ${boundMs} virtual ms after healing ` +
            `(10 election timeouts + catch-up allowance)`,
        );
      }
      return this.result(true, steps, healSteps, undefined, this.probeDoneAt - healedAt);
    } catch (err) {
      if (err instanceof Violation || err instanceof RaftInvariantError) {
        return this.result(false, steps, healSteps, `${err.name}: ${err.message}`);
      }
      const e = err as Error;
      return this.result(false, steps, healSteps, `unexpected ${e.name}: ${e.message}\n${e.stack ?? ""}`);
    }
  }

  /**
   * 10 election timeouts to elect a leader, plus catch-up work the faults left behind. In the
   * worst configuration (one entry per append, a window of one) every backtracking step and every
   * replicated entry of backlog costs one round trip, and so does every chunk of a snapshot.
   * Backlog = entries beyond the lowest commit index among the replicas.
   */
  livenessBoundMs(): number {
    let maxLast = 0;
    let minCommit = Number.POSITIVE_INFINITY;
    let snapshotBytes = 0;
    for (const n of this.nodes.values()) {
      if (!n.core || n.removed) continue;
      maxLast = Math.max(maxLast, n.core.lastIndex);
      minCommit = Math.min(minCommit, n.core.committed);
      snapshotBytes = Math.max(snapshotBytes, n.disk.snapshot().data.byteLength);
    }
    const backlog = Math.max(0, maxLast - (Number.isFinite(minCommit) ? minCommit : 0));
    const chunks = Math.ceil(snapshotBytes / this.p.snapshotChunkBytesMax) + 1;
    const roundTripMs = 2 * this.p.delayMaxMs;
    return 10 * this.electionMs + roundTripMs * (2 * backlog + chunks);
  }

  private result(
    ok: boolean,
    steps: number,
    healSteps: number,
    violation?: string,
    healToCommitMs?: number,
  ): SimResult {
    const r: SimResult = {
      seed: this.p.seed,
      ok,
      steps,
      healSteps,
      virtualMs: this.now,
      committed: this.maxCommitted,
      leaders: this.leaderOfTerm.size,
      reads: this.reads,
      stats: this.stats,
    };
    if (violation !== undefined) r.violation = violation;
    if (healToCommitMs !== undefined) r.healToCommitMs = healToCommitMs;
    if (this.traceMax > 0) r.trace = this.trace.slice();
    return r;
  }

  private step(): boolean {
    const e = this.heap.pop();
    if (!e) return false;
    this.now = e.t;
    e.run();
    return true;
  }

  private count(k: string): void {
    this.stats[k] = (this.stats[k] ?? 0) + 1;
  }

  private note(s: string): void {
    if (this.traceMax === 0) return;
    this.trace.push(`${this.now}ms ${s}`);
    if (this.trace.length > this.traceMax) this.trace.shift();
  }

  // -------------------------------------------------------------------------------------------
  // Replicas and the driver

  private startNode(n: SimNode): void {
    n.incarnation++;
    // The buggy driver does not load the vote it persisted (the disk still has it).
    const storage = this.driverBugs.forgetVoteOnRestart && n.incarnation > 1 ? forgetfulView(n.disk) : n.disk;
    const snap = n.disk.snapshot();
    n.core = new RaftCore({
      id: n.id,
      storage,
      electionTicks: this.p.electionTicks,
      heartbeatTicks: this.p.heartbeatTicks,
      random: new Rng(deriveSeed(this.p.seed, `core:${n.id}:${n.incarnation}`)).next,
      preVote: this.p.preVote,
      checkQuorum: this.p.checkQuorum,
      entriesPerMessageMax: this.p.entriesPerMessageMax,
      bytesPerMessageMax: this.p.bytesPerMessageMax,
      inflightMessagesMax: this.p.inflightMessagesMax,
      snapshotChunkBytesMax: this.p.snapshotChunkBytesMax,
      applied: snap.meta.index,
      testOnlyBugs: this.coreBugs,
    });
    n.sm = decodeKv(snap.data, snap.meta.index);
    n.lastCommit = n.core.committed;
    n.paused = false;
    n.held = [];
    n.readsWaiting = [];
    n.readSeq = 0;
    const inc = n.incarnation;
    this.heap.push(this.now + this.rng.int(1, this.p.tickMs), () => this.tickEvent(n, inc));
    this.note(`start ${n.id} (incarnation ${inc}, term ${n.core.currentTerm}, commit ${n.core.committed})`);
    this.drive(n);
  }

  private crash(n: SimNode, why: string): void {
    if (!n.core) return;
    this.count(why.startsWith("mid-Ready") ? "crashMidReady" : "crash");
    this.note(`crash ${n.id} (${why})`);
    n.core = undefined;
    n.paused = false;
    n.held = [];
    n.readsWaiting = [];
  }

  private tickEvent(n: SimNode, inc: number): void {
    if (n.incarnation !== inc || !n.core) return;
    this.heap.push(this.now + this.p.tickMs, () => this.tickEvent(n, inc));
    if (n.paused) return;
    n.core.tick();
    this.drive(n);
  }

  private drive(n: SimNode): void {
    let rounds = 0;
    while (n.core?.hasReady()) {
      if (++rounds > 10_000) throw new Violation(`${n.id}: Ready loop does not converge`);
      this.handleReady(n, n.core.ready());
    }
    if (n.core) this.checkNode(n);
  }

  /**
   * The driver contract: send what may leave now → persist → send the answers → apply → advance;
   * a crash may hit between any two (the mutant sends everything before it persists).
   */
  private handleReady(n: SimNode, rd: Ready): void {
    const core = n.core!;
    let crashAfter = 0;
    let bounce = false;
    if (this.crashMidReadyRate > 0 && this.rng.chance(this.crashMidReadyRate))
      crashAfter = this.rng.int(1, 4);
    if (this.bounceRate > 0 && crashAfter === 0) {
      // Targeted: crash (and come straight back) while handling a Ready that grants a vote or
      // acknowledges entries — the windows where only durability keeps a promise made to a peer.
      let p = 0;
      for (const m of rd.messagesAfterPersist) {
        if (m.reject) continue;
        if (m.type === "voteResp") p = this.bounceRate;
        else if (m.type === "appResp" && p === 0) p = this.bounceRate / 10;
      }
      if (p > 0 && this.rng.chance(p)) {
        crashAfter = this.rng.int(1, 4);
        bounce = true;
      }
    }
    if (
      this.leaderCrashRate > 0 &&
      crashAfter === 0 &&
      core.currentRole === "leader" &&
      (rd.softState?.role === "leader" ||
        (rd.hardState && rd.hardState.commit > n.disk.hardState().commit)) &&
      this.rng.chance(this.leaderCrashRate)
    ) {
      // Targeted: the leader dies at the worst moment — it won, or learned that something
      // committed, and persisted that, but no answer and no later append tells anyone (its
      // appends of this Ready may already have left).
      crashAfter = 2;
      const inc = n.incarnation;
      this.heap.push(this.now + this.rng.int(this.p.tickMs, 5 * this.electionMs), () => {
        if (this.faulting && !n.core && !n.removed && n.incarnation === inc) this.startNode(n);
      });
    }
    // The node's order: what may leave now, then persist, then the answers (Ready's two lists).
    // The mutant sends everything first.
    const sendNow = () => this.send(rd.messages);
    const sendAfter = () => this.send(rd.messagesAfterPersist);
    const stages = this.driverBugs.replyBeforePersist
      ? [() => this.send([...rd.messages, ...rd.messagesAfterPersist]), () => this.persist(n, rd)]
      : [sendNow, () => this.persist(n, rd), sendAfter];
    const crash = (why: string) => {
      this.crash(n, why);
      if (!bounce) return;
      const inc = n.incarnation;
      this.heap.push(this.now + this.rng.int(1, 3), () => {
        if (!n.core && !n.removed && n.incarnation === inc) this.startNode(n);
      });
    };
    for (let k = 0; k < stages.length; k++) {
      stages[k]!();
      if (crashAfter === k + 1) {
        crash(`mid-Ready, after stage ${k + 1}`);
        return;
      }
    }
    this.apply(n, rd);
    if (crashAfter > stages.length) {
      crash("mid-Ready, after apply");
      return;
    }
    core.advance(rd);
    if (rd.softState) this.note(`${n.id} ${rd.softState.role} term ${core.currentTerm}`);
    this.maybeSnapshot(n);
  }

  private persist(n: SimNode, rd: Ready): void {
    if (rd.snapshot) n.disk.applySnapshot(rd.snapshot);
    if (rd.entries.length > 0) {
      this.checkAppended(n, rd.entries);
      n.disk.append(rd.entries);
    }
    if (rd.hardState) {
      const old = n.disk.hardState();
      if (rd.hardState.term < old.term) throw new Violation(`${n.id}: durable term went back`);
      if (rd.hardState.commit < old.commit) throw new Violation(`${n.id}: durable commit went back`);
      if (
        rd.hardState.term === old.term &&
        old.vote !== "" &&
        rd.hardState.vote !== "" &&
        rd.hardState.vote !== old.vote
      ) {
        throw new Violation(
          `election safety: ${n.id} voted twice in term ${old.term} (${old.vote}, then ${rd.hardState.vote})`,
        );
      }
      n.disk.setHardState(rd.hardState);
    }
  }

  private send(ms: Message[]): void {
    for (const m of ms) this.sendMessage(m);
  }

  private apply(n: SimNode, rd: Ready): void {
    if (rd.snapshot) {
      this.count("snapshotInstalled");
      n.sm = decodeKv(rd.snapshot.data, rd.snapshot.meta.index);
      this.noteConf(rd.snapshot.meta);
    }
    for (const e of rd.committedEntries) this.applyEntry(n, e);
    for (const rs of rd.readStates) n.readsWaiting.push(rs);
    if (n.readsWaiting.length > 0) this.serveReads(n);
  }

  private applyEntry(n: SimNode, e: Entry): void {
    if (e.index !== n.sm.applied + 1) {
      throw new Violation(`${n.id}: applied ${e.index} after ${n.sm.applied} (gap or repeat)`);
    }
    // State machine safety: every replica applies the same entry at each index.
    const g = this.committedLog.get(e.index);
    if (!g) {
      this.committedLog.set(e.index, e);
      if (e.index > this.maxCommitted) this.maxCommitted = e.index;
    } else if (!sameEntry(g, e)) {
      throw new Violation(
        `state machine safety: ${n.id} applied term ${e.term} at ${e.index}, another replica term ${g.term}`,
      );
    }
    n.sm.applied = e.index;
    if (e.type === EntryType.ConfChange) {
      if (!g) this.count("confChangeCommitted");
      this.noteConf(decodeConfState(e.data));
    } else if (e.type === EntryType.Normal) {
      const cmd = this.decodeCommand(e.data);
      if (cmd.c === "probe") {
        if (this.probeDoneAt === undefined && !this.faulting) this.probeDoneAt = this.now;
        return;
      }
      if ((n.sm.seen[cmd.c] ?? 0) < cmd.s) {
        n.sm.seen[cmd.c] = cmd.s;
        n.sm.kv[cmd.k] = cmd.v;
      }
      const cl = this.clients.find((c) => c.id === cmd.c);
      const op = cl?.op;
      if (cl && op && op.kind === "put" && op.seq === cmd.s && op.target === n.id) {
        // Acknowledged: any read that starts from now on must see index ≥ e.index.
        if (e.index > this.maxAckedIndex) this.maxAckedIndex = e.index;
        cl.op = undefined;
        cl.hint = n.id; // clients stick to the node that last served them
      }
    }
  }

  private serveReads(n: SimNode): void {
    const still: ReadState[] = [];
    for (const rs of n.readsWaiting) {
      if (rs.index > n.sm.applied) {
        still.push(rs);
        continue;
      }
      for (const cl of this.clients) {
        const op = cl.op;
        if (op?.kind !== "read" || op.context !== rs.context) continue;
        // Linearizable read: it saw every write acknowledged before it started.
        if (rs.index < op.ackedAtStart) {
          throw new Violation(
            `stale read ${rs.context} at ${n.id}: read index ${rs.index} < acknowledged write ${op.ackedAtStart}`,
          );
        }
        this.reads++;
        if (n.core?.currentRole !== "leader") this.count("followerRead");
        cl.op = undefined;
        cl.hint = n.id;
      }
    }
    n.readsWaiting = still;
  }

  private maybeSnapshot(n: SimNode): void {
    const every = this.p.snapshotEveryEntries;
    const core = n.core;
    if (every === 0 || !core) return;
    if (n.sm.applied - n.disk.snapshot().meta.index < every) return;
    const meta = core.snapshotMeta(n.sm.applied);
    n.disk.createSnapshot({ meta, data: encodeKv(n.sm) });
    this.note(`${n.id} snapshot+compact at ${meta.index}`);
    this.count("compaction");
  }

  /** A committed configuration: its members are members; replicas it dropped are shut down. */
  private noteConf(c: ConfState): void {
    const members = new Set([...c.voters, ...c.learners]);
    for (const id of members) {
      const m = this.nodes.get(id);
      if (m) m.member = true;
    }
    for (const m of this.nodes.values()) {
      if (m.member && !m.removed && !members.has(m.id)) {
        m.removed = true;
        this.crash(m, "removed from the configuration");
      }
    }
  }

  private decodeCommand(b: Uint8Array): Command {
    let c = this.cmdCache.get(b);
    if (!c) {
      c = JSON.parse(dec.decode(b)) as Command;
      this.cmdCache.set(b, c);
    }
    return c;
  }

  private encodeCommand(c: Command): Uint8Array {
    const b = enc.encode(JSON.stringify(c));
    this.cmdCache.set(b, c);
    return b;
  }

  // -------------------------------------------------------------------------------------------
  // Invariants checked after every step

  private checkNode(n: SimNode): void {
    const c = n.core!;
    if (c.committed < n.lastCommit) {
      throw new Violation(`${n.id}: commit went back ${n.lastCommit} → ${c.committed}`);
    }
    if (c.committed > n.lastCommit) {
      const t = c.currentTerm;
      for (let i = n.lastCommit + 1; i <= c.committed; i++) {
        const known = this.commitTerm.get(i);
        if (known === undefined || t < known) this.commitTerm.set(i, t);
      }
    }
    n.lastCommit = c.committed;
    if (c.applied > c.committed || n.sm.applied > c.committed) {
      throw new Violation(`${n.id}: applied ${n.sm.applied} beyond commit ${c.committed}`);
    }
    if (c.currentRole === "leader") {
      const t = c.currentTerm;
      const prev = this.leaderOfTerm.get(t);
      if (prev === undefined) {
        this.leaderOfTerm.set(t, n.id);
        this.checkLeaderCompleteness(n);
      } else if (prev !== n.id) {
        throw new Violation(`election safety: ${prev} and ${n.id} both leaders of term ${t}`);
      }
    }
  }

  /** Every entry committed in an earlier term is in the new leader's log (or under its snapshot). */
  private checkLeaderCompleteness(n: SimNode): void {
    const c = n.core!;
    const first = c.status().firstIndex;
    const term = c.currentTerm;
    for (let i = first; i <= this.maxCommitted; i++) {
      const g = this.committedLog.get(i);
      const ct = this.commitTerm.get(i);
      if (!g || ct === undefined || ct >= term) continue;
      const t = c.logTerm(i);
      if (t !== g.term) {
        throw new Violation(
          `leader completeness: ${n.id} leads term ${c.currentTerm} with term ${t} at ${i}, committed term ${g.term}`,
        );
      }
    }
  }

  /** Log matching, incrementally: an (index, term) pair always names the same entry after the same term. */
  private checkAppended(n: SimNode, es: Entry[]): void {
    for (let k = 0; k < es.length; k++) {
      const e = es[k]!;
      const prevTerm = k > 0 ? es[k - 1]!.term : e.index === 1 ? 0 : n.core?.logTerm(e.index - 1);
      let byTerm = this.appended.get(e.index);
      if (!byTerm) {
        byTerm = new Map();
        this.appended.set(e.index, byTerm);
      }
      const rec = byTerm.get(e.term);
      if (!rec) {
        byTerm.set(e.term, { e, prevTerm });
        continue;
      }
      if (!sameEntry(rec.e, e)) {
        throw new Violation(`log matching: ${n.id} has a different entry at index ${e.index} term ${e.term}`);
      }
      if (prevTerm !== undefined && rec.prevTerm !== undefined && prevTerm !== rec.prevTerm) {
        throw new Violation(
          `log matching: ${n.id} entry ${e.index}/${e.term} follows term ${prevTerm}, elsewhere ${rec.prevTerm}`,
        );
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // Network

  private sendMessage(sent: Message): void {
    const r = this.netRng;
    if (sent.type === "snap") this.countChunk(sent);
    let m = sent;
    if (this.o.wireCodec) {
      const decoded = decodeMessage<Message>(encodeMessage(sent));
      if (!decoded) throw new Violation(`message ${sent.type} does not survive the wire codec`);
      m = decoded;
    }
    if (this.blocked?.(m.from, m.to)) return;
    if (this.dropRate > 0 && r.chance(this.dropRate)) return;
    if (m.type === "readIndexResp" && this.readerBounceRate > 0 && r.chance(this.readerBounceRate)) {
      this.bounceReader(m);
      return;
    }
    const delay = () => {
      let d = r.int(this.p.delayMinMs, this.p.delayMaxMs);
      if (this.reorderRate > 0 && r.chance(this.reorderRate)) d += r.int(1, 10 * this.p.delayMaxMs);
      return d;
    };
    this.heap.push(this.now + delay(), () => this.deliver(m));
    if (this.duplicateRate > 0 && r.chance(this.duplicateRate)) {
      this.heap.push(this.now + delay(), () => this.deliver(m));
    }
  }

  /**
   * Snapshot transfer cost: every chunk message a leader sends (`snapChunksSent`) against the
   * chunks each transfer got through, up to the furthest one sent (`snapChunksNeeded`; a transfer
   * cut short by a crash or a new leader needed only those). A transfer is one leader term, one
   * snapshot and one incarnation of the receiver (a restarted receiver lost what it had received).
   */
  private countChunk(m: Message): void {
    this.count("snapChunksSent");
    const to = this.nodes.get(m.to);
    const key = `${m.from}>${m.to}#${to?.incarnation ?? 0}@${m.term}/${m.snapshot?.index ?? 0}`;
    const chunk = Math.floor((m.offset ?? 0) / this.p.snapshotChunkBytesMax) + 1;
    const before = this.transfers.get(key) ?? 0;
    if (chunk <= before) return;
    this.transfers.set(key, chunk);
    this.stats.snapChunksNeeded = (this.stats.snapChunksNeeded ?? 0) + chunk - before;
  }

  /**
   * Targeted fault: the reader crashes as its answer leaves the leader and restarts 1–3 ms later.
   * The network holds the answer until the new incarnation has started as many reads as the old
   * one had (the worst moment for a context reused across restarts), or 40 delays at most.
   */
  private bounceReader(m: Message): void {
    const n = this.nodes.get(m.to);
    if (!n?.core || n.removed || n.paused) return;
    const held = { m, afterReads: n.readSeq, done: false };
    this.count("readerBounce");
    n.answersHeld.push(held);
    this.crash(n, "reader bounce");
    const inc = n.incarnation;
    this.heap.push(this.now + this.rng.int(1, 3), () => {
      if (!n.core && !n.removed && n.incarnation === inc) this.startNode(n);
    });
    this.heap.push(this.now + 40 * this.p.delayMaxMs, () => this.releaseHeld(n, held));
  }

  private releaseHeld(n: SimNode, h: HeldAnswer): void {
    if (h.done) return;
    h.done = true;
    n.answersHeld.splice(n.answersHeld.indexOf(h), 1);
    this.deliver(h.m);
  }

  private deliver(m: Message): void {
    const n = this.nodes.get(m.to);
    if (!n?.core || n.removed) return;
    if (n.paused) {
      n.held.push(m);
      return;
    }
    this.count(`msg.${m.type}`);
    n.core.step(m);
    this.drive(n);
  }

  // -------------------------------------------------------------------------------------------
  // Clients

  private liveNodes(): SimNode[] {
    const out: SimNode[] = [];
    for (const n of this.nodes.values()) if (n.core && !n.removed) out.push(n);
    return out;
  }

  private leaderNode(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.nodes.values()) {
      const c = n.core;
      if (!c || n.removed || n.paused || c.currentRole !== "leader") continue;
      if (!best || c.currentTerm > best.core!.currentTerm) best = n;
    }
    return best;
  }

  private clientEvent(cl: Client): void {
    this.heap.push(this.now + this.rng.int(1, 2 * this.p.clientOpEveryMs), () => this.clientEvent(cl));
    const op = cl.op;
    if (op) {
      if (op.target !== "" && this.now - op.started < this.opTimeoutMs) return;
      // Timed out (or never accepted): the node we tried may be partitioned or deposed without
      // knowing it — forget it and try elsewhere, as a real client library would.
      if (op.target !== "") cl.hint = "";
      if (op.kind === "read") {
        cl.op = undefined; // abandoned; a new read starts fresh
        return;
      }
      this.proposePut(cl, op); // retry with the same sequence number: the state machine dedupes
      return;
    }
    cl.seq++;
    const kind = this.rng.chance(this.p.readRate) ? "read" : "put";
    const newOp: ClientOp = {
      kind,
      seq: cl.seq,
      key: this.rng.pick(["a", "b", "c", "d"]),
      value: this.rng.int(0, 1_000_000),
      target: "",
      started: this.now,
      context: "",
      ackedAtStart: this.maxAckedIndex,
    };
    cl.op = newOp;
    if (kind === "put") this.proposePut(cl, newOp);
    else this.startRead(cl, newOp);
  }

  private pickTarget(cl: Client): SimNode | undefined {
    const hinted = this.nodes.get(cl.hint);
    if (hinted?.core && !hinted.removed && this.rng.chance(0.9)) return hinted;
    const live = this.liveNodes();
    return live.length > 0 ? this.rng.pick(live) : undefined;
  }

  private proposePut(cl: Client, op: ClientOp): void {
    op.target = "";
    const n = this.pickTarget(cl);
    if (!n?.core || n.paused) return;
    try {
      n.core.propose(this.encodeCommand({ c: cl.id, s: op.seq, k: op.key, v: op.value }));
      op.target = n.id;
      op.started = this.now;
    } catch (err) {
      if (!(err instanceof RaftError)) throw err;
      cl.hint = err.leaderId;
    }
    this.drive(n);
  }

  private startRead(cl: Client, op: ClientOp): void {
    // With reader bounces, reads spread over all replicas (follower reads), as a read-heavy
    // deployment spreads them; otherwise clients stick to the node that served them last.
    const live = this.liveNodes();
    const n = this.p.readerBounceRate > 0 && live.length > 0 ? this.rng.pick(live) : this.pickTarget(cl);
    if (!n?.core || n.paused) {
      cl.op = undefined;
      return;
    }
    // The node names the read, as raft/node does: `id/incarnation/seq`, the incarnation standing in
    // for the node's random part (unique across restarts either way).
    const seq = ++n.readSeq;
    op.context = this.driverBugs.reuseReadContextsAfterRestart
      ? `${n.id}/${seq}`
      : `${n.id}/${n.incarnation}/${seq}`;
    try {
      n.core.readIndex(op.context);
      op.target = n.id;
    } catch (err) {
      if (!(err instanceof RaftError)) throw err;
      cl.op = undefined;
    }
    this.drive(n);
    for (const h of n.answersHeld) {
      if (h.afterReads <= n.readSeq) {
        this.heap.push(this.now + this.netRng.int(1, this.p.delayMaxMs), () => this.releaseHeld(n, h));
      }
    }
  }

  private probeEvent(): void {
    if (this.probeDoneAt !== undefined) return;
    this.heap.push(this.now + this.p.tickMs, () => this.probeEvent());
    const l = this.leaderNode();
    if (!l?.core) return;
    try {
      l.core.propose(this.encodeCommand({ c: "probe", s: ++this.probeSeq, k: "probe", v: 0 }));
    } catch (err) {
      if (!(err instanceof RaftError)) throw err;
    }
    this.drive(l);
  }

  // -------------------------------------------------------------------------------------------
  // Faults

  private heal(): void {
    this.faulting = false;
    this.blocked = undefined;
    this.dropRate = 0;
    this.duplicateRate = 0;
    this.reorderRate = 0;
    this.crashMidReadyRate = 0;
    this.bounceRate = 0;
    this.leaderCrashRate = 0;
    this.readerBounceRate = 0;
    for (const n of this.nodes.values()) {
      if (n.removed) continue;
      if (!n.core) this.startNode(n);
      else if (n.paused) this.unpause(n);
    }
    this.note("heal");
  }

  private unpause(n: SimNode): void {
    if (!n.paused || !n.core) return;
    n.paused = false;
    const held = n.held;
    n.held = [];
    this.note(`unpause ${n.id} (${held.length} held messages)`);
    for (const m of held) {
      if (!n.core) return;
      n.core.step(m);
      this.drive(n);
    }
  }

  private faultEvent(): void {
    if (!this.faulting) return;
    this.heap.push(this.now + this.rng.int(1, 2 * this.p.faultEveryMs), () => this.faultEvent());
    const kinds: string[] = [];
    if (this.p.partitions.length > 0) kinds.push("partition");
    if (this.p.crashes) kinds.push("crash");
    if (this.p.pauses) kinds.push("pause");
    if (this.p.transfers) kinds.push("transfer");
    if (this.p.membership) kinds.push("membership");
    if (this.p.campaignStorms) kinds.push("campaignStorm");
    if (kinds.length === 0) return;
    switch (this.rng.pick(kinds)) {
      case "partition":
        this.partition(this.rng.pick(this.p.partitions));
        break;
      case "crash": {
        const live = this.liveNodes();
        if (live.length === 0) return;
        const n = this.rng.pick(live);
        this.crash(n, "fault");
        const inc = n.incarnation;
        this.heap.push(this.now + this.rng.int(this.p.tickMs, 5 * this.electionMs), () => {
          if (this.faulting && !n.core && !n.removed && n.incarnation === inc) this.startNode(n);
        });
        break;
      }
      case "pause": {
        const live = this.liveNodes().filter((n) => !n.paused);
        if (live.length === 0) return;
        const n = this.rng.pick(live);
        n.paused = true;
        const inc = n.incarnation;
        this.note(`pause ${n.id}`);
        this.heap.push(this.now + this.rng.int(this.p.tickMs, 4 * this.electionMs), () => {
          if (n.incarnation === inc) this.unpause(n);
        });
        break;
      }
      case "transfer": {
        const l = this.leaderNode();
        if (!l?.core) return;
        const voters = l.core.status().conf.voters.filter((v) => v !== l.id);
        if (voters.length === 0) return;
        const to = this.rng.pick(voters);
        this.note(`transfer ${l.id} → ${to}`);
        l.core.transferLeadership(to);
        this.drive(l);
        break;
      }
      case "membership":
        this.membershipChange();
        break;
      case "campaignStorm": {
        // Several election timers fire at the same instant (split votes, competing candidates).
        const live = this.liveNodes().filter((n) => !n.paused);
        this.note("campaign storm");
        for (const n of this.rng.shuffle(live).slice(0, this.rng.int(2, Math.max(2, live.length)))) {
          n.core?.campaign();
          this.drive(n);
        }
        break;
      }
    }
  }

  private membershipChange(): void {
    const l = this.leaderNode();
    if (!l?.core) return;
    const conf = l.core.status().conf;
    const members = new Set([...conf.voters, ...conf.learners]);
    let change: { type: "addLearner" | "promoteLearner" | "removeNode"; nodeId: string } | undefined;
    const learner = conf.learners[0];
    const started = [...this.nodes.values()].find((n) => !n.removed && !members.has(n.id) && !n.member);
    if (learner !== undefined) {
      change = { type: "promoteLearner", nodeId: learner };
    } else if (started) {
      change = { type: "addLearner", nodeId: started.id };
    } else if (conf.voters.length > 3 && this.rng.chance(0.5)) {
      const victims = conf.voters.filter((v) => v !== l.id);
      change = { type: "removeNode", nodeId: this.rng.pick(victims) };
    } else if (this.spareIds.length > 0) {
      const id = this.spareIds.shift()!;
      const n = new SimNode(id, new MemoryStorage());
      this.nodes.set(id, n);
      this.startNode(n);
      change = { type: "addLearner", nodeId: id };
    }
    if (!change) return;
    try {
      l.core.proposeConfChange(change);
      this.note(`propose ${change.type} ${change.nodeId} at ${l.id}`);
    } catch (err) {
      if (!(err instanceof RaftError)) throw err;
    }
    this.drive(l);
  }

  private partition(kind: PartitionKind): void {
    const ids = [...this.nodes.values()].filter((n) => !n.removed).map((n) => n.id);
    let blocked: (a: string, b: string) => boolean;
    switch (kind) {
      case "isolateLeader": {
        const l = this.leaderNode()?.id ?? this.rng.pick(ids);
        blocked = (a, b) => (a === l) !== (b === l);
        break;
      }
      case "majorityRing": {
        // Each node reaches only its ring neighbours: every node sees a majority (in 5 nodes), none
        // the same one — the classic case where CheckQuorum/PreVote matter.
        const pos = new Map(this.rng.shuffle([...ids]).map((id, i) => [id, i]));
        const n = ids.length;
        blocked = (a, b) => {
          const d = Math.abs(pos.get(a)! - pos.get(b)!);
          return d > 1 && d < n - 1;
        };
        break;
      }
      case "bridge": {
        // Two halves that only one bridge node connects.
        const order = this.rng.shuffle([...ids]);
        const bridge = order[0]!;
        const left = new Set(order.slice(1, 1 + Math.floor((order.length - 1) / 2)));
        blocked = (a, b) => a !== bridge && b !== bridge && left.has(a) !== left.has(b);
        break;
      }
      case "randomHalves": {
        const side = new Set(ids.filter(() => this.rng.chance(0.5)));
        blocked = (a, b) => side.has(a) !== side.has(b);
        break;
      }
    }
    this.blocked = blocked;
    this.count(`partition.${kind}`);
    this.note(`partition ${kind}`);
    this.heap.push(
      this.now + this.rng.int(this.electionMs, this.p.partitionElectionsMax * this.electionMs),
      () => {
        if (this.blocked === blocked) {
          this.blocked = undefined;
          this.note("partition healed");
        }
      },
    );
  }
}

export function runSimulation(o: SimOptions): SimResult {
  return new Cluster(o).run();
}
