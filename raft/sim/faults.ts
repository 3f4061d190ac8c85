// Owns the faults the core simulator injects while it runs, and healing them: the rates in force
// (message loss, duplication, reordering, crashes in the middle of a Ready, targeted crashes around
// votes, acknowledgements and leader wins, reader bounces), the partition in force, and the
// periodic fault event (partition, crash and restart, pause, leadership transfer, membership
// change, campaign storm). Every choice draws from the run's seeded stream, in the order the events
// happen, so a seed replays exactly. heal() ends all of it before the liveness phase.
import { MemoryStorage, RaftError } from "../core/index.ts";
import type { Cluster } from "./cluster.ts";
import type { PartitionKind, SimParams } from "./params.ts";
import { SimNode } from "./replica.ts";

export class Faults {
  /** False once healed: no new faults, and crashed replicas are no longer restarted by timers. */
  faulting = true;
  dropRate: number;
  duplicateRate: number;
  reorderRate: number;
  crashMidReadyRate: number;
  bounceRate: number;
  leaderCrashRate: number;
  readerBounceRate: number;
  /** The partition in force: true when a message from a to b is lost. */
  blocked: ((a: string, b: string) => boolean) | undefined;

  constructor(
    private readonly c: Cluster,
    p: SimParams,
  ) {
    this.dropRate = p.dropRate;
    this.duplicateRate = p.duplicateRate;
    this.reorderRate = p.reorderRate;
    this.crashMidReadyRate = p.crashMidReadyRate;
    this.bounceRate = p.bounceRate;
    this.leaderCrashRate = p.leaderCrashRate;
    this.readerBounceRate = p.readerBounceRate;
  }

  heal(): void {
    const c = this.c;
    this.faulting = false;
    this.blocked = undefined;
    this.dropRate = 0;
    this.duplicateRate = 0;
    this.reorderRate = 0;
    this.crashMidReadyRate = 0;
    this.bounceRate = 0;
    this.leaderCrashRate = 0;
    this.readerBounceRate = 0;
    for (const n of c.nodes.values()) {
      if (n.removed) continue;
      if (!n.core) c.startNode(n);
      else if (n.paused) this.unpause(n);
    }
    c.note("heal");
  }

  /** Ends a pause: the replica steps, in order, what arrived meanwhile. */
  unpause(n: SimNode): void {
    if (!n.paused || !n.core) return;
    n.paused = false;
    const held = n.held;
    n.held = [];
    this.c.note(`unpause ${n.id} (${held.length} held messages)`);
    for (const m of held) {
      if (!n.core) return;
      n.core.step(m);
      this.c.drive(n);
    }
  }

  /** The periodic fault event: schedules the next, then injects one fault of the kinds enabled. */
  event(): void {
    if (!this.faulting) return;
    const c = this.c;
    const p = c.p;
    const rng = c.rng;
    c.heap.push(c.now + rng.int(1, 2 * p.faultEveryMs), () => this.event());
    const kinds: string[] = [];
    if (p.partitions.length > 0) kinds.push("partition");
    if (p.crashes) kinds.push("crash");
    if (p.pauses) kinds.push("pause");
    if (p.transfers) kinds.push("transfer");
    if (p.membership) kinds.push("membership");
    if (p.campaignStorms) kinds.push("campaignStorm");
    if (kinds.length === 0) return;
    switch (rng.pick(kinds)) {
      case "partition":
        this.partition(rng.pick(p.partitions));
        break;
      case "crash": {
        const live = c.liveNodes();
        if (live.length === 0) return;
        const n = rng.pick(live);
        c.crash(n, "fault");
        const inc = n.incarnation;
        c.heap.push(c.now + rng.int(p.tickMs, 5 * c.electionMs), () => {
          if (this.faulting && !n.core && !n.removed && n.incarnation === inc) c.startNode(n);
        });
        break;
      }
      case "pause": {
        const live = c.liveNodes().filter((n) => !n.paused);
        if (live.length === 0) return;
        const n = rng.pick(live);
        n.paused = true;
        const inc = n.incarnation;
        c.note(`pause ${n.id}`);
        c.heap.push(c.now + rng.int(p.tickMs, 4 * c.electionMs), () => {
          if (n.incarnation === inc) this.unpause(n);
        });
        break;
      }
      case "transfer": {
        const l = c.leaderNode();
        if (!l?.core) return;
        const voters = l.core.status().conf.voters.filter((v) => v !== l.id);
        if (voters.length === 0) return;
        const to = rng.pick(voters);
        c.note(`transfer ${l.id} → ${to}`);
        l.core.transferLeadership(to);
        c.drive(l);
        break;
      }
      case "membership":
        this.membershipChange();
        break;
      case "campaignStorm": {
        // Several election timers fire at the same instant (split votes, competing candidates).
        const live = c.liveNodes().filter((n) => !n.paused);
        c.note("campaign storm");
        for (const n of rng.shuffle(live).slice(0, rng.int(2, Math.max(2, live.length)))) {
          n.core?.campaign();
          c.drive(n);
        }
        break;
      }
    }
  }

  /**
   * One membership step at the leader, in the order a cluster grows and shrinks: promote a caught-up
   * learner, add a started replica as a learner, remove a voter (above 3), or start a spare.
   */
  private membershipChange(): void {
    const c = this.c;
    const l = c.leaderNode();
    if (!l?.core) return;
    const conf = l.core.status().conf;
    const members = new Set([...conf.voters, ...conf.learners]);
    let change: { type: "addLearner" | "promoteLearner" | "removeNode"; nodeId: string } | undefined;
    const learner = conf.learners[0];
    const started = [...c.nodes.values()].find((n) => !n.removed && !members.has(n.id) && !n.member);
    if (learner !== undefined) {
      change = { type: "promoteLearner", nodeId: learner };
    } else if (started) {
      change = { type: "addLearner", nodeId: started.id };
    } else if (conf.voters.length > 3 && c.rng.chance(0.5)) {
      const victims = conf.voters.filter((v) => v !== l.id);
      change = { type: "removeNode", nodeId: c.rng.pick(victims) };
    } else if (c.spareIds.length > 0) {
      const id = c.spareIds.shift()!;
      const n = new SimNode(id, new MemoryStorage());
      c.nodes.set(id, n);
      c.startNode(n);
      change = { type: "addLearner", nodeId: id };
    }
    if (!change) return;
    try {
      l.core.proposeConfChange(change);
      c.note(`propose ${change.type} ${change.nodeId} at ${l.id}`);
    } catch (err) {
      if (!(err instanceof RaftError)) throw err;
    }
    c.drive(l);
  }

  private partition(kind: PartitionKind): void {
    const c = this.c;
    const rng = c.rng;
    const ids = [...c.nodes.values()].filter((n) => !n.removed).map((n) => n.id);
    let blocked: (a: string, b: string) => boolean;
    switch (kind) {
      case "isolateLeader": {
        const l = c.leaderNode()?.id ?? rng.pick(ids);
        blocked = (a, b) => (a === l) !== (b === l);
        break;
      }
      case "majorityRing": {
        // Each node reaches only its ring neighbours: every node sees a majority (in 5 nodes), none
        // the same one — the classic case where CheckQuorum/PreVote matter.
        const pos = new Map(rng.shuffle([...ids]).map((id, i) => [id, i]));
        const n = ids.length;
        blocked = (a, b) => {
          const d = Math.abs(pos.get(a)! - pos.get(b)!);
          return d > 1 && d < n - 1;
        };
        break;
      }
      case "bridge": {
        // Two halves that only one bridge node connects.
        const order = rng.shuffle([...ids]);
        const bridge = order[0]!;
        const left = new Set(order.slice(1, 1 + Math.floor((order.length - 1) / 2)));
        blocked = (a, b) => a !== bridge && b !== bridge && left.has(a) !== left.has(b);
        break;
      }
      case "randomHalves": {
        const side = new Set(ids.filter(() => rng.chance(0.5)));
        blocked = (a, b) => side.has(a) !== side.has(b);
        break;
      }
    }
    this.blocked = blocked;
    c.count(`partition.${kind}`);
    c.note(`partition ${kind}`);
    c.heap.push(c.now + rng.int(c.electionMs, c.p.partitionElectionsMax * c.electionMs), () => {
      if (this.blocked === blocked) {
        this.blocked = undefined;
        c.note("partition healed");
      }
    });
  }
}
