// Owns the write load the cluster and membership tests run through a cluster: deducts retried with
// their own request id until acknowledged, so the final stock says whether any acknowledged write
// was lost.

import { ReadConsistency } from "../../src/gen/medisync/v1/inventory.ts";
import { callUnary } from "../../src/shared/grpc.ts";
import type { InventoryClient } from "../../src/shared/inventory-client.ts";
import { type InventoryCluster, untilAcked } from "./inventory-cluster.ts";

export const clinic = "harbour";
export const med = "amoxicillin-500";

export interface Load {
  acked: Set<string>;
  stop: () => void;
  done: Promise<void>;
}

/** `workers` clients deducting 1 each, one request at a time, until `total` are acknowledged. */
export function deductLoad(client: InventoryClient, tag: string, workers: number, total: number): Load {
  const acked = new Set<string>();
  let stopped = false;
  let next = 0;
  const worker = async () => {
    while (!stopped && next < total) {
      const requestId = `${tag}-${next++}`;
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
  return { acked, stop: () => (stopped = true), done };
}

export async function restock(client: InventoryClient, quantity: number, requestId: string): Promise<void> {
  await untilAcked(() =>
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

/** The quantity as replica `id` has applied it (stale read: no leader involved). */
export async function quantityOn(c: InventoryCluster, id: string): Promise<number> {
  const client = c.clients.get(id)!;
  const r = await callUnary(
    client.getStock.bind(client),
    { clinicId: clinic, medicationCode: med, consistency: ReadConsistency.READ_CONSISTENCY_STALE },
    2_000,
  );
  return r.item?.quantity ?? 0;
}

export { until } from "./until.ts";
