// Owns the faults and their schedule. A schedule alternates quiet and fault windows, picking each
// fault from the run's seed; before and after each fault it checks the system's health (a leader
// exists and a write succeeds, or the record says that it did not). The cluster faults are here
// (`clusterFaults`); a workload with another system under test (booking: Redis) brings its own
// faults in the same shape. Link faults compose: each active fault asks for a mode per link and the
// link runs the most severe one asked, so two overlapping faults (a `combo`) heal independently.
import { randomUUID } from "node:crypto";
import type { InventoryClient } from "../src/shared/inventory-client.ts";
import type { JepsenCluster } from "./cluster.ts";
import type { LinkMode } from "./proxy.ts";
import { pick, type Random } from "./random.ts";

/** Faults on the inventory cluster. Those naming no target pick it from the seed. */
export const clusterFaultKinds = [
  "kill", // SIGKILL the leader, restart it at the end of the window
  "kill-random", // SIGKILL one replica picked at random
  "kill-minority", // SIGKILL a random minority (1 of 3, 2 of 5)
  "kill-all", // SIGKILL every replica, restart them all
  "pause", // SIGSTOP the leader
  "pause-random", // SIGSTOP one replica picked at random
  "partition", // isolate the leader (every link to and from it blackholed)
  "oneway", // the leader sends, cannot receive
  "halves", // random halves, cut from each other both ways
  "ring", // majorities ring: each sees a majority, no two the same (5 replicas)
  "bridge", // two halves and one replica that sees both (5 replicas)
  "slow", // every link delayed 40 ± 30 ms
  "lossy", // every link: a fifth of its chunks stall for a retransmission (200 ms)
  "combo", // two of the above, picked from the seed, overlapping in time
] as const;
export type ClusterFaultKind = (typeof clusterFaultKinds)[number];
/** Faults on the booking workload's own Redis. */
export const redisFaultKinds = ["redis-flush", "redis-restart"] as const;
export type FaultKind = ClusterFaultKind | (typeof redisFaultKinds)[number];
/** Kept for callers of the first version: the cluster faults. */
export const faultKinds: readonly FaultKind[] = clusterFaultKinds;
/** Faults that need five replicas. */
export const fiveReplicaFaults: readonly FaultKind[] = ["ring", "bridge"];

export interface Health {
  /** Run clock, ms, when the check began. */
  at: number;
  /** The leader a majority agreed on ("" if none within the bound, or the system has none). */
  leader: string;
  /** ms the probe write took to be acknowledged; -1 if it was not within the bound. */
  writeMs: number;
  error?: string;
}

export interface FaultRecord {
  kind: FaultKind;
  target: string;
  /** Run clock, ms. */
  start: number;
  end: number;
  /** ms from the start of the fault until a majority agreed on a leader again (-1: never seen). */
  leaderAfterMs: number;
  /** The leader before the fault and after the heal. */
  leaderBefore: string;
  leaderAfterHeal: string;
  /** The health check just before the fault and just after its heal. */
  healthBefore?: Health;
  healthAfter?: Health;
  /** The parts of one `combo` share its number (their windows overlap). */
  combo?: number;
}

export interface Schedule {
  faults: readonly FaultKind[];
  quietMs: number;
  /** A fault lasts at least this long... */
  faultMs: number;
  /**
   * ...and at least this long after the rest elected a new leader, so every fault window holds a
   * stretch in which the cluster should be taking writes despite the fault (on a loaded machine an
   * election can take most of faultMs).
   */
  holdAfterLeaderMs: number;
  /** Bound on waiting for a leader before a fault, and for a new one during it. */
  leaderWaitMs: number;
  /** Bound on the health check's probe write. */
  healthWriteMs?: number;
}

/** What injecting one fault did, and how to undo it. */
export interface Injected {
  target: string;
  /** Replicas the fault took out (killed, paused, cut off): a new leader is looked for elsewhere. */
  impaired: string[];
  /** No leader can exist during it (kill-all): the window is not stretched waiting for one. */
  leaderless?: boolean;
  heal(): Promise<void>;
}

export interface FaultContext {
  random: Random;
  /** The leader just before the fault ("" if none). */
  leader: string;
  /** Replicas another overlapping fault already took out: not targeted again. */
  avoid: ReadonlySet<string>;
}

export type Inject = (ctx: FaultContext) => Promise<Injected>;

/** The system a nemesis works on: its faults, its health check and (if it has one) its leader. */
export interface NemesisSystem {
  faults: Partial<Record<FaultKind, Inject>>;
  /** Resolves to the agreed leader, or rejects when there is none within the bound. */
  leader(waitMs: number, exclude: string[]): Promise<string>;
  health(leaderWaitMs: number, writeMs: number, at: number): Promise<Health>;
  /** Members that elect a leader; with fewer than a majority left unimpaired none is waited for. */
  members?: number;
  close?(): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

export class Nemesis {
  readonly log: FaultRecord[] = [];
  private stopped = false;
  private combos = 0;

  constructor(
    private readonly system: NemesisSystem,
    private readonly now: () => number,
    private readonly random: Random,
  ) {}

  stop(): void {
    this.stopped = true;
  }

  /**
   * Runs fault windows until `untilMs` (run clock), and at least one of each kind whatever the time;
   * every fault is healed before it returns.
   */
  async run(s: Schedule, untilMs: number): Promise<void> {
    // Cycle through the kinds from a seeded starting point.
    const first = Math.floor(this.random() * s.faults.length);
    let i = first;
    while (!this.stopped && (i - first < s.faults.length || this.now() + s.quietMs + s.faultMs <= untilMs)) {
      await this.quiet(s.quietMs);
      if (this.stopped) break;
      const kind = s.faults[i % s.faults.length]!;
      i++;
      if (kind === "combo") await this.combo(s);
      else await this.one(kind, s);
    }
  }

  private async quiet(ms: number): Promise<void> {
    const until = this.now() + ms;
    while (!this.stopped && this.now() < until) await sleep(Math.min(50, until - this.now()));
  }

  private inject(kind: FaultKind): Inject {
    const f = this.system.faults[kind];
    if (!f) throw new Error(`nemesis: this system has no fault "${kind}"`);
    return f;
  }

  private health(s: Schedule): Promise<Health> {
    return this.system.health(s.leaderWaitMs, s.healthWriteMs ?? 3_000, this.now());
  }

  /** Waits for a leader outside `impaired` and stretches the window to hold after it. */
  private async holdWindow(rec: FaultRecord, inj: Injected, s: Schedule, minUntil: number): Promise<number> {
    let holdUntil = minUntil;
    const n = this.system.members;
    // No majority left (kill-all, or two overlapping faults that took out a majority between them):
    // no leader can be elected, so the window is not stretched waiting for one.
    if (inj.leaderless || (n !== undefined && n - inj.impaired.length <= n / 2)) return holdUntil;
    try {
      const l = await this.system.leader(s.leaderWaitMs, inj.impaired);
      if (l) {
        rec.leaderAfterMs = this.now() - rec.start;
        holdUntil = Math.max(holdUntil, this.now() + s.holdAfterLeaderMs);
      }
    } catch {
      // No leader within the bound: recorded as -1, judged by the run.
    }
    return holdUntil;
  }

  private record(kind: FaultKind, before: Health, inj: Injected, start: number): FaultRecord {
    return {
      kind,
      target: inj.target,
      start,
      end: -1,
      leaderAfterMs: -1,
      leaderBefore: before.leader,
      leaderAfterHeal: "",
      healthBefore: before,
    };
  }

  async one(kind: FaultKind, s: Schedule): Promise<FaultRecord> {
    const before = await this.health(s);
    const start = this.now();
    const inj = await this.inject(kind)({ random: this.random, leader: before.leader, avoid: new Set() });
    const rec = this.record(kind, before, inj, start);
    await sleep((await this.holdWindow(rec, inj, s, start + s.faultMs)) - this.now());
    await inj.heal();
    rec.end = this.now();
    this.log.push(rec);
    rec.healthAfter = await this.health(s);
    rec.leaderAfterHeal = rec.healthAfter.leader;
    return rec;
  }

  /**
   * Two faults overlapping: A starts, B starts halfway through A's window, A heals, B heals half a
   * window later. B never targets what A took out.
   */
  async combo(s: Schedule): Promise<FaultRecord[]> {
    const choices = Object.keys(this.system.faults).filter(
      (k) => k !== "combo" && k !== "kill-all" && k !== "redis-restart",
    ) as FaultKind[];
    if (choices.length < 2) throw new Error("nemesis: combo needs two faults this system can take");
    const a = pick(this.random, choices);
    const b = pick(
      this.random,
      choices.filter((k) => k !== a),
    );
    const combo = ++this.combos;
    const before = await this.health(s);
    const startA = this.now();
    const injA = await this.inject(a)({ random: this.random, leader: before.leader, avoid: new Set() });
    const recA = { ...this.record(a, before, injA, startA), combo };
    await sleep(startA + s.faultMs / 2 - this.now());
    const leaderB = await this.system.leader(1_000, injA.impaired).catch(() => "");
    const startB = this.now();
    const injB = await this.inject(b)({
      random: this.random,
      leader: leaderB,
      avoid: new Set(injA.impaired),
    });
    const recB = {
      ...this.record(b, { ...before, leader: leaderB }, injB, startB),
      combo,
      healthBefore: undefined,
    };
    const both: Injected = {
      ...injA,
      impaired: [...new Set([...injA.impaired, ...injB.impaired])],
      leaderless: injA.leaderless || injB.leaderless,
    };
    await sleep((await this.holdWindow(recA, both, s, startA + s.faultMs)) - this.now());
    recB.leaderAfterMs = recA.leaderAfterMs < 0 ? -1 : Math.max(0, recA.start + recA.leaderAfterMs - startB);
    await injA.heal();
    recA.end = this.now();
    await sleep(recA.end + s.faultMs / 2 - this.now());
    await injB.heal();
    recB.end = this.now();
    this.log.push(recA, recB);
    const after = await this.health(s);
    recA.healthAfter = after;
    recB.healthAfter = after;
    recA.leaderAfterHeal = after.leader;
    recB.leaderAfterHeal = after.leader;
    return [recA, recB];
  }
}

function shuffled<T>(r: Random, xs: readonly T[]): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

const severity: Record<LinkMode["kind"], number> = {
  pass: 0,
  delay: 1,
  flaky: 2,
  loss: 3,
  reset: 4,
  blackhole: 5,
};

/**
 * The inventory cluster as a nemesis sees it. Link faults register the modes they want per link;
 * each link runs the most severe mode any active fault wants.
 */
export function clusterFaults(cluster: JepsenCluster, probe: () => InventoryClient): NemesisSystem {
  const wanted = new Map<number, Map<string, LinkMode>>();
  let nextLinkFault = 0;
  const apply = () => {
    for (const [name, link] of cluster.links) {
      let mode: LinkMode = { kind: "pass" };
      for (const w of wanted.values()) {
        const m = w.get(name);
        if (m && severity[m.kind] > severity[mode.kind]) mode = m;
      }
      if (JSON.stringify(mode) !== JSON.stringify(link.current)) link.setMode(mode);
    }
  };
  const cut = (target: string, impaired: string[], links: [string, string][], mode: LinkMode): Injected => {
    const id = nextLinkFault++;
    wanted.set(id, new Map(links.filter(([a, b]) => a !== b).map(([a, b]) => [`${a}>${b}`, mode])));
    apply();
    return {
      target,
      impaired,
      async heal() {
        wanted.delete(id);
        apply();
      },
    };
  };
  const all = (xs: string[], ys: string[]): [string, string][] =>
    xs.flatMap((x) => ys.map((y): [string, string] => [x, y]));
  const ids = cluster.ids;
  const free = (ctx: FaultContext) => ids.filter((id) => !ctx.avoid.has(id));
  const leaderOr = (ctx: FaultContext) =>
    ctx.leader && !ctx.avoid.has(ctx.leader) ? ctx.leader : pick(ctx.random, free(ctx));
  const kill = async (victims: string[], leaderless = false): Promise<Injected> => {
    for (const v of victims) await cluster.signal(v, "SIGKILL");
    return {
      target: victims.join(","),
      impaired: victims,
      leaderless,
      async heal() {
        await Promise.all(victims.filter((v) => !cluster.alive(v)).map((v) => cluster.restart(v)));
      },
    };
  };
  const pause = async (v: string): Promise<Injected> => {
    await cluster.signal(v, "SIGSTOP");
    return { target: v, impaired: [v], heal: async () => void (await cluster.signal(v, "SIGCONT")) };
  };
  const minority = Math.floor((ids.length - 1) / 2);
  const faults: Partial<Record<FaultKind, Inject>> = {
    kill: (ctx) => kill([leaderOr(ctx)]),
    "kill-random": (ctx) => kill([pick(ctx.random, free(ctx))]),
    "kill-minority": (ctx) => kill(shuffled(ctx.random, free(ctx)).slice(0, minority)),
    "kill-all": () => kill([...ids], true),
    pause: (ctx) => pause(leaderOr(ctx)),
    "pause-random": (ctx) => pause(pick(ctx.random, free(ctx))),
    partition: async (ctx) => {
      const l = leaderOr(ctx);
      const others = ids.filter((id) => id !== l);
      return cut(l, [l], [...all([l], others), ...all(others, [l])], { kind: "blackhole" });
    },
    oneway: async (ctx) => {
      const l = leaderOr(ctx);
      return cut(
        l,
        [l],
        all(
          ids.filter((id) => id !== l),
          [l],
        ),
        { kind: "blackhole" },
      );
    },
    halves: async (ctx) => {
      const s = shuffled(ctx.random, ids);
      const small = s.slice(0, Math.floor(ids.length / 2));
      const big = s.slice(small.length);
      return cut(`${small.join(",")}|${big.join(",")}`, small, [...all(small, big), ...all(big, small)], {
        kind: "blackhole",
      });
    },
    slow: async () => cut("all", [], all(ids, ids), { kind: "delay", delayMs: 40, jitterMs: 30 }),
    lossy: async () => cut("all", [], all(ids, ids), { kind: "loss", fraction: 0.2, retransmitMs: 200 }),
    combo: () => Promise.reject(new Error("combo is scheduled by the nemesis, not injected")),
  };
  if (ids.length >= 5) {
    // Each replica keeps its two ring neighbours: it sees three of five (a majority), and no two
    // replicas see the same three.
    faults.ring = async (ctx) => {
      const s = shuffled(ctx.random, ids);
      const n = s.length;
      const near = (i: number, j: number) => {
        const d = Math.abs(i - j);
        return d <= 1 || d === n - 1;
      };
      const links: [string, string][] = [];
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (!near(i, j)) links.push([s[i]!, s[j]!]);
      return cut(`ring ${s.join("-")}`, [], links, { kind: "blackhole" });
    };
    // Two halves that cannot hear each other, and one replica in the middle that hears both.
    faults.bridge = async (ctx) => {
      const s = shuffled(ctx.random, ids);
      const h = Math.floor((s.length - 1) / 2);
      const a = s.slice(0, h);
      const b = s.slice(h + 1);
      return cut(`${a.join(",")}|${s[h]}|${b.join(",")}`, [], [...all(a, b), ...all(b, a)], {
        kind: "blackhole",
      });
    };
  }
  let client: InventoryClient | undefined;
  return {
    faults,
    members: ids.length,
    leader: (waitMs, exclude) => cluster.waitLeader(waitMs, exclude),
    async health(leaderWaitMs, writeMs, at) {
      const leader = await cluster.waitLeader(leaderWaitMs).catch(() => "");
      client ??= probe();
      const t = Date.now();
      try {
        await Promise.race([
          client.write("restock", {
            requestId: randomUUID(),
            clinicId: "c-health",
            medicationCode: "m-probe",
            quantity: 1,
            lot: "",
            expiresOn: "",
          }),
          sleep(writeMs).then(() => Promise.reject(new Error(`no answer within ${writeMs} ms`))),
        ]);
        return { at, leader, writeMs: Date.now() - t };
      } catch (err) {
        return { at, leader, writeMs: -1, error: String(err instanceof Error ? err.message : err) };
      }
    },
    close() {
      client?.close();
    },
  };
}
