import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedDemo } from "../src/appointment/seed.ts";
import { CacheTier } from "../src/gen/medisync/v1/appointment.ts";
import { callUnary } from "../src/shared/grpc.ts";
import { createLogger } from "../src/shared/logger.ts";
import {
  type Instance,
  resetState,
  startInstance,
  stopInstance,
  testConfig,
  testPool,
} from "./support/services.ts";

const cfg = testConfig("smoke");
let a: Instance;

beforeAll(async () => {
  await resetState(cfg);
  a = await startInstance(cfg);
  const pool = testPool(cfg);
  await seedDemo(pool, createLogger({ service: "seed", level: "silent" }));
  await pool.end();
});
afterAll(async () => {
  await stopInstance(a);
});

describe("appointment smoke", () => {
  it("lists, books and cancels", async () => {
    const { clinics } = await callUnary(a.client.listClinics.bind(a.client), {}, 2000);
    expect(clinics).toHaveLength(3);
    const clinic = clinics[0]!;
    // Tomorrow in the clinic's zone: today's first slots may have started, and those cannot be booked.
    const today = new Intl.DateTimeFormat("en-CA", { timeZone: clinic.timeZone }).format(new Date());
    const tomorrow = new Date(Date.parse(`${today}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10);
    const first = await callUnary(
      a.client.listSlots.bind(a.client),
      { clinicId: clinic.id, date: tomorrow, practitionerId: "" },
      2000,
    );
    expect(first.slots).toHaveLength(32);
    expect(first.tier).toBe(CacheTier.CACHE_TIER_DB);
    const second = await callUnary(
      a.client.listSlots.bind(a.client),
      { clinicId: clinic.id, date: tomorrow, practitionerId: "" },
      2000,
    );
    expect(second.tier).toBe(CacheTier.CACHE_TIER_LRU);
    const slot = first.slots[0]!;
    const booked = await callUnary(
      a.client.book.bind(a.client),
      { slotId: slot.id, patientId: randomUUID(), idempotencyKey: "" },
      2000,
    );
    expect(booked.appointment?.slotId).toBe(slot.id);
    const third = await callUnary(
      a.client.listSlots.bind(a.client),
      { clinicId: clinic.id, date: tomorrow, practitionerId: "" },
      2000,
    );
    expect(third.tier).toBe(CacheTier.CACHE_TIER_DB);
    expect(third.slots.find((s) => s.id === slot.id)?.status).toBe(2);
  });
});
