// Owns the `stock` workload: a few clients read, deduct and restock a few stock items of one clinic
// through the inventory's gRPC API, with the gateway's own leader-finding client (the same request
// id on every retry of one operation, a fresh one per operation). An answer is ok or a definite
// refusal (INSUFFICIENT_STOCK); anything else — a deadline, no leader in time — is indeterminate:
// the write may still take effect later, so the op's return time is +∞. A client whose op is
// indeterminate is retired and replaced by a new client id, as in Jepsen (it may still be in flight).
import { randomUUID } from "node:crypto";
import { credentials } from "@grpc/grpc-js";
import { InventoryServiceClient, ReadConsistency } from "../../src/gen/medisync/v1/inventory.ts";
import { AppError } from "../../src/shared/errors.ts";
import { callUnary, clientChannelOptions } from "../../src/shared/grpc.ts";
import type { InventoryClient } from "../../src/shared/inventory-client.ts";
import type { Op } from "../checker/history.ts";
import { type CheckResult, checkLinearizable } from "../checker/linearizable.ts";
import { type StockInput, type StockOutput, stockModel } from "../checker/models/stock.ts";
import { pick, type Random } from "../random.ts";

/** `replica`: the replica a read was sent to straight (readsAtEachReplica); absent through the leader. */
export type StockOp = Op<StockInput, StockOutput> & { replica?: string };

export interface StockWorkloadOptions {
  clients: number;
  keys: number;
  clinicId: string;
  /** Pause between one client's ops, so a 2-core machine is not saturated. */
  thinkMs: number;
  /**
   * Read any replica's applied state instead of a linearizable read: not linearizable by design,
   * so a run with it on must fail. It is how the harness shows it can catch a stale read without
   * a failpoint in the system.
   */
  staleReads: boolean;
  /**
   * Send each linearizable read straight to the replicas in turn instead of to the leader (as
   * Jepsen binds clients to nodes): every replica must serve one, a follower asking the leader for
   * the read index. It is what shows a replica answering from its own state without ReadIndex.
   */
  readsAtEachReplica: boolean;
}

export const stockDefaults: StockWorkloadOptions = {
  clients: 4,
  keys: 3,
  clinicId: "c-jepsen",
  thinkMs: 20,
  staleReads: false,
  readsAtEachReplica: false,
};

/** Deadline of a read sent to one replica (readsAtEachReplica); past it the read is indeterminate. */
export const replicaReadDeadlineMs = 1_000;

export function medicationOf(key: string): string {
  return `m-${key}`;
}

async function invoke(
  inv: InventoryClient,
  w: StockWorkloadOptions,
  key: string,
  input: StockInput,
  replica: InventoryServiceClient | undefined,
) {
  const { clinicId } = w;
  const medicationCode = medicationOf(key);
  if (input.f === "read") {
    const consistency = ReadConsistency.READ_CONSISTENCY_LINEARIZABLE;
    const r = replica
      ? await callUnary(
          replica.getStock.bind(replica),
          { clinicId, medicationCode, consistency },
          replicaReadDeadlineMs,
        )
      : await inv.getStock(clinicId, medicationCode, w.staleReads);
    return { ok: true as const, quantity: Number(r.item?.quantity ?? 0) };
  }
  const base = { requestId: randomUUID(), clinicId, medicationCode, quantity: input.qty };
  // A restock names no lot and no expiry: the empty strings the gateway sends for "none".
  const r = await inv.write(input.f, input.f === "restock" ? { ...base, lot: "", expiresOn: "" } : base);
  return { ok: true as const, quantity: Number(r.quantity) };
}

/** Runs the clients until `stopped()` and returns every op (indeterminate ones included). */
export async function runStockWorkload(o: {
  inventory: InventoryClient;
  /** Every replica's address, for readsAtEachReplica. */
  replicas?: readonly { id: string; address: string }[];
  options: StockWorkloadOptions;
  random: Random;
  now: () => number;
  stopped: () => boolean;
  onOp?: (op: StockOp) => void;
}): Promise<StockOp[]> {
  const { options: w, random } = o;
  const history: StockOp[] = [];
  let nextId = 0;
  let nextClient = w.clients;
  const keys = Array.from({ length: w.keys }, (_, i) => `k${i}`);
  const direct = w.readsAtEachReplica
    ? (o.replicas ?? []).map((r) => ({
        id: r.id,
        client: new InventoryServiceClient(r.address, credentials.createInsecure(), clientChannelOptions),
      }))
    : [];
  let nextReplica = 0;
  const lane = async (first: number) => {
    let client = first;
    while (!o.stopped()) {
      const key = pick(random, keys);
      const roll = random();
      const input: StockInput =
        roll < 0.4
          ? { f: "read" }
          : roll < 0.75
            ? { f: "deduct", qty: 1 + Math.floor(random() * 4) }
            : { f: "restock", qty: 1 + Math.floor(random() * 8) };
      const call = o.now();
      let output: StockOutput | undefined;
      let error: string | undefined;
      let replica: (typeof direct)[number] | undefined;
      try {
        replica = input.f === "read" && direct.length ? direct[nextReplica++ % direct.length] : undefined;
        output = await invoke(o.inventory, w, key, input, replica?.client);
      } catch (err) {
        if (err instanceof AppError && err.code === "INSUFFICIENT_STOCK") {
          const available = Number(err.meta.available);
          output = {
            ok: false,
            error: "INSUFFICIENT_STOCK",
            ...(Number.isFinite(available) ? { available } : {}),
          };
        }
        // Anything else: no answer we can trust.
        else error = err instanceof AppError ? `${err.code}: ${err.message}` : String(err);
      }
      const op: StockOp = {
        id: nextId++,
        client,
        key,
        input,
        output,
        call,
        ret: output === undefined ? Number.POSITIVE_INFINITY : o.now(),
        ...(error === undefined ? {} : { error }),
        ...(replica === undefined ? {} : { replica: replica.id }),
      };
      history.push(op);
      o.onOp?.(op);
      if (output === undefined) client = nextClient++;
      if (w.thinkMs > 0) await new Promise((r) => setTimeout(r, w.thinkMs));
    }
  };
  try {
    await Promise.all(Array.from({ length: w.clients }, (_, i) => lane(i)));
  } finally {
    for (const c of direct) c.client.close();
  }
  return history;
}

/** An unanswered read constrains nothing: left out of the search (it stays in history.jsonl). */
export function checkStock(history: StockOp[], budgetMs: number): CheckResult {
  const relevant = history.filter((op) => !(op.input.f === "read" && op.output === undefined));
  return checkLinearizable(stockModel, relevant, { budgetMs });
}
