// The cached ListSlots path (an LRU hit answers with bytes encoded once per entry) against real
// PostgreSQL and Redis: an LRU hit still checks the Redis version on every read, so a booking on
// another instance that sends no pub/sub is seen at once, and the encoded answer is exactly the
// one PostgreSQL gives, for the whole day and for one practitioner.
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSlots, insertPractitioner } from "../src/appointment/repo.ts";
import { CacheTier, type ListSlotsResponse, SlotStatus } from "../src/gen/medisync/v1/appointment.ts";
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

const cfg = testConfig("cache_answer");
let pool: pg.Pool;
let fx: ClinicFixture;
let otherPractitioner: string;
const date = "2031-09-09";
const started: Instance[] = [];

beforeAll(async () => {
  await resetState(cfg);
  pool = testPool(cfg);
  started.push(await startInstance(cfg, undefined, "writer"));
  // The reader hears no pub/sub: only the version check keeps its LRU answers fresh.
  started.push(await startInstance(cfg, undefined, "reader", { pubsub: false }));
  fx = await makeClinic(pool, [date], 6);
  otherPractitioner = randomUUID();
  await insertPractitioner(pool, { id: otherPractitioner, clinicId: fx.clinicId, name: "Second" });
  const start = new Date(`${date}T14:00:00Z`);
  await createSlots(pool, {
    clinicId: fx.clinicId,
    practitionerId: otherPractitioner,
    start,
    end: new Date(start.getTime() + 3 * 30 * 60_000),
    minutes: 30,
  });
});
afterAll(async () => {
  await pool.end();
  for (const i of started) await stopInstance(i);
});

const list = (i: Instance, practitionerId = "") =>
  callUnary(i.client.listSlots.bind(i.client), { clinicId: fx.clinicId, date, practitionerId }, 5_000);
const withoutTier = (r: ListSlotsResponse) => ({ ...r, tier: undefined });

describe("cached ListSlots answer", () => {
  it("an LRU hit sees a booking made on another instance at once, and answers what PostgreSQL holds", async () => {
    const [writer, reader] = [started[0]!, started[1]!];
    const fromDb = await list(reader);
    expect(fromDb.tier).toBe(CacheTier.CACHE_TIER_DB);
    expect(fromDb.slots).toHaveLength(9);
    for (let round = 0; round < 3; round++) {
      const before = await list(reader);
      expect(before.tier).toBe(CacheTier.CACHE_TIER_LRU);
      const free = before.slots.find((s) => s.status === SlotStatus.SLOT_STATUS_FREE)!;
      await callUnary(
        writer.client.book.bind(writer.client),
        { slotId: free.id, patientId: randomUUID(), idempotencyKey: `answer-${round}` },
        5_000,
      );
      // The reader's LRU still holds the old entry (no pub/sub): the Redis version says it is stale.
      const after = await list(reader);
      expect(after.slots.find((s) => s.id === free.id)?.status).toBe(SlotStatus.SLOT_STATUS_BOOKED);
      // Filled again; the next hit's encoded answer is the new version's, equal to the writer's read.
      const hit = await list(reader);
      expect(hit.tier).toBe(CacheTier.CACHE_TIER_LRU);
      expect(withoutTier(hit)).toEqual(withoutTier(after));
      expect(hit.slots.filter((s) => s.status === SlotStatus.SLOT_STATUS_BOOKED)).toHaveLength(round + 1);
    }
  });

  it("an LRU hit for one practitioner answers that practitioner's slots only", async () => {
    const reader = started[1]!;
    await list(reader);
    const whole = await list(reader);
    expect(whole.tier).toBe(CacheTier.CACHE_TIER_LRU);
    const one = await list(reader, otherPractitioner);
    expect(one.tier).toBe(CacheTier.CACHE_TIER_LRU);
    expect(one.slots.map((s) => s.id)).toEqual(
      whole.slots.filter((s) => s.practitionerId === otherPractitioner).map((s) => s.id),
    );
    expect(one.slots).toHaveLength(3);
    // And the whole day again, after a filtered answer: not the filtered one.
    expect((await list(reader)).slots).toHaveLength(9);
  });
});
