// Owns the demo data set npm start loads into an empty database: 3 clinics in different time
// zones (codes harbour, riverside, hillside), 2 practitioners each, 30-minute slots 09:00–17:00
// local time for the next 14 days.
// It creates slots through the same repository code as the CreateSlots call.
import { randomUUID } from "node:crypto";
import type pg from "pg";
import type { Logger } from "pino";
import { createSlots, insertClinic, insertPractitioner } from "./repo.ts";

// The codes are the README's: its inventory examples name these clinics by them.
const demoClinics = [
  { name: "Harbour Clinic", code: "harbour", timeZone: "Europe/Berlin" },
  { name: "Riverside Clinic", code: "riverside", timeZone: "America/New_York" },
  { name: "Hillside Clinic", code: "hillside", timeZone: "Asia/Tokyo" },
];
const demoDays = 14;
const slotMinutes = 30;

/** Seeds only an empty database; returns whether it did. Safe to call from several processes. */
export async function seedDemo(pool: pg.Pool, log: Logger): Promise<boolean> {
  const client = await pool.connect();
  try {
    // One seeder at a time; the others find clinics present and return.
    await client.query("SELECT pg_advisory_lock($1)", [0x73656564]);
    const existing = await client.query("SELECT 1 FROM clinics LIMIT 1");
    if ((existing.rowCount ?? 0) > 0) return false;
    let slots = 0;
    for (const [i, c] of demoClinics.entries()) {
      const clinicId = randomUUID();
      await insertClinic(pool, { id: clinicId, name: c.name, code: c.code, timeZone: c.timeZone });
      for (let p = 1; p <= 2; p++) {
        const practitionerId = randomUUID();
        await insertPractitioner(pool, { id: practitionerId, clinicId, name: `Practitioner ${i + 1}.${p}` });
        const days = await client.query<{ s: Date; e: Date }>(
          `SELECT ((d::date + time '09:00') AT TIME ZONE $1) AS s, ((d::date + time '17:00') AT TIME ZONE $1) AS e
             FROM generate_series((now() AT TIME ZONE $1)::date, (now() AT TIME ZONE $1)::date + ($2::int - 1), interval '1 day') AS d`,
          [c.timeZone, demoDays],
        );
        for (const d of days.rows) {
          const r = await createSlots(pool, {
            clinicId,
            practitionerId,
            start: d.s,
            end: d.e,
            minutes: slotMinutes,
          });
          slots += r.slots.length;
        }
      }
    }
    log.info({ clinics: demoClinics.length, slots }, "demo data seeded");
    return true;
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [0x73656564]).catch(() => undefined);
    client.release();
  }
}
