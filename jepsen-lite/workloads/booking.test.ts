// The booking checks on hand-made histories and final PostgreSQL rows: the cache promise, double
// booking in real time, and the rows at the end.
import { describe, expect, it } from "vitest";
import { type BookingInput, type BookingOp, type BookingOutput, checkBooking } from "./booking.ts";

let id = 0;
const op = (
  client: number,
  call: number,
  ret: number,
  input: BookingInput,
  output?: BookingOutput,
): BookingOp => ({
  id: id++,
  client,
  key: input.f === "read" ? "day" : `s${input.slot}`,
  input,
  output,
  call,
  ret: output === undefined ? Number.POSITIVE_INFINITY : ret,
});
const slots = ["slot-a", "slot-b"];
const book = (slot: number) => ({ f: "book" as const, slot, patientId: "p", idempotencyKey: "k" });
const booked = (appointmentId: string) => ({ ok: true as const, appointmentId });
const read = (free: number[]) => ({ ok: true as const, free, instance: 0, tier: 2 });
const rows = (...xs: [string, string, string][]) =>
  xs.map(([id, slot_id, status]) => ({ id, slot_id, status }));

describe("booking checks", () => {
  const b = op(0, 0, 10, book(0), booked("a1"));

  it("accepts a read that overlapped the booking showing the slot free, and one after it showing it booked", () => {
    const h = [b, op(1, 5, 12, { f: "read" }, read([0, 1])), op(1, 20, 21, { f: "read" }, read([1]))];
    expect(checkBooking(h, slots, rows(["a1", "slot-a", "booked"])).result).toBe("ok");
  });

  it("rejects a read that started after the booking returned and shows the slot free", () => {
    const h = [b, op(1, 11, 12, { f: "read" }, read([0, 1]))];
    const res = checkBooking(h, slots, rows(["a1", "slot-a", "booked"]));
    expect(res.result).toBe("fail");
    expect(res.failure?.explanation).toMatch(/booking op 0 of slot s0 .* shows the slot free/);
  });

  it("accepts the slot free once a cancel was issued before the read ended (even unanswered)", () => {
    const h = [
      b,
      op(0, 11, 11, { f: "cancel", slot: 0, appointmentId: "a1" }),
      op(1, 12, 13, { f: "read" }, read([0, 1])),
    ];
    expect(checkBooking(h, slots, rows(["a1", "slot-a", "cancelled"])).result).toBe("ok");
  });

  it("rejects a second acknowledged booking of a slot held since before it started", () => {
    const h = [b, op(1, 11, 15, book(0), booked("a2"))];
    expect(
      checkBooking(h, slots, rows(["a1", "slot-a", "cancelled"], ["a2", "slot-a", "booked"])).result,
    ).toBe("fail");
  });

  it("rejects two active appointments for one slot in PostgreSQL, and an acknowledged booking missing there", () => {
    expect(checkBooking([], slots, rows(["x", "slot-b", "booked"], ["y", "slot-b", "booked"])).result).toBe(
      "fail",
    );
    expect(checkBooking([b], slots, rows()).result).toBe("fail");
    expect(checkBooking([b], slots, undefined, "connection refused").result).toBe("unknown");
  });

  it("rejects an acknowledged cancel that left the appointment booked", () => {
    const h = [
      b,
      op(0, 11, 12, { f: "cancel", slot: 0, appointmentId: "a1" }, { ok: true, cancelled: true }),
    ];
    expect(checkBooking(h, slots, rows(["a1", "slot-a", "booked"])).result).toBe("fail");
  });
});
