// Inventory replicas on real Raft nodes (LevelDB logs, an in-memory network): a replica that catches
// up by InstallSnapshot receives the idempotency window with the stock, and once it leads it answers
// a retried request id with the first result and a reused one as reused (issue 9 item 2c).
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Message, Snapshot } from "../../raft/index.ts";
import { RaftNode } from "../../raft/index.ts";
import type { Command } from "./commands.ts";
import { inventoryFsm, RaftInventoryReplica } from "./raft-replica.ts";
import { InventoryStateMachine } from "./state-machine.ts";

const quiet = { info() {}, warn() {}, error() {} };
const ids = ["a", "b", "c"];
const nodes = new Map<string, RaftNode>();
const machines = new Map<string, InventoryStateMachine>();
const down = new Set<string>();
const snaps = new Map<string, Snapshot | undefined>();
let dir = "";

afterEach(async () => {
  for (const n of nodes.values()) await n.stop();
  nodes.clear();
  machines.clear();
  down.clear();
  snaps.clear();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function start(id: string): Promise<RaftNode> {
  const sm = new InventoryStateMachine();
  machines.set(id, sm);
  const node = new RaftNode({
    id,
    voters: ids,
    dataDir: path.join(dir, id),
    log: quiet,
    tickMs: 10,
    electionTicks: 10,
    snapshotEveryEntries: 20,
    snapshotCatchUpEntries: 2,
    snapshots: { save: async (s) => void snaps.set(id, s), latest: async () => snaps.get(id) },
    fsm: inventoryFsm(sm),
  });
  nodes.set(id, node);
  const post = (to: string, hello: boolean, messages: Message[]) => {
    const env = { ...node.envelope(to), hello };
    setImmediate(() => {
      if (!down.has(to) && !down.has(id)) nodes.get(to)?.receive(id, env, messages);
    });
  };
  await node.start({
    send: (to, m) => post(to, false, [structuredClone(m)]),
    hello: (to, ask) => post(to, ask, []),
  });
  return node;
}

async function until(cond: () => boolean, what: string) {
  const deadline = Date.now() + 15_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const replicaOf = (id: string) =>
  new RaftInventoryReplica(nodes.get(id)!, machines.get(id)!, { addressOf: (i: string) => i });

describe("inventory replicas over Raft", { timeout: 60_000 }, () => {
  it("InstallSnapshot carries the idempotency window: the caught-up replica, leading, still knows K", async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "inv-replica-"));
    for (const id of ids) await start(id);
    await until(() => [...nodes.values()].some((n) => n.isLeader), "a leader");
    const leaderId = [...nodes.entries()].find(([, n]) => n.isLeader)![0];
    const victim = ids.find((id) => id !== leaderId)!;
    down.add(victim);
    await nodes.get(victim)!.stop();

    const leader = replicaOf(leaderId);
    const cmd = (c: Record<string, unknown>) => ({ ...c, ts: Date.now() }) as unknown as Command;
    await leader.submit(
      cmd({ type: "restock", requestId: "seed", clinicId: "c", medicationCode: "m", quantity: 10 }),
    );
    const first = await leader.submit(
      cmd({ type: "deduct", requestId: "K", clinicId: "c", medicationCode: "m", quantity: 3 }),
    );
    expect(first).toMatchObject({ ok: true, quantity: 7 });
    // One entry each: enough for the leader to snapshot and compact K's entry away.
    for (let i = 0; i < 60; i++) {
      await leader.submit(
        cmd({ type: "setReorderLevel", requestId: `l${i}`, clinicId: "o", medicationCode: "m", level: i }),
      );
    }
    down.delete(victim);
    await start(victim);
    await until(() => nodes.get(victim)!.applied >= nodes.get(leaderId)!.applied, "victim caught up");
    expect(nodes.get(victim)!.stats.snapshotsInstalled).toBeGreaterThan(0);
    expect(machines.get(victim)!.snapshot()).toEqual(machines.get(leaderId)!.snapshot());

    await nodes.get(leaderId)!.transferLeadership(victim);
    await until(() => nodes.get(victim)!.isLeader, "victim leads");
    const replica = replicaOf(victim);
    const again = await replica.submit(
      cmd({ type: "deduct", requestId: "K", clinicId: "c", medicationCode: "m", quantity: 3 }),
    );
    expect(again).toEqual({ ...first, replayed: true });
    const reused = await replica.submit(
      cmd({ type: "restock", requestId: "K", clinicId: "c", medicationCode: "m", quantity: 1 }),
    );
    expect(reused).toMatchObject({ ok: false, code: "IDEMPOTENCY_KEY_REUSED" });
    expect(machines.get(victim)!.item("c", "m")!.lots[0]!.quantity).toBe(7);
  });
});
