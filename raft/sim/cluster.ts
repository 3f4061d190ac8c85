// Owns one deterministic simulated run of the core (the driver): a virtual clock and event queue,
// replicas each driven by the driver contract the real node uses (send what may leave now →
// persist → send the answers → apply → advance), a "disk" per replica that keeps only what the
// driver finished persisting, crashes in the middle of a Ready, snapshots and compaction, and the
// liveness phase after healing. Everything random comes from the seed, so a failing run replays
// exactly. Its parts live beside it: replica.ts (one replica's state), kv-model.ts (the model state
// machine), clients.ts (the workload), network.ts (delivery and network faults), faults.ts (the
// fault events and healing) and invariants.ts (the safety checks). They share this run's clock,
// queue and random streams through the Cluster, and draw from them in the order the events happen.
import {
  type ConfState,
  decodeConfState,
  type Entry,
  EntryType,
  MemoryStorage,
  RaftCore,
  RaftInvariantError,
  type ReadState,
  type Ready,
  type TestOnlyBugs,
} from "../core/index.ts";
import { Clients } from "./clients.ts";
import { Faults } from "./faults.ts";
import { EventHeap } from "./heap.ts";
import { SafetyChecker, Violation } from "./invariants.ts";
import { applyCommand, CommandCodec, decodeKv, encodeKv } from "./kv-model.ts";
import { SimNetwork } from "./network.ts";
import type { SimParams } from "./params.ts";
import { deriveSeed, Rng } from "./prng.ts";
import { forgetfulView, SimNode } from "./replica.ts";

export { Violation };

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

/** Events allowed after healing before giving up (the virtual-time bound normally ends it first). */
const healStepsMax = 200_000;

export class Cluster {
  // What the parts (clients, network, faults) share: the run's parameters, clock, event queue,
  // random streams and replicas.
  readonly p: SimParams;
  readonly heap = new EventHeap();
  /** The driver's, the clients' and the faults' random stream. */
  readonly rng: Rng;
  /** The network's own stream (loss, delay, duplication). */
  readonly netRng: Rng;
  readonly nodes = new Map<string, SimNode>();
  /** Ids for replicas a membership change may add. */
  readonly spareIds: string[] = [];
  now = 0;
  readonly electionMs: number;
  readonly driverBugs: DriverBugs;
  readonly stats: Record<string, number> = {};
  readonly codec = new CommandCodec();
  readonly checker = new SafetyChecker();
  readonly faults: Faults;
  readonly net: SimNetwork;
  readonly clients: Clients;
  private readonly coreBugs: TestOnlyBugs;
  private readonly trace: string[] = [];
  private readonly traceMax: number;

  constructor(readonly o: SimOptions) {
    this.p = o.params;
    this.rng = new Rng(deriveSeed(this.p.seed, "sim"));
    this.netRng = new Rng(deriveSeed(this.p.seed, "net"));
    this.faults = new Faults(this, this.p);
    this.coreBugs = o.coreBugs ?? {};
    this.driverBugs = o.driverBugs ?? {};
    this.electionMs = this.p.electionTicks * this.p.tickMs;
    this.net = new SimNetwork(this);
    this.clients = new Clients(this);
    this.traceMax = o.traceEvents ?? 0;
    const ids = Array.from({ length: this.p.nodes }, (_, i) => `n${i + 1}`);
    for (let i = this.p.nodes + 1; i <= this.p.nodes + 2; i++) this.spareIds.push(`n${i}`);
    for (const id of ids) {
      const n = new SimNode(id, new MemoryStorage({ voters: ids, learners: [] }));
      n.member = true;
      this.nodes.set(id, n);
      this.startNode(n);
    }
    this.clients.start(this.p.clients);
    if (this.p.faultEveryMs > 0)
      this.heap.push(this.rng.int(1, this.p.faultEveryMs), () => this.faults.event());
  }

  run(): SimResult {
    let steps = 0;
    let healSteps = 0;
    let healedAt = 0;
    try {
      while (steps < this.o.steps && this.step()) steps++;
      this.faults.heal();
      healedAt = this.now;
      // Liveness (docs/raft.md, "Simulator"): with faults healed, a leader must be elected and a
      // new proposal committed within a bound of virtual time.
      const boundMs = this.livenessBoundMs();
      this.heap.push(this.now, () => this.clients.probeEvent());
      while (
        this.clients.probeDoneAt === undefined &&
        this.now - healedAt <= boundMs &&
        healSteps < healStepsMax
      ) {
        if (!this.step()) break;
        healSteps++;
      }
      const probeDoneAt = this.clients.probeDoneAt;
      if (probeDoneAt === undefined) {
        throw new Violation(
          `liveness: no proposal committed within ${boundMs} virtual ms after healing ` +
            `(10 election timeouts + catch-up allowance)`,
        );
      }
      return this.result(true, steps, healSteps, undefined, probeDoneAt - healedAt);
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
      committed: this.checker.maxCommitted,
      leaders: this.checker.leaderOfTerm.size,
      reads: this.clients.reads,
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

  count(k: string): void {
    this.stats[k] = (this.stats[k] ?? 0) + 1;
  }

  /** A line for the failure report's trace (kept only when traceEvents asks for it). */
  note(s: string): void {
    if (this.traceMax === 0) return;
    this.trace.push(`${this.now}ms ${s}`);
    if (this.trace.length > this.traceMax) this.trace.shift();
  }

  // -------------------------------------------------------------------------------------------
  // Replicas and the driver

  /** Starts (or restarts) n from what its disk holds. */
  startNode(n: SimNode): void {
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

  /** n's process dies: the core and everything in memory go, the disk stays. */
  crash(n: SimNode, why: string): void {
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

  /** Handles n's Readies until it has none, then checks the invariants on it. */
  drive(n: SimNode): void {
    let rounds = 0;
    while (n.core?.hasReady()) {
      if (++rounds > 10_000) throw new Violation(`${n.id}: Ready loop does not converge`);
      this.handleReady(n, n.core.ready());
    }
    if (n.core) this.checker.checkNode(n);
  }

  /**
   * The driver contract: send what may leave now → persist → send the answers → apply → advance;
   * a crash may hit between any two (the mutant sends everything before it persists).
   */
  private handleReady(n: SimNode, rd: Ready): void {
    const core = n.core!;
    const f = this.faults;
    let crashAfter = 0;
    let bounce = false;
    if (f.crashMidReadyRate > 0 && this.rng.chance(f.crashMidReadyRate)) crashAfter = this.rng.int(1, 4);
    if (f.bounceRate > 0 && crashAfter === 0) {
      // Targeted: crash (and come straight back) while handling a Ready that grants a vote or
      // acknowledges entries — the windows where only durability keeps a promise made to a peer.
      let p = 0;
      for (const m of rd.messagesAfterPersist) {
        if (m.reject) continue;
        if (m.type === "voteResp") p = f.bounceRate;
        else if (m.type === "appResp" && p === 0) p = f.bounceRate / 10;
      }
      if (p > 0 && this.rng.chance(p)) {
        crashAfter = this.rng.int(1, 4);
        bounce = true;
      }
    }
    if (
      f.leaderCrashRate > 0 &&
      crashAfter === 0 &&
      core.currentRole === "leader" &&
      (rd.softState?.role === "leader" ||
        (rd.hardState && rd.hardState.commit > n.disk.hardState().commit)) &&
      this.rng.chance(f.leaderCrashRate)
    ) {
      // Targeted: the leader dies at the worst moment — it won, or learned that something
      // committed, and persisted that, but no answer and no later append tells anyone (its
      // appends of this Ready may already have left).
      crashAfter = 2;
      const inc = n.incarnation;
      this.heap.push(this.now + this.rng.int(this.p.tickMs, 5 * this.electionMs), () => {
        if (f.faulting && !n.core && !n.removed && n.incarnation === inc) this.startNode(n);
      });
    }
    // The node's order: what may leave now, then persist, then the answers (Ready's two lists).
    // The mutant sends everything first.
    const sendNow = () => this.net.send(rd.messages);
    const sendAfter = () => this.net.send(rd.messagesAfterPersist);
    const stages = this.driverBugs.replyBeforePersist
      ? [() => this.net.send([...rd.messages, ...rd.messagesAfterPersist]), () => this.persist(n, rd)]
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
      this.checker.checkAppended(n, rd.entries);
      n.disk.append(rd.entries);
    }
    if (rd.hardState) {
      this.checker.checkHardState(n, rd.hardState, n.disk.hardState());
      n.disk.setHardState(rd.hardState);
    }
  }

  private apply(n: SimNode, rd: Ready): void {
    if (rd.snapshot) {
      this.count("snapshotInstalled");
      n.sm = decodeKv(rd.snapshot.data, rd.snapshot.meta.index);
      this.noteConf(rd.snapshot.meta, rd.snapshot.meta.index);
    }
    for (const e of rd.committedEntries) this.applyEntry(n, e);
    for (const rs of rd.readStates) n.readsWaiting.push(rs);
    if (n.readsWaiting.length > 0) this.serveReads(n);
  }

  private applyEntry(n: SimNode, e: Entry): void {
    const firstSeen = this.checker.checkApplied(n, e);
    n.sm.applied = e.index;
    if (e.type === EntryType.ConfChange) {
      if (firstSeen) this.count("confChangeCommitted");
      this.noteConf(decodeConfState(e.data), e.index);
    } else if (e.type === EntryType.Normal) {
      const cmd = this.codec.decode(e.data);
      if (cmd.c !== "probe") applyCommand(n.sm, cmd);
      this.clients.applied(n, e, cmd);
    }
  }

  private serveReads(n: SimNode): void {
    const still: ReadState[] = [];
    for (const rs of n.readsWaiting) {
      if (rs.index > n.sm.applied) still.push(rs);
      else this.clients.served(n, rs);
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

  /** The log index of the newest committed configuration noted. */
  private confIndex = 0;

  /**
   * A committed configuration: its members are members; replicas it dropped are shut down. Only a
   * newer one than any noted counts: a lagging replica applying an older configuration (one from
   * before a learner was added) must not shut down the replica added since — seed 6325669 of the
   * 2026-12-03 soak did, and then failed liveness with a voter the harness kept down for good.
   */
  private noteConf(c: ConfState, index: number): void {
    if (index <= this.confIndex) return;
    this.confIndex = index;
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

  // -------------------------------------------------------------------------------------------
  // Who is up (for the clients and the faults)

  /** Replicas running (paused ones included), not removed. */
  liveNodes(): SimNode[] {
    const out: SimNode[] = [];
    for (const n of this.nodes.values()) if (n.core && !n.removed) out.push(n);
    return out;
  }

  /** The running, unpaused leader of the highest term, if any. */
  leaderNode(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.nodes.values()) {
      const c = n.core;
      if (!c || n.removed || n.paused || c.currentRole !== "leader") continue;
      if (!best || c.currentTerm > best.core!.currentTerm) best = n;
    }
    return best;
  }
}

export function runSimulation(o: SimOptions): SimResult {
  return new Cluster(o).run();
}
