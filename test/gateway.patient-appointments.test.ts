// GET /v1/patients/{id}/appointments end to end: REST → two real appointment instances →
// PostgreSQL. Pages walk a patient's appointments exactly once, newest first (by start, ties by id),
// never another patient's; limit and cursor are checked naming the field; cancelled appointments
// show as cancelled and the status filter keeps one kind; a clinician's scope keeps its clinics only.
// Through the real gateway (runGateway, which mounts patient-routes.ts) with real tokens: admin's
// unless a test names another; a clinician's token scopes the list to its clinics.
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AppointmentStatus } from "../src/gen/medisync/v1/appointment.ts";
import { AppointmentClient } from "../src/shared/appointment-client.ts";
import { AppError } from "../src/shared/errors.ts";
import { callUnary } from "../src/shared/grpc.ts";
import { as } from "./support/auth.ts";
import { type ClinicFixture, datesFrom, makeClinic } from "./support/fixtures.ts";
import { http, startGateway, type TestGateway } from "./support/gateway.ts";
import {
  type Instance,
  resetState,
  startInstance,
  stopInstance,
  testConfig,
  testPool,
} from "./support/services.ts";

const cfg = testConfig("gateway_patient_appointments");
let a: Instance;
let b: Instance;
let pool: pg.Pool;
let appointments: AppointmentClient;
let gw: TestGateway;
let base: string;
let north: ClinicFixture;
let south: ClinicFixture;

const dates = datesFrom("2033-03-01", 4);
const patientA = randomUUID();
const patientB = randomUUID();
const lonely = randomUUID();

interface AppointmentJson {
  id: string;
  slotId: string;
  patientId: string;
  clinicId: string;
  practitionerId: string;
  start: string;
  end: string;
  status: "booked" | "cancelled";
}
/** Patient A's appointments as the database has them at the end of beforeAll. */
const mine: AppointmentJson[] = [];

/** Newest first by start, ties by id: the order every page must follow. */
const newestFirst = (x: AppointmentJson, y: AppointmentJson) =>
  x.start === y.start ? (x.id < y.id ? 1 : -1) : x.start < y.start ? 1 : -1;

beforeAll(async () => {
  await resetState(cfg);
  a = await startInstance(cfg, undefined, "pa-a");
  b = await startInstance(cfg, undefined, "pa-b");
  pool = testPool(cfg);
  // Both clinics' slots start at 08:00 each day: A's appointments at the two clinics tie on start,
  // so the id decides their order.
  north = await makeClinic(pool, dates, 4);
  south = await makeClinic(pool, dates, 4);
  appointments = new AppointmentClient({
    addrs: [a, b].map((i) => `127.0.0.1:${i.service.grpcPort}`),
    deadlineMs: 5_000,
  });
  gw = await startGateway(cfg, [a, b]);
  base = gw.base;

  // A books every slot of the first three days at both clinics, except every third one, which B
  // books (interleaved with A's in time). 3 days × 2 clinics × 4 slots = 24 slots: A 16, B 8.
  let n = 0;
  for (const fx of [north, south]) {
    for (const d of dates.slice(0, 3)) {
      for (const slot of fx.days.get(d)!) {
        const patient = n++ % 3 === 2 ? patientB : patientA;
        const { appointment } = await appointments.book(slot.id, patient, `k-${slot.id}`);
        if (patient === patientA) mine.push(viewOf(appointment));
      }
    }
  }
  // A cancels two; B then books one of the freed slots: that slot has A's cancelled appointment and
  // B's booked one, and only A's may show in A's list.
  for (const x of [mine[1]!, mine[9]!]) {
    await appointments.cancel(x.id);
    x.status = "cancelled";
  }
  await appointments.book(mine[1]!.slotId, patientB, `k-b-${mine[1]!.slotId}`);
  mine.sort(newestFirst);
}, 60_000);

afterAll(async () => {
  await gw.close();
  appointments.close();
  await pool.end();
  await stopInstance(a);
  await stopInstance(b);
});

function viewOf(m: Awaited<ReturnType<AppointmentClient["get"]>>): AppointmentJson {
  return {
    id: m.id,
    slotId: m.slotId,
    patientId: m.patientId,
    clinicId: m.clinicId,
    practitionerId: m.practitionerId,
    start: m.start,
    end: m.end,
    status: m.status === AppointmentStatus.APPOINTMENT_STATUS_CANCELLED ? "cancelled" : "booked",
  };
}

const list = (patient: string, query = "", headers: Record<string, string> = {}) =>
  http(base, "GET", `/v1/patients/${patient}/appointments${query}`, undefined, headers);

/** Every page of a list: the pages as they came, following nextCursor until null. */
async function walk(patient: string, query: string, headers: Record<string, string> = {}) {
  const pages: AppointmentJson[][] = [];
  let cursor: string | null = null;
  do {
    const sep = query ? "&" : "?";
    const r = await list(
      patient,
      `${query}${cursor ? `${sep}cursor=${encodeURIComponent(cursor)}` : ""}`,
      headers,
    );
    expect(r.status).toBe(200);
    pages.push(r.json.items as unknown as AppointmentJson[]);
    cursor = r.json.nextCursor as string | null;
    expect(pages.length).toBeLessThan(100);
  } while (cursor !== null);
  return pages;
}

function expectProblem(r: Awaited<ReturnType<typeof http>>, status: number, field: string) {
  expect(r.status).toBe(status);
  expect(r.headers.get("content-type")).toBe("application/problem+json");
  expect(r.json.field).toBe(field);
}

describe("GET /v1/patients/{id}/appointments", () => {
  it("pages of 3 walk every one of the patient's appointments once, newest first, cancelled included", async () => {
    expect(mine).toHaveLength(16);
    const pages = await walk(patientA, "?limit=3");
    expect(pages.map((p) => p.length)).toEqual([3, 3, 3, 3, 3, 1]);
    const seen = pages.flat();
    expect(seen).toEqual(mine);
    expect(new Set(seen.map((x) => x.id)).size).toBe(16);
    // The ties on start are there, and ordered by id descending.
    const tied = mine.filter((x, i) => i > 0 && mine[i - 1]!.start === x.start);
    expect(tied.length).toBeGreaterThan(0);
    expect(seen.filter((x) => x.status === "cancelled").map((x) => x.id)).toHaveLength(2);
  });

  it("a page size that divides the list ends with a full page and nextCursor null", async () => {
    const pages = await walk(patientA, "?limit=8");
    expect(pages.map((p) => p.length)).toEqual([8, 8]);
    expect(pages.flat()).toEqual(mine);
  });

  it("the default page is 20 and the largest is 100", async () => {
    const all = await list(patientA);
    expect(all.status).toBe(200);
    expect(all.json.items).toEqual(mine);
    expect(all.json.nextCursor).toBeNull();
    const max = await list(patientA, "?limit=100");
    expect(max.json.items).toEqual(mine);
    // Another patient, with the fourth day's 8 slots: one default page, or two of 5.
    const many = randomUUID();
    for (const slot of north.days.get(dates[3]!)!.concat(south.days.get(dates[3]!)!))
      await appointments.book(slot.id, many, `k-many-${slot.id}`);
    expect((await walk(many, "")).map((p) => p.length)).toEqual([8]);
    const p = await list(many, "?limit=5");
    expect((p.json.items as unknown[]).length).toBe(5);
    expect(typeof p.json.nextCursor).toBe("string");
  });

  it("another patient's appointments never show, even on a slot the patient once had", async () => {
    const bs = (await walk(patientB, "?limit=4")).flat();
    expect(bs).toHaveLength(9);
    expect(bs.every((x) => x.patientId === patientB)).toBe(true);
    const as = (await walk(patientA, "?limit=4")).flat();
    expect(as.every((x) => x.patientId === patientA)).toBe(true);
    expect(as.filter((x) => bs.some((y) => y.id === x.id))).toEqual([]);
    // The freed slot B booked: A's cancelled appointment and B's booked one, each in its own list.
    const freed = as.filter((x) => bs.some((y) => y.slotId === x.slotId));
    expect(freed).toHaveLength(1);
    expect(freed[0]!.status).toBe("cancelled");
    expect(bs.find((y) => y.slotId === freed[0]!.slotId)!.status).toBe("booked");
  });

  it("a patient with none gets an empty page", async () => {
    const r = await list(lonely);
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ items: [], nextCursor: null });
  });

  it("status keeps only cancelled or only booked ones, still paged newest first", async () => {
    const cancelled = (await walk(patientA, "?status=cancelled&limit=1")).flat();
    expect(cancelled).toEqual(mine.filter((x) => x.status === "cancelled"));
    expect(cancelled).toHaveLength(2);
    const booked = (await walk(patientA, "?status=booked&limit=5")).flat();
    expect(booked).toEqual(mine.filter((x) => x.status === "booked"));
    expect(booked).toHaveLength(14);
  });

  it("a clinician sees the patient's appointments at the token's clinics only", async () => {
    const clinician = (clinics: string[]) => as({ role: "clinician", sub: "clinician-test", clinics });
    const atNorth = mine.filter((x) => x.clinicId === north.clinicId);
    expect(atNorth.length).toBeGreaterThan(0);
    expect(atNorth.length).toBeLessThan(mine.length);
    expect((await walk(patientA, "?limit=3", await clinician([north.code]))).flat()).toEqual(atNorth);
    expect((await walk(patientA, "?limit=7", await clinician([north.code, south.code]))).flat()).toEqual(
      mine,
    );
    const elsewhere = await list(patientA, "", await clinician(["no-such-clinic"]));
    expect(elsewhere.json).toEqual({ items: [], nextCursor: null });
  });

  it("a patient reads their own list; another patient's is 403, none without a token 401", async () => {
    const own = await as({ role: "patient", sub: patientA });
    expect((await walk(patientA, "?limit=6", own)).flat()).toEqual(mine);
    expect((await list(patientB, "", own)).status).toBe(403);
    expect((await list(patientA, "", { authorization: "" })).status).toBe(401);
  });

  it("the service's scope by clinic id or code: either matches, an empty scope sees none", async () => {
    const page = (clinicIds: string[], clinicCodes: string[]) =>
      appointments
        .listPatientAppointments({
          patientId: patientA,
          pageSize: 100,
          pageToken: "",
          clinicScope: { clinicIds, clinicCodes },
        })
        .then((r) => r.appointments.map(viewOf));
    const atNorth = mine.filter((x) => x.clinicId === north.clinicId);
    expect(await page([north.clinicId], [])).toEqual(atNorth);
    expect(await page([], [north.code])).toEqual(atNorth);
    expect(await page([north.clinicId], [south.code])).toEqual(mine);
    expect(await page([], [])).toEqual([]);
  });

  it("refuses a bad limit, cursor, status, id or parameter with 400 naming it", async () => {
    for (const q of [
      "?limit=101",
      "?limit=0",
      "?limit=-1",
      "?limit=abc",
      "?limit=2.5",
      "?limit=",
      "?limit=1&limit=2",
    ])
      expectProblem(await list(patientA, q), 400, "limit");
    const forged = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
    const p1 = await list(patientA, "?limit=2");
    const good = p1.json.nextCursor as string;
    for (const cursor of [
      "not a cursor!",
      "x".repeat(513),
      "bm90LW91cnM", // base64url of "not-ours"
      forged(["2033-03-01T08:00:00Z", randomUUID()]), // not microsecond text
      forged(["2033-03-01T08:00:00.000000Z", "nope"]),
      forged({ startsAt: "2033-03-01T08:00:00.000000Z" }),
      good.slice(0, -2),
    ])
      expectProblem(await list(patientA, `?cursor=${encodeURIComponent(cursor)}`), 400, "cursor");
    expectProblem(await list(patientA, "?status=noshow"), 400, "status");
    expectProblem(await list(patientA, "?colour=red"), 400, "colour");
    expectProblem(await http(base, "GET", "/v1/patients/not-a-uuid/appointments"), 400, "id");
    // A cursor is a position, not a patient's: on another patient's list it only says where to go on.
    const next = await list(patientB, `?cursor=${encodeURIComponent(good)}`);
    expect(next.status).toBe(200);
    expect((next.json.items as unknown as AppointmentJson[]).every((x) => x.patientId === patientB)).toBe(
      true,
    );
  });

  it("is in the OpenAPI document: its parameters with their limits, the page schema", async () => {
    const doc = (await http(base, "GET", "/openapi.json")).json as unknown as {
      paths: Record<
        string,
        { get?: { parameters: { name: string; required?: boolean; schema: unknown }[] } }
      >;
      components: { schemas: Record<string, { properties: Record<string, unknown> }> };
    };
    const op = doc.paths["/v1/patients/{id}/appointments"]?.get;
    const params = Object.fromEntries((op?.parameters ?? []).map((p) => [p.name, p]));
    expect(Object.keys(params).sort()).toEqual(["cursor", "id", "limit", "status"]);
    expect(params.limit!.schema).toMatchObject({ minimum: 1, maximum: 100, default: 20 });
    expect(params.limit!.required).toBeFalsy();
    expect(Object.keys(doc.components.schemas.AppointmentPage!.properties).sort()).toEqual([
      "items",
      "nextCursor",
    ]);
  });

  it("the appointment service checks its own input: page size, token and scope name the field", async () => {
    const call = (req: Record<string, unknown>) =>
      callUnary(
        a.client.listPatientAppointments.bind(a.client),
        { patientId: patientA, pageSize: 0, pageToken: "", status: 0, ...req },
        5_000,
      ).then(
        () => "ok",
        (err: unknown) => (err instanceof AppError ? `${err.code}:${err.field}` : String(err)),
      );
    expect(await call({ pageSize: 101 })).toBe("VALIDATION:limit");
    expect(await call({ pageSize: -3 })).toBe("VALIDATION:limit");
    expect(await call({ pageToken: "%%%" })).toBe("VALIDATION:cursor");
    expect(await call({ patientId: "x" })).toBe("VALIDATION:patientId");
    expect(await call({ status: 7 })).toBe("VALIDATION:status");
    expect(await call({ clinicScope: { clinicIds: ["x"], clinicCodes: [] } })).toBe(
      "VALIDATION:clinicScope.clinicIds.0",
    );
    expect(await call({ clinicScope: { clinicIds: [], clinicCodes: ["Not A Code"] } })).toBe(
      "VALIDATION:clinicScope.clinicCodes.0",
    );
    expect(
      await call({ clinicScope: { clinicIds: Array.from({ length: 1_001 }, randomUUID), clinicCodes: [] } }),
    ).toBe("VALIDATION:clinicScope");
    expect(await call({ pageSize: 100 })).toBe("ok");
  });
});
