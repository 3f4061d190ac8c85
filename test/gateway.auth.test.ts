// Who may do what, against a running gateway in front of real services (inventory replicas,
// appointment, medication): the matrix is generated from src/shared/access-policy.ts — the table
// docs/security.md is rendered from — so the document, the code and this test cannot drift.
// Every route × every role × its own and another patient or clinic; every route × no, expired,
// wrong-audience, wrong-algorithm (HS256), `alg: none` and unknown-key tokens. A route in the
// policy without a request here fails the test, as does a request for a route the policy lacks.
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { type JWK, SignJWT } from "jose";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Grant, policy } from "../src/shared/access-policy.ts";
import { mintToken } from "../src/shared/dev-tokens.ts";
import { type Role, roles } from "../src/shared/principal.ts";
import { admin, as, TEST_AUDIENCE, TEST_ISSUER, testKeys, type Who } from "./support/auth.ts";
import { datesFrom, makeClinic } from "./support/fixtures.ts";
import { http } from "./support/gateway.ts";
import { type MedicationStack, medicationStack } from "./support/medication-stack.ts";
import { testConfig, testPool } from "./support/services.ts";
import { until } from "./support/until.ts";

let s: MedicationStack;
let pool: pg.Pool;
/** Clinic codes: A is every staff token's, C a second of theirs, B nobody's but the admin's. */
let A: string;
let B: string;
let C: string;
let clinicIdA: string;
let clinicIdB: string;
const slotsA: string[] = [];
const slotsB: string[] = [];
/** Patients: P is the patient token's; Q another patient. */
const P = randomUUID();
const Q = randomUUID();
let appointmentP: string;
let appointmentQ: string;
let prescriptionP: string;
let prescriptionQ: string;

const whoOf = (role: Role): Who =>
  role === "patient"
    ? { role, sub: P }
    : role === "admin"
      ? admin
      : { role, sub: `${role}-of-A`, clinics: [A, C] };

const dosage = { amount: 1, unit: "tablet", timesPerDay: 2, days: 3 };

type Variant = "own" | "other";
interface Call {
  method: string;
  path: string;
  body?: unknown;
}

/**
 * One request per route and variant: "own" acts on P's records and clinic A (the tokens'
 * compartment), "other" on Q's and clinic B. Bodies are valid, so a refusal is the policy's.
 */
const calls: Record<string, (v: Variant) => Call> = {
  "GET /v1/clinics": () => ({ method: "GET", path: "/v1/clinics" }),
  "GET /v1/clinics/{clinicId}/practitioners": (v) => ({
    method: "GET",
    path: `/v1/clinics/${v === "own" ? clinicIdA : clinicIdB}/practitioners`,
  }),
  "GET /v1/clinics/{clinicId}/slots": (v) => ({
    method: "GET",
    path: `/v1/clinics/${v === "own" ? clinicIdA : clinicIdB}/slots?date=${tomorrow()}`,
  }),
  "POST /v1/clinics/{clinicId}/slots": (v) => ({
    method: "POST",
    path: `/v1/clinics/${v === "own" ? clinicIdA : clinicIdB}/slots`,
    body: { practitionerId: randomUUID(), start: farFuture(), end: farFuture(30), minutes: 30 },
  }),
  "POST /v1/appointments": (v) => ({
    method: "POST",
    path: "/v1/appointments",
    body: { slotId: (v === "own" ? slotsA : slotsB).shift(), patientId: v === "own" ? P : Q },
  }),
  "GET /v1/appointments/{id}": (v) => ({
    method: "GET",
    path: `/v1/appointments/${v === "own" ? appointmentP : appointmentQ}`,
  }),
  "POST /v1/appointments/{id}/cancel": (v) => ({
    method: "POST",
    path: `/v1/appointments/${v === "own" ? appointmentP : appointmentQ}/cancel`,
  }),
  "GET /v1/patients/{id}/appointments": (v) => ({
    method: "GET",
    path: `/v1/patients/${v === "own" ? P : Q}/appointments`,
  }),
  "POST /v1/prescriptions": (v) => ({
    method: "POST",
    path: "/v1/prescriptions",
    body: {
      appointmentId: v === "own" ? appointmentP : appointmentQ,
      medicationCode: "amoxicillin",
      quantity: 1,
      dosage,
    },
  }),
  "GET /v1/prescriptions/{id}": (v) => ({
    method: "GET",
    path: `/v1/prescriptions/${v === "own" ? prescriptionP : prescriptionQ}`,
  }),
  "GET /v1/appointments/{id}/prescriptions": (v) => ({
    method: "GET",
    path: `/v1/appointments/${v === "own" ? appointmentP : appointmentQ}/prescriptions`,
  }),
  "POST /v1/prescriptions/{id}/cancel": (v) => ({
    method: "POST",
    path: `/v1/prescriptions/${v === "own" ? prescriptionP : prescriptionQ}/cancel`,
  }),
  "POST /v1/inventory/{clinicId}/stock/{medicationCode}/restock": (v) => ({
    method: "POST",
    path: `/v1/inventory/${v === "own" ? A : B}/stock/amoxicillin/restock`,
    body: { quantity: 1, lot: "M", expiresOn: "2099-01-01" },
  }),
  "POST /v1/inventory/{clinicId}/stock/{medicationCode}/deduct": (v) => ({
    method: "POST",
    path: `/v1/inventory/${v === "own" ? A : B}/stock/amoxicillin/deduct`,
    body: { quantity: 1 },
  }),
  "POST /v1/inventory/{clinicId}/stock/{medicationCode}/reorder-level": (v) => ({
    method: "POST",
    path: `/v1/inventory/${v === "own" ? A : B}/stock/amoxicillin/reorder-level`,
    body: { level: 1 },
  }),
  "POST /v1/inventory/{clinicId}/time-zone": (v) => ({
    method: "POST",
    path: `/v1/inventory/${v === "own" ? A : B}/time-zone`,
    body: { timeZone: "UTC" },
  }),
  "POST /v1/inventory/transfers": (v) => ({
    method: "POST",
    path: "/v1/inventory/transfers",
    // Own: between two of the token's clinics; other: to a clinic it is not scoped to.
    body: { fromClinicId: A, toClinicId: v === "own" ? C : B, medicationCode: "amoxicillin", quantity: 1 },
  }),
  "GET /v1/inventory/{clinicId}/stock": (v) => ({
    method: "GET",
    path: `/v1/inventory/${v === "own" ? A : B}/stock`,
  }),
  "GET /v1/inventory/{clinicId}/stock/{medicationCode}": (v) => ({
    method: "GET",
    path: `/v1/inventory/${v === "own" ? A : B}/stock/amoxicillin`,
  }),
  "GET /v1/patients/{id}/notifications": (v) => ({
    method: "GET",
    path: `/v1/patients/${v === "own" ? P : Q}/notifications`,
  }),
  "PUT /v1/patients/{id}/contact": (v) => ({
    method: "PUT",
    path: `/v1/patients/${v === "own" ? P : Q}/contact`,
    body: { email: "someone@example.com" },
  }),
  "POST /v1/webhooks": () => ({
    method: "POST",
    path: "/v1/webhooks",
    body: { url: "https://hooks.example.com/medisync", events: ["appointment.booked"] },
  }),
  "GET /v1/webhooks": () => ({ method: "GET", path: "/v1/webhooks" }),
  "GET /v1/webhooks/{id}/deliveries": () => ({
    method: "GET",
    path: `/v1/webhooks/${randomUUID()}/deliveries`,
  }),
  "POST /v1/webhooks/{id}/deliveries/{deliveryId}/redeliver": () => ({
    method: "POST",
    path: `/v1/webhooks/${randomUUID()}/deliveries/${randomUUID()}/redeliver`,
  }),
  "GET /v1/audit": (v) => ({ method: "GET", path: `/v1/audit?patientId=${v === "own" ? P : Q}` }),
  "GET /v1/cluster": () => ({ method: "GET", path: "/v1/cluster" }),
  "GET /v1/cluster/members": () => ({ method: "GET", path: "/v1/cluster/members" }),
  "GET /v1/cluster/services": () => ({ method: "GET", path: "/v1/cluster/services" }),
  // Membership writes that change nothing even when admitted: a learner that is no replica is
  // added and then removed; promoting it is refused (behind); leadership to nobody is refused.
  "POST /v1/cluster/members": () => ({
    method: "POST",
    path: "/v1/cluster/members",
    body: { id: "matrix-x", address: "127.0.0.1:1" },
  }),
  "POST /v1/cluster/members/{id}/promote": () => ({
    method: "POST",
    path: "/v1/cluster/members/matrix-x/promote",
  }),
  "DELETE /v1/cluster/members/{id}": () => ({ method: "DELETE", path: "/v1/cluster/members/matrix-x" }),
  "POST /v1/cluster/leader": () => ({ method: "POST", path: "/v1/cluster/leader", body: { to: "nobody" } }),
};

function tomorrow(): string {
  return new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
}

function farFuture(plusMinutes = 0): string {
  return new Date(Date.UTC(2090, 0, 1, 9, plusMinutes)).toISOString();
}

/** What the policy says `role` gets on `key` for `variant`: refused (403) or let in. */
function expected(key: string, role: Role, variant: Variant): "refused" | "admitted" {
  const rule = policy[key]!;
  const grant: Grant | undefined = rule.grants[role];
  if (!grant) return "refused";
  if (grant === "any") return "admitted";
  if (variant === "own") return "admitted";
  // Another patient's or another clinic's records. A patient list filtered by the service lets a
  // clinician in and shows only the token's clinics (checked below); a booking at another
  // clinic's slot is refused by the appointment service.
  if (key === "GET /v1/patients/{id}/appointments" && grant === "clinic") return "admitted";
  return "refused";
}

async function call(c: Call, headers: Record<string, string>) {
  return http(s.base, c.method, c.path, c.body, headers);
}

beforeAll(async () => {
  s = await medicationStack("gateway_auth");
  pool = testPool(testConfig("gateway_auth"));
  A = s.clinic;
  clinicIdA = (await pool.query<{ id: string }>("SELECT id FROM clinics WHERE code = $1", [A])).rows[0]!.id;
  slotsA.push(...s.slots);
  const dates = datesFrom(tomorrow(), 3);
  const b = await makeClinic(pool, dates, 16);
  const c = await makeClinic(pool, dates, 1);
  B = b.code;
  C = c.code;
  clinicIdB = b.clinicId;
  slotsB.push(...[...b.days.values()].flat().map((x) => x.id));
  for (const clinicId of [A, B]) {
    await s.inventory.write("restock", {
      requestId: `auth-seed-${clinicId}`,
      clinicId,
      medicationCode: "amoxicillin",
      quantity: 1_000,
      lot: "S",
      expiresOn: "2099-01-01",
    });
  }
  const book = async (slotId: string, patientId: string) => {
    const r = await call({ method: "POST", path: "/v1/appointments", body: { slotId, patientId } }, {});
    expect(r.status).toBe(201);
    return r.json.id as unknown as string;
  };
  appointmentP = await book(slotsA.shift()!, P);
  appointmentQ = await book(slotsB.shift()!, Q);
  const prescribe = async (appointmentId: string, clinic: string) => {
    const r = await call(
      {
        method: "POST",
        path: "/v1/prescriptions",
        body: { appointmentId, medicationCode: "amoxicillin", quantity: 1, dosage },
      },
      await as({ role: "clinician", sub: "prescriber", clinics: [clinic] }),
    );
    expect(r.status).toBe(201);
    return r.json.id as unknown as string;
  };
  prescriptionP = await prescribe(appointmentP, A);
  prescriptionQ = await prescribe(appointmentQ, B);
}, 180_000);

afterAll(async () => {
  await pool?.end();
  await s?.close();
});

describe("who may do what (docs/security.md, generated from policy.ts)", () => {
  it("has a request for every route in the policy, and the policy a rule for every route it asks", () => {
    expect(Object.keys(calls).sort()).toEqual(Object.keys(policy).sort());
  });

  it("every route × every role × own and other patient or clinic answers as the table says", async () => {
    const wrong: string[] = [];
    // Cluster membership last: the other routes need a settled cluster.
    const keys = Object.keys(policy).sort(
      (a, b) => Number(a.includes("/cluster")) - Number(b.includes("/cluster")),
    );
    for (const key of keys) {
      for (const role of roles) {
        for (const variant of ["own", "other"] as const) {
          const want = expected(key, role, variant);
          const r = await call(calls[key]!(variant), await as(whoOf(role)));
          const broken = r.status === 401 || (r.status >= 500 && r.status !== 503);
          const got = r.status === 403 ? "refused" : broken ? `status ${r.status}` : "admitted";
          if (got !== want)
            wrong.push(`${key} as ${role} (${variant}): ${r.status} ${JSON.stringify(r.json).slice(0, 160)}`);
          if (r.status === 403) {
            expect(r.headers.get("content-type")).toContain("application/problem+json");
            expect(r.json.code).toBe("FORBIDDEN");
            // It names what is missing: the role, the patient or the clinic.
            expect(["role", "patientId", "clinics", "slotId"]).toContain(r.json.field);
          }
          if (key === "GET /v1/patients/{id}/appointments" && role === "clinician" && r.status === 200) {
            // The clinician of A sees Q's appointments at A only: Q's one appointment is at B.
            const items = r.json.items as unknown as { clinicCode?: string; clinicId: string }[];
            expect(items.every((i) => i.clinicId !== clinicIdB)).toBe(true);
          }
        }
      }
    }
    expect(wrong).toEqual([]);
  }, 240_000);

  it("every route refuses a missing, expired, wrong-audience, HS256, alg:none or unknown-key token with 401 and a challenge", async () => {
    const { privateJwk } = testKeys();
    const claims = {
      role: "admin" as const,
      sub: "admin-test",
      issuer: TEST_ISSUER,
      audience: TEST_AUDIENCE,
    };
    const stranger = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({
      format: "jwk",
    }) as JWK;
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const nowS = Math.floor(Date.now() / 1_000);
    const payload = {
      sub: "admin-test",
      role: "admin",
      iss: TEST_ISSUER,
      aud: TEST_AUDIENCE,
      iat: nowS,
      exp: nowS + 600,
    };
    const bad: Record<string, string | undefined> = {
      "no token": undefined,
      expired: await mintToken(privateJwk, { ...claims, ttlS: -120 }),
      "wrong audience": await mintToken(privateJwk, { ...claims, audience: "someone-else", ttlS: 600 }),
      "wrong issuer": await mintToken(privateJwk, { ...claims, issuer: "someone-else", ttlS: 600 }),
      // Algorithm confusion: HMAC with the public key's own bytes as the secret.
      HS256: await new SignJWT(payload)
        .setProtectedHeader({ alg: "HS256", kid: privateJwk.kid! })
        .sign(
          new TextEncoder().encode(
            JSON.stringify({ kty: privateJwk.kty, crv: privateJwk.crv, x: privateJwk.x, y: privateJwk.y }),
          ),
        ),
      "alg none": `${b64({ alg: "none", typ: "JWT" })}.${b64(payload)}.`,
      "unknown key": await mintToken(
        { ...stranger, kid: randomUUID(), alg: "ES256" },
        { ...claims, ttlS: 600 },
      ),
    };
    const wrong: string[] = [];
    for (const key of Object.keys(policy)) {
      for (const [name, token] of Object.entries(bad)) {
        const r = await call(calls[key]!("own"), {
          authorization: token === undefined ? "" : `Bearer ${token}`,
        });
        if (r.status !== 401) wrong.push(`${key} with ${name}: ${r.status}`);
        else if (!/^Bearer realm="medisync"/.test(r.headers.get("www-authenticate") ?? ""))
          wrong.push(`${key} with ${name}: no WWW-Authenticate`);
        else if (r.headers.get("content-type")?.includes("application/problem+json") !== true)
          wrong.push(`${key} with ${name}: not problem+json`);
      }
    }
    expect(wrong).toEqual([]);
  }, 120_000);

  it("patient A cannot read, cancel or book as patient B; a pharmacist of X cannot deduct at Y; no token books nothing", async () => {
    const asP = await as({ role: "patient", sub: P });
    // A fresh appointment of Q's (the matrix's admin cancelled the first).
    const fresh = await call(
      { method: "POST", path: "/v1/appointments", body: { slotId: slotsB.shift(), patientId: Q } },
      {},
    );
    expect(fresh.status).toBe(201);
    const ofQ = fresh.json.id as unknown as string;
    expect((await call({ method: "GET", path: `/v1/appointments/${ofQ}` }, asP)).status).toBe(403);
    expect((await call({ method: "POST", path: `/v1/appointments/${ofQ}/cancel` }, asP)).status).toBe(403);
    const slot = slotsB.shift()!;
    const asQ = await call(
      { method: "POST", path: "/v1/appointments", body: { slotId: slot, patientId: Q } },
      asP,
    );
    expect(asQ.status).toBe(403);
    expect(asQ.json.field).toBe("patientId");
    // Q's appointment is still booked, and the slot P tried is still free.
    const q = await call(
      { method: "GET", path: `/v1/appointments/${ofQ}` },
      await as({ role: "patient", sub: Q }),
    );
    expect(q.status).toBe(200);
    expect(q.json.status).toBe("booked");
    // A patient's own booking needs no patientId: the token names the patient.
    const mine = await call({ method: "POST", path: "/v1/appointments", body: { slotId: slot } }, asP);
    expect(mine.status).toBe(201);
    expect(mine.json.patientId).toBe(P);

    const pharmacistA = await as({ role: "pharmacist", sub: "ph-a", clinics: [A] });
    const before = (await s.inventory.getStock(B, "amoxicillin", false)).item!.quantity;
    const deduct = await call(
      { method: "POST", path: `/v1/inventory/${B}/stock/amoxicillin/deduct`, body: { quantity: 1 } },
      pharmacistA,
    );
    expect(deduct.status).toBe(403);
    expect(deduct.json.field).toBe("clinics");
    expect((await s.inventory.getStock(B, "amoxicillin", false)).item!.quantity).toBe(before);
    const own = await call(
      { method: "POST", path: `/v1/inventory/${A}/stock/amoxicillin/deduct`, body: { quantity: 1 } },
      pharmacistA,
    );
    expect(own.status).toBe(200);

    const anonymous = await call(
      { method: "POST", path: "/v1/appointments", body: { slotId: slotsA.shift(), patientId: P } },
      { authorization: "" },
    );
    expect(anonymous.status).toBe(401);
    expect(anonymous.json.code).toBe("UNAUTHENTICATED");
  }, 60_000);

  it("every booking, cancellation, prescription and stock write leaves one audit row, and so does reading an appointment", async () => {
    const audit = new (await import("pg")).default.Pool({
      connectionString: testConfig("gateway_auth").AUDIT_DATABASE_URL,
      max: 1,
    });
    const rowsOf = async (requestId: string) => {
      // The row is written before the answer; its outcome row just after (audit.ts): a read straight
      // from the database, unlike GET /v1/audit, may come between the two, so it waits for the outcome.
      let rows: {
        actor_role: string;
        action: string;
        resource_type: string;
        patient_id: string | null;
        outcome: number | null;
        clinic: string | null;
        resource_id: string | null;
      }[] = [];
      await until(
        async () => {
          rows = (
            await audit.query<{
              actor_role: string;
              action: string;
              resource_type: string;
              patient_id: string | null;
              outcome: number | null;
              clinic: string | null;
              resource_id: string | null;
            }>(
              "SELECT actor_role, action, resource_type, patient_id, outcome, clinic, resource_id FROM audit_trail WHERE request_id = $1",
              [requestId],
            )
          ).rows;
          return rows.every((r) => r.outcome !== null);
        },
        `the outcome of ${requestId}`,
        10_000,
      );
      return rows;
    };
    const id = () => `audit-${randomUUID()}`;
    const asP = await as({ role: "patient", sub: P });
    try {
      const booked = id();
      const b = await call(
        { method: "POST", path: "/v1/appointments", body: { slotId: slotsA.shift() } },
        { ...asP, "x-request-id": booked },
      );
      expect(b.status).toBe(201);
      expect(await rowsOf(booked)).toEqual([
        {
          actor_role: "patient",
          action: "C",
          resource_type: "Appointment",
          patient_id: P,
          outcome: 201,
          resource_id: b.json.id,
          clinic: null,
        },
      ]);
      const read = id();
      expect(
        (
          await call(
            { method: "GET", path: `/v1/appointments/${b.json.id}` },
            { ...asP, "x-request-id": read },
          )
        ).status,
      ).toBe(200);
      expect(await rowsOf(read)).toEqual([
        {
          actor_role: "patient",
          action: "R",
          resource_type: "Appointment",
          patient_id: P,
          outcome: 200,
          resource_id: b.json.id,
          clinic: A,
        },
      ]);
      const prescribed = id();
      const clinician = await as({ role: "clinician", sub: "doc", clinics: [A] });
      const pr = await call(
        {
          method: "POST",
          path: "/v1/prescriptions",
          body: { appointmentId: b.json.id, medicationCode: "amoxicillin", quantity: 1, dosage },
        },
        { ...clinician, "x-request-id": prescribed },
      );
      expect(pr.status).toBe(201);
      expect(await rowsOf(prescribed)).toEqual([
        {
          actor_role: "clinician",
          action: "C",
          resource_type: "MedicationRequest",
          patient_id: P,
          outcome: 201,
          resource_id: pr.json.id,
          clinic: A,
        },
      ]);
      const cancelled = id();
      expect(
        (
          await call(
            { method: "POST", path: `/v1/appointments/${b.json.id}/cancel` },
            { ...asP, "x-request-id": cancelled },
          )
        ).status,
      ).toBe(200);
      expect(await rowsOf(cancelled)).toEqual([
        {
          actor_role: "patient",
          action: "U",
          resource_type: "Appointment",
          patient_id: P,
          outcome: 200,
          resource_id: b.json.id,
          clinic: A,
        },
      ]);
      const pharmacist = await as({ role: "pharmacist", sub: "ph", clinics: [A] });
      for (const [path, body] of [
        [`/v1/inventory/${A}/stock/amoxicillin/restock`, { quantity: 2, lot: "AU", expiresOn: "2099-01-01" }],
        [`/v1/inventory/${A}/stock/amoxicillin/deduct`, { quantity: 1 }],
      ] as const) {
        const write = id();
        expect(
          (await call({ method: "POST", path, body }, { ...pharmacist, "x-request-id": write })).status,
        ).toBe(200);
        expect(await rowsOf(write)).toEqual([
          {
            actor_role: "pharmacist",
            action: "U",
            resource_type: "InventoryItem",
            patient_id: null,
            outcome: 200,
            resource_id: "amoxicillin",
            clinic: A,
          },
        ]);
      }
      // A refused act is on record too, with its status and who tried.
      const refused = id();
      expect(
        (
          await call(
            { method: "GET", path: `/v1/appointments/${appointmentQ}` },
            { ...asP, "x-request-id": refused },
          )
        ).status,
      ).toBe(403);
      expect((await rowsOf(refused)).map((r) => [r.actor_role, r.outcome, r.resource_id])).toEqual([
        ["patient", 403, appointmentQ],
      ]);
    } finally {
      await audit.end();
    }
  }, 60_000);

  it("an admitted request's audit row is written while its act runs, and its outcome once it is done", async () => {
    const audit = new (await import("pg")).default.Pool({
      connectionString: testConfig("gateway_auth").AUDIT_DATABASE_URL,
      max: 1,
    });
    const rowOf = async (requestId: string) =>
      (
        await audit.query<{ outcome: number | null; resource_id: string | null }>(
          "SELECT outcome, resource_id FROM audit_events WHERE request_id = $1",
          [requestId],
        )
      ).rows;
    // The booking's INSERT waits behind this lock: its act cannot finish until the test lets it.
    const blocker = await pool.connect();
    const requestId = `ahead-${randomUUID()}`;
    let answered = false;
    try {
      await blocker.query("BEGIN");
      await blocker.query("LOCK TABLE appointments IN EXCLUSIVE MODE");
      const booking = call(
        { method: "POST", path: "/v1/appointments", body: { slotId: slotsA.shift() } },
        { ...(await as({ role: "patient", sub: P })), "x-request-id": requestId },
      ).finally(() => {
        answered = true;
      });
      let rows: Awaited<ReturnType<typeof rowOf>> = [];
      await until(
        async () => {
          rows = await rowOf(requestId);
          return rows.length > 0;
        },
        "the attempt's row",
        10_000,
      );
      // In the trail while the act is still held: who tried what is known before how it ended.
      expect(rows).toEqual([{ outcome: null, resource_id: null }]);
      expect(answered).toBe(false);
      await blocker.query("COMMIT");
      const b = await booking;
      expect(b.status).toBe(201);
      // GET /v1/audit waits for what its gateway queued: the outcome and the id the create made.
      const page = await call({ method: "GET", path: `/v1/audit?patientId=${P}&limit=5` }, await as(admin));
      const item = (page.json.items as { requestId: string; outcome: number; entity: { id: string } }[]).find(
        (i) => i.requestId === requestId,
      );
      expect(item).toMatchObject({ outcome: 201, entity: { id: b.json.id } });
    } finally {
      await blocker.query("ROLLBACK").catch(() => undefined);
      blocker.release();
      await audit.end();
    }
  }, 60_000);

  it("1,000 requests in a minute from one patient's token: 429 with Retry-After after the limit; another patient is unaffected", async () => {
    const busy = await as({ role: "patient", sub: randomUUID() });
    const statuses: number[] = [];
    let refusal: Awaited<ReturnType<typeof call>> | undefined;
    for (let i = 0; i < 1_000; i++) {
      const r = await call({ method: "GET", path: "/v1/clinics" }, busy);
      statuses.push(r.status);
      if (r.status === 429) refusal ??= r;
    }
    const limit = 600; // RATE_LIMIT_PATIENT_PER_MINUTE's default
    // The requests whose status is not the one expected at their place, if any: a readable failure.
    const off = statuses.map((x, i) => (x !== (i < limit ? 200 : 429) ? `${i}:${x}` : "")).filter(Boolean);
    expect(off.slice(0, 20)).toEqual([]);
    expect(statuses.slice(0, limit).every((x) => x === 200)).toBe(true);
    expect(statuses.slice(limit).every((x) => x === 429)).toBe(true);
    expect(refusal!.json.code).toBe("RATE_LIMITED");
    expect(Number(refusal!.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(refusal!.headers.get("ratelimit")).toMatch(/r=0/);
    const other = await call(
      { method: "GET", path: "/v1/clinics" },
      await as({ role: "patient", sub: randomUUID() }),
    );
    expect(other.status).toBe(200);
  }, 120_000);
});
