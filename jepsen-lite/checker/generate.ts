// Owns making stock histories that are linearizable by construction, for the checker's property
// tests: run a sequence of operations through the sequential model, give each a linearization
// point, then widen every op into an interval around its point by a random amount, so ops overlap
// at random while the points still explain the history. Some ops lose their answer (indeterminate),
// and some of those never took effect at all.
import fc from "fast-check";
import type { Op } from "./history.ts";
import type { StockInput, StockOutput } from "./models/stock.ts";

export type StockOp = Op<StockInput, StockOutput>;

export interface Step {
  key: number;
  f: "read" | "restock" | "deduct";
  qty: number;
  /** No answer recorded. */
  lost: boolean;
  /** For a lost write: whether it took effect anyway. */
  applied: boolean;
  /**
   * For a lost op: the client learned when it was settled (took effect by then, or never will), so
   * its return time is finite although its outcome is unknown. Only then do the two outcomes of an
   * indeterminate write differ: with ret +∞ "never" is the same as "last".
   */
  settled: boolean;
  before: number;
  after: number;
}

export const stepsArb = (opts: { keys: number; maxOps: number; lostRate: number }) =>
  fc.array(
    fc.record({
      key: fc.nat({ max: opts.keys - 1 }),
      f: fc.constantFrom("read", "restock", "deduct", "deduct") as fc.Arbitrary<Step["f"]>,
      qty: fc.integer({ min: 1, max: 6 }),
      // noBias: fast-check leans to the bounds, which would make nearly every op lost.
      lost: fc.noBias(fc.integer({ min: 0, max: 999 })).map((x) => x < opts.lostRate * 1000),
      applied: fc.boolean(),
      settled: fc.boolean(),
    }),
    { minLength: 1, maxLength: opts.maxOps },
  );

/** Runs the steps through the model; adds a final read of every key that was touched. */
export function runSequential(steps: Omit<Step, "before" | "after">[], finalReads = true): Step[] {
  const stock = new Map<number, number>();
  const out: Step[] = [];
  const all = [...steps];
  if (finalReads) {
    for (const k of new Set(steps.map((s) => s.key))) {
      all.push({ key: k, f: "read", qty: 0, lost: false, applied: true, settled: true });
    }
  }
  for (const s of all) {
    const before = stock.get(s.key) ?? 0;
    let after = before;
    const effect = !s.lost || s.applied;
    if (effect && s.f === "restock") after = before + s.qty;
    if (effect && s.f === "deduct" && before >= s.qty) after = before - s.qty;
    stock.set(s.key, after);
    out.push({ ...s, before, after });
  }
  return out;
}

export function outputOf(s: Step): StockOutput | undefined {
  if (s.lost) return undefined;
  if (s.f === "read") return { ok: true, quantity: s.before };
  if (s.f === "restock") return { ok: true, quantity: s.after };
  return s.before >= s.qty
    ? { ok: true, quantity: s.after }
    : { ok: false, error: "INSUFFICIENT_STOCK", available: s.before };
}

export function inputOf(s: Step): StockInput {
  return s.f === "read" ? { f: "read" } : { f: s.f, qty: s.qty };
}

/**
 * Ops with point 10·i, widened by up to `spread`·10 on each side (spread 0: strictly sequential).
 * `widen` holds the random widths, two per op, in [0, 1).
 */
export function toHistory(steps: Step[], widen: number[], spread: number): StockOp[] {
  return steps.map((s, i) => {
    const point = 10 * (i + 1);
    const left = (widen[2 * i] ?? 0) * spread * 10;
    const right = (widen[2 * i + 1] ?? 0) * spread * 10;
    const output = outputOf(s);
    return {
      id: i,
      client: i % 5,
      key: `k${s.key}`,
      input: inputOf(s),
      output,
      call: point - left,
      ret: output === undefined && !s.settled ? Number.POSITIVE_INFINITY : point + right,
    };
  });
}

/**
 * Every op on one key is strictly ordered in real time (no overlap within a key), while keys are
 * offset from each other at random so ops of different keys overlap. With every answer known the
 * state of each key is then determined at every point, so any single mutation must be caught.
 */
export function perKeySequential(steps: Step[], offsets: number[]): StockOp[] {
  const seqOnKey = new Map<number, number>();
  return steps.map((s, i) => {
    const j = seqOnKey.get(s.key) ?? 0;
    seqOnKey.set(s.key, j + 1);
    const point = 10 * (j + 1) + (offsets[s.key] ?? 0) * 10;
    return {
      id: i,
      client: i % 5,
      key: `k${s.key}`,
      input: inputOf(s),
      output: outputOf(s),
      call: point - 3,
      ret: point + 3,
    };
  });
}
