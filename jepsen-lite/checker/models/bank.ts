// Owns the sequential specification of the bank: the stock of one medication at a few clinics (the
// accounts), moved between them by transfers. A transfer moves `amount` from one account to another
// when the source has that much, answering the source's balance after it, and otherwise is refused
// with INSUFFICIENT_STOCK (saying what was available) and changes nothing; a read answers one
// account's balance. A transfer touches two accounts, so the history cannot be split per account:
// the state is the whole balance vector and the history is one key.
import type { Model } from "../model.ts";

export type BankInput =
  | { f: "read"; account: number }
  | { f: "transfer"; from: number; to: number; amount: number };

export type BankOutput =
  | { ok: true; balance: number }
  /** A definite refusal: nothing moved. `available` is what the source had, when it said. */
  | { ok: false; error: string; available?: number };

export const bankKey = "bank";

export function bankModel(initial: readonly number[]): Model<number[], BankInput, BankOutput> {
  const moved = (s: number[], i: BankInput & { f: "transfer" }) => {
    const n = [...s];
    n[i.from]! -= i.amount;
    n[i.to]! += i.amount;
    return n;
  };
  return {
    init: () => [...initial],
    step(s, input, out) {
      if (input.f === "read") {
        if (out === undefined) return [s];
        return out.ok && out.balance === s[input.account] ? [s] : [];
      }
      const enough = s[input.from]! >= input.amount;
      if (out === undefined) return enough ? [moved(s, input), s] : [s];
      if (out.ok) return enough && out.balance === s[input.from]! - input.amount ? [moved(s, input)] : [];
      if (out.error !== "INSUFFICIENT_STOCK") return [s];
      return !enough && (out.available === undefined || out.available === s[input.from]) ? [s] : [];
    },
    stateKey: (s) => s.join(","),
    describeOp(input, out) {
      const what =
        input.f === "read"
          ? `read a${input.account}`
          : `transfer ${input.amount} a${input.from}→a${input.to}`;
      if (out === undefined) return `${what} → no answer (indeterminate)`;
      if (out.ok) return `${what} → ok, balance ${out.balance}`;
      return `${what} → ${out.error}${out.available === undefined ? "" : ` (available ${out.available})`}`;
    },
    describeState: (s) => `balances [${s.join(", ")}]`,
    explain(s, input, out) {
      if (out === undefined) return `no state explains it from balances [${s.join(", ")}]`;
      if (input.f === "read") {
        return out.ok
          ? `it read ${out.balance}, but a${input.account} held ${s[input.account]}`
          : "a read cannot fail";
      }
      const have = s[input.from]!;
      if (out.ok) {
        return have < input.amount
          ? `it moved ${input.amount} out of a${input.from}, which held only ${have}`
          : `it answered balance ${out.balance}, but a${input.from} should be left with ${have - input.amount}`;
      }
      return `it was refused as insufficient with ${have} in a${input.from} (needs ${input.amount})`;
    },
  };
}
