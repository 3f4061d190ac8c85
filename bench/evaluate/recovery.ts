// Section 3: consistent state after recovery. A follower is SIGKILLed, a number of writes are
// acknowledged without it, and it is restarted: the time from its listening again until it has
// applied everything the leader had committed, against how far behind it was; then, once all replicas have applied the
// same index, every replica's state hash (Status.state_hash, a digest of its whole state machine)
// and its own (stale, local) reading of the written stock line are compared.
import { ReadConsistency } from "../../src/gen/medisync/v1/inventory.ts";
import { callUnary } from "../../src/shared/grpc.ts";
import type { InventoryCluster } from "../../test/support/inventory-cluster.ts";
import { untilAcked } from "../../test/support/inventory-cluster.ts";
import { round } from "./histogram.ts";
import type { RecoveryResult, RecoveryTrial, RunInfo } from "./results.ts";

const filler = "filler";
const writers = 64;

async function localStock(c: InventoryCluster, id: string, clinic: string): Promise<number> {
  const client = c.clients.get(id)!;
  const r = await callUnary(
    client.getStock.bind(client),
    { clinicId: clinic, medicationCode: filler, consistency: ReadConsistency.READ_CONSISTENCY_STALE },
    5_000,
  );
  return Number(r.item?.quantity ?? 0);
}

async function recoveryTrial(
  c: InventoryCluster,
  n: number,
  writes: number,
  clinic: string,
): Promise<RecoveryTrial> {
  const leader = await c.waitLeader(30_000);
  const follower = c.ids.find((i) => i !== leader)!;
  const appliedBefore = (await c.status(follower, 5_000))!.appliedIndex;
  await c.signal(follower, "SIGKILL");
  const client = c.client(30_000);
  let next = 0;
  try {
    // A client's way: each write with its request id until acknowledged, wherever the leader is.
    await Promise.all(
      Array.from({ length: writers }, async () => {
        while (next < writes) {
          const requestId = `recovery-${n}-${next++}`;
          await untilAcked(() =>
            client.write("restock", {
              requestId,
              clinicId: clinic,
              medicationCode: filler,
              quantity: 1,
              lot: "",
              expiresOn: "",
            }),
          );
        }
      }),
    );
  } finally {
    client.close();
  }
  const target = (await c.status(await c.waitLeader(30_000, [follower]), 5_000))!.commitIndex;
  const t0 = performance.now();
  const w = c.start(follower);
  // A process's start (node, the build, LevelDB, PostgreSQL) is not catching up: timed apart.
  await w.waitFor(/inventory replica listening/, 60_000);
  const t1 = performance.now();
  for (;;) {
    const st = await c.status(follower, 1_000);
    if (st && st.appliedIndex >= target) break;
    if (performance.now() - t1 > 300_000) throw new Error(`${follower} did not catch up within 300 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
  const catchUpMs = performance.now() - t1;
  const statuses = await c.converged(c.ids, 120_000);
  const replicas = await Promise.all(
    statuses.map(async (s) => ({
      id: s.id,
      appliedIndex: s.appliedIndex,
      stateHash: s.stateHash,
      stock: await localStock(c, s.id, clinic),
    })),
  );
  return {
    writes,
    entriesBehind: target - appliedBefore,
    restartMs: round(t1 - t0, 0),
    catchUpMs: round(catchUpMs, 1),
    bySnapshot: w.lines.some((l) => l.includes('"msg":"snapshot installed"')),
    replicas,
    consistent:
      new Set(replicas.map((r) => r.stateHash)).size === 1 &&
      new Set(replicas.map((r) => r.stock)).size === 1,
  };
}

export async function measureRecovery(
  run: RunInfo,
  c: InventoryCluster,
  writesList: number[],
  clinic: string,
  log: (s: string) => void,
): Promise<RecoveryResult> {
  const trials: RecoveryTrial[] = [];
  for (const [n, writes] of writesList.entries()) {
    const t = await recoveryTrial(c, n, writes, clinic);
    trials.push(t);
    log(
      `recovery: ${writes} writes, ${t.entriesBehind} entries behind, caught up in ${t.catchUpMs} ms` +
        `${t.bySnapshot ? " (by snapshot)" : ""}; hashes ${t.consistent ? "equal" : "DIFFER"}: ${t.replicas.map((r) => `${r.id} ${r.stateHash.slice(0, 12)}`).join(", ")}`,
    );
  }
  return { run, trials };
}
