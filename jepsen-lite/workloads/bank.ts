// Owns the `bank` workload: a few clients move the stock of one medication between a few clinics
// (the accounts) with the inventory's Transfer command and read single balances linearizably,
// through the gateway's own leader-finding client. Each account is stocked once before the run, so
// the total is known; the check is linearizability against the bank model on the whole history as
// one key (a transfer touches two accounts: no per-account split), under a time budget whose end is
// reported as `unknown`, plus the invariants stated on their own: no read ever shows a negative
// balance or more than the total, and after the final heal the balances, read once more, add up to
// the total (when no transfer is left unanswered; else the linearizability check judges them).
import { randomUUID } from "node:crypto";
import { AppError } from "../../src/shared/errors.ts";
import type { InventoryClient } from "../../src/shared/inventory-client.ts";
import { untilAcked } from "../../test/support/inventory-cluster.ts";
import type { Op } from "../checker/history.ts";
import { type CheckResult, checkLinearizable } from "../checker/linearizable.ts";
import { type BankInput, type BankOutput, bankKey, bankModel } from "../checker/models/bank.ts";
import type { Random } from "../random.ts";

export type BankOp = Op<BankInput, BankOutput>;

export interface BankWorkloadOptions {
  clients: number;
  accounts: number;
  /** What each account holds before the run. */
  initial: number;
  medicationCode: string;
  /** Pause between one client's ops, so a 2-core machine is not saturated and the checker settles. */
  thinkMs: number;
  readFraction: number;
  /** Transfers move 1..amountMax. */
  amountMax: number;
}

export const bankDefaults: BankWorkloadOptions = {
  clients: 3,
  accounts: 4,
  initial: 20,
  medicationCode: "m-bank",
  thinkMs: 30,
  readFraction: 0.4,
  amountMax: 8,
};

export const accountClinic = (i: number) => `c-bank-${i}`;

/** Stocks every account once (each write retried with its own request id until acknowledged). */
export async function setupBank(inv: InventoryClient, w: BankWorkloadOptions): Promise<void> {
  for (let i = 0; i < w.accounts; i++) {
    const requestId = randomUUID();
    await untilAcked(() =>
      inv.write("restock", {
        requestId,
        clinicId: accountClinic(i),
        medicationCode: w.medicationCode,
        quantity: w.initial,
        lot: "",
        expiresOn: "",
      }),
    );
  }
}

async function invoke(inv: InventoryClient, w: BankWorkloadOptions, input: BankInput): Promise<BankOutput> {
  if (input.f === "read") {
    const r = await inv.getStock(accountClinic(input.account), w.medicationCode, false);
    return { ok: true, balance: Number(r.item?.quantity ?? 0) };
  }
  const r = await inv.write("transfer", {
    requestId: randomUUID(),
    fromClinicId: accountClinic(input.from),
    toClinicId: accountClinic(input.to),
    medicationCode: w.medicationCode,
    quantity: input.amount,
  });
  return { ok: true, balance: Number(r.quantity) };
}

async function attempt(inv: InventoryClient, w: BankWorkloadOptions, input: BankInput) {
  try {
    return { output: await invoke(inv, w, input) };
  } catch (err) {
    if (err instanceof AppError && err.code === "INSUFFICIENT_STOCK") {
      const available = Number(err.meta.available);
      const output: BankOutput = {
        ok: false,
        error: "INSUFFICIENT_STOCK",
        ...(Number.isFinite(available) ? { available } : {}),
      };
      return { output };
    }
    return { error: err instanceof AppError ? `${err.code}: ${err.message}` : String(err) };
  }
}

/** Runs the clients until `stopped()` and returns every op (indeterminate ones included). */
export async function runBankWorkload(o: {
  inventory: InventoryClient;
  options: BankWorkloadOptions;
  random: Random;
  now: () => number;
  stopped: () => boolean;
}): Promise<BankOp[]> {
  const { options: w, random } = o;
  const history: BankOp[] = [];
  let nextId = 0;
  let nextClient = w.clients;
  const record = (client: number, input: BankInput, call: number, r: Awaited<ReturnType<typeof attempt>>) => {
    const op: BankOp = {
      id: nextId++,
      client,
      key: bankKey,
      input,
      output: r.output,
      call,
      ret: r.output === undefined ? Number.POSITIVE_INFINITY : o.now(),
      ...(r.error === undefined ? {} : { error: r.error }),
    };
    history.push(op);
    return op;
  };
  const lane = async (first: number) => {
    let client = first;
    while (!o.stopped()) {
      let input: BankInput;
      if (random() < w.readFraction) input = { f: "read", account: Math.floor(random() * w.accounts) };
      else {
        const from = Math.floor(random() * w.accounts);
        const to = (from + 1 + Math.floor(random() * (w.accounts - 1))) % w.accounts;
        input = { f: "transfer", from, to, amount: 1 + Math.floor(random() * w.amountMax) };
      }
      const call = o.now();
      const op = record(client, input, call, await attempt(o.inventory, w, input));
      if (op.output === undefined) client = nextClient++;
      if (w.thinkMs > 0) await new Promise((r) => setTimeout(r, w.thinkMs));
    }
  };
  await Promise.all(Array.from({ length: w.clients }, (_, i) => lane(i)));
  // The final balances, read one after another once everything is healed (a client of its own).
  const final = nextClient++;
  for (let a = 0; a < w.accounts; a++) {
    const input: BankInput = { f: "read", account: a };
    record(final, input, o.now(), await attempt(o.inventory, w, input));
  }
  return history;
}

/** Linearizable against the bank model, and the invariants stated on their own. */
export function checkBank(history: BankOp[], w: BankWorkloadOptions, budgetMs: number): CheckResult {
  const total = w.accounts * w.initial;
  const reads = history.filter((op) => op.input.f === "read" && op.output?.ok === true);
  const balanceOf = (op: BankOp) => (op.output as { balance: number }).balance;
  const impossible = reads.find((op) => balanceOf(op) < 0 || balanceOf(op) > total);
  const finalClient = Math.max(...history.map((op) => op.client));
  const finals = history.filter((op) => op.client === finalClient && op.input.f === "read");
  const relevant = history.filter((op) => !(op.input.f === "read" && op.output === undefined));
  const r = checkLinearizable(bankModel(Array(w.accounts).fill(w.initial)), relevant, { budgetMs });
  const invariant = (op: BankOp | undefined, explanation: string): CheckResult => ({
    ...r,
    result: "fail",
    failure: {
      key: bankKey,
      prefix: [],
      blocked: op?.id ?? -1,
      stateAfterPrefix: "",
      explanation,
    },
  });
  if (impossible) {
    return invariant(
      impossible,
      `op ${impossible.id} read balance ${balanceOf(impossible)}, outside 0..${total}`,
    );
  }
  // An unanswered transfer may still land between the final reads (its retry could be in flight):
  // then only the linearizability check, which may place it there, can judge the sum.
  const settled = !history.some((op) => op.input.f === "transfer" && op.output === undefined);
  if (finals.length === w.accounts && finals.every((op) => op.output?.ok)) {
    const sum = finals.reduce((s, op) => s + balanceOf(op), 0);
    if (sum !== total && settled) {
      return invariant(finals.at(-1), `the final balances add up to ${sum}, not the ${total} stocked`);
    }
  } else if (r.result === "ok") {
    return { ...r, result: "unknown", reason: "the final balances could not all be read" };
  }
  return r;
}
