// The inventory cluster as it runs in production: three `medisync inventory` processes agreeing
// through Raft over gRPC, LevelDB logs with fsync, snapshots in PostgreSQL. Replicas are killed
// (SIGKILL), paused (SIGSTOP) and restarted under load; acknowledged writes must all survive, none
// may apply twice, and every replica must end in the same state.
import { afterEach, describe, expect, it } from "vitest";
import type { InventoryClient } from "../src/gateway/inventory-client.ts";
import { ReadConsistency } from "../src/gen/medisync/v1/inventory.ts";
import { AppError } from "../src/shared/errors.ts";
import { callUnary } from "../src/shared/grpc.ts";
import { InventoryCluster, untilAcked } from "./support/inventory-cluster.ts";

let cluster: InventoryCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

const clinic = "harbour";
const med = "amoxicillin-500";

async function newCluster(name: string, env: Record<string, string> = {}) {
  cluster = new InventoryCluster({ name, env });
  await cluster.init();
  await cluster.startAll();
  await cluster.waitLeader();
  return cluster;
}

interface Load {
  acked: Set<string>;
  started: Set<string>;
  stop: () => void;
  done: Promise<void>;
}

/** `workers` clients deducting 1 each, one request at a time, until `total` are acknowledged or stopped. */
function deductLoad(client: InventoryClient, tag: string, workers: number, total: number): Load {
  const acked = new Set<string>();
  const started = new Set<string>();
  let stopped = false;
  let next = 0;
  const worker = async () => {
    while (!stopped && next < total) {
      const requestId = `${tag}-${next++}`;
      started.add(requestId);
      await untilAcked(
        () => client.write("deduct", { requestId, clinicId: clinic, medicationCode: med, quantity: 1 }),
        30_000,
        () => stopped,
      ).then(
        () => acked.add(requestId),
        (err) => {
          if (!stopped) throw err;
        },
      );
    }
  };
  const done = Promise.all(Array.from({ length: workers }, worker)).then(() => undefined);
  return { acked, started, stop: () => (stopped = true), done };
}

async function quantityOn(c: InventoryCluster, id: string): Promise<number> {
  const client = c.clients.get(id)!;
  const r = await callUnary(
    client.getStock.bind(client),
    { clinicId: clinic, medicationCode: med, consistency: ReadConsistency.READ_CONSISTENCY_STALE },
    2_000,
  );
  return r.item?.quantity ?? 0;
}

async function restock(client: InventoryClient, quantity: number, requestId: string) {
  return untilAcked(() =>
    client.write("restock", {
      requestId,
      clinicId: clinic,
      medicationCode: med,
      quantity,
      lot: "",
      expiresOn: "",
    }),
  );
}

// Real processes on a 2-core machine that may be busy: generous per-test bounds, never sleeps.
describe("inventory cluster (3 real replicas)", { timeout: 180_000 }, () => {
  it("1,000 deducts from 32 concurrent clients: exact final stock, identical on every replica", async () => {
    const c = await newCluster("inv_exact");
    const client = c.client();
    await restock(client, 5_000, "seed");
    const load = deductLoad(client, "d", 32, 1_000);
    await load.done;
    expect(load.acked.size).toBe(1_000);
    const st = await c.converged();
    expect(new Set(st.map((s) => s.stateHash)).size).toBe(1);
    for (const id of c.ids) expect(await quantityOn(c, id)).toBe(4_000);
    // A retried request returns its first result and deducts nothing more.
    const again = await client.write("deduct", {
      requestId: "d-7",
      clinicId: clinic,
      medicationCode: med,
      quantity: 1,
    });
    expect(again.quantity).toBeGreaterThan(4_000 - 1_000);
    expect(await quantityOn(c, (await c.converged())[0]!.id)).toBe(4_000);
    client.close();
  });

  it("SIGKILL the leader under load: a new leader, writes resume, every acknowledged deduct counted once", async () => {
    const c = await newCluster("inv_kill_leader");
    const client = c.client();
    await restock(client, 10_000, "seed");
    const load = deductLoad(client, "k", 32, 3_000);
    while (load.acked.size < 500) await new Promise((r) => setTimeout(r, 10));
    const old = await c.waitLeader();
    await c.signal(old, "SIGKILL");
    const atKill = load.acked.size;
    const fresh = await c.waitLeader(20_000, [old]);
    expect(fresh).not.toBe(old);
    await load.done;
    // Every request was retried with its own id until acknowledged: all 3,000 count exactly once.
    expect(load.acked.size).toBe(3_000);
    expect(load.acked.size).toBeGreaterThan(atKill);
    c.start(old);
    const st = await c.converged();
    expect(new Set(st.map((s) => s.stateHash)).size).toBe(1);
    for (const id of c.ids) expect(await quantityOn(c, id)).toBe(7_000);
    client.close();
  });

  it.each<{ how: string; env: Record<string, string>; entriesMin: number }>([
    {
      // Writes travel in batches (one entry per batch), so 10,000 writes make a few hundred entries:
      // snapshots and compaction are tuned down for the follower to fall behind the compacted log.
      how: "batched entries",
      env: { RAFT_SNAPSHOT_EVERY_ENTRIES: "200", RAFT_SNAPSHOT_KEEP_ENTRIES: "50" },
      entriesMin: 1,
    },
    {
      // One command per entry: 10,000 writes are 10,000 entries, past the default catch-up window.
      how: "one entry per write",
      env: { RAFT_SNAPSHOT_EVERY_ENTRIES: "2000", INVENTORY_ENTRY_COMMANDS_MAX: "1" },
      entriesMin: 10_000,
    },
  ])(
    "SIGKILL a follower, write 10,000 more ($how), restart it: it catches up by InstallSnapshot to the same state",
    async ({ how, env, entriesMin }) => {
      const c = await newCluster(`inv_catchup_${how === "batched entries" ? "b" : "s"}`, env);
      const client = c.client();
      await restock(client, 50_000, "seed");
      const leader = await c.waitLeader();
      const follower = c.ids.find((i) => i !== leader)!;
      await c.signal(follower, "SIGKILL");
      const before = (await c.status(leader))!.commitIndex;
      const load = deductLoad(client, "c", 32, 10_000);
      await load.done;
      expect(load.acked.size).toBe(10_000);
      expect(
        (await c.status(await c.waitLeader(10_000, [follower])))!.commitIndex - before,
      ).toBeGreaterThanOrEqual(entriesMin);
      const w = c.start(follower);
      await w.waitFor(/"msg":"snapshot installed"/, 60_000);
      const st = await c.converged();
      expect(new Set(st.map((s) => s.stateHash)).size).toBe(1);
      expect(await quantityOn(c, follower)).toBe(40_000);
      client.close();
    },
  );

  it("SIGKILL every replica in the middle of the load, restart them: every acknowledged write is there", async () => {
    const c = await newCluster("inv_kill_all");
    const client = c.client(3_000);
    await restock(client, 10_000, "seed");
    const load = deductLoad(client, "a", 32, 100_000);
    while (load.acked.size < 500) await new Promise((r) => setTimeout(r, 10));
    await Promise.all(c.ids.map((id) => c.signal(id, "SIGKILL")));
    load.stop();
    await load.done.catch(() => undefined);
    const acked = load.acked.size;
    for (const id of c.ids) c.start(id);
    await c.waitLeader(30_000);
    const st = await c.converged();
    expect(new Set(st.map((s) => s.stateHash)).size).toBe(1);
    const deducted = 10_000 - (await quantityOn(c, c.ids[0]!));
    // Acknowledged ⊆ applied; at most the requests in flight at the kill (one per worker) on top.
    expect(deducted).toBeGreaterThanOrEqual(acked);
    expect(deducted).toBeLessThanOrEqual(acked + 32);
    client.close();
  });

  it("SIGSTOP the leader until a new one commits, SIGCONT it: no stale linearizable read, and it steps down", async () => {
    const c = await newCluster("inv_pause");
    const client = c.client();
    await restock(client, 100, "seed");
    const old = await c.waitLeader();
    await c.signal(old, "SIGSTOP");
    const fresh = await c.waitLeader(20_000, [old]);
    const after = await untilAcked(() =>
      client.write("deduct", {
        requestId: "while-paused",
        clinicId: clinic,
        medicationCode: med,
        quantity: 7,
      }),
    );
    expect(after.quantity).toBe(93);
    await c.signal(old, "SIGCONT");
    // Ask the old leader at once, before it heard of the new term: it must not answer 100.
    const oldClient = c.clients.get(old)!;
    const answers: (number | string)[] = [];
    for (let i = 0; i < 20; i++) {
      try {
        const r = await callUnary(
          oldClient.getStock.bind(oldClient),
          {
            clinicId: clinic,
            medicationCode: med,
            consistency: ReadConsistency.READ_CONSISTENCY_LINEARIZABLE,
          },
          1_000,
        );
        answers.push(r.item?.quantity ?? 0);
      } catch (err) {
        answers.push(err instanceof AppError ? err.code : "error");
      }
    }
    expect(answers.filter((a) => typeof a === "number" && a !== 93)).toEqual([]);
    const deadline = Date.now() + 10_000;
    let role = "";
    while (Date.now() < deadline) {
      role = (await c.status(old))?.role ?? "";
      if (role === "follower") break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(role).toBe("follower");
    expect((await c.status(old))?.leaderId).toBe(fresh);
    client.close();
  });
});
