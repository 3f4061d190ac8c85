// The REST API end to end: gateway → two appointment instances → PostgreSQL and Redis, all real.
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CacheTier } from "../src/gen/medisync/v1/appointment.ts";
import { callUnary } from "../src/shared/grpc.ts";
import { type ClinicFixture, makeClinic } from "./support/fixtures.ts";
import { http, startGateway, type TestGateway } from "./support/gateway.ts";
import {
  type Instance,
  resetState,
  startInstance,
  stopInstance,
  testConfig,
  testPool,
} from "./support/services.ts";
import { startTcpProxy } from "./support/tcp-proxy.ts";

const cfg = testConfig("gateway_e2e");
let a: Instance;
let b: Instance;
let gw: TestGateway;
let pool: pg.Pool;
let fx: ClinicFixture;
const date = "2031-05-06";

beforeAll(async () => {
  await resetState(cfg);
  a = await startInstance(cfg, undefined, "gw-a");
  // B hears no invalidations: only the version check can keep its reads fresh.
  b = await startInstance(cfg, undefined, "gw-b", { pubsub: false });
  gw = await startGateway(cfg, [a, b]);
  pool = testPool(cfg);
  fx = await makeClinic(pool, [date], 40);
});
afterAll(async () => {
  await gw.close();
  await pool.end();
  await stopInstance(a);
  await stopInstance(b);
});

const slotAt = (i: number) => fx.days.get(date)![i]!;

describe("REST appointments", () => {
  it("lists clinics with their time zones", async () => {
    const r = await http(gw.base, "GET", "/v1/clinics");
    expect(r.status).toBe(200);
    expect(r.json.items).toContainEqual({
      id: fx.clinicId,
      code: fx.code,
      name: "Test Clinic",
      timeZone: "UTC",
    });
  });

  it("50 concurrent bookings of one slot: exactly one 201 and 49 × 409 slot-taken", async () => {
    const slot = slotAt(0);
    const results = await Promise.all(
      Array.from({ length: 50 }, () =>
        http(gw.base, "POST", "/v1/appointments", { slotId: slot.id, patientId: randomUUID() }),
      ),
    );
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    const conflicts = results.filter((r) => r.status === 409);
    expect(conflicts).toHaveLength(49);
    for (const c of conflicts) {
      expect(c.headers.get("content-type")).toBe("application/problem+json");
      expect(c.json.type).toBe("https://medisync.dev/problems/slot-taken");
    }
    const rows = await pool.query("SELECT count(*)::int AS n FROM appointments WHERE slot_id = $1", [
      slot.id,
    ]);
    expect(rows.rows[0].n).toBe(1);
  });

  it("the same Idempotency-Key twice returns the same appointment and creates one row", async () => {
    const slot = slotAt(1);
    const body = { slotId: slot.id, patientId: randomUUID() };
    const key = `e2e-${randomUUID()}`;
    const first = await http(gw.base, "POST", "/v1/appointments", body, { "Idempotency-Key": key });
    const second = await http(gw.base, "POST", "/v1/appointments", body, { "Idempotency-Key": key });
    expect(first.status).toBe(201);
    expect(second.status).toBe(201);
    expect(second.json.id).toBe(first.json.id);
    expect(second.headers.get("idempotent-replayed")).toBe("true");
    const rows = await pool.query("SELECT count(*)::int AS n FROM appointments WHERE slot_id = $1", [
      slot.id,
    ]);
    expect(rows.rows[0].n).toBe(1);
  });

  it("a booked slot is never listed free right after the 201, whichever instance or tier answers", async () => {
    const tiers = new Set<string | null>();
    for (let i = 2; i < 22; i++) {
      const slot = slotAt(i);
      const booked = await http(gw.base, "POST", "/v1/appointments", {
        slotId: slot.id,
        patientId: randomUUID(),
      });
      expect(booked.status).toBe(201);
      // Two reads so that both instances (round-robin) answer after the acknowledgement.
      for (let r = 0; r < 2; r++) {
        const day = await http(gw.base, "GET", `/v1/clinics/${fx.clinicId}/slots?date=${date}`);
        expect(day.status).toBe(200);
        expect(["gateway", "lru", "redis", "db"]).toContain(day.headers.get("x-cache"));
        tiers.add(day.headers.get("x-cache"));
        const seen = (day.json.slots as unknown as { id: string; status: string }[]).find(
          (s) => s.id === slot.id,
        );
        expect(seen?.status).toBe("booked");
      }
    }
    // The second read of each round found the first one's answer current: the gateway's own tier
    // served it, fresh.
    expect(tiers.has("gateway")).toBe(true);
  });

  it("gets and cancels an appointment; a second cancel is 409 already-cancelled; the slot is free again", async () => {
    const slot = slotAt(30);
    const booked = await http(gw.base, "POST", "/v1/appointments", {
      slotId: slot.id,
      patientId: randomUUID(),
    });
    const id = booked.json.id as string;
    const got = await http(gw.base, "GET", `/v1/appointments/${id}`);
    expect(got.status).toBe(200);
    expect(got.json).toMatchObject({ id, slotId: slot.id, clinicId: fx.clinicId, status: "booked" });
    const cancelled = await http(gw.base, "POST", `/v1/appointments/${id}/cancel`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.json.status).toBe("cancelled");
    const again = await http(gw.base, "POST", `/v1/appointments/${id}/cancel`);
    expect(again.status).toBe(409);
    expect(again.json.type).toBe("https://medisync.dev/problems/already-cancelled");
    const day = await http(gw.base, "GET", `/v1/clinics/${fx.clinicId}/slots?date=${date}`);
    const seen = (day.json.slots as unknown as { id: string; status: string }[]).find(
      (s) => s.id === slot.id,
    );
    expect(seen?.status).toBe("free");
    const missing = await http(gw.base, "GET", `/v1/appointments/${randomUUID()}`);
    expect(missing.status).toBe(404);
    expect(missing.json.type).toBe("https://medisync.dev/problems/appointment-not-found");
  });

  it("books a slot that does not exist as 404 slot-not-found", async () => {
    const r = await http(gw.base, "POST", "/v1/appointments", {
      slotId: randomUUID(),
      patientId: randomUUID(),
    });
    expect(r.status).toBe(404);
    expect(r.json.type).toBe("https://medisync.dev/problems/slot-not-found");
  });

  it("creates slots (201), refuses overlapping ones (409) and filters by practitioner", async () => {
    const created = await http(gw.base, "POST", `/v1/clinics/${fx.clinicId}/slots`, {
      practitionerId: fx.practitionerId,
      start: "2031-05-07T09:00:00Z",
      end: "2031-05-07T11:00:00Z",
      minutes: 30,
    });
    expect(created.status).toBe(201);
    expect(created.json).toHaveLength(4);
    const overlap = await http(gw.base, "POST", `/v1/clinics/${fx.clinicId}/slots`, {
      practitionerId: fx.practitionerId,
      start: "2031-05-07T10:00:00Z",
      end: "2031-05-07T10:30:00Z",
      minutes: 30,
    });
    expect(overlap.status).toBe(409);
    const other = await http(
      gw.base,
      "GET",
      `/v1/clinics/${fx.clinicId}/slots?date=2031-05-07&practitionerId=${randomUUID()}`,
    );
    expect(other.status).toBe(200);
    expect(other.json.slots).toEqual([]);
  });

  it("echoes a caller's X-Request-Id and makes one when absent", async () => {
    const given = await fetch(`${gw.base}/v1/clinics`, { headers: { "X-Request-Id": "trace-abc.123" } });
    expect(given.headers.get("x-request-id")).toBe("trace-abc.123");
    const made = await fetch(`${gw.base}/nope`);
    expect(made.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(made.status).toBe(404);
    expect(made.headers.get("content-type")).toBe("application/problem+json");
  });

  it("serves /openapi.json generated from the route schemas, /docs, /healthz, /readyz and /metrics", async () => {
    const doc = await http(gw.base, "GET", "/openapi.json");
    expect(doc.status).toBe(200);
    const paths = Object.keys(doc.json.paths as Record<string, unknown>);
    expect(paths).toEqual(
      expect.arrayContaining([
        "/v1/clinics",
        "/v1/clinics/{clinicId}/slots",
        "/v1/appointments",
        "/v1/appointments/{id}",
        "/v1/appointments/{id}/cancel",
      ]),
    );
    const docs = await fetch(`${gw.base}/docs`);
    expect(docs.headers.get("content-type")).toContain("text/html");
    expect((await http(gw.base, "GET", "/healthz")).status).toBe(200);
    expect((await http(gw.base, "GET", "/readyz")).status).toBe(200);
    const metrics = await (await fetch(`${gw.opsBase}/metrics`)).text();
    expect(metrics).toContain("medisync_http_requests_total");
    expect(metrics).toContain("medisync_gateway_slot_reads_total");
  });

  it("keeps answering when one appointment instance is gone (retries go to the other)", async () => {
    await stopInstance(a);
    for (let i = 0; i < 6; i++) {
      const r = await http(gw.base, "GET", `/v1/clinics/${fx.clinicId}/slots?date=${date}`);
      expect(r.status).toBe(200);
    }
    const booked = await http(gw.base, "POST", "/v1/appointments", {
      slotId: slotAt(35).id,
      patientId: randomUUID(),
    });
    expect(booked.status).toBe(201);
    a = await startInstance(cfg, undefined, "gw-a");
  });
});

describe("REST bookings while Redis cannot be told", () => {
  it("a booking without Idempotency-Key that answers 503 names the key the gateway made; retrying with it books once", async () => {
    const proxy = await startTcpProxy("127.0.0.1", 6379);
    const proxied = await startInstance({ ...cfg, REDIS_URL: proxy.url("redis") }, undefined, "gw-proxied");
    const gw2 = await startGateway(cfg, [proxied]);
    try {
      const slot = slotAt(36);
      const list = () =>
        callUnary(
          proxied.client.listSlots.bind(proxied.client),
          { clinicId: fx.clinicId, date, practitionerId: "" },
          5_000,
        );
      // The instance's Redis connection comes up asynchronously: wait until it serves cached reads.
      const deadline = Date.now() + 10_000;
      while ((await list()).tier !== CacheTier.CACHE_TIER_LRU) {
        if (Date.now() > deadline) throw new Error("timed out waiting for the proxied instance's cache");
        await new Promise((r) => setTimeout(r, 20));
      }
      proxy.cut();
      const body = { slotId: slot.id, patientId: randomUUID() };
      const first = await http(gw2.base, "POST", "/v1/appointments", body);
      expect(first.status).toBe(503);
      expect(first.headers.get("content-type")).toBe("application/problem+json");
      expect(first.headers.get("retry-after")).not.toBeNull();
      const key = first.headers.get("idempotency-key");
      expect(key).toMatch(/^gw-[0-9a-f-]{36}$/);
      expect(first.json.idempotencyKey).toBe(key);
      expect(first.json.detail).toMatch(/same Idempotency-Key/);

      await proxy.restore();
      let retry: Awaited<ReturnType<typeof http>> | undefined;
      const until = Date.now() + 15_000;
      do {
        retry = await http(gw2.base, "POST", "/v1/appointments", body, { "Idempotency-Key": key! });
      } while (retry.status === 503 && Date.now() < until);
      expect(retry.status).toBe(201);
      expect(retry.headers.get("idempotent-replayed")).toBe("true");
      expect(retry.headers.get("idempotency-key")).toBe(key);
      const rows = await pool.query("SELECT count(*)::int AS n FROM appointments WHERE slot_id = $1", [
        slot.id,
      ]);
      expect(rows.rows[0].n).toBe(1);
    } finally {
      await gw2.close();
      await stopInstance(proxied);
      await proxy.close();
    }
  });
});
