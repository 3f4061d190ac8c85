// The checker's own tests: histories linearizable by construction check ok, single mutations of
// histories whose every state is determined check fail, and on small histories WGL agrees with a
// brute-force search over every order that respects real time.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { bruteForceLinearizable } from "./brute-force.ts";
import { perKeySequential, runSequential, type Step, type StockOp, stepsArb, toHistory } from "./generate.ts";
import { checkLinearizable } from "./linearizable.ts";
import { stockModel } from "./models/stock.ts";

const widths = fc.array(fc.noBias(fc.double({ min: 0, max: 0.999, noNaN: true })), {
  minLength: 200,
  maxLength: 200,
});
const offsets = fc.array(fc.integer({ min: 0, max: 20 }), { minLength: 3, maxLength: 3 });
const check = (h: StockOp[]) => checkLinearizable(stockModel, h, { budgetMs: 20_000 });

describe("linearizability checker (WGL, per key)", () => {
  it("says ok for every history built from the sequential model and overlapped at random", () => {
    fc.assert(
      fc.property(
        stepsArb({ keys: 3, maxOps: 60, lostRate: 0.1 }),
        widths,
        fc.integer({ min: 0, max: 4 }),
        (steps, w, spread) => {
          const h = toHistory(runSequential(steps), w, spread);
          const r = check(h);
          expect(r.failure).toBeUndefined();
          expect(r.result).toBe("ok");
        },
      ),
      { numRuns: 300 },
    );
  });

  const determined = () => stepsArb({ keys: 3, maxOps: 30, lostRate: 0 }).map((s) => runSequential(s));

  it("fails a history in which one read was changed", () => {
    fc.assert(
      fc.property(determined(), offsets, fc.nat(), fc.integer({ min: -5, max: 5 }), (steps, off, pick, d) => {
        fc.pre(d !== 0);
        const h = perKeySequential(steps, off);
        expect(check(h).result).toBe("ok");
        const reads = h.filter((o) => o.input.f === "read");
        const target = reads[pick % reads.length]!;
        const out = target.output as { ok: true; quantity: number };
        const mutated = h.map((o) =>
          o === target ? { ...o, output: { ok: true as const, quantity: out.quantity + d } } : o,
        );
        const r = check(mutated);
        expect(r.result).toBe("fail");
        expect(r.failure?.key).toBe(target.key);
      }),
      { numRuns: 300 },
    );
  });

  it("fails a history from which one write that changed the stock was dropped", () => {
    fc.assert(
      fc.property(determined(), offsets, fc.nat(), (steps, off, pick) => {
        const effective = steps.map((s, i) => [s, i] as const).filter(([s]) => s.after !== s.before);
        fc.pre(effective.length > 0);
        const drop = effective[pick % effective.length]![1];
        const h = perKeySequential(steps, off).filter((o) => o.id !== drop);
        const r = check(h);
        expect(r.result).toBe("fail");
        expect(r.failure?.key).toBe(`k${steps[drop]!.key}`);
      }),
      { numRuns: 300 },
    );
  });

  it("fails a history in which two ops on a key swapped their real-time order", () => {
    // a changed the stock and b's answer shows the stock it saw: b before a cannot give that answer.
    const answersQuantity = (s: Step) => s.f !== "deduct" || s.before >= s.qty;
    fc.assert(
      fc.property(determined(), offsets, fc.nat(), (steps, off, pick) => {
        const pairs: [number, number][] = [];
        steps.forEach((a, i) => {
          const j = steps.findIndex((b, k) => k > i && b.key === a.key);
          if (j > 0 && a.after !== a.before && answersQuantity(steps[j]!)) pairs.push([i, j]);
        });
        fc.pre(pairs.length > 0);
        const [i, j] = pairs[pick % pairs.length]!;
        const h = perKeySequential(steps, off);
        const a = h[i]!;
        const b = h[j]!;
        const swapped = h.map((o) =>
          o === a ? { ...a, call: b.call, ret: b.ret } : o === b ? { ...b, call: a.call, ret: a.ret } : o,
        );
        expect(check(swapped).result).toBe("fail");
      }),
      { numRuns: 300 },
    );
  });

  it("agrees with a brute-force search on small histories, corrupted or not", () => {
    let oks = 0;
    let fails = 0;
    const corruption = fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 10, maxLength: 10 });
    fc.assert(
      fc.property(
        stepsArb({ keys: 2, maxOps: 6, lostRate: 0.25 }),
        widths,
        fc.integer({ min: 0, max: 5 }),
        corruption,
        (steps, w, spread, bad) => {
          const h = toHistory(runSequential(steps, false), w, spread).map((o, i) => {
            const c = bad[i] ?? 0;
            if (o.output === undefined || c > 2) return o;
            const delta = c === 1 ? 2 : c - 1;
            if (o.output.ok)
              return { ...o, output: { ok: true as const, quantity: o.output.quantity + delta } };
            return { ...o, output: { ok: true as const, quantity: c } };
          });
          const expected = bruteForceLinearizable(stockModel, h);
          const r = check(h);
          expect(r.result).toBe(expected ? "ok" : "fail");
          if (expected) oks++;
          else fails++;
        },
      ),
      { numRuns: 1_000 },
    );
    // Both verdicts were exercised, so agreement is not agreement on one answer.
    expect(oks).toBeGreaterThan(100);
    expect(fails).toBeGreaterThan(100);
  });

  it("names the longest linearizable prefix and the op that cannot be placed", () => {
    const h: StockOp[] = [
      {
        id: 0,
        client: 0,
        key: "a",
        input: { f: "restock", qty: 5 },
        output: { ok: true, quantity: 5 },
        call: 0,
        ret: 2,
      },
      {
        id: 1,
        client: 1,
        key: "a",
        input: { f: "deduct", qty: 2 },
        output: { ok: true, quantity: 3 },
        call: 1,
        ret: 4,
      },
      {
        id: 2,
        client: 0,
        key: "a",
        input: { f: "read" },
        output: { ok: true, quantity: 5 },
        call: 5,
        ret: 6,
      },
      {
        id: 3,
        client: 2,
        key: "b",
        input: { f: "read" },
        output: { ok: true, quantity: 0 },
        call: 0,
        ret: 9,
      },
    ];
    const r = check(h);
    expect(r.result).toBe("fail");
    expect(r.failure).toMatchObject({ key: "a", prefix: [0, 1], blocked: 2, stateAfterPrefix: "quantity 3" });
    expect(r.failure!.explanation).toContain("it read 5, but the quantity was 3");
    expect(r.keys.find((k) => k.key === "b")?.result).toBe("ok");
  });

  it("says unknown, not ok, when the time budget runs out", () => {
    // 40 concurrent unanswered restocks of even amounts and a read of an odd total: no subset sums
    // to it, and proving that means visiting exponentially many (set, sum) pairs.
    const h: StockOp[] = Array.from({ length: 40 }, (_, i) => ({
      id: i,
      client: i,
      key: "a",
      input: { f: "restock" as const, qty: 2 * (i + 1) },
      output: undefined,
      call: 0,
      ret: Number.POSITIVE_INFINITY,
    }));
    h.push({
      id: 40,
      client: 40,
      key: "a",
      input: { f: "read" },
      output: { ok: true, quantity: 7 },
      call: 1,
      ret: 2,
    });
    const r = checkLinearizable(stockModel, h, { budgetMs: 200 });
    expect(r.result).toBe("unknown");
    expect(r.reason).toContain("200 ms");
    // A read of the total of them all is settled at once (the search tries "took effect" first).
    h[40] = { ...h[40]!, output: { ok: true, quantity: 1_640 } };
    expect(checkLinearizable(stockModel, h, { budgetMs: 5_000 }).result).toBe("ok");
  });
});
