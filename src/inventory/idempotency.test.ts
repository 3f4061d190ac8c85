// The inventory state machine's idempotency window (issue 9 item 2): a request id remembers a
// fingerprint of its command and the leader's timestamp; the window is defined in time, measured on
// the leader's timestamps in log order; the ids bound fails closed; snapshots carry it all.
import { describe, expect, it } from "vitest";
import { snapshotBytesMax } from "../../raft/index.ts";
import { ConfigError, loadConfig } from "../shared/config.ts";
import { inventoryLimits } from "../shared/validation.ts";
import { type Command, returnLotsMax } from "./commands.ts";
import {
  type ApplyResult,
  InventoryStateMachine,
  idNumbersBytesMax,
  lotBytesMax,
  lotsPerItemMax,
  refusalBytesMax,
} from "./state-machine.ts";

const t0 = Date.UTC(2030, 5, 15, 12);
const restock = (requestId: string, ts: number, clinicId = "harbour", medicationCode = "amoxicillin") =>
  ({ type: "restock", requestId, ts, clinicId, medicationCode, quantity: 10 }) satisfies Command;
const deduct = (requestId: string, ts: number, clinicId = "harbour", medicationCode = "amoxicillin") =>
  ({ type: "deduct", requestId, ts, clinicId, medicationCode, quantity: 4 }) satisfies Command;

describe("inventory idempotency window", () => {
  it("the same request id with a different command is refused as reused, and nothing changes", () => {
    const sm = new InventoryStateMachine();
    sm.apply(1, restock("seed", t0, "hillside", "insulin"));
    expect(sm.apply(2, restock("K", t0, "harbour", "amoxicillin"))).toMatchObject({ ok: true, quantity: 10 });
    const before = sm.stateHash();
    const r = sm.apply(3, deduct("K", t0, "hillside", "insulin"));
    expect(r).toEqual({ ok: false, code: "IDEMPOTENCY_KEY_REUSED", index: 3 });
    expect(sm.stateHash()).toBe(before);
    expect(sm.item("hillside", "insulin")!.lots[0]!.quantity).toBe(10);
    // The same command again is still its first result, marked replayed.
    expect(sm.apply(4, restock("K", t0 + 5))).toEqual({ ok: true, quantity: 10, index: 2, replayed: true });
  });

  it("a retry after more writes than the old count-bounded table held (100,000) returns its first result", () => {
    const sm = new InventoryStateMachine();
    sm.apply(1, restock("seed", t0, "c", "m"));
    const first = sm.apply(2, deduct("K", t0, "c", "m"));
    expect(first).toEqual({ ok: true, quantity: 6, index: 2, lots: [{ lot: "unlotted", quantity: 4 }] });
    let index = 2;
    for (let i = 0; i < 100_001; i++) {
      sm.apply(++index, {
        type: "setReorderLevel",
        requestId: `w${i}`,
        ts: t0 + 1,
        clinicId: "o",
        medicationCode: "x",
        level: 1,
      });
    }
    const again = sm.apply(++index, deduct("K", t0 + 2, "c", "m"));
    expect(again).toEqual({ ...first, replayed: true });
    expect(sm.item("c", "m")!.lots[0]!.quantity).toBe(6);
  });

  it("ids are forgotten once the window has passed on the leader's timestamps, not before", () => {
    const sm = new InventoryStateMachine({ windowMs: 1_000 });
    sm.apply(1, restock("seed", t0, "c", "m"));
    expect(sm.apply(2, deduct("K", t0, "c", "m"))).toMatchObject({ ok: true, quantity: 6 });
    // 999 ms later (by the entries' timestamps) K is still remembered.
    expect(sm.apply(3, deduct("K", t0 + 999, "c", "m"))).toMatchObject({ quantity: 6, replayed: true });
    // At 1,000 ms it is forgotten: the same request id is a new command and deducts again.
    expect(sm.apply(4, deduct("K", t0 + 1_000, "c", "m"))).toMatchObject({ ok: true, quantity: 2, index: 4 });
    expect(sm.resultOf("seed")).toBeUndefined();
  });

  it("the window clock never runs backwards: an earlier timestamp later in the log does not revive ids", () => {
    const sm = new InventoryStateMachine({ windowMs: 1_000 });
    sm.apply(1, restock("a", t0, "c", "m"));
    sm.apply(2, restock("b", t0 + 1_500, "c", "m"));
    expect(sm.clockMs).toBe(t0 + 1_500);
    // A new leader with a slow clock stamps t0 + 10: the clock stays, "a" stays forgotten.
    expect(sm.apply(3, restock("a", t0 + 10, "c", "m"))).toEqual({ ok: true, quantity: 30, index: 3 });
    expect(sm.clockMs).toBe(t0 + 1_500);
  });

  it("fails closed at the ids bound: new writes refused with a retry time, known ids still answered", () => {
    const sm = new InventoryStateMachine({ windowMs: 10_000, idsMax: 3 });
    sm.apply(1, restock("r1", t0, "c", "m"));
    sm.apply(2, restock("r2", t0 + 100, "c", "m"));
    sm.apply(3, restock("r3", t0 + 200, "c", "m"));
    const before = sm.stateHash();
    const refused = sm.apply(4, restock("r4", t0 + 1_000, "c", "m"));
    expect(refused).toEqual({ ok: false, code: "IDEMPOTENCY_WINDOW_FULL", retryAfterMs: 9_000, index: 4 });
    expect(sm.stateHash()).toBe(before);
    expect(sm.windowFullRefusals).toBe(1);
    expect(sm.resultOf("r4")).toBeUndefined();
    expect(sm.apply(5, restock("r2", t0 + 1_000, "c", "m"))).toEqual({
      ok: true,
      quantity: 20,
      index: 2,
      replayed: true,
    });
    // Once the oldest id leaves the window, there is room again.
    expect(sm.apply(6, restock("r4", t0 + 10_000, "c", "m"))).toEqual({ ok: true, quantity: 40, index: 6 });
  });

  it("a snapshot carries the window: ids, fingerprints, timestamps and results", () => {
    const a = new InventoryStateMachine({ windowMs: 1_000 });
    a.apply(1, restock("seed", t0, "c", "m"));
    a.apply(2, deduct("K", t0 + 500, "c", "m"));
    const b = new InventoryStateMachine({ windowMs: 1_000 });
    b.restore(a.snapshot());
    expect(b.snapshot()).toEqual(a.snapshot());
    expect(b.clockMs).toBe(t0 + 500);
    // Fingerprint kept: K with another command is refused.
    expect(b.apply(3, restock("K", t0 + 600, "c", "m"))).toMatchObject({ code: "IDEMPOTENCY_KEY_REUSED" });
    // Result kept: K's own retry is its first answer.
    expect(b.apply(4, deduct("K", t0 + 700, "c", "m"))).toEqual({
      ok: true,
      quantity: 6,
      index: 2,
      lots: [{ lot: "unlotted", quantity: 4 }],
      replayed: true,
    });
    // Timestamps kept: "seed" (t0) leaves at t0 + 1,000, K (t0 + 500) stays until t0 + 1,500.
    b.apply(5, {
      type: "setReorderLevel",
      requestId: "x",
      ts: t0 + 1_000,
      clinicId: "c",
      medicationCode: "m",
      level: 0,
    });
    expect(b.resultOf("seed")).toBeUndefined();
    expect(b.resultOf("K")).toBeDefined();
  });

  it("reads a version 1 snapshot: its ids are kept, replayed whatever the command, and age from the next entry", () => {
    const v1 = {
      v: 1,
      appliedIndex: 7,
      clinics: [["c", [["m", { reorderLevel: 0, lots: [{ lot: "unlotted", quantity: 6 }] }]]]],
      applied: [["K", { ok: true, quantity: 6, index: 7 }]],
    };
    const sm = new InventoryStateMachine({ windowMs: 1_000 });
    sm.restore(new TextEncoder().encode(JSON.stringify(v1)));
    expect(sm.apply(8, deduct("K", t0, "c", "m"))).toEqual({
      ok: true,
      quantity: 6,
      index: 7,
      replayed: true,
    });
    sm.apply(9, restock("y", t0 + 999, "c", "m"));
    expect(sm.resultOf("K")).toBeDefined();
    sm.apply(10, restock("z", t0 + 1_000, "c", "m"));
    expect(sm.resultOf("K")).toBeUndefined();
  });
  it("the ids bound cannot exceed what one snapshot holds: worst-case ids measured, a larger bound refused", () => {
    const { idempotencyIdBytesMax, idempotencyIdsCeiling, requestIdMax } = inventoryLimits;
    // The largest a remembered id gets: an id of the longest allowed length, a refusal kept with
    // it (the longest reason there is), big numbers. Measured on a real snapshot.
    const n = 2_000;
    const sm = new InventoryStateMachine();
    let index = 0;
    const id = (i: number) => `${i}`.padStart(requestIdMax, "k");
    sm.apply(++index, restock("seed", t0, "c", "m"));
    const base = sm.snapshot().byteLength;
    for (let i = 0; i < n; i++) {
      sm.apply(++index, {
        type: "transfer",
        requestId: id(i),
        ts: t0 + 1_000_000_000_000 + i,
        fromClinicId: "c",
        toClinicId: "c",
        medicationCode: "m",
        quantity: 1,
      });
    }
    const perId = (sm.snapshot().byteLength - base) / n;
    expect(perId).toBeGreaterThan(requestIdMax);
    expect(perId).toBeLessThanOrEqual(idempotencyIdBytesMax);
    // The ceiling leaves a fifth of the snapshot (and of the longest JS string) for the stock.
    expect(idempotencyIdsCeiling * idempotencyIdBytesMax).toBeLessThanOrEqual(0.8 * snapshotBytesMax);
    expect(
      loadConfig({ INVENTORY_IDEMPOTENCY_IDS_MAX: String(idempotencyIdsCeiling) })
        .INVENTORY_IDEMPOTENCY_IDS_MAX,
    ).toBe(idempotencyIdsCeiling);
    expect(() => loadConfig({ INVENTORY_IDEMPOTENCY_IDS_MAX: String(idempotencyIdsCeiling + 1) })).toThrow(
      ConfigError,
    );
    expect(loadConfig({}).INVENTORY_IDEMPOTENCY_IDS_MAX).toBeLessThanOrEqual(idempotencyIdsCeiling);
  });

  it("a kept refusal and an id's numbers stay within what the window counts for them, at their longest", () => {
    const { requestIdMax, quantityMax, stockQuantityMax } = inventoryLimits;
    const refusals: ApplyResult[] = [];
    const sm = new InventoryStateMachine();
    let index = 0;
    const keep = (cmd: Command) => {
      const r = sm.apply(++index, cmd);
      if (!r.ok) refusals.push(r);
    };
    const write = { requestId: "", ts: t0, medicationCode: "m" };
    const next = () => ({ ...write, requestId: `x${index}` });
    for (let i = 0; i < lotsPerItemMax; i++)
      keep({ ...next(), type: "restock", clinicId: "to", quantity: quantityMax, lot: `L${i}` });
    keep({ ...next(), type: "restock", clinicId: "from", quantity: 1, lot: "new" });
    keep({ ...next(), type: "restock", clinicId: "from2", quantity: 1, lot: "L0" });
    // The longest reasons there are: the destination's lot and stock bounds, the same clinic.
    keep({ ...next(), type: "transfer", fromClinicId: "from", toClinicId: "to", quantity: 1 });
    keep({ ...next(), type: "transfer", fromClinicId: "from2", toClinicId: "to", quantity: 1 });
    keep({ ...next(), type: "transfer", fromClinicId: "to", toClinicId: "to", quantity: 1 });
    keep({ ...next(), type: "deduct", clinicId: "from", quantity: 2 });
    keep({ ...next(), type: "restock", clinicId: "z", quantity: 1, lot: "L0" });
    keep({ ...next(), type: "restock", clinicId: "z", quantity: 1, lot: "L0", expiresOn: "2031-01-01" });
    const clash: { lot: string; quantity: number; expiresOn?: string }[] = Array.from(
      { length: returnLotsMax - 1 },
      (_, i) => ({ lot: `R${i}`, quantity: 1 }),
    );
    clash.push({ lot: "L0", quantity: 1, expiresOn: "2031-01-01" });
    keep({ ...next(), type: "returnStock", clinicId: "z", lots: clash });
    expect(refusals.map((r) => (r.ok ? "" : r.code))).toEqual([
      "INVALID",
      "INVALID",
      "INVALID",
      "INSUFFICIENT_STOCK",
      "INVALID",
      "INVALID",
    ]);
    expect(refusals.at(-1)).toMatchObject({
      reason: `lots[${returnLotsMax - 1}] is held with another expiry`,
    });
    for (const r of refusals) {
      // Its entry in the refusals column, with the largest position and index (and quantity) there are.
      const worst = {
        ...r,
        index: Number.MAX_SAFE_INTEGER,
        ...("available" in r ? { available: stockQuantityMax } : {}),
      };
      expect(JSON.stringify([1_073_741, worst]).length + 1, JSON.stringify(r)).toBeLessThanOrEqual(
        refusalBytesMax,
      );
    }
    // An id's numbers at their largest: fingerprint 2^48 - 1, timestamp and index 2^53 - 1.
    const id = "k".repeat(requestIdMax);
    const columns = [id, 2 ** 48 - 1, Number.MAX_SAFE_INTEGER, stockQuantityMax, Number.MAX_SAFE_INTEGER];
    const bytes = columns.reduce<number>((n, v) => n + JSON.stringify(v).length + 1, 0);
    expect(bytes).toBeLessThanOrEqual(requestIdMax + idNumbersBytesMax);
  });

  it("ids that carry lots count their snapshot bytes: at idsMax × idempotencyIdBytesMax the window fails closed", () => {
    const { idempotencyIdBytesMax, requestIdMax, quantityMax, codeMax } = inventoryLimits;
    const idsMax = 1_000;
    const sm = new InventoryStateMachine({ idsMax, windowMs: 60_000 });
    const window = () => JSON.stringify(JSON.parse(new TextDecoder().decode(sm.snapshot())).window).length;
    const empty = window();
    // The largest an id gets: the longest id, returnLotsMax lots with the longest names, the largest
    // quantities and an expiry each. A deduct can name more lots, but their quantities sum to at most
    // quantityMax, so each is shorter.
    const lots = Array.from({ length: returnLotsMax }, (_, j) => ({
      lot: `${j}`.padStart(codeMax, "L"),
      quantity: quantityMax,
      expiresOn: "2031-12-31",
    }));
    const counted = requestIdMax + idNumbersBytesMax + returnLotsMax * (codeMax + lotBytesMax);
    let kept = 0;
    let refused: ApplyResult | undefined;
    for (let i = 0; i < idsMax && !refused; i++) {
      const r = sm.apply(i + 1, {
        type: "returnStock",
        requestId: `${i}`.padStart(requestIdMax, "k"),
        ts: t0,
        clinicId: "c",
        medicationCode: `m${i}`,
        lots,
      });
      if (r.ok) kept++;
      else refused = r;
    }
    expect(refused).toMatchObject({ code: "IDEMPOTENCY_WINDOW_FULL", retryAfterMs: 60_000 });
    // Refused once the counted bytes reached the bound: well before idsMax ids.
    expect(kept).toBe(Math.ceil((idsMax * idempotencyIdBytesMax) / counted));
    const measured = window() - empty;
    expect(measured / kept).toBeLessThanOrEqual(counted);
    expect(measured).toBeLessThanOrEqual(idsMax * idempotencyIdBytesMax + counted);
    // Once the oldest ids leave the window their bytes are free again.
    expect(
      sm.apply(kept + 2, {
        type: "setReorderLevel",
        requestId: "later",
        ts: t0 + 60_000,
        clinicId: "c",
        medicationCode: "m0",
        level: 1,
      }),
    ).toMatchObject({ ok: true });
  });
});
