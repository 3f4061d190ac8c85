// Low-stock alerts reach the event stream at least once across a leader change: the leader that
// applied the deduct is SIGKILLed before its relay's next round, and the new leader publishes the
// event from the replicated state, under the same event id.
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { InventoryCluster } from "./support/inventory-cluster.ts";

// Rounds seconds apart: the first leader is killed well before it would publish.
const relayIntervalMs = 2_000;
const cluster = new InventoryCluster({
  name: "inventory_low_stock",
  env: { INVENTORY_EVENT_RELAY_INTERVAL_MS: String(relayIntervalMs) },
});
let redis: Redis;

beforeAll(async () => {
  await cluster.init();
  await cluster.startAll();
  await cluster.waitFormed();
  redis = new Redis(cluster.redisUrl);
}, 120_000);

afterAll(async () => {
  redis?.disconnect();
  await cluster.stop();
}, 60_000);

type Entry = [string, string[]];

async function lowStockEntries(): Promise<{ id: string; payload: Record<string, unknown> }[]> {
  const entries = (await redis.xrange(`${cluster.prefix}events`, "-", "+")) as Entry[];
  return entries
    .map(([, f]) => new Map(Array.from({ length: f.length / 2 }, (_, i) => [f[2 * i]!, f[2 * i + 1]!])))
    .filter((f) => f.get("topic") === "inventory.low-stock")
    .map((f) => ({ id: f.get("id")!, payload: JSON.parse(f.get("payload")!) as Record<string, unknown> }));
}

it("the leader SIGKILLed right after the deduct that crosses the reorder level: the new leader publishes the alert", async () => {
  const client = cluster.client(30_000);
  try {
    const item = { clinicId: "c-low", medicationCode: "insulin" };
    await client.write("restock", { requestId: "ls-r", ...item, quantity: 15, lot: "L1", expiresOn: "" });
    await client.write("setReorderLevel", { requestId: "ls-l", ...item, level: 10 });
    const leader = await cluster.waitLeader();
    const crossed = await client.write("deduct", { requestId: "ls-d", ...item, quantity: 6 });
    await cluster.signal(leader, "SIGKILL");
    expect(crossed.quantity).toBe(9);

    const deadline = Date.now() + 30_000;
    let found = await lowStockEntries();
    while (found.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      found = await lowStockEntries();
    }
    expect(found.length).toBeGreaterThanOrEqual(1);
    // Every copy is the same event: one id, derived from the entry's log index.
    expect(new Set(found.map((e) => e.id))).toEqual(new Set([`${crossed.index}-0`]));
    expect(found[0]!.payload).toEqual({
      clinic: "c-low",
      medicationCode: "insulin",
      quantity: 9,
      reorderLevel: 10,
      index: crossed.index,
    });

    // The cursor is replicated: once the killed replica is back and the cluster has converged, the
    // alert is not published again over the following relay rounds (bounded observation).
    cluster.start(leader);
    await cluster.procs.get(leader)!.waitFor(/inventory replica listening/, 60_000);
    await cluster.converged();
    const settled = (await lowStockEntries()).length;
    await new Promise((r) => setTimeout(r, 3 * relayIntervalMs));
    expect((await lowStockEntries()).length).toBe(settled);
  } finally {
    client.close();
  }
}, 120_000);
