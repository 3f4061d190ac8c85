// Membership changes and leadership transfer on a real cluster (one process per replica), through
// the InventoryAdminService a operator (or the gateway's /v1/cluster routes) uses: each under
// write load, every acknowledged write kept, the replicas' state hashes equal at the end.
import { afterEach, describe, expect, it } from "vitest";
import type { InventoryAdminServiceClient, Membership } from "../src/gen/medisync/v1/inventory.ts";
import { AppError } from "../src/shared/errors.ts";
import { callUnary } from "../src/shared/grpc.ts";
import { InventoryCluster } from "./support/inventory-cluster.ts";
import { runCli } from "./support/process.ts";
import { deductLoad, quantityOn, restock, until } from "./support/stock-load.ts";

let cluster: InventoryCluster | undefined;
afterEach(async (ctx) => {
  if (ctx.task.result?.state === "fail" && cluster) console.error(cluster.tail());
  await cluster?.stop();
  cluster = undefined;
});

// Election timeout 50 ms × 10 ticks (randomized to [500, 1000) ms): the transfer tests compare
// against the lower bound, which a busy 2-core machine leaves room for.
const tickMs = 50;
const electionTicks = 10;
const electionTimeoutMs = tickMs * electionTicks;

async function newCluster(name: string, spares = 0, env: Record<string, string> = {}) {
  cluster = new InventoryCluster({
    name,
    spares,
    env: { RAFT_TICK_MS: String(tickMs), RAFT_ELECTION_TICKS: String(electionTicks), ...env },
  });
  await cluster.init();
  await cluster.startAll();
  await cluster.waitFormed();
  return cluster;
}

const admin = (c: InventoryCluster, id: string): InventoryAdminServiceClient => c.admins.get(id)!;

/** The replica that says it leads, among `ids` (any configuration, so no majority of c.ids assumed). */
async function leaderAmong(c: InventoryCluster, ids: string[], exclude: string[] = []): Promise<string> {
  let leader = "";
  let seen: unknown[] = [];
  try {
    await until(async () => {
      // A busy 2-core machine can hold a status answer past half a second: allow two.
      const st = await Promise.all(ids.filter((i) => !exclude.includes(i)).map((id) => c.status(id, 2_000)));
      seen = st.map(
        (s) => s && { id: s.id, role: s.role, term: s.term, leaderId: s.leaderId, identity: s.identity },
      );
      leader = st.find((s) => s?.role === "leader")?.id ?? "";
      return leader !== "";
    }, "a leader");
  } catch (err) {
    throw new Error(`${(err as Error).message}; last statuses: ${JSON.stringify(seen)}`);
  }
  return leader;
}

/** A membership change on the leader, retried while the previous one is still committing. */
async function change(
  c: InventoryCluster,
  ids: string[],
  call: (a: InventoryAdminServiceClient) => Promise<{ membership?: Membership }>,
): Promise<Membership> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const a = admin(c, await leaderAmong(c, ids));
    try {
      return (await call(a)).membership!;
    } catch (err) {
      const retry =
        err instanceof AppError &&
        ["CONF_CHANGE_PENDING", "LEARNER_NOT_CAUGHT_UP", "NOT_LEADER", "UNAVAILABLE"].includes(err.code);
      if (!retry || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

const addLearner = (c: InventoryCluster, ids: string[], id: string) =>
  change(c, ids, (a) => callUnary(a.addLearner.bind(a), { id, address: c.addresses.get(id)! }, 5_000));
const promote = (c: InventoryCluster, ids: string[], id: string) =>
  change(c, ids, (a) => callUnary(a.promoteLearner.bind(a), { id }, 5_000));
const remove = (c: InventoryCluster, ids: string[], id: string) =>
  change(c, ids, (a) => callUnary(a.removeReplica.bind(a), { id }, 5_000));

const voters = (m: Membership) =>
  m.members
    .filter((x) => x.role === "voter")
    .map((x) => x.id)
    .sort();

describe("inventory membership (real replicas)", { timeout: 120_000 }, () => {
  it("TransferLeadership answers within one election timeout, under load, and loses no write", async () => {
    const c = await newCluster("mem_transfer");
    const client = c.client();
    await restock(client, 10_000, "seed");
    const load = deductLoad(client, "t", 8, 1_500);
    await until(() => load.acked.size >= 200, "the load is running");
    const old = await c.waitLeader();
    const a = admin(c, old);
    const t0 = performance.now();
    const r = await callUnary(a.transferLeadership.bind(a), { to: "" }, 5_000);
    const elapsedMs = performance.now() - t0;
    expect(r.leaderId).not.toBe(old);
    expect(c.ids).toContain(r.leaderId);
    expect(elapsedMs).toBeLessThan(electionTimeoutMs);
    // Named target: back to the old leader, from the new one.
    const b = admin(c, r.leaderId);
    const back = await callUnary(b.transferLeadership.bind(b), { to: old }, 5_000);
    expect(back.leaderId).toBe(old);
    // `medisync handover` (the k8s preStop) on the leader's host: leadership leaves it, on a follower's: nothing.
    const follower = c.ids.find((id) => id !== old)!;
    const idle = runCli(["handover"], c.envOf(follower));
    await idle.waitFor(/not the leader, nothing to hand over/, 20_000);
    const hand = runCli(["handover"], c.envOf(old));
    await hand.waitFor(/handover: leadership transferred/, 20_000);
    await hand.exited;
    expect((await c.status(old))?.role).not.toBe("leader");
    await load.done;
    expect(load.acked.size).toBe(1_500);
    const st = await c.converged();
    expect(new Set(st.map((s) => s.stateHash)).size).toBe(1);
    for (const id of c.ids) expect(await quantityOn(c, id)).toBe(8_500);
    client.close();
  });

  it("SIGTERM of the leader hands leadership over first: a new leader sooner than an election timeout", async () => {
    const c = await newCluster("mem_sigterm");
    const client = c.client();
    await restock(client, 10_000, "seed");
    const load = deductLoad(client, "s", 8, 1_500);
    await until(() => load.acked.size >= 200, "the load is running");
    const old = await c.waitLeader();
    const others = c.ids.filter((id) => id !== old);
    const t0 = performance.now();
    c.procs.get(old)!.proc.kill("SIGTERM");
    await leaderAmong(c, others);
    const elapsedMs = performance.now() - t0;
    // Without the handover the others would wait at least one election timeout of silence.
    expect(elapsedMs).toBeLessThan(electionTimeoutMs);
    await c.procs.get(old)!.waitFor(/leadership transferred before shutdown/, 10_000);
    await c.procs.get(old)!.exited;
    await load.done;
    expect(load.acked.size).toBe(1_500);
    c.start(old);
    const st = await c.converged();
    expect(new Set(st.map((s) => s.stateHash)).size).toBe(1);
    for (const id of c.ids) expect(await quantityOn(c, id)).toBe(8_500);
    client.close();
  });

  it("replace a replica whose data directory was deleted: remove, re-add as learner, promote — under load, nothing lost", async () => {
    const c = await newCluster("mem_replace");
    const client = c.client();
    await restock(client, 10_000, "seed");
    const load = deductLoad(client, "r", 8, 2_000);
    await until(() => load.acked.size >= 200, "the load is running");
    const leader = await c.waitLeader();
    const victim = c.ids.find((id) => id !== leader)!;
    await c.signal(victim, "SIGKILL");
    c.wipeLog(victim);
    c.start(victim);
    await until(
      async () => (await c.status(victim))?.identity === "lost",
      "the wiped replica knows it is lost",
    );
    const removed = await remove(c, c.ids, victim);
    expect(voters(removed)).not.toContain(victim);
    // Runbook: stop it, empty its data directory and its snapshot database, start it, add it back.
    await c.signal(victim, "SIGTERM");
    c.wipeLog(victim);
    await c.wipeSnapshots(victim);
    await c.start(victim).waitFor(/inventory replica listening/, 30_000);
    const added = await addLearner(c, c.ids, victim);
    expect(added.members.find((m) => m.id === victim)?.role).toBe("learner");
    const promoted = await promote(c, c.ids, victim);
    expect(voters(promoted)).toEqual([...c.ids].sort());
    await until(async () => (await c.status(victim))?.identity === "member", "vouched for by every voter");
    await load.done;
    expect(load.acked.size).toBe(2_000);
    const st = await c.converged();
    expect(new Set(st.map((s) => s.stateHash)).size).toBe(1);
    for (const id of c.ids) expect(await quantityOn(c, id)).toBe(8_000);
    // Its vote counts again: with the third replica gone, it and the other elect a leader.
    const third = c.ids.find((id) => id !== victim)!;
    await c.signal(third, "SIGKILL");
    const next = await c.waitLeader(20_000, [third]);
    expect(next).not.toBe(third);
    await restock(client, 1, "after");
    client.close();
  });

  it("grow 3 → 5 → 3 under load: new replicas join by their replicated addresses, nothing lost", async () => {
    const c = await newCluster("mem_grow", 2);
    const client = c.client();
    await restock(client, 10_000, "seed");
    const load = deductLoad(client, "g", 8, 3_000);
    await until(() => load.acked.size >= 200, "the load is running");
    for (const id of c.spareIds) {
      await c.start(id).waitFor(/inventory replica listening/, 30_000);
      await addLearner(c, c.all, id);
      await promote(c, c.all, id);
    }
    const five = await change(c, c.all, (a) => callUnary(a.listMembers.bind(a), {}, 2_000));
    expect(voters(five)).toEqual([...c.all].sort());
    // An original replica restarted knows the joined ones only from the replicated configuration
    // (its INVENTORY_PEERS lists the first three): leading, it must still reach them.
    const leader = await leaderAmong(c, c.all);
    const original = c.ids.find((id) => id !== leader)!;
    await c.signal(original, "SIGTERM");
    await c.start(original).waitFor(/inventory replica listening/, 30_000);
    // Asked of whichever replica leads at each try: an election meanwhile (a busy machine) moves
    // the leadership elsewhere, and a transfer asked of a former leader can only say NOT_LEADER.
    let lastError = "";
    await until(async () => {
      const now = await leaderAmong(c, c.all);
      if (now === original) return true;
      const a = admin(c, now);
      try {
        await callUnary(a.transferLeadership.bind(a), { to: original }, 2_000);
        return true;
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err);
        return false;
      }
    }, "leadership moved to the restarted original").catch((err: Error) => {
      throw new Error(`${err.message}; last refusal: ${lastError}`);
    });
    await restock(client, 1, "via-original");
    await c.converged(c.all);
    // Shrink back: two of the original three leave (never the leader: it would refuse).
    const lead = await leaderAmong(c, c.all);
    const leaving = c.ids.filter((id) => id !== lead).slice(0, 2);
    for (const id of leaving) await remove(c, c.all, id);
    const staying = c.all.filter((id) => !leaving.includes(id));
    const three = await change(c, staying, (x) => callUnary(x.listMembers.bind(x), {}, 2_000));
    expect(voters(three)).toEqual([...staying].sort());
    for (const id of leaving) await c.signal(id, "SIGTERM");
    await load.done;
    expect(load.acked.size).toBe(3_000);
    const st = await c.converged(staying);
    expect(new Set(st.map((s) => s.stateHash)).size).toBe(1);
    for (const id of staying) expect(await quantityOn(c, id)).toBe(7_001);
    client.close();
  });
});
