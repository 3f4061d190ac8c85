// What the replicated state may not grow by (issue 9 item 11): a refused write leaves no trace, and
// every way into an item respects its lot bound and its quantity bound.
import { describe, expect, it } from "vitest";
import { InventoryStateMachine, lotsPerItemMax, stockQuantityMax } from "./state-machine.ts";

const ts = Date.UTC(2030, 5, 15, 12);
let n = 0;
const rid = () => `g${++n}`;

describe("inventory state growth", () => {
  it("a refused deduct or transfer of an unknown medication leaves no item behind", () => {
    const sm = new InventoryStateMachine();
    const empty = new InventoryStateMachine().snapshot();
    const d = sm.apply(1, {
      type: "deduct",
      requestId: rid(),
      ts,
      clinicId: "c",
      medicationCode: "ghost",
      quantity: 1,
    });
    expect(d).toEqual({ ok: false, code: "INSUFFICIENT_STOCK", available: 0, index: 1 });
    const t = sm.apply(2, {
      type: "transfer",
      requestId: rid(),
      ts,
      fromClinicId: "c",
      toClinicId: "d",
      medicationCode: "ghost",
      quantity: 1,
    });
    expect(t).toMatchObject({ ok: false, code: "INSUFFICIENT_STOCK" });
    expect(sm.item("c", "ghost")).toBeUndefined();
    expect(sm.item("d", "ghost")).toBeUndefined();
    expect(sm.items("c")).toEqual([]);
    const doc = JSON.parse(new TextDecoder().decode(sm.snapshot()));
    expect(doc.clinics).toEqual(JSON.parse(new TextDecoder().decode(empty)).clinics);
    expect(doc.clinics).toEqual([]);
  });

  it(`a transfer that would give the destination more than ${lotsPerItemMax} lots is refused, nothing moved`, () => {
    const sm = new InventoryStateMachine();
    let index = 0;
    for (let i = 0; i < lotsPerItemMax; i++)
      sm.apply(++index, {
        type: "restock",
        requestId: rid(),
        ts,
        clinicId: "to",
        medicationCode: "m",
        quantity: 1,
        lot: `L${i}`,
      });
    sm.apply(++index, {
      type: "restock",
      requestId: rid(),
      ts,
      clinicId: "from",
      medicationCode: "m",
      quantity: 5,
      lot: "new",
    });
    const before = sm.stateHash();
    const r = sm.apply(++index, {
      type: "transfer",
      requestId: rid(),
      ts,
      fromClinicId: "from",
      toClinicId: "to",
      medicationCode: "m",
      quantity: 2,
    });
    expect(r).toMatchObject({ ok: false, code: "INVALID" });
    expect(sm.stateHash()).toBe(before);
    expect(sm.item("to", "m")!.lots).toHaveLength(lotsPerItemMax);
    // A lot the destination already holds still moves.
    sm.apply(++index, {
      type: "restock",
      requestId: rid(),
      ts,
      clinicId: "from",
      medicationCode: "m",
      quantity: 1,
      lot: "L0",
    });
    const ok = sm.apply(++index, {
      type: "transfer",
      requestId: rid(),
      ts,
      fromClinicId: "from",
      toClinicId: "to",
      medicationCode: "m",
      quantity: 1,
    });
    expect(ok).toMatchObject({ ok: true });
  });

  it(`an item never holds more than ${stockQuantityMax} (int64 answers stay exact numbers)`, () => {
    const sm = new InventoryStateMachine();
    let index = 0;
    const restock = () =>
      sm.apply(++index, {
        type: "restock",
        requestId: rid(),
        ts,
        clinicId: "c",
        medicationCode: "m",
        quantity: 1_000_000_000,
      });
    for (let i = 0; i < stockQuantityMax / 1_000_000_000; i++) expect(restock()).toMatchObject({ ok: true });
    const before = sm.stateHash();
    expect(restock()).toMatchObject({ ok: false, code: "INVALID" });
    expect(sm.stateHash()).toBe(before);
  });
  it("stock items and clinics are bounded: a write that would add one past the bound is refused and adds nothing", () => {
    const sm = new InventoryStateMachine({ itemsMax: 3, clinicsMax: 2 });
    let i = 0;
    const restock = (clinicId: string, medicationCode: string) =>
      sm.apply(++i, { type: "restock", requestId: rid(), ts, clinicId, medicationCode, quantity: 5 });
    expect(restock("a", "m1")).toMatchObject({ ok: true });
    expect(restock("a", "m2")).toMatchObject({ ok: true });
    expect(restock("b", "m1")).toMatchObject({ ok: true });
    // A third clinic, a fourth item: refused, whichever write would make them.
    expect(restock("c", "m1")).toMatchObject({ ok: false, code: "INVALID", reason: "at most 2 clinics" });
    expect(restock("a", "m3")).toMatchObject({ ok: false, code: "INVALID", reason: "at most 3 stock items" });
    const level = sm.apply(++i, {
      type: "setReorderLevel",
      requestId: rid(),
      ts,
      clinicId: "b",
      medicationCode: "m9",
      level: 1,
    });
    expect(level).toMatchObject({ ok: false, code: "INVALID", reason: "at most 3 stock items" });
    const move = sm.apply(++i, {
      type: "transfer",
      requestId: rid(),
      ts,
      fromClinicId: "a",
      toClinicId: "b",
      medicationCode: "m2",
      quantity: 1,
    });
    expect(move).toMatchObject({ ok: false, code: "INVALID", reason: "at most 3 stock items" });
    expect(sm.item("a", "m2")!.lots[0]!.quantity).toBe(5);
    expect(sm.items("c")).toEqual([]);
    expect(sm.item("a", "m3")).toBeUndefined();
    expect(sm.item("b", "m9")).toBeUndefined();
    // Existing items still take writes.
    expect(restock("a", "m1")).toMatchObject({ ok: true, quantity: 10 });
  });
});
