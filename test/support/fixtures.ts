// Small data sets for tests, made through the same repository code the service uses.
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { createSlots, insertClinic, insertPractitioner, type SlotView } from "../../src/appointment/repo.ts";

export interface ClinicFixture {
  clinicId: string;
  /** Its code: what inventory routes name it by. */
  code: string;
  practitionerId: string;
  timeZone: string;
  /** Each day's slots, by local date. */
  days: Map<string, SlotView[]>;
}

/** One clinic (UTC, so dates are easy to reason about), one practitioner, `slotsPerDay` slots on each day. */
export async function makeClinic(
  pool: pg.Pool,
  dates: string[],
  slotsPerDay: number,
): Promise<ClinicFixture> {
  const clinicId = randomUUID();
  const practitionerId = randomUUID();
  const { code } = await insertClinic(pool, { id: clinicId, name: "Test Clinic", timeZone: "UTC" });
  await insertPractitioner(pool, { id: practitionerId, clinicId, name: "Test Practitioner" });
  const days = new Map<string, SlotView[]>();
  for (const d of dates) {
    const start = new Date(`${d}T08:00:00Z`);
    const end = new Date(start.getTime() + slotsPerDay * 30 * 60_000);
    const { slots } = await createSlots(pool, { clinicId, practitionerId, start, end, minutes: 30 });
    days.set(d, slots);
  }
  return { clinicId, code, practitionerId, timeZone: "UTC", days };
}

/** Clinics with these codes (and nothing else), for tests that name stock by code. */
export async function clinicsWithCodes(pool: pg.Pool, codes: string[]): Promise<void> {
  for (const code of codes) {
    await insertClinic(pool, { id: randomUUID(), name: `Clinic ${code}`, timeZone: "UTC", code });
  }
}

export function datesFrom(first: string, count: number): string[] {
  const out: string[] = [];
  const t = new Date(`${first}T00:00:00Z`).getTime();
  for (let i = 0; i < count; i++) out.push(new Date(t + i * 86_400_000).toISOString().slice(0, 10));
  return out;
}
