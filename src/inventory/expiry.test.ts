// Lot expiry in the clinic's own time zone (issue 9 item 10): a lot is usable through its expiry
// date as the clinic's calendar shows it, by the leader's timestamp in the log; a clinic whose zone
// was never set keeps UTC. Restocking a lot already expired there is refused.
import { describe, expect, it } from "vitest";
import type { Command } from "./commands.ts";
import { InventoryStateMachine } from "./state-machine.ts";

// 06:00 on 15 June in Sydney (UTC+10), still 14 June in UTC.
const sydneyMorning = Date.UTC(2030, 5, 14, 20);
let n = 0;
const rid = () => `e${++n}`;
const zone = (clinicId: string, timeZone: string, ts: number): Command => ({
  type: "setClinicTimeZone",
  requestId: rid(),
  ts,
  clinicId,
  timeZone,
});
const restock = (clinicId: string, ts: number, expiresOn: string): Command => ({
  type: "restock",
  requestId: rid(),
  ts,
  clinicId,
  medicationCode: "insulin",
  quantity: 5,
  lot: "L1",
  expiresOn,
});
const deduct = (clinicId: string, ts: number): Command => ({
  type: "deduct",
  requestId: rid(),
  ts,
  clinicId,
  medicationCode: "insulin",
  quantity: 1,
});

describe("lot expiry in the clinic's zone", () => {
  it("a Sydney lot that expired at local midnight is not deducted at 06:00 the next morning", () => {
    const sm = new InventoryStateMachine();
    const t = Date.UTC(2030, 5, 14, 0); // 10:00 on the 14th in Sydney: the lot is good
    sm.apply(1, zone("sydney", "Australia/Sydney", t));
    expect(sm.apply(2, restock("sydney", t, "2030-06-14"))).toMatchObject({ ok: true, quantity: 5 });
    expect(sm.apply(3, restock("utc", t, "2030-06-14"))).toMatchObject({ ok: true, quantity: 5 });
    expect(sm.apply(4, deduct("sydney", sydneyMorning))).toEqual({
      ok: false,
      code: "INSUFFICIENT_STOCK",
      available: 0,
      index: 4,
    });
    // A clinic with no zone set is on UTC: still the 14th there.
    expect(sm.apply(5, deduct("utc", sydneyMorning))).toEqual({
      ok: true,
      quantity: 4,
      index: 5,
      lots: [{ lot: "L1", quantity: 1, expiresOn: "2030-06-14" }],
    });
  });

  it("restocking a lot already expired in the clinic's zone is LOT_EXPIRED, and creates nothing", () => {
    const sm = new InventoryStateMachine();
    sm.apply(1, zone("sydney", "Australia/Sydney", sydneyMorning));
    const before = sm.stateHash();
    expect(sm.apply(2, restock("sydney", sydneyMorning, "2030-06-14"))).toEqual({
      ok: false,
      code: "LOT_EXPIRED",
      index: 2,
    });
    expect(sm.stateHash()).toBe(before);
    expect(sm.item("sydney", "insulin")).toBeUndefined();
    // The same date is today for a clinic on UTC: accepted (usable through its expiry date).
    expect(sm.apply(3, restock("utc", sydneyMorning, "2030-06-14"))).toMatchObject({ ok: true });
    expect(sm.apply(4, restock("utc", sydneyMorning, "2030-06-13"))).toMatchObject({ code: "LOT_EXPIRED" });
  });

  it("the clinic zones travel in the snapshot", () => {
    const a = new InventoryStateMachine();
    a.apply(1, zone("sydney", "Australia/Sydney", sydneyMorning));
    const b = new InventoryStateMachine();
    b.restore(a.snapshot());
    expect(b.snapshot()).toEqual(a.snapshot());
    expect(b.timeZoneOf("sydney")).toBe("Australia/Sydney");
    expect(b.apply(2, restock("sydney", sydneyMorning, "2030-06-14"))).toMatchObject({ code: "LOT_EXPIRED" });
  });
});
