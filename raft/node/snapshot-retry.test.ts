// Background snapshot saves while the snapshot store is down (PostgreSQL restarting): retried with
// a backoff (not once per Raft round), retried even when no more entries arrive, never serializing
// the state without a save to go with it, and the log's growth bounded by refusing proposals.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Message, Snapshot } from "../core/types.ts";
import { NodeError, RaftNode, snapshotRetryMaxMs, snapshotRetryMinMs } from "./node.ts";

const quiet = { info() {}, warn() {}, error() {} };
let node: RaftNode | undefined;
let dir = "";
afterEach(async () => {
  await node?.stop();
  node = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function until(what: string, ok: () => boolean, boundMs: number): Promise<void> {
  const deadline = Date.now() + boundMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`${what} not within ${boundMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("snapshot saves while the store is down", () => {
  it("back off, retry without new entries, serialize once per try, and bound the log", async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "raft-snap-retry-"));
    let storeUp = false;
    const attempts: number[] = [];
    let serialized = 0;
    let saved: Snapshot | undefined;
    const entriesMax = 40;
    node = new RaftNode({
      id: "n1",
      voters: ["n1"],
      dataDir: path.join(dir, "n1"),
      log: quiet,
      tickMs: 10,
      electionTicks: 5,
      snapshotEveryEntries: 5,
      snapshotCatchUpEntries: 2,
      unsnapshottedEntriesMax: entriesMax,
      snapshots: {
        save: async (s) => {
          attempts.push(performance.now());
          if (!storeUp) throw new Error("connect ECONNREFUSED 127.0.0.1:5432");
          saved = s;
        },
        latest: async () => saved,
      },
      fsm: {
        apply: () => undefined,
        snapshot: () => {
          serialized++;
          return new Uint8Array(16);
        },
        restore: () => undefined,
      },
    });
    await node.start({ send: () => undefined, hello: () => undefined });
    await until("n1 leads", () => node!.isLeader, 10_000);

    // 1. Entries keep coming, one Raft round each, while every save fails.
    const t0 = performance.now();
    let refused: unknown;
    for (let i = 0; i < 200 && refused === undefined; i++) {
      await node.propose(new Uint8Array([i])).catch((err: unknown) => {
        refused = err;
      });
      await new Promise((r) => setTimeout(r, 5));
    }
    const elapsed = performance.now() - t0;
    // Tries are spaced by a doubling backoff, not made on every round.
    for (let k = 1; k < attempts.length; k++) {
      const expected = Math.min(snapshotRetryMaxMs, snapshotRetryMinMs * 2 ** (k - 1));
      expect(attempts[k]! - attempts[k - 1]!).toBeGreaterThanOrEqual(expected * 0.9);
    }
    expect(attempts.length).toBeLessThanOrEqual(2 + Math.log2(elapsed / snapshotRetryMinMs + 1));
    // The whole state is serialized only for a save that is actually tried.
    expect(serialized).toBe(attempts.length);
    // The log stopped growing: past the bound, proposals are refused (the caller retries).
    expect(refused).toBeInstanceOf(NodeError);
    expect((refused as NodeError).code).toBe("OVERLOADED");
    expect(node.applied).toBeLessThanOrEqual(entriesMax + 1);

    // 2. The store comes back; no entry arrives, yet the retry timer saves a snapshot.
    const appliedBefore = node.applied;
    storeUp = true;
    await until(
      "a snapshot saved after the store returned",
      () => saved !== undefined,
      snapshotRetryMaxMs * 3,
    );
    expect(saved!.meta.index).toBe(appliedBefore);
    expect(node.applied).toBe(appliedBefore);
    // 3. With the snapshot saved, the log may grow again.
    await until("snapshot taken", () => node!.stats.snapshotsTaken > 0, 5_000);
    await expect(node.propose(new Uint8Array([1]))).resolves.toBeUndefined();
  });

  it("a follower receiving a snapshot while its store is down waits and retries instead of stopping", async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "raft-snap-install-"));
    const ids = ["a", "b", "c"];
    const nodes = new Map<string, RaftNode>();
    const applied = new Map<string, number[]>();
    const stores = new Map<string, { up: boolean; snap?: Snapshot }>();
    const fatal: unknown[] = [];
    const down = new Set<string>();
    const make = (id: string) => {
      const list: number[] = [];
      applied.set(id, list);
      const store = stores.get(id) ?? { up: true };
      stores.set(id, store);
      const n = new RaftNode({
        id,
        voters: ids,
        dataDir: path.join(dir, id),
        log: quiet,
        tickMs: 10,
        electionTicks: 10,
        snapshotEveryEntries: 40,
        snapshotCatchUpEntries: 10,
        onFatal: (err) => fatal.push(err),
        snapshots: {
          save: async (sn) => {
            if (!store.up) throw new Error("Connection terminated unexpectedly");
            store.snap = sn;
          },
          latest: async () => store.snap,
        },
        fsm: {
          apply: (_i, data) => {
            list.push(data[0]!);
            return list.length;
          },
          snapshot: () => new Uint8Array(list),
          restore: (data) => {
            list.length = 0;
            list.push(...data);
          },
        },
      });
      nodes.set(id, n);
      // Each message travels alone in a batch with the sender's envelope, as the gRPC transport sends.
      const post = (to: string, hello: boolean, messages: Message[]) => {
        const env = { ...n.envelope(to), hello };
        setImmediate(() => {
          if (!down.has(to) && !down.has(id)) nodes.get(to)?.receive(id, env, messages);
        });
      };
      return n.start({
        send: (to, m) => post(to, false, [structuredClone(m)]),
        hello: (to, ask) => post(to, ask, []),
      });
    };
    try {
      for (const id of ids) await make(id);
      await until("a leader", () => [...nodes.values()].some((n) => n.isLeader), 10_000);
      const leader = [...nodes.values()].find((n) => n.isLeader)!;
      const victim = ids.find((id) => id !== leader.id)!;
      down.add(victim);
      await nodes.get(victim)!.stop();
      for (let i = 0; i < 200; i++) await leader.propose(new Uint8Array([i % 256]));
      await until("leader compacted its log", () => leader.stats.snapshotsTaken > 0, 10_000);
      // The victim comes back with its snapshot store down: the leader must send it a snapshot.
      stores.get(victim)!.up = false;
      down.delete(victim);
      await make(victim);
      const v = nodes.get(victim)!;
      await until(
        "failed install saves (or a stop)",
        () => fatal.length > 0 || v.stats.snapshotSaveFailures >= 2,
        10_000,
      );
      expect(fatal).toEqual([]);
      stores.get(victim)!.up = true;
      await until("victim caught up", () => applied.get(victim)!.length === 200, 20_000);
      expect(v.stats.snapshotsInstalled).toBeGreaterThan(0);
      expect(applied.get(victim)).toEqual(applied.get(leader.id));
      expect(fatal).toEqual([]);
    } finally {
      for (const n of nodes.values()) await n.stop();
    }
  });
});
