// GET /v1/audit through a Hono app of its own (the route module alone, behind the gateway's
// pipeline and policy, with the audit log as the pipeline's sink), against the real PostgreSQL: a
// page in the AuditEvent shape, a cursor followed, one patient's rows, bad input refused as 400
// naming the field, and reading the trail is itself a row of it.
import { randomUUID } from "node:crypto";
import { OpenAPIHono } from "@hono/zod-openapi";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PG_BASE, testName } from "../../test/support/services.ts";
import { loadConfig } from "../shared/config.ts";
import { createLogger } from "../shared/logger.ts";
import type { Principal } from "../shared/principal.ts";
import type { GatewayEnv } from "./app.ts";
import { type AuditLog, openAuditLog } from "./audit.ts";
import { addAuditRoutes } from "./audit-routes.ts";
import { Guard } from "./auth/guard.ts";
import { unauthenticated } from "./auth/tokens.ts";
import { failureOf, problemResponse } from "./problems.ts";
import { usePipeline } from "./route.ts";

const log = createLogger({ service: "gateway", level: "silent" });
const dbName = `medisync_test_${testName("audit_routes")}`;
const cfg = loadConfig({ AUDIT_DATABASE_URL: `${PG_BASE}/${dbName}`, LOG_LEVEL: "silent" });

let audit: AuditLog;
let app: OpenAPIHono<GatewayEnv>;
const patient = randomUUID();
const admin: Principal = { sub: "staff-1", role: "admin", clinics: [] };
const patientPrincipal: Principal = { sub: patient, role: "patient", clinics: [] };
/** Tokens are the guard's to verify (auth/tokens.ts, tested there); here a token is who it names. */
const tokens = {
  verify: async (authorization: string | undefined) => {
    if (authorization === "Bearer admin") return admin;
    if (authorization === "Bearer patient") return patientPrincipal;
    throw unauthenticated("no token");
  },
};
let requests = 0;

beforeAll(async () => {
  const root = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
  await root.connect();
  await root.query(`DROP DATABASE IF EXISTS "${dbName}" WITH (FORCE)`);
  await root.end();
  audit = await openAuditLog(cfg, log);
  app = new OpenAPIHono<GatewayEnv>();
  app.use(async (c, next) => {
    c.set("requestId", `route-${++requests}`);
    await next();
  });
  const noLookups = () => Promise.reject(new Error("GET /v1/audit names no record"));
  guard = new Guard({
    tokens,
    clinicCodeOf: () => undefined,
    lookups: { appointment: noLookups, prescription: noLookups },
  });
  usePipeline(app, { guard, audit });
  addAuditRoutes(app, audit);
  app.onError((err, c) => problemResponse(c, failureOf(err, log, undefined)));
  for (let i = 0; i < 5; i++) {
    await audit.record({
      actor: i === 0 ? undefined : { sub: patient, role: "patient", clinics: [] },
      action: i === 0 ? "C" : "R",
      resourceType: "Appointment",
      resourceId: `appt-${i}`,
      patientId: i === 4 ? randomUUID() : patient,
      clinic: "harbour",
      outcome: i === 0 ? 401 : 200,
      requestId: `req-${i}`,
      source: "::1",
      route: i === 0 ? "POST /v1/appointments" : "GET /v1/appointments/{id}",
    });
  }
});

let guard: Guard;

afterAll(async () => {
  await audit?.close();
});

const get = (query: string, token = "admin") =>
  app.request(`/v1/audit${query}`, { headers: { authorization: `Bearer ${token}` } });

describe("GET /v1/audit", () => {
  it("answers a page of AuditEvents newest first, and its cursor leads to the rest", async () => {
    // Run first: no read of the trail has been recorded yet but this one, whose row is written
    // before it reads (ahead of the act, as every admitted request's), its outcome still to come.
    const res = await get("?limit=4");
    expect(res.status).toBe(200);
    const body = (await res.json()) as { items: Record<string, unknown>[]; nextCursor: string | null };
    expect(body.items.map((i) => i.requestId)).toEqual(["route-1", "req-4", "req-3", "req-2"]);
    expect(body.items[0]).toMatchObject({
      outcome: null,
      route: "GET /v1/audit",
      entity: { type: "AuditEvent" },
    });
    body.items.shift();
    expect(body.items[1]).toMatchObject({
      action: "R",
      outcome: 200,
      agent: { who: patient, role: "patient" },
      entity: { type: "Appointment", id: "appt-3", patientId: patient, clinic: "harbour" },
      source: "::1",
      requestId: "req-3",
      route: "GET /v1/appointments/{id}",
    });
    expect(typeof body.items[1]!.recorded).toBe("string");
    expect(typeof body.nextCursor).toBe("string");

    const next = await get(`?limit=4&cursor=${body.nextCursor}`);
    expect(next.status).toBe(200);
    const rest = (await next.json()) as { items: Record<string, unknown>[]; nextCursor: string | null };
    // The cursor is below every row of the first page: the read recorded since is newer, not here.
    expect(rest.items.map((i) => i.requestId)).toEqual(["req-1", "req-0"]);
    expect(rest.nextCursor).toBeNull();
    expect(rest.items[1]).toMatchObject({ agent: { who: null, role: null }, outcome: 401, action: "C" });
  });

  it("filters by patientId", async () => {
    const res = await get(`?patientId=${patient}`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { items: { requestId: string }[] };
    expect(body.items.map((i) => i.requestId)).toEqual(["req-3", "req-2", "req-1", "req-0"]);
  });

  it("refuses a bad cursor, limit, patientId or an unknown parameter with 400 naming it", async () => {
    const bad = Buffer.from("a1:0").toString("base64url");
    for (const [query, field] of [
      [`?cursor=${bad}`, "cursor"],
      ["?cursor=%21%21", "cursor"],
      ["?limit=0", "limit"],
      ["?limit=101", "limit"],
      ["?patientId=jane", "patientId"],
      ["?name=jane", "name"],
    ] as const) {
      const res = await get(query);
      expect(res.status, query).toBe(400);
      expect(res.headers.get("content-type")).toContain("application/problem+json");
      expect(((await res.json()) as { field: string }).field, query).toBe(field);
    }
  });

  it("records every read of the trail as an AuditEvent row of its own, and lets only admins read", async () => {
    const res = await get("?limit=1");
    expect(res.status).toBe(200);
    const rid = res.headers.get("x-request-id") ?? `route-${requests}`;
    const [row] = (await audit.list({ limit: 1 })).items;
    expect(row).toMatchObject({
      actor: { sub: "staff-1", role: "admin" },
      action: "R",
      resourceType: "AuditEvent",
      outcome: 200,
      requestId: rid,
      route: "GET /v1/audit",
    });
    expect((await get("", "patient")).status).toBe(403);
    expect((await get("", "none")).status).toBe(401);
    // Refusals are rows too, with their status.
    const refused = (await audit.list({ limit: 2 })).items.map((i) => [i.outcome, i.actor?.role ?? null]);
    expect(refused).toEqual([
      [401, null],
      [403, "patient"],
    ]);
  });

  it("an act whose row cannot even be queued is not done: a closed log answers 503 before the handler runs", async () => {
    const closed = await openAuditLog(cfg, log);
    await closed.close();
    let reads = 0;
    const read = closed.list.bind(closed);
    closed.list = (q) => {
      reads++;
      return read(q);
    };
    const app2 = new OpenAPIHono<GatewayEnv>();
    app2.use(async (c, next) => {
      c.set("requestId", "closed-1");
      await next();
    });
    usePipeline(app2, { guard, audit: closed });
    addAuditRoutes(app2, closed);
    app2.onError((err, c) => problemResponse(c, failureOf(err, log, undefined)));
    const res = await app2.request("/v1/audit", { headers: { authorization: "Bearer admin" } });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { detail: string }).detail).toContain("closed");
    expect(reads).toBe(0);
  });

  it("is in the OpenAPI document with its query parameters", () => {
    const doc = app.getOpenAPI31Document({ openapi: "3.1.0", info: { title: "t", version: "1" } });
    const op = doc.paths?.["/v1/audit"]?.get;
    expect(op?.parameters?.map((p) => ("name" in p ? p.name : "")).sort()).toEqual([
      "cursor",
      "limit",
      "patientId",
    ]);
  });
});
