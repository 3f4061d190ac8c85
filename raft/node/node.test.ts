// The node runtime with real LevelDB logs and an in-memory network: elections, replication in the
// same order everywhere, restart from disk, catch-up by snapshot, and refusal of bad input.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Message, Snapshot } from "../core/types.ts";
import { LevelLog } from "../storage/level-log.ts";
import { isMessage, NodeError, RaftNode, type RaftNodeOptions } from "./node.ts";

type Tuning = Partial<
  Pick<
    RaftNodeOptions,
    | "snapshotEveryEntries"
    | "snapshotEveryBytes"
    | "snapshotCatchUpBytes"
    | "inboxBytesMax"
    | "clusterId"
    | "onConfChange"
  >
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
    // 300–600 ms: an election timeout of 100 ms was shorter than the stalls of a machine running
    // the simulator suites beside these tests, and an election mid-test answered OUTCOME_UNKNOWN.
    electionTicks: 30,
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
  // Each message travels alone in a batch with the sender's envelope, as the gRPC transport sends.
  const post = (to: string, hello: boolean, messages: Message[]) => {
    const env = { ...node.envelope(to), hello };
    setImmediate(() => {
      if (!hx.down.has(to) && !hx.down.has(id)) hx.nodes.get(to)?.receive(id, env, messages);
    });
  };
  await node.start({
    send: (to, m) => post(to, false, [structuredClone(m)]),
    hello: (to, ask) => post(to, ask, []),
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

/**
 * A leader that has committed an entry of its own term (a ReadIndex answer waits for that): until
 * then it refuses conf changes (CONF_CHANGE_PENDING), which a test asking at once met on a busy
 * machine.
 */
async function leaderOf(hx: Harness): Promise<RaftNode> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const l = [...hx.nodes.entries()].find(([id, n]) => !hx.down.has(id) && n.isLeader);
    if (l) {
      const ready = await l[1].readIndex().then(
        () => true,
        () => false,
      );
      if (ready && l[1].isLeader) return l[1];
    }
    if (Date.now() > deadline) throw new Error("no leader");
    await new Promise((r) => setTimeout(r, 10));
  }
}

const value = (n: number) => new Uint8Array([n >> 8, n & 255]);

/**
 * Proposes through whichever replica leads, again after a lost leadership (an election on a busy
 * machine answers NOT_LEADER or OUTCOME_UNKNOWN): for tests that need entries applied, not an
 * exact count of them.
 */
async function proposeSomewhere(hx: Harness, data: Uint8Array): Promise<void> {
  for (;;) {
    try {
      await (await leaderOf(hx)).propose(data);
      return;
    } catch (err) {
      if (!(err instanceof NodeError) || !["NOT_LEADER", "OUTCOME_UNKNOWN"].includes(err.code)) throw err;
    }
  }
}

/**
 * Polls `cond` for up to 30 s (a 2-core CI machine running the simulator suites beside these tests
 * once took more than 10 s for a learner to catch up on 20 entries); `detail` says, on a timeout,
 * what the nodes looked like, so that a real liveness failure can be told from a slow machine.
 */
async function until(cond: () => boolean, what: string, detail?: () => string) {
  const deadline = Date.now() + 30_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}${detail ? `\n${detail()}` : ""}`);
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
    for (let i = 0; i < 100; i++) await proposeSomewhere(hx, value(i));
    const leader = await leaderOf(hx);
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
    await until(() => node.leader !== "", "b follows a leader");
    const dropped = node.stats.droppedMessages;
    node.receive("a", { ...hx.nodes.get("a")!.envelope("b"), hello: false }, [{ ...good, term: "bad" }]);
    expect(node.stats.droppedMessages - dropped).toBe(1);
  });

  it("the inbox is bounded in bytes as well as messages", async () => {
    const hx = await cluster({ inboxBytesMax: 1024 * 1024 });
    const leader = await leaderOf(hx);
    const node = [...hx.nodes.values()].find((n) => n !== leader)!;
    const term = leader.status().term;
    const dropped = node.stats.droppedMessages;
    // Delivered in one turn: the loop steps none of them before the next.
    const env = { ...leader.envelope(node.id), hello: false };
    for (let i = 0; i < 100; i++) {
      node.receive(leader.id, env, [
        {
          type: "app",
          from: leader.id,
          to: node.id,
          term,
          logTerm: 0,
          index: 1_000 + i,
          entries: [{ index: 1_001 + i, term, type: 0, data: new Uint8Array(100 * 1024) }],
          commit: 0,
          reject: false,
          rejectHint: 0,
          context: "",
        },
      ]);
    }
    expect(node.stats.droppedMessages - dropped).toBeGreaterThanOrEqual(90);
    expect(node.inboxBytesQueued).toBeLessThanOrEqual(1024 * 1024);
  });

  it("a brand-new cluster (every disk empty) bootstraps: each replica is vouched for by the others", async () => {
    const hx = await cluster();
    await leaderOf(hx);
    await until(() => [...hx.nodes.values()].every((n) => n.identityState === "member"), "all members");
  });

  it("a replica whose log was wiped is told so by its peers and never votes, across restarts too", async () => {
    const hx = await cluster();
    const leader = await leaderOf(hx);
    for (let i = 0; i < 20; i++) await leader.propose(value(i));
    const [wiped, other] = hx.ids.filter((id) => id !== leader.id) as [string, string];
    await until(() => hx.applied.get(other)!.length === 20, "the other follower has every entry");
    for (const id of [leader.id, wiped]) {
      hx.down.add(id);
      await hx.nodes.get(id)!.stop();
    }
    rmSync(path.join(hx.dir, wiped), { recursive: true, force: true });
    hx.down.delete(wiped);
    await start(hx, wiped);
    const w = hx.nodes.get(wiped)!;
    await until(() => w.identityState === "lost", "the wiped replica learns it lost its log");
    // Its vote is all the other follower needs to win; it must not get it. 20 election timeouts.
    const deadline = Date.now() + 4_000;
    while (Date.now() < deadline) {
      expect(hx.nodes.get(other)!.isLeader || w.isLeader).toBe(false);
      await new Promise((r) => setTimeout(r, 20));
    }
    // Restarted with the disk it now has: it remembers it must not vote.
    hx.down.add(wiped);
    await w.stop();
    hx.down.delete(wiped);
    await start(hx, wiped);
    expect(hx.nodes.get(wiped)!.identityState).toBe("lost");
    // The old majority comes back and leads; the lost replica never does.
    hx.down.delete(leader.id);
    await start(hx, leader.id);
    const next = await leaderOf(hx);
    expect(next.id).not.toBe(wiped);
    expect(await next.propose(value(99))).toBeGreaterThan(20);
  });

  it("a replica whose log was wiped while its snapshot store still has a snapshot will not vote from the start", async () => {
    const hx = await cluster({ snapshotEveryEntries: 10 });
    const leader = await leaderOf(hx);
    for (let i = 0; i < 30; i++) await leader.propose(value(i));
    const victim = hx.ids.find((id) => id !== leader.id)!;
    await until(() => hx.snaps.get(victim) !== undefined, "the victim took a snapshot");
    hx.down.add(victim);
    await hx.nodes.get(victim)!.stop();
    rmSync(path.join(hx.dir, victim), { recursive: true, force: true });
    hx.down.delete(victim);
    await start(hx, victim, { snapshotEveryEntries: 10 });
    expect(hx.nodes.get(victim)!.identityState).toBe("lost");
  });

  it("refuses batches from another cluster and from an unknown incarnation of a known peer", async () => {
    const hx = await cluster();
    const leader = await leaderOf(hx);
    const node = [...hx.nodes.values()].find((n) => n !== leader)!;
    await until(() => node.leader === leader.id, "the follower knows the leader");
    const hb: Message = {
      type: "heartbeat",
      from: leader.id,
      to: node.id,
      term: leader.status().term + 5, // would make it a follower of a new term if stepped
      logTerm: 0,
      index: 0,
      entries: [],
      commit: 0,
      reject: false,
      rejectHint: 0,
      context: "",
    };
    const env = { ...leader.envelope(node.id), hello: false };
    const refused = node.stats.refusedBatches;
    node.receive(leader.id, { ...env, clusterId: "someone-else" }, [hb]);
    node.receive(leader.id, { ...env, fromIncarnation: "not-the-one-we-know" }, [hb]);
    expect(node.stats.refusedBatches - refused).toBe(2);
    await node.settled();
    expect(node.status().term).toBe(leader.status().term);
  });

  it("a log from another cluster is not opened", async () => {
    const hx = await cluster();
    await leaderOf(hx);
    const victim = "c";
    hx.down.add(victim);
    await hx.nodes.get(victim)!.stop();
    await expect(start(hx, victim, { clusterId: "another" })).rejects.toThrow(/belongs to cluster "raft"/);
  });

  it("recovery of a wiped replica: remove it, wipe it again, add it back as a learner, promote it: it votes again", async () => {
    const hx = await cluster();
    const leader = await leaderOf(hx);
    for (let i = 0; i < 20; i++) await leader.propose(value(i));
    const victim = hx.ids.find((id) => id !== leader.id)!;
    const restartEmpty = async () => {
      hx.down.add(victim);
      await hx.nodes.get(victim)!.stop();
      rmSync(path.join(hx.dir, victim), { recursive: true, force: true });
      hx.snaps.delete(victim);
      hx.down.delete(victim);
      await start(hx, victim);
    };
    await restartEmpty();
    await until(() => hx.nodes.get(victim)!.identityState === "lost", "the wiped replica is lost");
    await leader.proposeConfChange({ type: "removeNode", nodeId: victim });
    await restartEmpty();
    await leader.proposeConfChange({ type: "addLearner", nodeId: victim });
    await until(
      () => hx.applied.get(victim)!.length === 20,
      "the learner caught up",
      () =>
        [...hx.nodes.entries()]
          .map(
            ([id, n]) =>
              `${id}: identity=${n.identityState} applied=${hx.applied.get(id)?.length} status=${JSON.stringify(n.status())} stats=${JSON.stringify(n.stats)}`,
          )
          .join("\n"),
    );
    for (;;) {
      const err = await leader.proposeConfChange({ type: "promoteLearner", nodeId: victim }).then(
        () => undefined,
        (e: unknown) => e,
      );
      if (!err) break;
      expect(String(err)).toMatch(/LEARNER_NOT_CAUGHT_UP|not caught up|pending/i);
      await new Promise((r) => setTimeout(r, 20));
    }
    await until(() => hx.nodes.get(victim)!.identityState === "member", "vouched for by every voter");
    // Its vote counts again: without the old leader, the two others elect one of them.
    hx.down.add(leader.id);
    await leader.stop();
    hx.nodes.delete(leader.id);
    const next = await leaderOf(hx);
    expect([victim, ...hx.ids.filter((id) => id !== victim && id !== leader.id)]).toContain(next.id);
    expect(await next.propose(value(77))).toBeGreaterThan(0);
  });

  it("a member's address travels in its conf change: every replica hears it, and keeps it past compaction and restart", async () => {
    const heard = new Map<string, string | undefined>();
    const tuning = (id: string): Tuning => ({
      snapshotEveryEntries: 10,
      onConfChange: (c) => heard.set(id, c.addresses?.d),
    });
    const hx: Harness = {
      ids: ["a", "b", "c"],
      nodes: new Map(),
      applied: new Map(),
      down: new Set(),
      dir: mkdtempSync(path.join(os.tmpdir(), "raft-node-")),
      snaps: new Map(),
    };
    h = hx;
    for (const id of hx.ids) await start(hx, id, tuning(id));
    const leader = await leaderOf(hx);
    const at = await leader.proposeConfChange({
      type: "addLearner",
      nodeId: "d",
      address: "d.example:50061",
    });
    await until(
      () => hx.ids.every((id) => heard.get(id) === "d.example:50061"),
      "every replica applied the address",
    );
    for (let i = 0; i < 40; i++) await leader.propose(value(i));
    const follower = hx.ids.find((id) => id !== leader.id)!;
    // The conf entry itself is gone from the follower's log: only its snapshot can carry the address.
    await until(
      () => hx.nodes.get(follower)!.status().firstIndex > at,
      "the follower compacted past the change",
    );
    expect(hx.snaps.get(follower)!.meta.addresses).toEqual({ d: "d.example:50061" });
    heard.delete(follower);
    await hx.nodes.get(follower)!.stop();
    await start(hx, follower, tuning(follower));
    expect(hx.nodes.get(follower)!.status().conf.addresses).toEqual({ d: "d.example:50061" });
    expect(heard.get(follower)).toBe("d.example:50061");
    // Removed, it is forgotten everywhere.
    await leader.proposeConfChange({ type: "removeNode", nodeId: "d" });
    await until(
      () => hx.ids.every((id) => hx.nodes.get(id)!.status().conf.addresses === undefined),
      "address forgotten",
    );
  });

  it("a brand-new cluster does not bootstrap until every initial voter has answered", async () => {
    const hx: Harness = {
      ids: ["a", "b", "c"],
      nodes: new Map(),
      applied: new Map(),
      down: new Set(["c"]),
      dir: mkdtempSync(path.join(os.tmpdir(), "raft-node-")),
      snaps: new Map(),
    };
    h = hx;
    await start(hx, "a");
    await start(hx, "b");
    // a and b form a majority, but neither knows whether c ever heard of them: 7–13 election timeouts.
    const deadline = Date.now() + 4_000;
    while (Date.now() < deadline) {
      expect([...hx.nodes.values()].map((n) => n.identityState)).toEqual(["joining", "joining"]);
      expect([...hx.nodes.values()].some((n) => n.isLeader)).toBe(false);
      await new Promise((r) => setTimeout(r, 20));
    }
    hx.down.delete("c");
    await start(hx, "c");
    await leaderOf(hx);
    await until(() => [...hx.nodes.values()].every((n) => n.identityState === "member"), "all members");
  });

  it("a log written before identities existed is a member at once", async () => {
    const hx: Harness = {
      ids: ["a", "b", "c"],
      nodes: new Map(),
      applied: new Map(),
      down: new Set(),
      dir: mkdtempSync(path.join(os.tmpdir(), "raft-node-")),
      snaps: new Map(),
    };
    h = hx;
    for (const id of hx.ids) {
      const log = await LevelLog.open(path.join(hx.dir, id));
      await log.write({ hardState: { term: 3, vote: "a", commit: 0 } });
      await log.close();
    }
    for (const id of hx.ids) await start(hx, id);
    expect([...hx.nodes.values()].map((n) => n.identityState)).toEqual(["member", "member", "member"]);
    await leaderOf(hx);
  });
});
