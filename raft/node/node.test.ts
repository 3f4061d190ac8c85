// The node runtime with real LevelDB logs and an in-memory network: elections, replication in the
// same order everywhere, restart from disk, catch-up by snapshot, and refusal of bad input.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Message, Snapshot } from "../core/types.ts";
import { isMessage, NodeError, RaftNode, type RaftNodeOptions } from "./node.ts";

type Tuning = Partial<
  Pick<RaftNodeOptions, "snapshotEveryEntries" | "snapshotEveryBytes" | "snapshotCatchUpBytes">
>;

const quiet = { info() {}, warn() {}, error() {} };

interface Harness {
  ids: string[];
  nodes: Map<string, RaftNode>;
  applied: Map<string, number[]>;
  down: Set<string>;
  dir: string;
  snaps: Map<string, Snapshot | undefined>;
}

let h: Harness | undefined;
afterEach(async () => {
  if (!h) return;
  for (const n of h.nodes.values()) await n.stop();
  rmSync(h.dir, { recursive: true, force: true });
  h = undefined;
});

function makeNode(hx: Harness, id: string, tuning: Tuning = {}): RaftNode {
  // The state machine: the list of applied values (as numbers); snapshots carry it whole.
  const applied: number[] = [];
  hx.applied.set(id, applied);
  const node = new RaftNode({
    id,
    voters: hx.ids,
    dataDir: path.join(hx.dir, id),
    log: quiet,
    tickMs: 10,
    electionTicks: 10,
    snapshotEveryEntries: 100_000,
    snapshotCatchUpEntries: 10,
    ...tuning,
    snapshots: {
      save: async (s) => {
        hx.snaps.set(id, s);
      },
      latest: async () => hx.snaps.get(id),
    },
    fsm: {
      apply: (_i, data) => {
        applied.push(data[0]! * 256 + data[1]!);
        return applied.length;
      },
      snapshot: () => new TextEncoder().encode(JSON.stringify(applied)),
      restore: (data) => {
        applied.length = 0;
        applied.push(...(JSON.parse(new TextDecoder().decode(data)) as number[]));
      },
    },
  });
  hx.nodes.set(id, node);
  return node;
}

async function start(hx: Harness, id: string, tuning?: Tuning) {
  const node = makeNode(hx, id, tuning);
  await node.start({
    send: (to, m) =>
      setImmediate(() => {
        if (!hx.down.has(to) && !hx.down.has(id)) hx.nodes.get(to)?.deliver(structuredClone(m));
      }),
  });
}

async function cluster(tuning?: Tuning): Promise<Harness> {
  const hx: Harness = {
    ids: ["a", "b", "c"],
    nodes: new Map(),
    applied: new Map(),
    down: new Set(),
    dir: mkdtempSync(path.join(os.tmpdir(), "raft-node-")),
    snaps: new Map(),
  };
  for (const id of hx.ids) await start(hx, id, tuning);
  h = hx;
  return hx;
}

async function leaderOf(hx: Harness): Promise<RaftNode> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const l = [...hx.nodes.entries()].find(([id, n]) => !hx.down.has(id) && n.isLeader);
    if (l) return l[1];
    if (Date.now() > deadline) throw new Error("no leader");
    await new Promise((r) => setTimeout(r, 10));
  }
}

const value = (n: number) => new Uint8Array([n >> 8, n & 255]);

async function until(cond: () => boolean, what: string) {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("RaftNode", () => {
  it("replicates proposals in the same order on every replica and resolves with the result", async () => {
    const hx = await cluster();
    const leader = await leaderOf(hx);
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => leader.propose(value(i))));
    expect(results).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    await until(() => [...hx.applied.values()].every((a) => a.length === 300), "all applied");
    const orders = [...hx.applied.values()].map((a) => a.join(","));
    expect(new Set(orders).size).toBe(1);
  });

  it("a follower refuses proposals with NOT_LEADER naming the leader", async () => {
    const hx = await cluster();
    const leader = await leaderOf(hx);
    await leader.propose(value(1));
    const follower = [...hx.nodes.values()].find((n) => n !== leader)!;
    await until(() => follower.leader === leader.id, "follower knows the leader");
    const err = await follower.propose(value(2)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NodeError);
    expect((err as NodeError).code).toBe("NOT_LEADER");
    expect((err as NodeError).leaderId).toBe(leader.id);
  });

  it("a replica restarted from its disk keeps its log and catches up on what it missed", async () => {
    const hx = await cluster();
    let leader = await leaderOf(hx);
    for (let i = 0; i < 50; i++) await leader.propose(value(i));
    const victim = hx.ids.find((id) => id !== leader.id)!;
    hx.down.add(victim);
    await hx.nodes.get(victim)!.stop();
    for (let i = 50; i < 100; i++) await leader.propose(value(i));
    hx.down.delete(victim);
    await start(hx, victim);
    leader = await leaderOf(hx);
    await until(() => hx.applied.get(victim)!.length === 100, "victim caught up");
    expect(hx.applied.get(victim)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it("a replica behind a compacted log catches up by snapshot", async () => {
    const hx = await cluster({ snapshotEveryEntries: 40 });
    const leader = await leaderOf(hx);
    const victim = hx.ids.find((id) => id !== leader.id)!;
    hx.down.add(victim);
    await hx.nodes.get(victim)!.stop();
    for (let i = 0; i < 200; i++) await leader.propose(value(i));
    expect(leader.stats.snapshotsTaken).toBeGreaterThan(0);
    hx.down.delete(victim);
    await start(hx, victim, { snapshotEveryEntries: 40 });
    await until(() => hx.applied.get(victim)!.length === 200, "victim restored");
    expect(hx.nodes.get(victim)!.stats.snapshotsInstalled).toBeGreaterThan(0);
    expect(hx.applied.get(victim)).toEqual(hx.applied.get(leader.id));
  });

  it("snapshots by bytes applied too, so large entries cannot grow the log without bound", async () => {
    // Entries carry two bytes each: 64 bytes is 32 entries, far below the entry-count trigger.
    const hx = await cluster({ snapshotEveryEntries: 100_000, snapshotEveryBytes: 64 });
    const leader = await leaderOf(hx);
    for (let i = 0; i < 100; i++) await leader.propose(value(i));
    await until(() => leader.stats.snapshotsTaken >= 2, "snapshots taken by size");
    expect(hx.snaps.get(leader.id)!.meta.index).toBeGreaterThanOrEqual(32);
  });

  it("keeps at most snapshotCatchUpBytes of entries behind a snapshot, whatever the entry count allows", async () => {
    // Two bytes per entry: a 10-byte tail is 5 entries, though 10 entries may be kept by count.
    const hx = await cluster({ snapshotEveryEntries: 40, snapshotCatchUpBytes: 10 });
    const leader = await leaderOf(hx);
    for (let i = 0; i < 100; i++) await leader.propose(value(i));
    // The newest snapshot and the compaction after it: 5 entries (10 bytes) stay behind it.
    await until(() => {
      const snap = hx.snaps.get(leader.id)?.meta.index ?? 0;
      return snap >= 80 && snap - leader.status().firstIndex + 1 === 5;
    }, "tail cut to the byte bound");
  });

  it("drops malformed messages instead of stepping them", async () => {
    const good: Message = {
      type: "heartbeat",
      from: "a",
      to: "b",
      term: 1,
      logTerm: 0,
      index: 0,
      entries: [],
      commit: 0,
      reject: false,
      rejectHint: 0,
      context: "",
    };
    expect(isMessage(good)).toBe(true);
    for (const bad of [
      null,
      "x",
      { ...good, type: "explode" },
      { ...good, term: "1" },
      { ...good, term: Number.NaN },
      { ...good, entries: [{ index: 1, term: 1, type: 0, data: "not bytes" }] },
      { ...good, entries: "nope" },
    ]) {
      expect(isMessage(bad), JSON.stringify(bad)).toBe(false);
    }
    const hx = await cluster();
    const node = hx.nodes.get("b")!;
    node.deliver({ ...good, term: "bad" });
    expect(node.stats.droppedMessages).toBe(1);
  });
});
