// Owns the sequential specification of one stock item (the inventory's quantity on hand of one
// medication at one clinic): restock adds, deduct subtracts when enough is on hand and otherwise
// fails with INSUFFICIENT_STOCK leaving the stock as it was, read answers the quantity. Writes answer
// the quantity after the command (what the inventory API returns), which the model checks too.
import type { Model } from "../model.ts";

export type StockInput = { f: "read" } | { f: "restock"; qty: number } | { f: "deduct"; qty: number };

export type StockOutput =
  | { ok: true; quantity: number }
  /** A definite refusal: nothing changed. `available` is what the replica said it had, when it said. */
  | { ok: false; error: string; available?: number };

function uniq(states: number[]): number[] {
  return states.length === 2 && states[0] === states[1] ? [states[0]!] : states;
}

export const stockModel: Model<number, StockInput, StockOutput> = {
  init: () => 0,
  step(s, input, out) {
    switch (input.f) {
      case "read":
        if (out === undefined) return [s];
        return out.ok && out.quantity === s ? [s] : [];
      case "restock":
        if (out === undefined) return uniq([s + input.qty, s]);
        if (out.ok) return out.quantity === s + input.qty ? [s + input.qty] : [];
        return out.error === "INSUFFICIENT_STOCK" ? [] : [s];
      case "deduct":
        if (out === undefined) return s >= input.qty ? uniq([s - input.qty, s]) : [s];
        if (out.ok) return s >= input.qty && out.quantity === s - input.qty ? [s - input.qty] : [];
        if (out.error !== "INSUFFICIENT_STOCK") return [s];
        return s < input.qty && (out.available === undefined || out.available === s) ? [s] : [];
    }
  },
  stateKey: (s) => String(s),
  describeOp(input, out) {
    const what = input.f === "read" ? "read" : `${input.f} ${input.qty}`;
    if (out === undefined) return `${what} → no answer (indeterminate)`;
    if (out.ok) return `${what} → ok, quantity ${out.quantity}`;
    return `${what} → ${out.error}${out.available === undefined ? "" : ` (available ${out.available})`}`;
  },
  describeState: (s) => `quantity ${s}`,
  explain(s, input, out) {
    if (out === undefined) return `no state explains it from quantity ${s}`;
    if (input.f === "read") {
      return out.ok ? `it read ${out.quantity}, but the quantity was ${s}` : `a read cannot fail`;
    }
    if (out.ok) {
      if (input.f === "deduct" && s < input.qty) {
        return `it deducted ${input.qty} with only ${s} on hand`;
      }
      const expected = input.f === "restock" ? s + input.qty : s - input.qty;
      return `it answered quantity ${out.quantity}, but from ${s} it should leave ${expected}`;
    }
    if (input.f === "deduct") return `it was refused as insufficient with ${s} on hand (needs ${input.qty})`;
    return `a restock cannot be refused as insufficient`;
  },
};
