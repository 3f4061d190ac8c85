// A deduct answers the lots it took, and ReturnStock puts such lots back (for the medication
// service: a cancelled dispense returns exactly what it took). The lots are part of the first
// result the idempotency window remembers, so a replay answers them again, across snapshots too.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Command, returnLotsMax } from "./commands.ts";
import {
  type ApplyResult,
  InventoryStateMachine,
  type Lot,
  lotsPerItemMax,
  stockQuantityMax,
} from "./state-machine.ts";

const ts = Date.UTC(2030, 5, 15, 12);
let n = 0;
const rid = () => `l${++n}`;
const restock = (lot: string, quantity: number, expiresOn?: string, at = ts, clinicId = "c"): Command => ({
  type: "restock",
  requestId: rid(),
  ts: at,
  clinicId,
  medicationCode: "m",
  quantity,
  lot,
  ...(expiresOn ? { expiresOn } : {}),
});
const deduct = (requestId: string, quantity: number, clinicId = "c"): Command => ({
  type: "deduct",
  requestId,
  ts,
  clinicId,
  medicationCode: "m",
  quantity,
});
const giveBack = (requestId: string, lots: Lot[], clinicId = "c", medicationCode = "m"): Command => ({
  type: "returnStock",
  requestId,
  ts,
  clinicId,
  medicationCode,
  lots,
});
const lotsOf = (r: ApplyResult): Lot[] => (r.ok ? (r.lots ?? []) : []);

/** Three lots: A expires first, B later, C never. */
function stocked(): InventoryStateMachine {
  const sm = new InventoryStateMachine();
  sm.apply(1, restock("B", 5, "2031-01-01"));
  sm.apply(2, restock("C", 5));
  sm.apply(3, restock("A", 3, "2030-07-01"));
  return sm;
}

describe("a deduct's lots", () => {
  it("a deduct answers the lots it took, first expiry first, with the quantity from each", () => {
    const sm = stocked();
    const r = sm.apply(4, deduct("d", 10));
    expect(r).toEqual({
      ok: true,
      quantity: 3,
      index: 4,
      lots: [
        { lot: "A", quantity: 3, expiresOn: "2030-07-01" },
        { lot: "B", quantity: 5, expiresOn: "2031-01-01" },
        { lot: "C", quantity: 2 },
      ],
    });
    // A refused deduct takes nothing and names no lots.
    expect(sm.apply(5, deduct("d2", 4))).toEqual({
      ok: false,
      code: "INSUFFICIENT_STOCK",
      available: 3,
      index: 5,
    });
  });

  it("a replay answers the same lots, though the stock has changed since; so it does after snapshot → restore", () => {
    const sm = stocked();
    const first = sm.apply(4, deduct("d", 4));
    expect(lotsOf(first)).toEqual([
      { lot: "A", quantity: 3, expiresOn: "2030-07-01" },
      { lot: "B", quantity: 1, expiresOn: "2031-01-01" },
    ]);
    sm.apply(5, deduct("other", 4));
    const again = sm.apply(6, deduct("d", 4));
    expect(again).toEqual({ ...first, replayed: true });
    const restored = new InventoryStateMachine();
    restored.restore(sm.snapshot());
    expect(restored.snapshot()).toEqual(sm.snapshot());
    expect(restored.apply(7, deduct("d", 4))).toEqual({ ...first, replayed: true });
    // And a return, likewise.
    const back = sm.apply(7, giveBack("g", lotsOf(first)));
    const restored2 = new InventoryStateMachine();
    restored2.restore(sm.snapshot());
    expect(restored2.apply(8, giveBack("g", lotsOf(first)))).toEqual({ ...back, replayed: true });
  });

  it("a snapshot written before lots were answered (no lot columns) restores; its deducts replay without lots", () => {
    const sm = stocked();
    sm.apply(4, deduct("d", 4));
    sm.apply(5, {
      type: "transfer",
      requestId: "t",
      ts,
      fromClinicId: "c",
      toClinicId: "c",
      medicationCode: "m",
      quantity: 1,
    });
    const doc = JSON.parse(new TextDecoder().decode(sm.snapshot()));
    expect(doc.window.lotOwners).toEqual([3, 3]); // d, the fourth id, took two lots
    for (const column of ["lotOwners", "lotNames", "lotQuantities", "lotExpiries"]) delete doc.window[column];
    const old = new InventoryStateMachine();
    old.restore(new TextEncoder().encode(JSON.stringify(doc)));
    expect(old.stateHash()).toBe(sm.stateHash());
    expect(old.apply(6, deduct("d", 4))).toEqual({ ok: true, quantity: 9, index: 4, replayed: true });
    // The refusals column still restores, and the fingerprint still guards the id.
    expect(
      old.apply(7, {
        type: "transfer",
        requestId: "t",
        ts,
        fromClinicId: "c",
        toClinicId: "c",
        medicationCode: "m",
        quantity: 1,
      }),
    ).toMatchObject({ code: "INVALID", replayed: true });
    expect(old.apply(8, deduct("d", 5))).toMatchObject({ code: "IDEMPOTENCY_KEY_REUSED" });
  });

  it("the state hash is the stock's alone: the lots remembered for replays do not enter it", () => {
    const a = stocked();
    a.apply(4, deduct("d", 4));
    // Another id, so another window (and one without lots, restored as above): the same hash.
    const b = stocked();
    b.apply(4, deduct("another-id", 4));
    expect(b.stateHash()).toBe(a.stateHash());
  });
});

describe("ReturnStock", () => {
  it("merges into a lot held with the same name and expiry, and recreates a lot that is gone, expiry kept even if past", () => {
    const sm = stocked();
    const took = sm.apply(4, deduct("d", 10));
    expect(sm.item("c", "m")!.lots).toEqual([{ lot: "C", quantity: 3 }]);
    // Later than A's expiry: A comes back anyway (the same physical stock), and deducts skip it.
    const later = Date.UTC(2030, 7, 1);
    const back = sm.apply(5, { ...giveBack("g", lotsOf(took)), ts: later });
    expect(back).toEqual({ ok: true, quantity: 13, index: 5, lots: lotsOf(took) });
    expect(sm.item("c", "m")!.lots).toEqual([
      { lot: "A", quantity: 3, expiresOn: "2030-07-01" },
      { lot: "B", quantity: 5, expiresOn: "2031-01-01" },
      { lot: "C", quantity: 5 },
    ]);
    expect(sm.apply(6, { ...deduct("d2", 1), ts: later })).toMatchObject({
      lots: [{ lot: "B", quantity: 1, expiresOn: "2031-01-01" }],
    });
    // Into an item (and a clinic) that holds nothing yet: created.
    expect(sm.apply(7, giveBack("g2", [{ lot: "X", quantity: 2 }], "elsewhere"))).toMatchObject({
      ok: true,
      quantity: 2,
    });
    expect(sm.item("elsewhere", "m")!.lots).toEqual([{ lot: "X", quantity: 2 }]);
  });

  it("is all or nothing: a lot name held with another expiry refuses the whole return", () => {
    const sm = stocked();
    const before = sm.stateHash();
    const r = sm.apply(
      4,
      giveBack("g", [
        { lot: "A", quantity: 1, expiresOn: "2030-07-01" },
        { lot: "new", quantity: 1 },
        { lot: "B", quantity: 1, expiresOn: "2032-01-01" },
      ]),
    );
    expect(r).toEqual({
      ok: false,
      code: "INVALID",
      reason: "lots[2] is held with another expiry",
      index: 4,
    });
    expect(sm.stateHash()).toBe(before);
    // Never-expiring against dated is another expiry too.
    expect(sm.apply(5, giveBack("g2", [{ lot: "C", quantity: 1, expiresOn: "2031-01-01" }]))).toMatchObject({
      code: "INVALID",
    });
    // Within one return, the second of two expiries under one new name is refused as well.
    expect(
      sm.apply(
        6,
        giveBack("g3", [
          { lot: "N", quantity: 1, expiresOn: "2031-01-01" },
          { lot: "N", quantity: 1, expiresOn: "2031-02-01" },
        ]),
      ),
    ).toMatchObject({ code: "INVALID", reason: "lots[1] is held with another expiry" });
    expect(sm.stateHash()).toBe(before);
  });

  it("honours the lot bound, the quantity bound and the items and clinics bounds, changing nothing when refused", () => {
    const sm = new InventoryStateMachine({ itemsMax: 2, clinicsMax: 2 });
    let index = 0;
    for (let i = 0; i < lotsPerItemMax - 1; i++) sm.apply(++index, restock(`L${i}`, 1));
    const before = sm.stateHash();
    const two = [
      { lot: "new1", quantity: 1 },
      { lot: "new2", quantity: 1 },
    ];
    expect(sm.apply(++index, giveBack(rid(), two))).toMatchObject({
      code: "INVALID",
      reason: `too many lots (at most ${lotsPerItemMax})`,
    });
    expect(sm.stateHash()).toBe(before);
    // Merging into held lots adds none: fine at the bound.
    expect(sm.apply(++index, giveBack(rid(), [{ lot: "L0", quantity: 1 }, two[0]!]))).toMatchObject({
      ok: true,
    });
    const full = new InventoryStateMachine({ itemsMax: 2, clinicsMax: 2 });
    for (let i = 0; i < 1_000; i++) full.apply(i + 1, restock(`Q${i}`, 1_000_000_000));
    const fullHash = full.stateHash();
    expect(full.apply(1_001, giveBack(rid(), [{ lot: "Q0", quantity: 1 }]))).toMatchObject({
      code: "INVALID",
      reason: `stock would exceed ${stockQuantityMax}`,
    });
    expect(full.stateHash()).toBe(fullHash);
    const bounded = new InventoryStateMachine({ itemsMax: 2, clinicsMax: 2 });
    bounded.apply(1, giveBack(rid(), [{ lot: "x", quantity: 1 }], "c1", "m1"));
    bounded.apply(2, giveBack(rid(), [{ lot: "x", quantity: 1 }], "c2", "m1"));
    const hash = bounded.stateHash();
    expect(bounded.apply(3, giveBack(rid(), [{ lot: "x", quantity: 1 }], "c1", "m2"))).toMatchObject({
      code: "INVALID",
      reason: "at most 2 stock items",
    });
    expect(bounded.apply(4, giveBack(rid(), [{ lot: "x", quantity: 1 }], "c3", "m1"))).toMatchObject({
      code: "INVALID",
      reason: "at most 2 clinics",
    });
    expect(bounded.stateHash()).toBe(hash);
  });

  it("a replay changes nothing and answers the same; other lots under the same id are IDEMPOTENCY_KEY_REUSED", () => {
    const sm = stocked();
    const lots = [
      { lot: "A", quantity: 1, expiresOn: "2030-07-01" },
      { lot: "C", quantity: 2 },
    ];
    const first = sm.apply(4, giveBack("g", lots));
    expect(first).toEqual({ ok: true, quantity: 16, index: 4, lots });
    const hash = sm.stateHash();
    expect(sm.apply(5, giveBack("g", lots))).toEqual({ ...first, replayed: true });
    // The same lots in another order are the same return.
    expect(sm.apply(6, giveBack("g", [lots[1]!, lots[0]!]))).toEqual({ ...first, replayed: true });
    for (const other of [
      [{ ...lots[0]!, quantity: 2 }, lots[1]!],
      [lots[0]!],
      [lots[0]!, { lot: "C", quantity: 2, expiresOn: "2031-01-01" }],
      [lots[0]!, { lot: "D", quantity: 2 }],
    ]) {
      expect(sm.apply(sm.lastApplied + 1, giveBack("g", other))).toEqual({
        ok: false,
        code: "IDEMPOTENCY_KEY_REUSED",
        index: sm.lastApplied,
      });
    }
    expect(sm.apply(sm.lastApplied + 1, giveBack("g", lots, "elsewhere"))).toMatchObject({
      code: "IDEMPOTENCY_KEY_REUSED",
    });
    expect(sm.apply(sm.lastApplied + 1, deduct("g", 3))).toMatchObject({ code: "IDEMPOTENCY_KEY_REUSED" });
    expect(sm.stateHash()).toBe(hash);
  });

  it("raises no low-stock event", () => {
    const sm = stocked();
    sm.apply(4, {
      type: "setReorderLevel",
      requestId: rid(),
      ts,
      clinicId: "c",
      medicationCode: "m",
      level: 10,
    });
    const took = sm.apply(5, deduct("d", 8));
    expect(sm.events).toHaveLength(1);
    sm.apply(6, giveBack("g", lotsOf(took)));
    sm.apply(7, giveBack(rid(), [{ lot: "C", quantity: 1 }]));
    expect(sm.events).toHaveLength(1);
  });

  it(`a return of ${returnLotsMax} lots applies`, () => {
    const sm = new InventoryStateMachine();
    const lots = Array.from({ length: returnLotsMax }, (_, i) => ({ lot: `R${i}`, quantity: i + 1 }));
    expect(sm.apply(1, giveBack("g", lots))).toMatchObject({
      ok: true,
      quantity: (returnLotsMax * (returnLotsMax + 1)) / 2,
    });
    expect(sm.item("c", "m")!.lots).toHaveLength(returnLotsMax);
  });
});

describe("deduct then return", () => {
  // Each lot name has one expiry, as a real batch does; "E" has expired at `ts` (refused on
  // restock, skipped by deducts), "U" never expires.
  const expiryOf: Record<string, string | undefined> = {
    E: "2030-01-01",
    S: "2030-06-20",
    L: "2031-01-01",
    U: undefined,
  };
  const step = fc.oneof(
    fc.record({
      kind: fc.constant("restock" as const),
      clinic: fc.constantFrom("a", "b"),
      lot: fc.constantFrom(...Object.keys(expiryOf)),
      quantity: fc.integer({ min: 1, max: 40 }),
    }),
    fc.record({
      kind: fc.constant("deduct" as const),
      clinic: fc.constantFrom("a", "b"),
      quantity: fc.integer({ min: 1, max: 60 }),
    }),
  );

  it("returning every deduct's lots restores the stock per lot to the restocks' total", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), fc.boolean(), (steps, reverse) => {
        const sm = new InventoryStateMachine();
        let index = 0;
        const restocked = new Map<string, number>();
        const deducts: { id: string; clinic: string; quantity: number; lots: Lot[] }[] = [];
        for (const s of steps) {
          if (s.kind === "restock") {
            const r = sm.apply(++index, restock(s.lot, s.quantity, expiryOf[s.lot], ts, s.clinic));
            if (r.ok) {
              const key = `${s.clinic}/${s.lot}`;
              restocked.set(key, (restocked.get(key) ?? 0) + s.quantity);
            } else expect(r).toMatchObject({ code: "LOT_EXPIRED" });
          } else {
            const id = rid();
            const r = sm.apply(++index, deduct(id, s.quantity, s.clinic));
            if (r.ok) {
              expect(lotsOf(r).reduce((t, l) => t + l.quantity, 0)).toBe(s.quantity);
              deducts.push({ id, clinic: s.clinic, quantity: s.quantity, lots: lotsOf(r) });
            }
          }
        }
        // In log order or backwards: each return is all or nothing and none is refused.
        const returns = reverse ? [...deducts].reverse() : deducts;
        for (const d of returns) {
          const r = sm.apply(++index, giveBack(rid(), d.lots, d.clinic));
          expect(r).toMatchObject({ ok: true, lots: d.lots });
        }
        const held = new Map<string, number>();
        for (const clinic of ["a", "b"])
          for (const [, item] of sm.items(clinic))
            for (const l of item.lots) {
              expect(l.expiresOn).toBe(expiryOf[l.lot]);
              held.set(`${clinic}/${l.lot}`, (held.get(`${clinic}/${l.lot}`) ?? 0) + l.quantity);
            }
        expect(held).toEqual(restocked);
        // Each deduct's retry still answers the lots it took, not what is held now.
        for (const d of deducts) {
          const again = sm.apply(++index, deduct(d.id, d.quantity, d.clinic));
          expect(again).toMatchObject({ replayed: true, lots: d.lots });
        }
      }),
      { numRuns: 300 },
    );
  });
});
