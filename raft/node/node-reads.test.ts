// The node's linearizable reads with real LevelDB logs and an in-memory network: a read resolves
// at an index covering every acknowledged write, a restarted process never reuses a read context
// of its previous life, and reads issued together share heartbeat rounds.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Message, Snapshot } from "../core/types.ts";
import { RaftNode } from "./node.ts";

const quiet = { info() {}, warn() {}, error() {} };
const ids = ["a", "b", "c"];

interface Harness {
  nodes: Map<string, RaftNode>;
  down: Set<string>;
  dir: string;
  snaps: Map<string, Snapshot | undefined>;
  /** Every message any node handed to its transport. */
  sent: Message[];
}

let h: Harness | undefined;
afterEach(async () => {
  if (!h) return;
  for (const n of h.nodes.values()) await n.stop();
  rmSync(h.dir, { recursive: true, force: true });
  h = undefined;
});

async function start(hx: Harness, id: string): Promise<RaftNode> {
  let applied = 0;
  const node = new RaftNode({
    id,
    voters: ids,
    dataDir: path.join(hx.dir, id),
    log: quiet,
    tickMs: 10,
    electionTicks: 10,
    snapshots: {
      save: async (s) => {
        hx.snaps.set(id, s);
      },
      latest: async () => hx.snaps.get(id),
    },
    fsm: {
      apply: () => ++applied,
      snapshot: () => new TextEncoder().encode(String(applied)),
      restore: (data) => {
        applied = Number(new TextDecoder().decode(data));
      },
    },
  });
  hx.nodes.set(id, node);
  // Each message travels alone in a batch with the sender's envelope, as the gRPC transport sends.
  const post = (to: string, hello: boolean, messages: Message[]) => {
    const env = { ...node.envelope(to), hello };
    setImmediate(() => {
      if (!hx.down.has(to) && !hx.down.has(id)) hx.nodes.get(to)?.receive(id, env, messages);
    });
  };
  await node.start({
    send: (to, m) => {
      hx.sent.push(m);
      post(to, false, [structuredClone(m)]);
    },
    hello: (to, ask) => post(to, ask, []),
  });
  return node;
}

async function cluster(): Promise<Harness> {
  const hx: Harness = {
    nodes: new Map(),
    down: new Set(),
    dir: mkdtempSync(path.join(os.tmpdir(), "raft-node-reads-")),
    snaps: new Map(),
    sent: [],
  };
  h = hx;
  for (const id of ids) await start(hx, id);
  return hx;
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function leaderOf(hx: Harness): Promise<RaftNode> {
  let leader: RaftNode | undefined;
  await until(() => {
    leader = [...hx.nodes.entries()].find(([id, n]) => !hx.down.has(id) && n.isLeader)?.[1];
    return leader !== undefined;
  }, "a leader");
  return leader!;
}

const one = new Uint8Array([1]);

describe("RaftNode reads", () => {
  it("a restarted replica never reuses a read context of its previous process", async () => {
    const hx = await cluster();
    const leader = await leaderOf(hx);
    await leader.propose(one);
    const fid = ids.find((id) => id !== leader.id)!;
    let follower = hx.nodes.get(fid)!;
    await until(() => follower.leader === leader.id, "the follower knows the leader");
    const contexts = () =>
      hx.sent.filter((m) => m.type === "readIndex" && m.from === fid).map((m) => m.context);
    for (let i = 0; i < 3; i++) await follower.readIndex();
    const before = contexts();
    expect(before.length).toBe(3);

    hx.down.add(fid);
    await follower.stop();
    hx.down.delete(fid);
    follower = await start(hx, fid);
    await until(() => follower.leader === leader.id, "the restarted follower knows the leader");
    const acked = leader.applied;
    await leader.propose(one);
    // A read that starts after a write was acknowledged covers it.
    const index = await follower.readIndex();
    expect(index).toBeGreaterThan(acked);
    const after = contexts().slice(before.length);
    expect(after.length).toBeGreaterThanOrEqual(1);
    for (const c of after) expect(before).not.toContain(c);
  });

  it("reads issued together at the leader share heartbeat rounds", async () => {
    const hx = await cluster();
    const leader = await leaderOf(hx);
    await leader.propose(one);
    const from = hx.sent.length;
    const reads = 50;
    const indexes = await Promise.all(Array.from({ length: reads }, () => leader.readIndex()));
    expect(Math.min(...indexes)).toBeGreaterThanOrEqual(2);
    const rounds = hx.sent.slice(from).filter((m) => m.type === "heartbeat" && m.context !== "");
    // One round per read was 2 × 50 heartbeats; periodic heartbeats while reads wait add a few.
    expect(rounds.length).toBeLessThan(reads);
  });
});
