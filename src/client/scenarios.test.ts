// The prescribe scenario's bookkeeping, for the answers a healthy stack does not give on demand
// (a stock list gone stale, a 5xx whose fate is unknown): which appointment and medicine it picks,
// what it counts on afterwards, and that a prescribed appointment is never cancelled. The wire is
// a scripted Backend here; test/client.test.ts runs the same scenarios against the real system.
import { describe, expect, it } from "vitest";
import { type Answer, type Backend, type PrescriptionOrder, usableUnits } from "./backend.ts";
import { Scenarios } from "./scenarios.ts";
import type { Outcome } from "./stats.ts";

const ok: Outcome = { kind: "ok", status: 201 };
const inFuture = new Date(Date.now() + 86_400_000).toISOString();

/** A backend that offers `slots` at clinic "harbour" and answers prescriptions from `answers`. */
function scripted(slots: string[], answers: Outcome[]) {
  const orders: PrescriptionOrder[] = [];
  const cancelled: string[] = [];
  let n = 0;
  const backend = {
    describe: "scripted",
    listSlots: async () => ({ outcome: ok, value: slots.map((id) => ({ id, free: true, start: inFuture })) }),
    book: async (slotId: string) => ({ outcome: ok, value: { id: `appt-${slotId}` } }),
    cancel: async (id: string) => {
      cancelled.push(id);
      return { outcome: ok };
    },
    prescribe: async (order: PrescriptionOrder): Promise<Answer<{ id: string }>> => {
      orders.push(order);
      const outcome = answers[n++] ?? ok;
      return outcome.kind === "ok" ? { outcome, value: { id: `rx-${n}` } } : { outcome };
    },
  } as unknown as Backend;
  return { backend, orders, cancelled };
}

function scenarios(backend: Backend, stock: Record<string, number>) {
  return new Scenarios({
    backend,
    days: [{ clinicId: "c-1", clinicCode: "harbour", date: "2031-01-01" }],
    clinicStock: new Map([["harbour", new Map(Object.entries(stock))]]),
    inventory: { clinics: [], medications: [] },
    patient: async () => ({ id: "p-1" }),
  });
}

describe("prescribe", () => {
  it("is skipped with nothing booked, or when the clinic's stock list shows too little of everything", async () => {
    const w = scripted(["s1"], []);
    const none = scenarios(w.backend, { amoxicillin: 100 });
    expect(await none.prescribe()).toBe("skipped");
    const empty = scenarios(w.backend, { amoxicillin: 0 });
    await empty.browse();
    await empty.book();
    expect(await empty.prescribe()).toBe("skipped");
    // Still booked: a cancel may take it.
    expect(empty.booked.size).toBe(1);
    expect(w.orders).toEqual([]);
  });

  it("prescribes for an appointment it booked, at that appointment's clinic, a medicine it has; never cancels it after", async () => {
    const w = scripted(["s1"], [ok]);
    const s = scenarios(w.backend, { amoxicillin: 1_000, ibuprofen: 0 });
    await s.browse();
    await s.book();
    expect(await s.prescribe()).toEqual(ok);
    const [order] = w.orders;
    expect(order).toMatchObject({
      appointmentId: "appt-s1",
      clinicCode: "harbour",
      medicationCode: "amoxicillin",
    });
    const d = order!.dosage;
    expect(order!.quantity).toBe(d.amount * d.timesPerDay * d.days);
    expect(s.stockDelta.get("harbour/amoxicillin")).toBe(-order!.quantity);
    expect(s.prescribed).toBe(1);
    expect(await s.cancel()).toBe("skipped");
    expect(w.cancelled).toEqual([]);
  });

  it("after 409 insufficient-stock counts on none of that medicine there; after a 5xx keeps the units held", async () => {
    const insufficient: Outcome = { kind: "4xx", status: 409, code: "INSUFFICIENT_STOCK" };
    const w = scripted(["s1", "s2"], [insufficient, { kind: "5xx", status: 503, code: "UNAVAILABLE" }]);
    const stock = new Map([["amoxicillin", 1_000]]);
    const s = new Scenarios({
      backend: w.backend,
      days: [{ clinicId: "c-1", clinicCode: "harbour", date: "2031-01-01" }],
      clinicStock: new Map([["harbour", stock]]),
      inventory: { clinics: [], medications: [] },
      patient: async () => ({ id: "p-1" }),
    });
    await s.browse();
    await s.book();
    await s.book();
    expect(await s.prescribe()).toEqual(insufficient);
    expect(stock.get("amoxicillin")).toBe(0);
    // Refused: the appointment is still there to cancel (or prescribe for once stock is back).
    expect(s.booked.size).toBe(2);
    expect(await s.prescribe()).toBe("skipped");

    stock.set("amoxicillin", 1_000);
    const r = await s.prescribe();
    expect(r).toMatchObject({ kind: "5xx" });
    // It may have dispensed: its units are not counted on, its appointment is left alone, and the
    // delta (acknowledged writes only) has nothing of it.
    expect(stock.get("amoxicillin")).toBe(1_000 - w.orders[1]!.quantity);
    expect(s.booked.size).toBe(1);
    expect(s.stockDelta.size).toBe(0);
  });
});

describe("usableUnits", () => {
  const now = Date.parse("2031-03-10T12:00:00Z");
  it("counts lots that never expire or expire after today (UTC); a line without lots is its quantity", () => {
    const lots = [
      { quantity: 5, expiresOn: null },
      { quantity: 7, expiresOn: "2031-03-11" },
      { quantity: 11, expiresOn: "2031-03-10" },
      { quantity: 13, expiresOn: "2031-01-01" },
    ];
    expect(usableUnits({ quantity: 36, lots }, now)).toBe(12);
    expect(usableUnits({ quantity: 4, lots: [] }, now)).toBe(4);
  });
});
