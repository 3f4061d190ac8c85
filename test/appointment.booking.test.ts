// Booking against the real PostgreSQL: the database, not the code, makes double booking impossible,
// and an idempotency key returns its first outcome without creating anything new.
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSlots, insertClinic } from "../src/appointment/repo.ts";
import { AppointmentStatus } from "../src/gen/medisync/v1/appointment.ts";
import { AppError } from "../src/shared/errors.ts";
import { callUnary } from "../src/shared/grpc.ts";
import { type ClinicFixture, makeClinic } from "./support/fixtures.ts";
import {
  type Instance,
  resetState,
  startInstance,
  stopInstance,
  testConfig,
  testPool,
} from "./support/services.ts";

const cfg = testConfig("booking");
let a: Instance;
let b: Instance;
let pool: pg.Pool;
let fx: ClinicFixture;
const date = "2030-03-04";

beforeAll(async () => {
  await resetState(cfg);
  a = await startInstance(cfg, undefined, "booking-a");
  b = await startInstance(cfg, undefined, "booking-b");
  pool = testPool(cfg);
  fx = await makeClinic(pool, [date], 16);
});
afterAll(async () => {
  await pool.end();
  await stopInstance(a);
  await stopInstance(b);
});

const book = (i: Instance, slotId: string, patientId: string, idempotencyKey = "") =>
  callUnary(i.client.book.bind(i.client), { slotId, patientId, idempotencyKey }, 5_000);

const codeOf = async (p: Promise<unknown>) => {
  try {
    await p;
    return "OK";
  } catch (err) {
    return err instanceof AppError ? err.code : `unexpected ${String(err)}`;
  }
};

describe("booking", () => {
  it("50 concurrent bookings of one slot on two instances: exactly one wins, 49 are SLOT_TAKEN", async () => {
    const slot = fx.days.get(date)![0]!;
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => codeOf(book(i % 2 === 0 ? a : b, slot.id, randomUUID()))),
    );
    expect(results.filter((r) => r === "OK")).toHaveLength(1);
    expect(results.filter((r) => r === "SLOT_TAKEN")).toHaveLength(49);
    const rows = await pool.query("SELECT count(*)::int AS n FROM appointments WHERE slot_id = $1", [
      slot.id,
    ]);
    expect(rows.rows[0].n).toBe(1);
  });

  it("the same idempotency key twice returns the same appointment and writes one row", async () => {
    const slot = fx.days.get(date)![1]!;
    const patientId = randomUUID();
    const key = `key-${randomUUID()}`;
    const first = await book(a, slot.id, patientId, key);
    const second = await book(b, slot.id, patientId, key);
    expect(first.replayed).toBe(false);
    expect(second.replayed).toBe(true);
    expect(second.appointment).toEqual(first.appointment);
    const rows = await pool.query("SELECT count(*)::int AS n FROM appointments WHERE slot_id = $1", [
      slot.id,
    ]);
    expect(rows.rows[0].n).toBe(1);
  });

  it("concurrent retries with one key all return the one appointment", async () => {
    const slot = fx.days.get(date)![2]!;
    const patientId = randomUUID();
    const key = `key-${randomUUID()}`;
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => book(i % 2 ? a : b, slot.id, patientId, key)),
    );
    expect(new Set(results.map((r) => r.appointment?.id)).size).toBe(1);
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    const rows = await pool.query("SELECT count(*)::int AS n FROM appointments WHERE slot_id = $1", [
      slot.id,
    ]);
    expect(rows.rows[0].n).toBe(1);
  });

  it("a key reused for another request is refused; a key whose first attempt failed fails the same way", async () => {
    const slot = fx.days.get(date)![3]!;
    const key = `key-${randomUUID()}`;
    await book(a, slot.id, randomUUID(), key);
    expect(await codeOf(book(a, slot.id, randomUUID(), key))).toBe("IDEMPOTENCY_KEY_REUSED");
    const loserKey = `key-${randomUUID()}`;
    const loser = randomUUID();
    expect(await codeOf(book(a, slot.id, loser, loserKey))).toBe("SLOT_TAKEN");
    expect(await codeOf(book(b, slot.id, loser, loserKey))).toBe("SLOT_TAKEN");
  });

  it("cancel frees the slot; cancelling twice is ALREADY_CANCELLED; unknown ids are not found", async () => {
    const slot = fx.days.get(date)![4]!;
    const first = await book(a, slot.id, randomUUID());
    const cancelled = await callUnary(
      a.client.cancel.bind(a.client),
      { appointmentId: first.appointment!.id },
      5_000,
    );
    expect(cancelled.appointment?.status).toBe(AppointmentStatus.APPOINTMENT_STATUS_CANCELLED);
    expect(
      await codeOf(
        callUnary(b.client.cancel.bind(b.client), { appointmentId: first.appointment!.id }, 5_000),
      ),
    ).toBe("ALREADY_CANCELLED");
    const again = await book(b, slot.id, randomUUID());
    expect(again.appointment?.status).toBe(AppointmentStatus.APPOINTMENT_STATUS_BOOKED);
    expect(await codeOf(book(a, randomUUID(), randomUUID()))).toBe("SLOT_NOT_FOUND");
    expect(await codeOf(callUnary(a.client.get.bind(a.client), { appointmentId: randomUUID() }, 5_000))).toBe(
      "APPOINTMENT_NOT_FOUND",
    );
    expect(await codeOf(book(a, "not-a-uuid", randomUUID()))).toBe("VALIDATION");
  });

  it("slots are read in the clinic's own time zone and overlapping slots are refused by the database", async () => {
    const clinicId = randomUUID();
    const practitionerId = randomUUID();
    await pool.query("INSERT INTO clinics (id, name, time_zone) VALUES ($1, 'Tokyo', 'Asia/Tokyo')", [
      clinicId,
    ]);
    await pool.query("INSERT INTO practitioners (id, clinic_id, name) VALUES ($1, $2, 'P')", [
      practitionerId,
      clinicId,
    ]);
    // 2030-03-04 23:30 UTC is 2030-03-05 08:30 in Tokyo.
    const created = await callUnary(
      a.client.createSlots.bind(a.client),
      { clinicId, practitionerId, start: "2030-03-04T23:30:00Z", end: "2030-03-05T00:30:00Z", minutes: 30 },
      5_000,
    );
    expect(created.slots).toHaveLength(2);
    const utcDay = await callUnary(
      a.client.listSlots.bind(a.client),
      { clinicId, date: "2030-03-04", practitionerId: "" },
      5_000,
    );
    const tokyoDay = await callUnary(
      a.client.listSlots.bind(a.client),
      { clinicId, date: "2030-03-05", practitionerId: "" },
      5_000,
    );
    expect(utcDay.slots).toHaveLength(0);
    expect(tokyoDay.slots.map((s) => s.start)).toEqual([
      "2030-03-04T23:30:00.000Z",
      "2030-03-05T00:00:00.000Z",
    ]);
    const overlap = callUnary(
      b.client.createSlots.bind(b.client),
      { clinicId, practitionerId, start: "2030-03-05T00:15:00Z", end: "2030-03-05T00:45:00Z", minutes: 30 },
      5_000,
    );
    expect(await codeOf(overlap)).toBe("SLOT_OVERLAP");
  });

  it("slots in the past cannot be created or booked (SLOT_IN_PAST), and a key keeps that outcome", async () => {
    const hourAgo = new Date(Date.now() - 3_600_000);
    const create = callUnary(
      a.client.createSlots.bind(a.client),
      {
        clinicId: fx.clinicId,
        practitionerId: fx.practitionerId,
        start: hourAgo.toISOString(),
        end: new Date(hourAgo.getTime() + 7_200_000).toISOString(),
        minutes: 30,
      },
      5_000,
    );
    await expect(create).rejects.toMatchObject({ code: "SLOT_IN_PAST", field: "start" });
    const { slots } = await createSlots(pool, {
      clinicId: fx.clinicId,
      practitionerId: fx.practitionerId,
      start: new Date("2021-02-03T10:00:00Z"),
      end: new Date("2021-02-03T10:30:00Z"),
      minutes: 30,
    });
    const key = `key-${randomUUID()}`;
    const patientId = randomUUID();
    await expect(book(a, slots[0]!.id, patientId, key)).rejects.toMatchObject({
      code: "SLOT_IN_PAST",
      field: "slotId",
    });
    await expect(book(b, slots[0]!.id, patientId, key)).rejects.toMatchObject({
      code: "SLOT_IN_PAST",
      field: "slotId",
    });
    const rows = await pool.query("SELECT count(*)::int AS n FROM appointments WHERE slot_id = $1", [
      slots[0]!.id,
    ]);
    expect(rows.rows[0].n).toBe(0);
  });

  it("a clinic's time zone must be an IANA zone the database knows too", async () => {
    for (const timeZone of ["Mars/Olympus", "+05:00", "EST-5", "", "Europe/Berlin; DROP TABLE clinics"]) {
      await expect(
        insertClinic(pool, { id: randomUUID(), name: "Bad Zone", timeZone }),
      ).rejects.toMatchObject({
        code: "VALIDATION",
        field: "timeZone",
      });
    }
    const id = randomUUID();
    await insertClinic(pool, { id, name: "Sydney", timeZone: "Australia/Sydney" });
    const r = await pool.query("SELECT time_zone FROM clinics WHERE id = $1", [id]);
    expect(r.rows[0].time_zone).toBe("Australia/Sydney");
  });
});
