import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedDemo } from "../src/appointment/seed.ts";
import { CacheTier } from "../src/gen/medisync/v1/appointment.ts";
import { AppointmentClient } from "../src/shared/appointment-client.ts";
import { AppError } from "../src/shared/errors.ts";
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

/** Far above a close that drains its streams, far below one that waits for them to break. */
const closeWithOpenStreamMsMax = 5_000;

describe("ListSlotsStream", () => {
  it("answers as ListSlots does, errors included, and a shutdown does not wait on the open stream", async () => {
    // A drain time no close could reach by chance: close() must not wait for it.
    const drainCfg = testConfig("smoke", { SHUTDOWN_DRAIN_MS: "60000" });
    const i = await startInstance(drainCfg, undefined, "smoke-stream");
    const streamed = new AppointmentClient({ addrs: [`127.0.0.1:${i.service.grpcPort}`], deadlineMs: 2_000 });
    try {
      const { clinics } = await callUnary(i.client.listClinics.bind(i.client), {}, 2000);
      const clinic = clinics[0]!;
      const date = new Date(Date.now() + 2 * 86_400_000).toISOString().slice(0, 10);
      const query = { clinicId: clinic.id, date, practitionerId: "" };
      const unary = await callUnary(i.client.listSlots.bind(i.client), query, 2000);
      const viaStream = await streamed.listSlots(clinic.id, date, undefined);
      // The second read of the day is an LRU hit, answered with the entry's own encoded bytes.
      expect(viaStream).toEqual({ ...unary, tier: CacheTier.CACHE_TIER_LRU });
      for (const bad of [
        { ...query, date: "2030-02-30" },
        { ...query, clinicId: randomUUID() },
        { ...query, practitionerId: "not-a-uuid" },
      ]) {
        const e1 = await callUnary(i.client.listSlots.bind(i.client), bad, 2000).catch((e: unknown) => e);
        const e2 = await streamed
          .listSlots(bad.clinicId, bad.date, bad.practitionerId || undefined)
          .catch((e: unknown) => e);
        expect(e1).toBeInstanceOf(AppError);
        expect(e2).toEqual(e1);
      }
    } finally {
      // The stream to the instance is still open here: close() ends it (drain) instead of waiting
      // for it to go. Without that, close() took 10 s here (until the client's keepalive gave up on
      // the stream), up to SHUTDOWN_DRAIN_MS; a close that drains takes well under a second.
      const t0 = Date.now();
      await i.service.close();
      expect(Date.now() - t0).toBeLessThan(closeWithOpenStreamMsMax);
      streamed.close();
      i.client.close();
    }
  });
});
