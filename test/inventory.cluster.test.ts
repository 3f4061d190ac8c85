// The inventory cluster as it runs in production: three `medisync inventory` processes agreeing
// through Raft over gRPC, LevelDB logs with fsync, snapshots in PostgreSQL. Replicas are killed
// (SIGKILL), paused (SIGSTOP) and restarted under load; acknowledged writes must all survive, none
// may apply twice, and every replica must end in the same state.
import { afterEach, describe, expect, it } from "vitest";
import { ReadConsistency } from "../src/gen/medisync/v1/inventory.ts";
import { AppError } from "../src/shared/errors.ts";
import { callUnary } from "../src/shared/grpc.ts";
import { InventoryCluster, untilAcked } from "./support/inventory-cluster.ts";
import { clinic, deductLoad, med, quantityOn, restock } from "./support/stock-load.ts";

let cluster: InventoryCluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

async function newCluster(name: string, env: Record<string, string> = {}) {
  cluster = new InventoryCluster({ name, env });
  await cluster.init();
  await cluster.startAll();
  // Faults come after the cluster has formed: before, a replica that never heard from the one
  // that fails cannot be vouched for, and no majority may form (docs/raft.md, "every other voter").
  await cluster.waitFormed();
  return cluster;
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

  it("restarted from snapshots (log compacted past it), a request id is still remembered with its command", async () => {
    const c = await newCluster("inv_window_restart", {
      RAFT_SNAPSHOT_EVERY_ENTRIES: "20",
      RAFT_SNAPSHOT_KEEP_ENTRIES: "0",
    });
    const client = c.client();
    await restock(client, 100, "seed");
    const first = await client.write("deduct", {
      requestId: "K",
      clinicId: clinic,
      medicationCode: med,
      quantity: 3,
    });
    expect(first).toMatchObject({ quantity: 97, replayed: false });
    // Enough entries after K for every replica to snapshot and compact K's entry away.
    for (let i = 0; i < 60; i++) {
      await untilAcked(() =>
        client.write("setReorderLevel", {
          requestId: `l${i}`,
          clinicId: "other",
          medicationCode: med,
          level: i,
        }),
      );
    }
    await c.converged();
    await Promise.all(c.ids.map((id) => c.signal(id, "SIGKILL")));
    for (const id of c.ids) c.start(id);
    await c.waitLeader(30_000);
    await c.converged();
    const again = await untilAcked(() =>
      client.write("deduct", { requestId: "K", clinicId: clinic, medicationCode: med, quantity: 3 }),
    );
    expect(again).toEqual({ ...first, replayed: true });
    const reused = await untilAcked(() =>
      client.write("restock", {
        requestId: "K",
        clinicId: clinic,
        medicationCode: med,
        quantity: 5,
        lot: "",
        expiresOn: "",
      }),
    ).catch((e: unknown) => e);
    expect(reused).toBeInstanceOf(AppError);
    expect((reused as AppError).code).toBe("IDEMPOTENCY_KEY_REUSED");
    for (const id of c.ids) expect(await quantityOn(c, id)).toBe(97);
    client.close();
  });

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

  it("a replica whose Raft log was wiped comes back but does not vote: no leader without the old majority", async () => {
    const c = await newCluster("inv_wiped");
    const client = c.client(3_000);
    await restock(client, 1_000, "seed");
    for (let i = 0; i < 20; i++) {
      await untilAcked(() =>
        client.write("deduct", { requestId: `w-${i}`, clinicId: clinic, medicationCode: med, quantity: 1 }),
      );
    }
    await c.converged();
    const leader = await c.waitLeader();
    const [wiped, other] = c.ids.filter((id) => id !== leader) as [string, string];
    // The leader goes away, and one follower comes back with an empty disk: same id, term 0, no
    // vote. If it voted, the other follower (whose log is up to date) would win an election now.
    await c.signal(leader, "SIGKILL");
    await c.signal(wiped, "SIGKILL");
    c.wipeLog(wiped);
    const w = c.start(wiped);
    await w.waitFor(/will not vote/, 30_000);
    expect((await c.status(wiped))?.identity).toBe("lost");
    // Absence of a leader can only be observed over time: 15 maximum election timeouts (600 ms).
    const until = Date.now() + 9_000;
    while (Date.now() < until) {
      const st = await Promise.all([c.status(wiped), c.status(other)]);
      expect(st.map((s) => s?.role)).not.toContain("leader");
      expect(w.proc.exitCode).toBeNull();
      await new Promise((r) => setTimeout(r, 100));
    }
    // The old majority (the former leader and the intact follower) still elects and keeps every write.
    c.start(leader);
    const fresh = await c.waitLeader(30_000, [wiped]);
    expect(fresh).not.toBe(wiped);
    expect(await quantityOn(c, fresh)).toBe(980);
    const after = await untilAcked(() =>
      client.write("deduct", { requestId: "after", clinicId: clinic, medicationCode: med, quantity: 1 }),
    );
    expect(after.quantity).toBe(979);
    expect(w.proc.exitCode).toBeNull();
    expect((await c.status(wiped))?.role).not.toBe("leader");
    client.close();
  });
});
