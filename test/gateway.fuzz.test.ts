// Bad input never gets a 500, never crashes the gateway and never writes half a thing: every
// endpoint, given malformed JSON, wrong types, unknown fields, oversized bodies, impossible dates or
// non-UUID ids, answers 4xx application/problem+json naming what was wrong.
import { randomUUID } from "node:crypto";
import fc from "fast-check";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createSlots } from "../src/appointment/repo.ts";
import { as, type Who } from "./support/auth.ts";
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

const bodyBytesMax = 4_096;
const cfg = testConfig("gateway_fuzz", { HTTP_BODY_BYTES_MAX: String(bodyBytesMax) });
let inst: Instance;
let gw: TestGateway;
let pool: pg.Pool;
let fx: ClinicFixture;
const date = "2032-01-05";

beforeAll(async () => {
  await resetState(cfg);
  inst = await startInstance(cfg, undefined, "fuzz");
  gw = await startGateway(cfg, [inst]);
  pool = testPool(cfg);
  fx = await makeClinic(pool, [date], 4);
});
afterAll(async () => {
  await gw.close();
  await pool.end();
  await stopInstance(inst);
});

const rowCounts = async () =>
  (
    await pool.query(
      `SELECT (SELECT count(*) FROM appointments)::int AS a, (SELECT count(*) FROM slots)::int AS s,
              (SELECT count(*) FROM booking_idempotency)::int AS k`,
    )
  ).rows[0];

function expectProblem(r: Awaited<ReturnType<typeof http>>, status?: number, field?: string) {
  if (status !== undefined) expect(r.status).toBe(status);
  expect(r.status).toBeGreaterThanOrEqual(400);
  expect(r.status).toBeLessThan(500);
  expect(r.headers.get("content-type")).toBe("application/problem+json");
  expect(r.json.type).toMatch(/^https:\/\/medisync\.dev\/problems\/[a-z-]+$/);
  expect(typeof r.json.title).toBe("string");
  expect(r.json.status).toBe(r.status);
  if (field !== undefined) expect(r.json.field).toBe(field);
}

describe("bad input, case by case", () => {
  const patientId = randomUUID();
  const slotsPath = () => `/v1/clinics/${fx.clinicId}/slots`;
  const goodSlots = () => ({
    practitionerId: fx.practitionerId,
    start: "2032-01-06T08:00:00Z",
    end: "2032-01-06T09:00:00Z",
    minutes: 30,
  });

  it("malformed JSON → 400 malformed-json", async () => {
    for (const path of ["/v1/appointments", slotsPath()]) {
      expectProblem(await http(gw.base, "POST", path, '{"slotId": "'), 400, "body");
    }
  });

  it("wrong types → 400 naming the field", async () => {
    expectProblem(await http(gw.base, "POST", "/v1/appointments", { slotId: 42, patientId }), 400, "slotId");
    expectProblem(
      await http(gw.base, "POST", slotsPath(), { ...goodSlots(), minutes: "30" }),
      400,
      "minutes",
    );
    expectProblem(await http(gw.base, "POST", "/v1/appointments", [1, 2]), 400);
    expectProblem(await http(gw.base, "POST", "/v1/appointments", "null"), 400);
  });

  it("unknown fields → 400 naming the field", async () => {
    const slotId = fx.days.get(date)![0]!.id;
    expectProblem(
      await http(gw.base, "POST", "/v1/appointments", { slotId, patientId, admin: true }),
      400,
      "admin",
    );
    expectProblem(await http(gw.base, "POST", slotsPath(), { ...goodSlots(), color: "red" }), 400, "color");
    expectProblem(await http(gw.base, "GET", `${slotsPath()}?date=${date}&limit=5`), 400, "limit");
  });

  it("oversized bodies → 413", async () => {
    const big = JSON.stringify({ slotId: "x".repeat(bodyBytesMax * 2), patientId });
    expectProblem(await http(gw.base, "POST", "/v1/appointments", big), 413, "body");
    expectProblem(await http(gw.base, "POST", slotsPath(), big), 413, "body");
  });

  it("impossible dates and instants → 400 naming the field", async () => {
    for (const d of ["2032-02-30", "2031-13-01", "20320105", "yesterday", ""]) {
      expectProblem(await http(gw.base, "GET", `${slotsPath()}?date=${d}`), 400, "date");
    }
    expectProblem(await http(gw.base, "GET", slotsPath()), 400, "date");
    expectProblem(
      await http(gw.base, "POST", slotsPath(), { ...goodSlots(), start: "2032-02-30T09:00:00Z" }),
      400,
      "start",
    );
    expectProblem(
      await http(gw.base, "POST", slotsPath(), { ...goodSlots(), end: "2032-01-06T09:00:00" }),
      400,
      "end",
    );
  });

  it("dates and instants outside the supported range → 400 that states the range", async () => {
    for (const d of ["1900-01-01", "1969-12-31"]) {
      const r = await http(gw.base, "GET", `${slotsPath()}?date=${d}`);
      expectProblem(r, 400, "date");
      expect(r.json.detail).toContain("1970-01-01");
      expect(r.json.detail).toContain("9999-12-31");
    }
    const r = await http(gw.base, "POST", slotsPath(), { ...goodSlots(), start: "1969-12-31T23:00:00Z" });
    expectProblem(r, 400, "start");
    expect(r.json.detail).toContain("1970-01-01");
  });

  it("slots in the past: creating them or booking one → 422 naming the field, nothing written", async () => {
    const before = await rowCounts();
    const hourAgo = new Date(Date.now() - 3_600_000);
    const past = await http(gw.base, "POST", slotsPath(), {
      ...goodSlots(),
      start: hourAgo.toISOString(),
      end: new Date(hourAgo.getTime() + 2 * 3_600_000).toISOString(),
    });
    expectProblem(past, 422, "start");
    expect(past.json.type).toBe("https://medisync.dev/problems/slot-in-past");
    expect(await rowCounts()).toEqual(before);
    // A slot that is already in the past (made before it passed): booking it is refused.
    const { slots } = await createSlots(pool, {
      clinicId: fx.clinicId,
      practitionerId: fx.practitionerId,
      start: new Date("2020-06-01T08:00:00Z"),
      end: new Date("2020-06-01T08:30:00Z"),
      minutes: 30,
    });
    const booked = await http(gw.base, "POST", "/v1/appointments", { slotId: slots[0]!.id, patientId });
    expectProblem(booked, 422, "slotId");
    expect(booked.json.type).toBe("https://medisync.dev/problems/slot-in-past");
    const rows = await pool.query("SELECT count(*)::int AS n FROM appointments WHERE slot_id = $1", [
      slots[0]!.id,
    ]);
    expect(rows.rows[0].n).toBe(0);
  });

  it("non-UUID ids → 400 naming the field", async () => {
    expectProblem(
      await http(gw.base, "GET", "/v1/clinics/not-a-uuid/slots?date=2032-01-05"),
      400,
      "clinicId",
    );
    expectProblem(await http(gw.base, "GET", "/v1/appointments/123"), 400, "id");
    expectProblem(await http(gw.base, "POST", "/v1/appointments/123/cancel"), 400, "id");
    expectProblem(
      await http(gw.base, "POST", "/v1/appointments", { slotId: "abc", patientId }),
      400,
      "slotId",
    );
    expectProblem(await http(gw.base, "POST", "/v1/clinics/zzz/slots", goodSlots()), 400, "clinicId");
  });

  it("a body that is not JSON → 415; an unknown clinic → 404 clinic-not-found", async () => {
    expectProblem(
      await http(gw.base, "POST", "/v1/appointments", "slotId=1", { "content-type": "text/plain" }),
      415,
    );
    expectProblem(
      await http(gw.base, "GET", `/v1/clinics/${randomUUID()}/slots?date=${date}`),
      404,
      "clinicId",
    );
  });
});

// Strings that tend to break parsers, validators and SQL built by hand.
const nasty = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.constantFrom(
    "",
    " ",
    "null",
    "0",
    "-1",
    "1e309",
    "NaN",
    "../../etc/passwd",
    "%00",
    "'; DROP TABLE slots; --",
    "2032-02-30",
    "0000-00-00",
    "2032-01-05T25:61:00Z",
    "00000000-0000-0000-0000-00000000000g",
    "\u0000",
    "😀",
    "a".repeat(300),
  ),
);
const jsonish = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.record({ slotId: nasty, patientId: nasty }),
  fc.record(
    { practitionerId: nasty, start: nasty, end: nasty, minutes: fc.oneof(fc.integer(), fc.double(), nasty) },
    { requiredKeys: [] },
  ),
  fc.dictionary(nasty, fc.jsonValue({ maxDepth: 1 }), { maxKeys: 4 }),
  fc.record(
    {
      appointmentId: nasty,
      medicationCode: nasty,
      quantity: fc.oneof(fc.integer(), fc.double(), nasty),
      dosage: fc.oneof(
        nasty,
        fc.record(
          {
            amount: fc.oneof(fc.integer(), nasty),
            unit: nasty,
            timesPerDay: fc.integer(),
            days: fc.double(),
          },
          { requiredKeys: [] },
        ),
      ),
    },
    { requiredKeys: [] },
  ),
  fc.record(
    { url: nasty, events: fc.oneof(nasty, fc.array(nasty, { maxLength: 6 })), clinicId: nasty },
    { requiredKeys: [] },
  ),
);
const rawBody = fc.oneof(
  jsonish.map((v) => JSON.stringify(v) ?? "null"),
  fc.string({ maxLength: 200 }),
  fc.constant("x".repeat(bodyBytesMax + 1)),
);
const segment = nasty.map((s) => encodeURIComponent(s) || "%20");

const request = fc.oneof(
  fc.record({ method: fc.constant("POST"), path: fc.constant("/v1/appointments"), body: rawBody }),
  fc.record({
    method: fc.constant("POST"),
    path: segment.map((c) => `/v1/clinics/${c}/slots`),
    body: rawBody,
  }),
  fc.record({
    method: fc.constant("GET"),
    path: fc
      .tuple(segment, segment, segment)
      .map(([c, d, p]) => `/v1/clinics/${c}/slots?date=${d}&practitionerId=${p}`),
  }),
  fc.record({
    method: fc.constant("GET"),
    path: fc.tuple(segment, segment).map(([l, c]) => `/v1/clinics?limit=${l}&cursor=${c}`),
  }),
  fc.record({
    method: fc.constant("GET"),
    path: fc
      .tuple(segment, segment, segment)
      .map(([id, l, c]) => `/v1/clinics/${id}/practitioners?limit=${l}&cursor=${c}`),
  }),
  fc.record({ method: fc.constantFrom("GET", "POST"), path: segment.map((id) => `/v1/appointments/${id}`) }),
  fc.record({ method: fc.constant("POST"), path: segment.map((id) => `/v1/appointments/${id}/cancel`) }),
  fc.record({ method: fc.constant("POST"), path: fc.constant("/v1/prescriptions"), body: rawBody }),
  fc.record({ method: fc.constantFrom("GET", "POST"), path: segment.map((id) => `/v1/prescriptions/${id}`) }),
  fc.record({ method: fc.constant("POST"), path: segment.map((id) => `/v1/prescriptions/${id}/cancel`) }),
  fc.record({
    method: fc.constant("GET"),
    path: fc
      .tuple(segment, segment, segment)
      .map(([id, l, c]) => `/v1/appointments/${id}/prescriptions?limit=${l}&cursor=${c}`),
  }),
  fc.record({
    method: fc.constant("GET"),
    path: fc
      .tuple(segment, segment, segment)
      .map(([id, l, c]) => `/v1/patients/${id}/notifications?limit=${l}&cursor=${c}`),
  }),
  fc.record({ method: fc.constant("POST"), path: fc.constant("/v1/webhooks"), body: rawBody }),
  fc.record({
    method: fc.constant("PUT"),
    path: segment.map((id) => `/v1/patients/${id}/contact`),
    body: rawBody,
  }),
  // A valid limit with any cursor is a call (503 here, with no notification service): limits only.
  fc.record({
    method: fc.constant("GET"),
    path: segment
      .filter((l) => {
        const n = Number(decodeURIComponent(l));
        return !(Number.isInteger(n) && n >= 1 && n <= 100);
      })
      .map((l) => `/v1/webhooks?limit=${l}`),
  }),
  fc.record({
    method: fc.constant("GET"),
    path: fc
      .tuple(segment, segment, segment)
      .map(([id, l, c]) => `/v1/webhooks/${id}/deliveries?limit=${l}&cursor=${c}`),
  }),
  fc.record({
    method: fc.constant("POST"),
    path: fc.tuple(segment, segment).map(([id, d]) => `/v1/webhooks/${id}/deliveries/${d}/redeliver`),
  }),
  fc.record({
    method: fc.constantFrom("GET", "PUT", "DELETE", "PATCH"),
    path: fc.constantFrom("/v1/appointments", "/v1/clinics", "/v1"),
  }),
);

/**
 * Who sends it: an admin (the default), another role with a valid token, or a bad token — one more
 * kind of bad input (missing, not a bearer token, not a JWT, garbage): 4xx, never 5xx.
 */
const caller = fc.oneof(
  { weight: 3, arbitrary: fc.constant<Record<string, string>>({}) },
  {
    weight: 2,
    arbitrary: fc
      .constantFrom<Who>(
        { role: "patient", sub: randomUUID() },
        { role: "clinician", sub: "doc", clinics: ["fuzz"] },
        { role: "pharmacist", sub: "ph", clinics: ["fuzz"] },
      )
      .map((who) => ({ who })),
  },
  {
    weight: 2,
    arbitrary: fc
      .oneof(
        fc.constantFrom(
          "",
          "Bearer",
          "Bearer ",
          "Basic dXNlcjpwYXNz",
          "Bearer a.b.c",
          "Bearer ....",
          "bearer x",
        ),
        nasty.map((t) => `Bearer ${t}`),
        fc.string({ maxLength: 40 }),
      )
      // A header value fetch would refuse to send is not input the gateway can receive.
      .filter((v) => /^[\t\x20-\x7e]*$/.test(v) && v.trim() === v)
      .map((authorization) => ({ authorization })),
  },
);

describe("bad input, fuzzed", () => {
  it("never answers 5xx, always answers problem+json for 4xx, and writes nothing", async () => {
    const before = await rowCounts();
    await fc.assert(
      fc.asyncProperty(request, caller, async (req, from) => {
        const auth = "who" in from ? await as(from.who as Who) : (from as Record<string, string>);
        const r = await http(gw.base, req.method, req.path, "body" in req ? req.body : undefined, {
          ...("body" in req ? { "content-type": "application/json" } : {}),
          ...auth,
        });
        expect(r.status).toBeLessThan(500);
        if (r.status >= 400) expectProblem(r);
        if ("authorization" in from && r.status === 401)
          expect(r.headers.get("www-authenticate")).toMatch(/^Bearer realm="medisync"/);
      }),
      { numRuns: 400 },
    );
    expect(await rowCounts()).toEqual(before);
    expect((await http(gw.base, "GET", "/healthz")).status).toBe(200);
  });
});
