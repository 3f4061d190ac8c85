// Owns the real-node simulator's driver: N production RaftNodes (raft/node/node.ts) on the simulated
// disk (LevelLog over MemoryDisk), the in-memory snapshot store, the simulated network and virtual
// time; clients that write and read through node.propose / node.readIndex; faults (crashes that
// lose unsynced writes, partitions, one-way cuts, snapshot saves that fail or stall); then a healed
// phase in which everything must converge. Invariants live in checker.ts.
import { NodeError, type NodeTestOnlyBugs, RaftNode } from "../../node/node.ts";
import { LevelLog, type LevelLogBugs } from "../../storage/level-log.ts";
import { MemoryDisk } from "../../storage/memory-kv.ts";
import { MemorySnapshots } from "../../storage/memory-snapshots.ts";
import { deriveSeed, mulberry32, Rng } from "../prng.ts";
import { NodeChecker } from "./checker.ts";
import { encodeCommand, KvFsm, reusedSeq, staleSeq } from "./kv-fsm.ts";
import { SimNodeNetwork } from "./network.ts";
import type { NodeSimParams } from "./params.ts";
import { Life, VirtualTime } from "./virtual-time.ts";

export interface NodeSimBugs extends NodeTestOnlyBugs, LevelLogBugs {
  /** The replicated state machine answers reads from a view that lags what it applied. */
  fsmReadsLag?: boolean;
  /** With clients restarting: a reused (client, seq) is answered with the first command's result. */
  fsmDedupIgnoresPayload?: boolean;
}

export interface NodeSimResult {
  seed: number;
  ok: boolean;
  violation?: string;
  virtualMs: number;
  events: number;
  acked: number;
  reads: number;
  crashes: number;
  lostBatches: number;
  /**
   * Crashes of a leader still in its first Ready of the term: elected, its term's first entry
   * not yet written (the node announces leadership only after that write). Recorded so that the
   * seeds are known to reach the case a leader's undurable self-acknowledgement would break.
   */
  leaderFirstReadyCrashes: number;
  /** Clients that restarted mid-write, and the writes refused for reusing a seq. */
  clientRestarts: number;
  reuseRefusals: number;
  /** Snapshot chunk messages leaders sent, and the chunks their transfers needed (network.ts). */
  snapChunksSent: number;
  snapChunksNeeded: number;
  snapshotsTaken: number;
  snapshotsInstalled: number;
  leaderChanges: number;
  /** The last lines the replicas logged (a failure's context). */
  trace: string[];
}

interface Slot {
  id: string;
  disk: MemoryDisk;
  snaps: MemorySnapshots;
  life: Life | undefined;
  node: RaftNode | undefined;
  fsm: KvFsm | undefined;
  started: boolean;
  lifeCount: number;
  lastCommit: number;
  /** The last term this life announced itself leader in (onLeaderChange, after a Ready's write). */
  announcedTerm: number;
}

const traceLinesMax = 60;

export class NodeSimCluster {
  readonly time = new VirtualTime();
  readonly checker = new NodeChecker();
  private readonly rng: Rng;
  private readonly net: SimNodeNetwork;
  private readonly slots = new Map<string, Slot>();
  private readonly harness = new Life("harness");
  private readonly trace: string[] = [];
  private clientsStop = false;
  private healed = false;
  private acked = 0;
  private snapshotsTaken = 0;
  private leaderFirstReadyCrashes = 0;
  private clientRestarts = 0;
  private reuseRefusals = 0;
  private snapshotsInstalled = 0;

  constructor(
    private readonly p: NodeSimParams,
    private readonly bugs: NodeSimBugs = {},
  ) {
    this.rng = new Rng(deriveSeed(p.seed, "driver"));
    this.net = new SimNodeNetwork(this.time, new Rng(deriveSeed(p.seed, "net")), {
      delayMsMin: p.delayMsMin,
      delayMsMax: p.delayMsMax,
      dropRate: p.dropRate,
      duplicateRate: p.duplicateRate,
      bandwidthBytesPerMs: p.bandwidthBytesPerMs,
      snapshotChunkBytesMax: p.snapshotChunkBytesMax,
    });
    for (let i = 1; i <= p.nodes; i++) {
      const id = `n${i}`;
      this.slots.set(id, {
        id,
        disk: new MemoryDisk({ writeMs: 0.05, syncMsMin: p.syncMsMin, syncMsMax: p.syncMsMax }),
        snaps: new MemorySnapshots(p.snapshotFaults),
        life: undefined,
        node: undefined,
        fsm: undefined,
        started: false,
        lifeCount: 0,
        lastCommit: 0,
        announcedTerm: 0,
      });
    }
  }

  private get ids(): string[] {
    return [...this.slots.keys()];
  }

  private log(line: string): void {
    this.trace.push(`${this.time.now.toFixed(1)} ${line}`);
    if (this.trace.length > traceLinesMax) this.trace.shift();
  }

  private start(s: Slot): void {
    const life = new Life(`${s.id}#${++s.lifeCount}`);
    const clock = this.time.scheduler(life, mulberry32(deriveSeed(this.p.seed, life.name)));
    const fsm = new KvFsm(
      s.id,
      this.checker,
      this.bugs.fsmReadsLag,
      this.p.clientRestartRate > 0 && !this.bugs.fsmDedupIgnoresPayload,
    );
    const say = (level: string) => (obj: object, msg: string) =>
      this.log(`${life.name} ${level} ${msg} ${JSON.stringify(obj).slice(0, 200)}`);
    const bugs = this.bugs;
    const node: RaftNode = new RaftNode({
      id: s.id,
      clusterId: "sim",
      voters: this.ids,
      dataDir: "",
      openLog: () => LevelLog.openOn(s.disk.open(clock), bugs),
      snapshots: s.snaps.open(clock),
      transport: this.net.transportFor(s.id, life, () => (s.life === life ? node : undefined)),
      fsm,
      log: { info: say("info"), warn: say("warn"), error: say("error") },
      scheduler: clock,
      tickMs: this.p.tickMs,
      electionTicks: this.p.electionTicks,
      heartbeatTicks: this.p.heartbeatTicks,
      snapshotEveryEntries: this.p.snapshotEveryEntries,
      snapshotCatchUpEntries: this.p.snapshotCatchUpEntries,
      ...(this.p.snapshotChunkBytesMax !== undefined
        ? { snapshotChunkBytesMax: this.p.snapshotChunkBytesMax }
        : {}),
      proposalTimeoutMs: 1_000,
      onLeaderChange: (_leader, term, isSelf) => {
        if (!isSelf) return;
        this.checker.onLeader(s.id, term);
        if (s.life === life) s.announcedTerm = term;
      },
      onFatal: (err) => this.checker.fail(`${s.id} stopped on its own invariant: ${errText(err)}`),
      testOnlyBugs: bugs,
    });
    s.life = life;
    s.node = node;
    s.fsm = fsm;
    s.started = false;
    s.lastCommit = 0;
    s.announcedTerm = 0;
    this.net.attach(s.id, life, node);
    this.log(`${life.name} start`);
    node.start().then(
      () => {
        if (s.life === life) s.started = true;
      },
      (err: unknown) => {
        if (s.life === life) this.checker.fail(`${s.id} failed to start: ${errText(err)}`);
      },
    );
  }

  private crash(s: Slot): void {
    if (!s.life) return;
    const n = s.node!;
    this.snapshotsTaken += n.stats.snapshotsTaken;
    this.snapshotsInstalled += n.stats.snapshotsInstalled;
    // A node still starting has no core yet, and cannot lead.
    const st = s.started ? n.status() : undefined;
    if (!this.clientsStop && st?.role === "leader" && s.announcedTerm !== st.term) {
      this.leaderFirstReadyCrashes++;
      this.log(`${s.life.name} crash as leader of term ${st.term} within its first Ready`);
    }
    s.life.dead = true;
    this.log(`${s.life.name} crash (unsynced batches: lost some)`);
    this.net.detach(s.id);
    this.net.senderCrashed(s.id);
    s.disk.crash(this.rng.next);
    s.snaps.crash(this.rng.next);
    s.life = undefined;
    s.node = undefined;
    s.fsm = undefined;
    s.started = false;
  }

  private live(): Slot[] {
    return [...this.slots.values()].filter((s) => s.started && s.node);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => this.time.at(ms, this.harness, r));
  }

  private within<T>(p: Promise<T>, ms: number): Promise<T | "timeout"> {
    return Promise.race([p, this.sleep(ms).then(() => "timeout" as const)]);
  }

  /** One client: writes (retried with the same seq until acknowledged) and ReadIndex reads. */
  private async client(name: string): Promise<void> {
    const rng = new Rng(deriveSeed(this.p.seed, `client-${name}`));
    // Restarts draw from a stream of their own: the client's own draws, and so every seed's
    // schedule, are the same with them on or off until a restart happens.
    const restarts = new Rng(deriveSeed(this.p.seed, `client-${name}-restarts`));
    let seq = 0;
    /** What a restarted client remembers: the last seq it saw acknowledged. */
    let lastAcked = 0;
    let lives = 0;
    let reads = 0;
    let hint = "";
    const target = (): Slot | undefined => {
      const live = this.live();
      if (live.length === 0) return undefined;
      return live.find((s) => s.id === hint) ?? rng.pick(live);
    };
    while (!this.clientsStop) {
      await this.sleep(rng.int(1, this.p.clientOpEveryMs));
      if (rng.chance(this.p.readRate)) {
        const s = target();
        if (!s) continue;
        const floor = this.checker.readFloor();
        // The register read, in turn (not from the client's rng: the seeds' schedules stay as they were).
        const key = `k${(reads++ % 4) + 1}`;
        const keyFloor = this.checker.keyFloor(key);
        const node = s.node!;
        const fsm = s.fsm!;
        // Checked whenever it answers, however late: a stale answer is most likely a slow one
        // (a deposed leader's). The client only stops waiting.
        const answered = node.readIndex().then(
          (index) => {
            this.checker.onRead(s.id, floor, index, node.applied);
            this.checker.onReadValue(s.id, key, keyFloor, fsm.read(key));
            this.checker.readDone(index);
            return index;
          },
          (e: unknown) => this.expectedFailure(e),
        );
        await this.within(answered, 1_500);
        continue;
      }
      seq++;
      const k = `k${rng.int(1, 4)}`;
      // A restarted client's commands differ from what it sent under the same seq in a life before.
      const value = () => (lives === 0 ? `${name}.${seq}` : `${name}.${seq}~${lives}`);
      let cmd = { c: name, s: seq, k, v: value() };
      let data = encodeCommand(cmd);
      let text = new TextDecoder().decode(data);
      let startMs = this.time.now;
      while (!this.clientsStop) {
        const s = target();
        if (!s) {
          await this.sleep(rng.int(5, 30));
          continue;
        }
        const r = await this.within(
          s.node!.propose(data).catch((e: unknown) => this.expectedFailure(e)),
          1_500,
        );
        if (typeof r === "number" && r > 0) {
          this.acked++;
          lastAcked = seq;
          this.checker.onAck({ client: name, seq, index: r, text, startMs, endMs: this.time.now });
          if (!this.healed && rng.chance(this.p.crashOnAckRate) && s.life) this.crashOnAck(s);
          break;
        }
        if (r === reusedSeq || r === staleSeq) {
          // Refused: this seq (or a later one) went to a command of a life before. Take the next.
          this.reuseRefusals++;
          seq++;
          cmd = { c: name, s: seq, k, v: value() };
          data = encodeCommand(cmd);
          text = new TextDecoder().decode(data);
          startMs = this.time.now;
          continue;
        }
        if (this.p.clientRestartRate > 0 && restarts.chance(this.p.clientRestartRate)) {
          // Restart: the write in flight is forgotten (it may still commit) and its seq reused.
          this.clientRestarts++;
          lives++;
          this.log(`client ${name} restarts; reuses seq ${lastAcked + 1}`);
          seq = lastAcked;
          break;
        }
        if (r instanceof NodeError && r.leaderId) hint = r.leaderId;
        else hint = "";
        await this.sleep(rng.int(2, 40));
      }
    }
  }

  /** What a node may answer a client with instead of a result; anything else is a violation. */
  private expectedFailure(e: unknown): NodeError | undefined {
    if (e instanceof NodeError) return e;
    this.checker.fail(`a replica answered a client with an unexpected error: ${errText(e)}`);
    return undefined;
  }

  /** The replica that acknowledged crashes now, and another is cut off for 100–500 ms. */
  private crashOnAck(s: Slot): void {
    this.crash(s);
    const others = this.ids.filter((id) => id !== s.id);
    const cut = this.rng.pick(others);
    this.net.partition(
      [cut],
      this.ids.filter((id) => id !== cut),
    );
    this.log(`crash on ack: ${s.id}, cut off ${cut}`);
    this.time.at(this.rng.int(100, 500), this.harness, () => this.net.heal());
    this.time.at(this.rng.int(1, 50), this.harness, () => {
      if (!s.life) this.start(s);
    });
  }

  /** Faults, one every faultEveryMs on average, until `untilMs`. */
  private async faults(untilMs: number): Promise<void> {
    const p = this.p;
    while (this.time.now < untilMs && this.checker.violation === undefined) {
      await this.sleep(this.rng.int(1, 2 * p.faultEveryMs));
      if (p.faults.length === 0) continue;
      const all = [...this.slots.values()];
      const f = this.rng.pick(p.faults);
      if (f === "crash") {
        const up = all.filter((x) => x.life);
        if (up.length === 0) continue;
        const s = this.rng.pick(up);
        // Leaders are crashed more often: that is where the node's shortcuts live.
        const leader = all.find((x) => x.started && x.node?.isLeader);
        const victim = leader && this.rng.chance(0.5) ? leader : s;
        this.crash(victim);
        const downMs = this.rng.int(1, p.downMsMax);
        this.time.at(downMs, this.harness, () => {
          if (!victim.life) this.start(victim);
        });
      } else if (f === "partition") {
        const ids = this.rng.shuffle([...this.ids]);
        const k = this.rng.int(1, Math.floor(ids.length / 2));
        this.net.partition(ids.slice(0, k), ids.slice(k));
        this.log(`partition ${ids.slice(0, k)} | ${ids.slice(k)}`);
        this.time.at(this.rng.int(50, p.partitionMsMax), this.harness, () => this.net.heal());
      } else if (f === "oneway") {
        const [a, b] = this.rng.shuffle([...this.ids]);
        this.net.cutOneWay(a!, b!);
        this.log(`cut ${a}>${b}`);
        this.time.at(this.rng.int(50, p.partitionMsMax), this.harness, () => this.net.heal());
      }
    }
  }

  /** Every harness tick: monotonic commit within each life. */
  private watch(): boolean {
    for (const s of this.live()) {
      const c = s.node!.status().commit;
      if (c < s.lastCommit) this.checker.fail(`${s.id} commit went back from ${s.lastCommit} to ${c}`);
      s.lastCommit = c;
    }
    return this.checker.violation === undefined;
  }

  async run(): Promise<NodeSimResult> {
    const p = this.p;
    for (const s of this.slots.values()) this.start(s);
    const harnessBroke = (err: unknown) => this.checker.fail(`simulator harness failed: ${errText(err)}`);
    for (let i = 1; i <= p.clients; i++) this.client(`c${i}`).catch(harnessBroke);
    this.faults(p.faultMs).catch(harnessBroke);
    // The fault phase, then heal: every process up, links whole, no loss; all must converge.
    await this.time.runUntil(p.faultMs, () => this.watch());
    if (this.checker.violation === undefined) {
      this.healed = true;
      this.net.heal();
      this.net.params = { ...this.net.params, dropRate: 0, duplicateRate: 0 };
      for (const s of this.slots.values()) {
        s.snaps.faults = { ...s.snaps.faults, failRate: 0, stallRate: 0 };
        if (!s.life) this.start(s);
      }
      await this.time.runUntil(p.faultMs + p.clientsAfterHealMs, () => this.watch());
      this.clientsStop = true;
      const deadline = this.time.now + p.convergeMsMax;
      let converged = false;
      while (this.checker.violation === undefined && this.time.now < deadline) {
        await this.time.runUntil(this.time.now + 50, () => this.watch());
        if (this.converged()) {
          converged = true;
          break;
        }
      }
      if (!converged && this.checker.violation === undefined) {
        const st = this.ids.map((id) => {
          const s = this.slots.get(id)!;
          return s.node && s.started
            ? `${id}:${s.node.status().role}/c${s.node.status().commit}/a${s.node.applied}`
            : `${id}:down`;
        });
        this.checker.fail(
          `liveness: no convergence within ${p.convergeMsMax} virtual ms after heal (${st.join(" ")})`,
        );
      }
      this.checker.checkAcks();
      if (converged) {
        for (const s of this.live()) this.checker.checkFinalState(s.id, (c) => s.fsm!.doneSeq(c));
      }
    }
    this.clientsStop = true;
    const disks = [...this.slots.values()].map((s) => s.disk.stats);
    for (const s of this.slots.values()) if (s.node) this.crash(s);
    return {
      seed: p.seed,
      ok: this.checker.violation === undefined,
      ...(this.checker.violation !== undefined ? { violation: this.checker.violation } : {}),
      virtualMs: Math.round(this.time.now),
      events: this.time.events,
      acked: this.acked,
      reads: this.checker.reads,
      crashes: disks.reduce((n, d) => n + d.crashes, 0),
      lostBatches: disks.reduce((n, d) => n + d.lostBatches, 0),
      leaderFirstReadyCrashes: this.leaderFirstReadyCrashes,
      clientRestarts: this.clientRestarts,
      reuseRefusals: this.reuseRefusals,
      snapChunksSent: this.net.snapChunksSent,
      snapChunksNeeded: this.net.snapChunksNeeded,
      snapshotsTaken: this.snapshotsTaken,
      snapshotsInstalled: this.snapshotsInstalled,
      leaderChanges: this.checker.leaderChanges,
      trace: [...this.trace],
    };
  }

  /** One leader, every replica up with the same applied index, covering every acknowledged write. */
  private converged(): boolean {
    const live = this.live();
    if (live.length !== this.slots.size) return false;
    const leaders = live.filter((s) => s.node!.isLeader);
    if (leaders.length !== 1) return false;
    const applied = new Set(live.map((s) => s.node!.applied));
    if (applied.size !== 1) return false;
    const a = live[0]!.node!.applied;
    if (a !== leaders[0]!.node!.status().commit) return false;
    if (this.checker.acks.some((x) => x.index > a)) return false;
    const states = new Set(live.map((s) => s.fsm!.text()));
    if (states.size !== 1) {
      this.checker.fail("replicas at the same applied index hold different states");
    }
    return true;
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
