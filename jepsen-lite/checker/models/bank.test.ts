// The bank model under the WGL checker, on hand-made histories: what it must accept (concurrent
// transfers in either order, an unanswered transfer that did or did not land) and what it must
// reject (money made or lost, a balance no order explains, a refusal with enough on hand).
import { describe, expect, it } from "vitest";
import type { Op } from "../history.ts";
import { checkLinearizable } from "../linearizable.ts";
import { type BankInput, type BankOutput, bankKey, bankModel } from "./bank.ts";

type BankOp = Op<BankInput, BankOutput>;
let id = 0;
const op = (client: number, call: number, ret: number, input: BankInput, output?: BankOutput): BankOp => ({
  id: id++,
  client,
  key: bankKey,
  input,
  output,
  call,
  ret: output === undefined ? Number.POSITIVE_INFINITY : ret,
});
const t = (from: number, to: number, amount: number): BankInput => ({ f: "transfer", from, to, amount });
const r = (account: number): BankInput => ({ f: "read", account });
const check = (h: BankOp[]) => checkLinearizable(bankModel([10, 10]), h, { budgetMs: 2_000 }).result;

describe("bank model", () => {
  it("accepts concurrent transfers whose answers fix one order", () => {
    expect(
      check([
        op(0, 0, 10, t(0, 1, 3), { ok: true, balance: 4 }),
        op(1, 1, 9, t(0, 1, 3), { ok: true, balance: 7 }),
        op(2, 11, 12, r(1), { ok: true, balance: 16 }),
      ]),
    ).toBe("ok");
  });

  it("accepts an unanswered transfer that landed, and one that did not", () => {
    const lost = op(0, 0, 0, t(0, 1, 5));
    expect(check([lost, op(1, 20, 21, r(0), { ok: true, balance: 5 })])).toBe("ok");
    expect(check([op(0, 0, 0, t(0, 1, 5)), op(1, 20, 21, r(0), { ok: true, balance: 10 })])).toBe("ok");
  });

  it("rejects a read that shows money made or lost", () => {
    expect(
      check([
        op(0, 0, 5, t(0, 1, 4), { ok: true, balance: 6 }),
        op(1, 6, 7, r(1), { ok: true, balance: 15 }),
      ]),
    ).toBe("fail");
  });

  it("rejects a read from before a transfer that had returned (real time)", () => {
    expect(
      check([
        op(0, 0, 5, t(0, 1, 4), { ok: true, balance: 6 }),
        op(1, 6, 7, r(0), { ok: true, balance: 10 }),
      ]),
    ).toBe("fail");
  });

  it("rejects a refusal with enough on hand, and accepts one without", () => {
    const refused: BankOutput = { ok: false, error: "INSUFFICIENT_STOCK", available: 10 };
    expect(check([op(0, 0, 5, t(0, 1, 4), refused)])).toBe("fail");
    expect(check([op(0, 0, 5, t(0, 1, 11), refused)])).toBe("ok");
  });

  it("a transfer's answer names the source's balance after it", () => {
    expect(check([op(0, 0, 5, t(1, 0, 4), { ok: true, balance: 14 })])).toBe("fail");
    expect(check([op(0, 0, 5, t(1, 0, 4), { ok: true, balance: 6 })])).toBe("ok");
  });
});
