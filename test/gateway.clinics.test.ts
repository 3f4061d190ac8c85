// One clinic identity (issue 12), against a real appointment instance, a real inventory replica and a
// real gateway: every clinic has a code (made from its name for rows older than the code, given by
// the demo seed), GET /v1/clinics shows it, appointments carry it, and an inventory route naming a
// code that is no clinic is 404 clinic-not-found — on the Hono routes and the direct write lane
// alike — or 503 when the gateway cannot learn the clinics, never a false 404. Also npm start's
// stock seed: every clinic's zone from the clinics table, demo stock once per clinic without any.
import { randomUUID } from "node:crypto";
import fc from "fast-check";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate } from "../src/appointment/migrate.ts";
import { migrations } from "../src/appointment/migrations.ts";
import { clinicCodePattern, insertClinic } from "../src/appointment/repo.ts";
import { seedDemo } from "../src/appointment/seed.ts";
import { demoMedications, seedStock } from "../src/cli/seed-stock.ts";
import { composePeers, createApp } from "../src/gateway/app.ts";
import { ClinicDirectory } from "../src/gateway/clinics.ts";
import { addInventoryRoutes } from "../src/gateway/inventory-routes.ts";
import { runGateway } from "../src/gateway/server.ts";
import { localDate } from "../src/inventory/state-machine.ts";
import { AppointmentClient } from "../src/shared/appointment-client.ts";
import { AppError } from "../src/shared/errors.ts";
import { callUnary } from "../src/shared/grpc.ts";
import type { InventoryClient } from "../src/shared/inventory-client.ts";
import { createLogger } from "../src/shared/logger.ts";
import { createPool, ensureDatabase } from "../src/shared/pg.ts";
import { inventoryLimits } from "../src/shared/validation.ts";
import { admin, as, testPipeline, tokenFor } from "./support/auth.ts";
import { http, startGateway, type TestGateway } from "./support/gateway.ts";
import { InventoryCluster } from "./support/inventory-cluster.ts";
import {
  captureLogger,
  type Instance,
  resetState,
  startInstance,
  stopInstance,
  testConfig,
  testPool,
} from "./support/services.ts";

const silent = createLogger({ service: "test", level: "silent" });
let cluster: InventoryCluster;
let cfg: ReturnType<typeof testConfig>;
let a: Instance;
/** Set once the last test has stopped the appointment instance itself. */
let aStopped = false;
let gw: TestGateway;
let pool: pg.Pool;
let inventory: InventoryClient;

beforeAll(async () => {
  cluster = new InventoryCluster({ name: "gw_clinics", replicas: 1 });
  cfg = testConfig("gw_clinics", { REDIS_KEY_PREFIX: cluster.prefix });
  await resetState(cfg);
  await cluster.init();
  await cluster.startAll();
  await cluster.waitFormed();
  cfg = { ...cfg, INVENTORY_PEERS: cluster.peers };
  a = await startInstance(cfg);
  pool = testPool(cfg);
  await seedDemo(pool, silent);
  gw = await startGateway(cfg, [a]);
  inventory = cluster.client();
}, 120_000);

afterAll(async () => {
  inventory?.close();
  await gw?.close();
  await pool?.end();
  if (a && !aStopped) await stopInstance(a);
  await cluster?.stop();
}, 60_000);

const problemType = (slug: string) => `https://medisync.dev/problems/${slug}`;

/**
 * A request naming a clinic made moments ago: the gateway reads its clinic list again on a miss at
 * most once a second, so the first tries may still be 404.
 */
async function onceKnown(method: string, path: string, body?: unknown) {
  const t0 = Date.now();
  for (;;) {
    const r = await http(gw.base, method, path, body);
    if (r.status !== 404 || r.json.code !== "CLINIC_NOT_FOUND" || Date.now() - t0 > 3_000) return r;
    await new Promise((res) => setTimeout(res, 100));
  }
}

describe("one clinic identity", { timeout: 120_000 }, () => {
  it("GET /v1/clinics shows each clinic's code, and the OpenAPI document describes it", async () => {
    const r = await http(gw.base, "GET", "/v1/clinics");
    expect(r.status).toBe(200);
    expect(r.json.nextCursor).toBeNull();
    const clinics = r.json.items as unknown as { id: string; code: string; name: string; timeZone: string }[];
    expect(clinics.map((c) => [c.name, c.code, c.timeZone])).toEqual([
      ["Harbour Clinic", "harbour", "Europe/Berlin"],
      ["Hillside Clinic", "hillside", "Asia/Tokyo"],
      ["Riverside Clinic", "riverside", "America/New_York"],
    ]);
    const doc = await http(gw.base, "GET", "/openapi.json");
    const schemas = (
      doc.json as unknown as { components: { schemas: Record<string, { required: string[] }> } }
    ).components.schemas;
    expect(schemas.Clinic!.required).toContain("code");
  });

  it("an unknown clinic is 404 clinic-not-found naming the field on every inventory route, lane and Hono alike; a known one works", async () => {
    // The gateway serves POSTs on its direct lane; the same routes on an app without a Node server
    // (app.request) take the Hono path. Each must refuse the same way, and write nothing.
    const appointments = new AppointmentClient({
      addrs: [`127.0.0.1:${a.service.grpcPort}`],
      deadlineMs: 1_000,
    });
    const clinics = new ClinicDirectory({
      list: async (rid) => (await appointments.listClinics(rid)).clinics,
      log: silent,
    });
    const pipeline = testPipeline({ clinics });
    const app = createApp({ pipeline, log: silent, bodyBytesMax: 64 * 1024, ready: async () => true });
    composePeers(app, pipeline, [(x) => addInventoryRoutes(x, { inventory, clinics })]);
    const json = {
      "content-type": "application/json",
      "X-Request-Id": "clinic-check",
      authorization: `Bearer ${await tokenFor(admin)}`,
    };
    const key = (k: string) => ({ ...json, "Idempotency-Key": k });
    const item = "/v1/inventory/nowhere/stock/amoxicillin-500mg";
    const transfer = (from: string, to: string) =>
      JSON.stringify({
        fromClinicId: from,
        toClinicId: to,
        medicationCode: "amoxicillin-500mg",
        quantity: 1,
      });
    const cases: {
      method: string;
      path: string;
      body?: string;
      headers: Record<string, string>;
      field: string;
    }[] = [
      { method: "GET", path: "/v1/inventory/nowhere/stock", headers: json, field: "clinicId" },
      { method: "GET", path: item, headers: json, field: "clinicId" },
      { method: "GET", path: `${item}?consistency=stale`, headers: json, field: "clinicId" },
      {
        method: "POST",
        path: `${item}/restock`,
        body: '{"quantity":5,"lot":"L1","expiresOn":"2031-01-01"}',
        headers: key("nw-r"),
        field: "clinicId",
      },
      {
        method: "POST",
        path: `${item}/deduct`,
        body: '{"quantity":1}',
        headers: key("nw-d"),
        field: "clinicId",
      },
      { method: "POST", path: `${item}/deduct`, body: '{"quantity":1}', headers: json, field: "clinicId" },
      {
        method: "POST",
        path: `${item}/reorder-level`,
        body: '{"level":1}',
        headers: key("nw-l"),
        field: "clinicId",
      },
      {
        method: "POST",
        path: "/v1/inventory/nowhere/time-zone",
        body: '{"timeZone":"UTC"}',
        headers: key("nw-z"),
        field: "clinicId",
      },
      {
        method: "POST",
        path: "/v1/inventory/transfers",
        body: transfer("nowhere", "harbour"),
        headers: key("nw-t1"),
        field: "fromClinicId",
      },
      {
        method: "POST",
        path: "/v1/inventory/transfers",
        body: transfer("harbour", "nowhere"),
        headers: key("nw-t2"),
        field: "toClinicId",
      },
    ];
    const madeUp = /gw-[0-9a-f-]{36}/g;
    for (const c of cases) {
      const init = {
        method: c.method,
        headers: c.headers,
        ...(c.body !== undefined ? { body: c.body } : {}),
      };
      const viaGateway = await fetch(gw.base + c.path, init);
      const length: Record<string, string> =
        c.body === undefined ? {} : { "content-length": String(Buffer.byteLength(c.body)) };
      const viaHono = await app.request(c.path, { ...init, headers: { ...c.headers, ...length } });
      for (const [path, res] of [
        ["gateway", viaGateway],
        ["hono", viaHono],
      ] as const) {
        const label = `${path} ${c.method} ${c.path} ${c.body ?? ""}`;
        expect(res.status, label).toBe(404);
        expect(res.headers.get("content-type"), label).toBe("application/problem+json");
      }
      const lane = (await viaGateway.text()).replace(madeUp, "gw-*");
      const hono = (await viaHono.text()).replace(madeUp, "gw-*");
      expect(lane, c.path).toBe(hono);
      expect(JSON.parse(lane), c.path).toMatchObject({
        type: problemType("clinic-not-found"),
        status: 404,
        code: "CLINIC_NOT_FOUND",
        field: c.field,
      });
    }
    // Nothing reached the inventory for the clinic that is not one.
    expect((await inventory.listStock("nowhere")).items).toEqual([]);

    // A known clinic: written on the lane, read on both paths.
    const ok = await http(
      gw.base,
      "POST",
      "/v1/inventory/harbour/stock/amoxicillin-500mg/restock",
      { quantity: 7, lot: "H1", expiresOn: "2031-01-01" },
      { "Idempotency-Key": "harbour-r" },
    );
    expect(ok.status).toBe(200);
    expect((await http(gw.base, "GET", "/v1/inventory/harbour/stock/amoxicillin-500mg")).json.quantity).toBe(
      7,
    );
    const viaHono = await app.request("/v1/inventory/harbour/stock", { headers: await as(admin) });
    expect(viaHono.status).toBe(200);
    expect(
      ((await viaHono.json()) as { items: { quantity: number }[] }).items.map((l) => l.quantity),
    ).toEqual([7]);
    const moved = await http(gw.base, "POST", "/v1/inventory/transfers", {
      fromClinicId: "harbour",
      toClinicId: "riverside",
      medicationCode: "amoxicillin-500mg",
      quantity: 2,
    });
    expect(moved.status).toBe(200);
    clinics.stop();
    appointments.close();
  });

  it("a clinic's id where its code belongs is 404 saying the code to use", async () => {
    const list = await http(gw.base, "GET", "/v1/clinics");
    const harbour = (list.json.items as unknown as { id: string; code: string }[]).find(
      (c) => c.code === "harbour",
    )!;
    const r = await http(gw.base, "GET", `/v1/inventory/${harbour.id}/stock`);
    expect(r.status).toBe(404);
    expect(r.json).toMatchObject({ code: "CLINIC_NOT_FOUND", field: "clinicId" });
    expect(r.json.detail).toContain('"harbour"');
  });

  it("a clinic added after the gateway started is found by the next miss, a second later at most", async () => {
    const seaside = await insertClinic(pool, { id: randomUUID(), name: "Seaside Clinic", timeZone: "UTC" });
    expect(seaside.code).toBe("seaside");
    const t0 = Date.now();
    const r = await onceKnown("GET", "/v1/inventory/seaside/stock");
    expect(r.status).toBe(200);
    expect(Date.now() - t0).toBeLessThan(2_500);
  });

  it("an appointment carries its clinic's code (what the medication service deducts stock at)", async () => {
    const { clinics } = await callUnary(a.client.listClinics.bind(a.client), {}, 2_000);
    const hillside = clinics.find((c) => c.code === "hillside")!;
    const today = localDate(Date.now(), hillside.timeZone);
    const tomorrow = new Date(Date.parse(`${today}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10);
    const day = await callUnary(
      a.client.listSlots.bind(a.client),
      { clinicId: hillside.id, date: tomorrow, practitionerId: "" },
      2_000,
    );
    const booked = await callUnary(
      a.client.book.bind(a.client),
      { slotId: day.slots[0]!.id, patientId: randomUUID(), idempotencyKey: "clinic-code-visit" },
      2_000,
    );
    expect(booked.appointment).toMatchObject({ clinicId: hillside.id, clinicCode: "hillside" });
    const got = await callUnary(
      a.client.get.bind(a.client),
      { appointmentId: booked.appointment!.id },
      2_000,
    );
    expect(got.appointment?.clinicCode).toBe("hillside");
  });

  it("npm start's seed sets every clinic's zone from the clinics table and stocks, once, the clinics without stock", async () => {
    // A zone whose calendar differs from UTC's right now (UTC+14 after 10:00 UTC, UTC-12 before
    // 12:00), so a lot's fate tells whether the seed set it: unset, the clinic keeps UTC.
    const hour = new Date().getUTCHours();
    const timeZone = hour >= 11 ? "Etc/GMT-14" : "Etc/GMT+12";
    const probe = await insertClinic(pool, { id: randomUUID(), name: "Line Islands Clinic", timeZone });
    expect(probe.code).toBe("line-islands");
    // What the supervisor hands over: its children, of which the gateway's env names the services.
    const children = [
      {
        spec: {
          name: "gateway",
          command: "gateway" as const,
          env: {
            APPOINTMENT_ADDRS: `127.0.0.1:${a.service.grpcPort}`,
            INVENTORY_PEERS: cluster.peers.map((p) => `${p.id}=${p.address}`).join(","),
          },
        },
      },
    ];
    const { log, lines } = captureLogger("supervisor");
    await seedStock(cfg, children, log);
    const seeded = lines.find((l) => l.event === "inventory_seeded");
    expect(seeded, JSON.stringify(lines)).toBeDefined();
    // harbour had stock, riverside got some by the transfer: neither is seeded.
    expect((seeded!.stockSeeded as string[]).sort()).toEqual(["hillside", "line-islands", "seaside"]);
    expect((seeded!.clinics as string[]).sort()).toEqual([
      "harbour",
      "hillside",
      "line-islands",
      "riverside",
      "seaside",
    ]);
    const today = new Date().toISOString().slice(0, 10);
    const hill = await http(gw.base, "GET", "/v1/inventory/hillside/stock");
    expect(hill.json.nextCursor).toBeNull();
    const lines1 = hill.json.items as unknown as {
      medicationCode: string;
      quantity: number;
      lots: { lot: string; expiresOn: string }[];
    }[];
    expect(lines1.map((l) => l.medicationCode).sort()).toEqual([...demoMedications].sort());
    for (const l of lines1) {
      expect(l.lots.map((x) => x.lot)).toEqual(["demo-1", "demo-2"]);
      expect(l.lots.every((x) => x.expiresOn > today)).toBe(true);
    }
    expect((await http(gw.base, "GET", "/v1/inventory/harbour/stock")).json.items).toHaveLength(1);
    // A second start changes nothing.
    const again = captureLogger("supervisor");
    await seedStock(cfg, children, again.log);
    expect(again.lines.find((l) => l.event === "inventory_seeded")!.stockSeeded).toEqual([]);
    expect((await http(gw.base, "GET", "/v1/inventory/hillside/stock")).json).toEqual(hill.json);
    // The probe clinic's zone is set: a lot dated the last day of UTC's calendar or of the zone's.
    const zoneToday = localDate(Date.now(), timeZone);
    if (timeZone === "Etc/GMT-14") {
      // The zone is a day ahead: a lot ending today in UTC is already expired there.
      const r = await onceKnown("POST", "/v1/inventory/line-islands/stock/insulin/restock", {
        quantity: 1,
        lot: "Z",
        expiresOn: today,
      });
      expect(zoneToday > today).toBe(true);
      expect(r.status).toBe(422);
      expect(r.json.type).toBe(problemType("lot-expired"));
    } else {
      // The zone is a day behind: a lot ending today there has expired in UTC, but is usable.
      const r = await onceKnown("POST", "/v1/inventory/line-islands/stock/insulin/restock", {
        quantity: 1,
        lot: "Z",
        expiresOn: zoneToday,
      });
      expect(zoneToday < today).toBe(true);
      expect(r.status).toBe(200);
    }
  });

  it("clinic codes stay inside the inventory's code pattern; a bad or taken code is refused", async () => {
    fc.assert(
      fc.property(fc.stringMatching(clinicCodePattern), (code) => {
        expect(inventoryLimits.codePattern.test(code) && code.length <= inventoryLimits.codeMax).toBe(true);
      }),
    );
    for (const code of ["Harbour", "-x", "a_b", "x".repeat(65), ""]) {
      const err = await insertClinic(pool, { id: randomUUID(), name: "Bad", timeZone: "UTC", code }).catch(
        (e: unknown) => e,
      );
      expect(err, code).toBeInstanceOf(AppError);
      expect((err as AppError).field).toBe("code");
    }
    const taken = await insertClinic(pool, {
      id: randomUUID(),
      name: "Other",
      timeZone: "UTC",
      code: "harbour",
    }).catch((e: unknown) => e);
    expect((taken as AppError).field).toBe("code");
    // Made from a name that is taken: the next free one.
    const second = await insertClinic(pool, { id: randomUUID(), name: "Harbour Clinic", timeZone: "UTC" });
    expect(second.code).toBe("harbour-2");
  });

  it("the migration gives every clinic made before it a unique code from its name; later clinics get one too", async () => {
    const m = testConfig("clinics_migration");
    await resetState(m);
    await ensureDatabase(m.DATABASE_URL);
    const old = createPool(m.DATABASE_URL, 2);
    try {
      // The schema as it was before clinic codes (versions 1 and 2), with clinics in it.
      await old.query(
        "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
      );
      for (const v of migrations.filter((x) => x.version < 3)) {
        await old.query(v.sql);
        await old.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [v.version, v.name]);
      }
      const names = [
        "Harbour Clinic",
        "Harbour Clinic",
        "St. Mary's Clinic",
        "Clinic",
        "???",
        `${"A".repeat(80)} Clinic`,
        "Zürich Clinic",
        "Riverside clinic ",
      ];
      const ids = names.map(() => randomUUID()).sort();
      for (const [i, name] of names.entries()) {
        await old.query("INSERT INTO clinics (id, name, time_zone) VALUES ($1, $2, 'UTC')", [ids[i], name]);
      }
      // Every migration from the clinic codes (version 3) on is applied, later ones too.
      expect(await migrate(old, silent)).toBe(migrations.filter((x) => x.version >= 3).length);
      const rows = (
        await old.query<{ id: string; name: string; code: string }>("SELECT id, name, code FROM clinics")
      ).rows;
      const codeOf = (i: number) => rows.find((r) => r.id === ids[i])!.code;
      // The first of two same names (in name, id order) gets the plain code, the next "-2".
      expect([codeOf(0), codeOf(1)]).toEqual(["harbour", "harbour-2"]);
      expect(codeOf(2)).toBe("st-mary-s");
      expect([codeOf(3), codeOf(4)].sort()).toEqual(["clinic", "clinic-2"]);
      expect(codeOf(5)).toBe("a".repeat(50));
      expect(codeOf(6)).toBe("z-rich");
      expect(codeOf(7)).toBe("riverside");
      expect(new Set(rows.map((r) => r.code)).size).toBe(rows.length);
      for (const r of rows) expect(r.code).toMatch(clinicCodePattern);
      // From now on every clinic has a code: one inserted without gets one by the same rule.
      const none = await old.query<{ code: string }>(
        "INSERT INTO clinics (id, name, time_zone) VALUES ($1, 'Seaside Clinic', 'UTC') RETURNING code",
        [randomUUID()],
      );
      expect(none.rows[0]!.code).toBe("seaside");
      const missing = await old
        .query("UPDATE clinics SET code = NULL WHERE code = 'seaside'")
        .catch((e: unknown) => e);
      expect((missing as { code?: string }).code).toBe("23502");
      const later = await insertClinic(old, { id: randomUUID(), name: "Harbour Clinic", timeZone: "UTC" });
      expect(later.code).toBe("harbour-3");
      expect(await migrate(old, silent)).toBe(0);
    } finally {
      await old.end();
    }
  });

  it("with the appointment service unreachable: a gateway that never read the clinics is 503, one that did keeps its known clinics", async () => {
    const blind = await runGateway(
      { ...cfg, APPOINTMENT_ADDRS: ["127.0.0.1:1"], PORT: 0 },
      createLogger({ service: "gateway", level: "silent" }),
    );
    try {
      const base = `http://127.0.0.1:${blind.port}`;
      for (const [method, path, body] of [
        ["GET", "/v1/inventory/nowhere/stock", undefined],
        ["GET", "/v1/inventory/harbour/stock", undefined],
        ["POST", "/v1/inventory/harbour/stock/amoxicillin-500mg/deduct", { quantity: 1 }],
      ] as const) {
        const r = await http(base, method, path, body);
        expect(r.status, path).toBe(503);
        expect(r.headers.get("retry-after")).toBe("1");
        expect(r.json.type).toBe(problemType("unavailable"));
      }
    } finally {
      await blind.close();
    }
    // The running gateway read the list before: its clinics keep working while the service is
    // down, and a code it does not hold cannot be called unknown, so it is 503 too.
    await stopInstance(a);
    aStopped = true;
    await new Promise((r) => setTimeout(r, 1_100));
    const known = await http(gw.base, "POST", "/v1/inventory/harbour/stock/amoxicillin-500mg/deduct", {
      quantity: 1,
    });
    expect(known.status).toBe(200);
    const unknown = await http(gw.base, "POST", "/v1/inventory/nowhere/stock/amoxicillin-500mg/deduct", {
      quantity: 1,
    });
    expect(unknown.status).toBe(503);
    expect(unknown.headers.get("retry-after")).toBe("1");
  });
});
