// Owns a tiny synchronous, fully scripted network of cores for unit tests and targeted scenarios
// (etcd raft_test.go's `network` in spirit): messages queue until delivered, links can be cut or
// filtered, nodes crash (losing nothing the driver persisted) and restart. It follows the driver
// contract exactly and records every applied entry, so a scenario can check state machine safety.
// Pure like the rest of raft/core: no I/O, no clock, deterministic randomness.
import { type RaftConfig, RaftCore } from "./raft.ts";
import { MemoryStorage } from "./storage.ts";
import type { Entry, Message, ReadState } from "./types.ts";

/** Deterministic [0, 1) source for tests (LCG); the simulator uses its own seeded PRNG. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

export type TestCoreOptions = Partial<Omit<RaftConfig, "id" | "storage">>;

export class TestNet {
  readonly disks = new Map<string, MemoryStorage>();
  private readonly cores = new Map<string, RaftCore>();
  readonly queue: Message[] = [];
  /** Return false to drop a message. */
  filter: (m: Message) => boolean = () => true;
  private readonly cut = new Set<string>();
  readonly applied = new Map<string, Entry[]>();
  /** Every ReadState each node's Readies carried, since it last started. */
  readonly readStates = new Map<string, ReadState[]>();
  /** index → first entry applied there by any node. */
  readonly appliedAt = new Map<number, Entry>();
  violation: string | undefined;
  private incarnation = 0;

  /** `voters` (default: all of `ids`) form the initial configuration; the others start empty. */
  constructor(
    readonly ids: string[],
    private readonly opts: TestCoreOptions = {},
    voters: string[] = ids,
  ) {
    for (const id of ids) {
      const conf = voters.includes(id) ? { voters, learners: [] } : { voters: [], learners: [] };
      this.disks.set(id, new MemoryStorage(conf));
      this.applied.set(id, []);
      this.start(id);
    }
  }

  core(id: string): RaftCore {
    const c = this.cores.get(id);
    if (!c) throw new Error(`${id} is down`);
    return c;
  }

  isUp(id: string): boolean {
    return this.cores.has(id);
  }

  start(id: string): void {
    const disk = this.disks.get(id)!;
    this.cores.set(
      id,
      new RaftCore({
        id,
        storage: disk,
        electionTicks: 10,
        heartbeatTicks: 1,
        random: seededRandom(id.charCodeAt(id.length - 1) * 7919 + ++this.incarnation),
        preVote: false,
        checkQuorum: false,
        applied: disk.snapshot().meta.index,
        ...this.opts,
      }),
    );
    this.applied.set(id, []);
    this.readStates.set(id, []);
  }

  crash(id: string): void {
    this.cores.delete(id);
  }

  isolate(id: string): void {
    for (const o of this.ids) if (o !== id) this.cutLink(id, o);
  }

  cutLink(a: string, b: string): void {
    this.cut.add(`${a}>${b}`);
    this.cut.add(`${b}>${a}`);
  }

  heal(): void {
    this.cut.clear();
  }

  /** Handles every pending Ready of `id`: persist → queue messages → apply → advance. */
  flush(id: string): void {
    const c = this.cores.get(id);
    if (!c) return;
    const disk = this.disks.get(id)!;
    while (c.hasReady()) {
      const rd = c.ready();
      if (rd.snapshot) disk.applySnapshot(rd.snapshot);
      disk.append(rd.entries);
      if (rd.hardState) disk.setHardState(rd.hardState);
      this.queue.push(...rd.messages, ...rd.messagesAfterPersist);
      this.readStates.get(id)!.push(...rd.readStates);
      for (const e of rd.committedEntries) {
        this.applied.get(id)!.push(e);
        const g = this.appliedAt.get(e.index);
        if (!g) this.appliedAt.set(e.index, e);
        else if (g.term !== e.term || g.type !== e.type || g.data !== e.data) {
          this.violation ??= `${id} applied term ${e.term} at ${e.index}, another node term ${g.term}`;
        }
      }
      c.advance(rd);
    }
  }

  flushAll(): void {
    for (const id of this.ids) this.flush(id);
  }

  /** Delivers queued messages (and whatever they cause) until the network is quiet. */
  deliverAll(roundsMax = 100_000): void {
    this.flushAll();
    for (let n = 0; this.queue.length > 0; n++) {
      if (n > roundsMax) throw new Error("network does not quiesce");
      const m = this.queue.shift()!;
      if (this.cut.has(`${m.from}>${m.to}`) || !this.filter(m)) continue;
      const c = this.cores.get(m.to);
      if (!c) continue;
      c.step(m);
      this.flush(m.to);
    }
  }

  /** Drops every queued message (e.g. what a node sent just before being cut off). */
  dropQueued(pred: (m: Message) => boolean = () => true): void {
    const keep = this.queue.filter((m) => !pred(m));
    this.queue.length = 0;
    this.queue.push(...keep);
  }

  campaign(id: string): void {
    this.core(id).campaign();
    this.deliverAll();
  }

  /** Campaigns until `id` leads (a first round may only teach it a higher term). */
  elect(id: string, roundsMax = 5): void {
    for (let i = 0; i < roundsMax && this.core(id).currentRole !== "leader"; i++) this.campaign(id);
    if (this.core(id).currentRole !== "leader") throw new Error(`${id} could not be elected`);
  }

  propose(id: string, data: Uint8Array): { index: number; term: number } {
    const r = this.core(id).propose(data);
    this.flush(id);
    return r;
  }

  tick(id: string, n = 1): void {
    for (let i = 0; i < n; i++) this.core(id).tick();
    this.flush(id);
  }
}

/**
 * Figure 8 of the Raft paper, scripted on five nodes. s1 (term a) has index 2 on s1 and s2; s5 wins
 * term b with s3, s4 and appends its own index 2 that nobody receives; s1 wins term c and copies its
 * old index 2 to s3 — now on a majority, but not of term c. If s1 commits it by counting replicas,
 * s5 can still win term d (its last term b beats s3's a) and overwrite index 2: a committed entry is
 * lost. A correct leader commits nothing here. Returns what happened.
 */
export function figure8Scenario(opts: TestCoreOptions = {}): {
  violation: string | undefined;
  s1CommitAfterCopy: number;
} {
  const ids = ["s1", "s2", "s3", "s4", "s5"];
  const net = new TestNet(ids, { entriesPerMessageMax: 1, ...opts });
  const X = new TextEncoder().encode("X");
  net.elect("s1"); // index 1: s1's no-op, everywhere
  // s1 appends X at index 2 and reaches only s2.
  for (const o of ["s3", "s4", "s5"]) net.cutLink("s1", o);
  net.propose("s1", X);
  net.deliverAll();
  // s1 goes away; s5 wins with s3 and s4, appends its no-op at 2 and is cut off before sending it.
  net.crash("s1");
  net.heal();
  net.cutLink("s5", "s2");
  net.filter = (m) => !(m.from === "s5" && m.type === "app");
  net.elect("s5");
  net.crash("s5");
  net.filter = () => true;
  net.heal();
  // s1 returns and wins a later term with s2, s3 (its log, ending in term a, beats theirs).
  net.start("s1");
  // s3 may receive s1's old index 2 but nothing after it (appends building on index 2 are lost
  // once s3 holds it); s4 receives nothing.
  net.filter = (m) => {
    if (m.from !== "s1" || m.type !== "app") return true;
    if (m.to === "s4") return false;
    return !(m.to === "s3" && m.index >= 2 && net.core("s3").lastIndex >= 2);
  };
  net.elect("s1");
  net.deliverAll();
  const s1CommitAfterCopy = net.core("s1").committed;
  // s1 crashes before its term's entry spreads; s5 returns and wins with s3 and s4.
  net.crash("s1");
  net.filter = () => true;
  net.start("s5");
  net.cutLink("s5", "s2");
  net.elect("s5");
  net.deliverAll();
  for (let i = 0; i < 3; i++) {
    net.tick("s5");
    net.deliverAll();
  }
  return { violation: net.violation, s1CommitAfterCopy };
}
