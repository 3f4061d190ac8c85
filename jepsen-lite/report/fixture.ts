// Owns the small fixed histories the report's tests render, one per workload, each rejected by its
// checker and holding every outcome (ok, a refusal, an unanswered op). The stock one fails on k0 (a
// read of 5 after a deduct left 3) with a fault window around the failing read.
import { bankKey } from "../checker/models/bank.ts";
import type { FaultRecord } from "../nemesis.ts";
import { type BankOp, bankDefaults, checkBank } from "../workloads/bank.ts";
import { type BookingOp, checkBooking } from "../workloads/booking.ts";
import type { StockOp } from "../workloads/stock.ts";
import { checkStock } from "../workloads/stock.ts";
import type { ReportRun } from "./model.ts";

const ok = (quantity: number) => ({ ok: true as const, quantity });

export const fixtureHistory: StockOp[] = [
  { id: 0, client: 0, key: "k0", input: { f: "restock", qty: 5 }, output: ok(5), call: 100, ret: 180 },
  {
    id: 1,
    client: 1,
    key: "k1",
    input: { f: "deduct", qty: 3 },
    output: { ok: false, error: "INSUFFICIENT_STOCK", available: 0 },
    call: 120,
    ret: 200,
  },
  { id: 2, client: 0, key: "k0", input: { f: "deduct", qty: 2 }, output: ok(3), call: 300, ret: 380 },
  {
    id: 3,
    client: 2,
    key: "k1",
    input: { f: "restock", qty: 4 },
    output: undefined,
    call: 350,
    ret: Number.POSITIVE_INFINITY,
    error: "DEADLINE_EXCEEDED",
  },
  { id: 4, client: 1, key: "k0", input: { f: "read" }, output: ok(5), call: 1_200, ret: 1_260 },
  { id: 5, client: 0, key: "k0", input: { f: "read" }, output: ok(3), call: 1_400, ret: 1_450 },
];

/** The op the checker cannot place. */
export const fixtureBlocked = 4;

export function fixtureRun(history = fixtureHistory): ReportRun {
  const check = checkStock(history, 5_000);
  return {
    run: "fixed-history",
    workload: "stock",
    nemesis: "partition",
    seed: 1,
    failpoints: ["read-local"],
    valid: check.result === "ok" ? "ok" : check.result,
    livenessMs: 120,
    check,
    faults: [{ kind: "partition", target: "inv-2", start: 900, end: 1_300 }],
  };
}

/**
 * A bank history the checker rejects: op 1 moved 5 out of account 0 (balance 15 after it), and op 3,
 * called after, reads 20 there. Op 2 is a refusal, op 4 unanswered.
 */
export const bankFixtureHistory: BankOp[] = [
  {
    id: 0,
    client: 0,
    key: bankKey,
    input: { f: "read", account: 0 },
    output: { ok: true, balance: 20 },
    call: 50,
    ret: 90,
  },
  {
    id: 1,
    client: 1,
    key: bankKey,
    input: { f: "transfer", from: 0, to: 1, amount: 5 },
    output: { ok: true, balance: 15 },
    call: 100,
    ret: 200,
  },
  {
    id: 2,
    client: 0,
    key: bankKey,
    input: { f: "transfer", from: 2, to: 3, amount: 30 },
    output: { ok: false, error: "INSUFFICIENT_STOCK", available: 20 },
    call: 150,
    ret: 220,
  },
  {
    id: 3,
    client: 0,
    key: bankKey,
    input: { f: "read", account: 0 },
    output: { ok: true, balance: 20 },
    call: 1_000,
    ret: 1_050,
  },
  {
    id: 4,
    client: 2,
    key: bankKey,
    input: { f: "transfer", from: 1, to: 2, amount: 1 },
    output: undefined,
    call: 1_100,
    ret: Number.POSITIVE_INFINITY,
    error: "DEADLINE_EXCEEDED",
  },
];
export const bankFixtureBlocked = 3;

/** A fault record as the nemesis writes it (nemesis.ts FaultRecord), with its health checks and combo. */
export const comboFault: FaultRecord = {
  kind: "halves",
  target: "inv-0,inv-1 | inv-2",
  start: 600,
  end: 1_300,
  leaderAfterMs: 410,
  leaderBefore: "inv-0",
  leaderAfterHeal: "inv-0",
  healthBefore: { at: 580, leader: "inv-0", writeMs: 12 },
  healthAfter: { at: 1_310, leader: "", writeMs: -1, error: "no leader" },
  combo: 2,
};

export function bankFixtureRun(history = bankFixtureHistory): ReportRun {
  const check = checkBank(history, bankDefaults, 5_000);
  return {
    run: "fixed-bank-history",
    workload: "bank",
    nemesis: "halves",
    seed: 2,
    valid: check.result,
    livenessMs: 80,
    check,
    faults: [comboFault],
  };
}

const slotIds = ["slot-a", "slot-b"];

/**
 * A booking history the checks reject: op 1 booked s1 (acknowledged at 300 ms) and op 2, a read that
 * started after, shows s1 free. Op 0 is a SLOT_TAKEN refusal; op 3 a cancel left unanswered.
 */
export const bookingFixtureHistory: BookingOp[] = [
  {
    id: 0,
    client: 0,
    key: "s0",
    input: { f: "book", slot: 0, patientId: "p-fixture", idempotencyKey: "i0" },
    output: { ok: false, error: "SLOT_TAKEN" },
    call: 100,
    ret: 160,
    instance: 0,
  },
  {
    id: 1,
    client: 1,
    key: "s1",
    input: { f: "book", slot: 1, patientId: "p-fixture", idempotencyKey: "i1" },
    output: { ok: true, appointmentId: "appt-1" },
    call: 200,
    ret: 300,
    instance: 1,
  },
  {
    id: 2,
    client: 0,
    key: "day",
    input: { f: "read" },
    output: { ok: true, free: [1], instance: 0, tier: 2 },
    call: 800,
    ret: 840,
    instance: 0,
  },
  {
    id: 3,
    client: 2,
    key: "s0",
    input: { f: "cancel", slot: 0, appointmentId: "appt-0" },
    output: undefined,
    call: 900,
    ret: Number.POSITIVE_INFINITY,
    error: "UNAVAILABLE",
  },
];
export const bookingFixtureBlocked = 2;

const redisFault: FaultRecord = {
  kind: "redis-flush",
  target: "redis",
  start: 500,
  end: 900,
  leaderAfterMs: -1,
  leaderBefore: "",
  leaderAfterHeal: "",
  healthBefore: { at: 480, leader: "", writeMs: 9 },
};

export function bookingFixtureRun(history = bookingFixtureHistory): ReportRun {
  const check = checkBooking(history, slotIds, [{ id: "appt-1", slot_id: "slot-b", status: "booked" }]);
  return {
    run: "fixed-booking-history",
    workload: "booking",
    nemesis: "redis-flush",
    seed: 3,
    valid: check.result,
    livenessMs: 60,
    check,
    faults: [redisFault],
  };
}
