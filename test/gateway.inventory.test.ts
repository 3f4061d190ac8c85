// The inventory REST API through a real gateway in front of a real 3-replica cluster and a real
// appointment instance (which says what the clinics are): writes carry the Idempotency-Key as
// request id, errors are problems, and no leader means 503 + Retry-After.
import { randomUUID } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { insertClinic } from "../src/appointment/repo.ts";
import { localDate } from "../src/inventory/state-machine.ts";
import type { Config } from "../src/shared/config.ts";
import { admin, tokenFor } from "./support/auth.ts";
import { http, startGateway, type TestGateway } from "./support/gateway.ts";
import { InventoryCluster } from "./support/inventory-cluster.ts";
import {
  type Instance,
  resetState,
  startInstance,
  stopInstance,
  testConfig,
  testPool,
} from "./support/services.ts";
import { until } from "./support/stock-load.ts";

let cluster: InventoryCluster;
let appointment: Instance;
let gw: TestGateway;
let base: string;
let gwCfg: Config;

/** Every clinic code the tests below write to: the inventory routes take only clinics' codes. */
const clinicCodes = [
  "harbour",
  "river",
  "replay",
  "replay2",
  "ahead",
  "behind",
  "cove",
  "hill",
  "sea",
  "lane",
  "lane2",
  "tight",
];

beforeAll(async () => {
  cluster = new InventoryCluster({ name: "gw_inventory" });
  let cfg = testConfig("gw_inventory", { REDIS_KEY_PREFIX: cluster.prefix });
  await resetState(cfg);
  await cluster.init();
  await cluster.startAll();
  await cluster.waitFormed();
  cfg = { ...cfg, INVENTORY_PEERS: cluster.peers };
  appointment = await startInstance(cfg);
  const pool = testPool(cfg);
  try {
    for (const code of clinicCodes)
      await insertClinic(pool, { id: randomUUID(), name: `Clinic ${code}`, code, timeZone: "UTC" });
  } finally {
    await pool.end();
  }
  gwCfg = cfg;
  gw = await startGateway(cfg, [appointment]);
  base = gw.base;
}, 120_000);
afterAll(async () => {
  await gw?.close();
  if (appointment) await stopInstance(appointment);
  await cluster?.stop();
}, 60_000);

const stock = (clinic: string, med: string) => `/v1/inventory/${clinic}/stock/${med}`;

describe("REST inventory", { timeout: 120_000 }, () => {
  it("restocks lots, deducts first-expiry-first-out, and reads linearizably or stale", async () => {
    const early = await http(
      base,
      "POST",
      `${stock("harbour", "amox")}/restock`,
      { quantity: 10, lot: "A", expiresOn: "2031-01-01" },
      { "Idempotency-Key": "r-a" },
    );
    expect(early.status).toBe(200);
    const late = await http(
      base,
      "POST",
      `${stock("harbour", "amox")}/restock`,
      { quantity: 10, lot: "B", expiresOn: "2032-01-01" },
      { "Idempotency-Key": "r-b" },
    );
    expect(late.json).toMatchObject({ quantity: 20 });
    const d = await http(
      base,
      "POST",
      `${stock("harbour", "amox")}/deduct`,
      { quantity: 12 },
      { "Idempotency-Key": "d-1" },
    );
    expect(d.status).toBe(200);
    expect(d.json.quantity).toBe(8);
    const read = await http(base, "GET", stock("harbour", "amox"));
    expect(read.status).toBe(200);
    expect(read.json).toMatchObject({ clinicId: "harbour", medicationCode: "amox", quantity: 8 });
    // Lot A (earlier expiry) went first.
    expect(read.json.lots).toEqual([{ lot: "B", quantity: 8, expiresOn: "2032-01-01" }]);
    expect(read.json.index).toBeGreaterThanOrEqual(d.json.index as number);
    const stale = await http(base, "GET", `${stock("harbour", "amox")}?consistency=stale`);
    expect(stale.status).toBe(200);
    const list = await http(base, "GET", "/v1/inventory/harbour/stock");
    expect(list.json).toEqual({
      items: [
        {
          medicationCode: "amox",
          quantity: 8,
          reorderLevel: 0,
          lots: [{ lot: "B", quantity: 8, expiresOn: "2032-01-01" }],
        },
      ],
      nextCursor: null,
    });
  });

  it("the same Idempotency-Key deducts once; too much is 409 insufficient-stock", async () => {
    await http(
      base,
      "POST",
      `${stock("river", "ibu")}/restock`,
      { quantity: 5 },
      { "Idempotency-Key": "r-river" },
    );
    const first = await http(
      base,
      "POST",
      `${stock("river", "ibu")}/deduct`,
      { quantity: 2 },
      { "Idempotency-Key": "same" },
    );
    const again = await http(
      base,
      "POST",
      `${stock("river", "ibu")}/deduct`,
      { quantity: 2 },
      { "Idempotency-Key": "same" },
    );
    expect(again.json).toEqual(first.json);
    expect((await http(base, "GET", stock("river", "ibu"))).json.quantity).toBe(3);
    const tooMuch = await http(base, "POST", `${stock("river", "ibu")}/deduct`, { quantity: 4 });
    expect(tooMuch.status).toBe(409);
    expect(tooMuch.json.type).toBe("https://medisync.dev/problems/insufficient-stock");
  });

  it("a replayed restock or deduct says Idempotent-Replayed: true; a reused key with another write is 422", async () => {
    const item = stock("replay", "amox");
    const r1 = await http(base, "POST", `${item}/restock`, { quantity: 9 }, { "Idempotency-Key": "rp-r" });
    expect(r1.status).toBe(200);
    expect(r1.headers.get("idempotent-replayed")).toBeNull();
    const r2 = await http(base, "POST", `${item}/restock`, { quantity: 9 }, { "Idempotency-Key": "rp-r" });
    expect(r2.status).toBe(200);
    expect(r2.headers.get("idempotent-replayed")).toBe("true");
    expect(r2.json).toEqual(r1.json);
    const d1 = await http(base, "POST", `${item}/deduct`, { quantity: 2 }, { "Idempotency-Key": "rp-d" });
    expect(d1.headers.get("idempotent-replayed")).toBeNull();
    const d2 = await http(base, "POST", `${item}/deduct`, { quantity: 2 }, { "Idempotency-Key": "rp-d" });
    expect(d2.headers.get("idempotent-replayed")).toBe("true");
    expect(d2.json).toEqual(d1.json);
    // The key of the restock, on a deduct of another clinic's item: refused, nothing deducted.
    await http(
      base,
      "POST",
      `${stock("replay2", "insulin")}/restock`,
      { quantity: 4 },
      { "Idempotency-Key": "rp-r2" },
    );
    const reused = await http(
      base,
      "POST",
      `${stock("replay2", "insulin")}/deduct`,
      { quantity: 1 },
      { "Idempotency-Key": "rp-r" },
    );
    expect(reused.status).toBe(422);
    expect(reused.headers.get("content-type")).toBe("application/problem+json");
    expect(reused.json).toMatchObject({
      type: "https://medisync.dev/problems/idempotency-key-reused",
      field: "Idempotency-Key",
    });
    expect((await http(base, "GET", stock("replay2", "insulin"))).json.quantity).toBe(4);
    expect((await http(base, "GET", item)).json.quantity).toBe(7);
  });

  it("lot expiry follows the clinic's time zone: a lot past its date there is 422 lot-expired naming expiresOn", async () => {
    // UTC+14 and UTC-12 are 26 h apart: their calendars always differ by one or two days.
    const aheadToday = localDate(Date.now(), "Etc/GMT-14");
    const yesterdayAhead = new Date(Date.parse(`${aheadToday}T00:00:00Z`) - 86_400_000)
      .toISOString()
      .slice(0, 10);
    for (const [clinic, timeZone] of [
      ["ahead", "Etc/GMT-14"],
      ["behind", "Etc/GMT+12"],
    ]) {
      const z = await http(base, "POST", `/v1/inventory/${clinic}/time-zone`, { timeZone });
      expect(z.status).toBe(200);
    }
    const ahead = await http(base, "POST", `${stock("ahead", "amox")}/restock`, {
      quantity: 3,
      lot: "Y",
      expiresOn: yesterdayAhead,
    });
    expect(ahead.status).toBe(422);
    expect(ahead.headers.get("content-type")).toBe("application/problem+json");
    expect(ahead.json).toMatchObject({
      type: "https://medisync.dev/problems/lot-expired",
      field: "expiresOn",
    });
    expect((await http(base, "GET", stock("ahead", "amox"))).json.quantity).toBe(0);
    // The same date is still today (or later) on the clinic 26 h behind: accepted and usable.
    const behind = await http(base, "POST", `${stock("behind", "amox")}/restock`, {
      quantity: 3,
      lot: "Y",
      expiresOn: yesterdayAhead,
    });
    expect(behind.status).toBe(200);
    expect((await http(base, "POST", `${stock("behind", "amox")}/deduct`, { quantity: 1 })).status).toBe(200);
    const bad = await http(base, "POST", "/v1/inventory/ahead/time-zone", { timeZone: "+05:00" });
    expect(bad.status).toBe(400);
    expect(bad.json.field).toBe("timeZone");
  });

  it("a deduct below the reorder level raises one low-stock event, reported by the leader", async () => {
    await http(
      base,
      "POST",
      `${stock("cove", "insulin")}/restock`,
      { quantity: 10 },
      { "Idempotency-Key": "r-cove" },
    );
    const level = await http(base, "POST", `${stock("cove", "insulin")}/reorder-level`, { level: 5 });
    expect(level.status).toBe(200);
    const d = await http(base, "POST", `${stock("cove", "insulin")}/deduct`, { quantity: 6 });
    expect(d.json.quantity).toBe(4);
    const leader = await cluster.waitLeader();
    const line = await cluster.procs.get(leader)!.waitFor(/"event":"low_stock".*"clinicId":"cove"/);
    expect(JSON.parse(line)).toMatchObject({
      medicationCode: "insulin",
      quantity: 4,
      reorderLevel: 5,
      index: d.json.index,
    });
    // Once every replica has applied the entry, only the leader may have reported it.
    await cluster.converged();
    const followers = cluster.ids.filter((id) => id !== leader);
    for (const f of followers)
      expect(cluster.procs.get(f)!.lines.some((l) => l.includes('"low_stock"'))).toBe(false);
  });

  it("transfers atomically between clinics and refuses a transfer to the same clinic", async () => {
    await http(
      base,
      "POST",
      `${stock("hill", "para")}/restock`,
      { quantity: 9 },
      { "Idempotency-Key": "r-hill" },
    );
    const t = await http(base, "POST", "/v1/inventory/transfers", {
      fromClinicId: "hill",
      toClinicId: "sea",
      medicationCode: "para",
      quantity: 4,
    });
    expect(t.status).toBe(200);
    expect((await http(base, "GET", stock("hill", "para"))).json.quantity).toBe(5);
    expect((await http(base, "GET", stock("sea", "para"))).json.quantity).toBe(4);
    const same = await http(base, "POST", "/v1/inventory/transfers", {
      fromClinicId: "hill",
      toClinicId: "hill",
      medicationCode: "para",
      quantity: 1,
    });
    expect(same.status).toBe(400);
    expect(same.json.field).toBe("toClinicId");
  });

  it("bad input is a 4xx problem naming the field", async () => {
    const cases: [string, string, unknown, string][] = [
      ["POST", `${stock("harbour", "amox")}/deduct`, { quantity: 0 }, "quantity"],
      ["POST", `${stock("harbour", "amox")}/deduct`, { quantity: "3" }, "quantity"],
      ["POST", `${stock("harbour", "amox")}/deduct`, '{"quantity":1152921504606846976}', "quantity"],
      ["POST", `${stock("harbour", "amox")}/reorder-level`, '{"level":-1152921504606846976}', "level"],
      ["POST", `${stock("harbour", "amox")}/deduct`, { quantity: 1, extra: 1 }, "extra"],
      ["POST", `${stock("harbour", "amox")}/restock`, { quantity: 1, expiresOn: "2031-02-30" }, "expiresOn"],
      ["POST", `${stock("har bour", "amox")}/restock`, { quantity: 1 }, "clinicId"],
      ["GET", `${stock("harbour", "amox")}?consistency=eventual`, undefined, "consistency"],
    ];
    for (const [method, path, body, field] of cases) {
      const r = await http(base, method, path, body);
      expect(r.status, path).toBe(400);
      expect(r.headers.get("content-type")).toBe("application/problem+json");
      expect(r.json.field, JSON.stringify(body)).toBe(field);
    }
    const malformed = await http(base, "POST", `${stock("harbour", "amox")}/deduct`, "{quantity:");
    expect(malformed.status).toBe(400);
    expect(malformed.json.code).toBe("MALFORMED_JSON");
  });

  it("/v1/cluster shows every replica, one leader, each a member, and the same state hash once caught up", async () => {
    await cluster.waitFormed();
    await cluster.converged();
    const r = await http(base, "GET", "/v1/cluster");
    expect(r.status).toBe(200);
    const replicas = r.json.replicas as unknown as {
      id: string;
      role: string;
      healthy: boolean;
      stateHash: string;
      identity: string;
    }[];
    expect(replicas.map((x) => x.id).sort()).toEqual(cluster.ids);
    expect(replicas.map((x) => x.identity)).toEqual(["member", "member", "member"]);
    expect(replicas.every((x) => x.healthy)).toBe(true);
    expect(replicas.filter((x) => x.role === "leader").map((x) => x.id)).toEqual([r.json.leaderId]);
    expect(new Set(replicas.map((x) => x.stateHash)).size).toBe(1);
    // Beside the replicas, the stateless services the gateway routes to (static addresses here).
    const services = r.json.services as unknown as {
      service: string;
      source: string;
      instances: unknown[];
    }[];
    expect(services.map((x) => x.service).sort()).toEqual(["appointment", "medication", "notification"]);
    expect(services.every((x) => x.source === "static" && x.instances.length > 0)).toBe(true);
  });

  it("the direct write lane answers exactly as the Hono routes do, for good and bad writes alike", async () => {
    // One real gateway, two paths: a write without an Origin takes the direct lane; the same write
    // with one (as a browser sends) takes the Hono routes (write-lane.ts). Both must give the same
    // status, headers and problem. CORS is off here, so the Origin changes nothing else.
    const viaHonoHeaders = { origin: "http://parity.test" };
    const item = stock("lane", "amox");
    const json = {
      "content-type": "application/json",
      "X-Request-Id": "lane-check",
      authorization: `Bearer ${await tokenFor(admin)}`,
    };
    const key = (k: string) => ({ ...json, "Idempotency-Key": k });
    const cases: { path: string; body?: string; headers: Record<string, string> }[] = [
      // The same Idempotency-Key on both paths: the second answers the first's result.
      {
        path: `${item}/restock`,
        body: '{"quantity":5,"lot":"L1","expiresOn":"2031-01-01"}',
        headers: key("lane-r"),
      },
      { path: `${item}/deduct`, body: '{"quantity":2}', headers: key("lane-d") },
      { path: `${item}/reorder-level`, body: '{"level":1}', headers: key("lane-l") },
      {
        path: "/v1/inventory/transfers",
        body: '{"fromClinicId":"lane","toClinicId":"lane2","medicationCode":"amox","quantity":1}',
        headers: key("lane-t"),
      },
      { path: `${item}/deduct`, body: '{"quantity":1000}', headers: key("lane-too-many") },
      // The key of the restock on a deduct: 422 on both paths.
      { path: `${item}/deduct`, body: '{"quantity":1}', headers: key("lane-r") },
      // A code that is no clinic: 404 clinic-not-found naming the field, on both paths.
      { path: `${stock("nowhere", "amox")}/deduct`, body: '{"quantity":1}', headers: key("lane-nowhere") },
      { path: `${stock("nowhere", "amox")}/restock`, body: '{"quantity":1}', headers: json },
      {
        path: "/v1/inventory/transfers",
        body: '{"fromClinicId":"lane","toClinicId":"nowhere","medicationCode":"amox","quantity":1}',
        headers: key("lane-t-nowhere"),
      },
      { path: `${stock("bad code", "amox")}/deduct`, body: '{"quantity":1}', headers: json },
      { path: `${stock("%E0%A4%A", "amox")}/deduct`, body: '{"quantity":1}', headers: json },
      { path: `${stock("lane", "%2e%2e")}/deduct`, body: '{"quantity":1}', headers: json },
      { path: `${item}/deduct?x=1`, body: '{"quantity":1}', headers: key("lane-q") },
      { path: `${item}/deduct`, body: '{"quantity":1}', headers: key("no spaces allowed") },
      { path: `${item}/deduct`, headers: json },
      { path: `${item}/deduct`, headers: { "X-Request-Id": "lane-check" } },
      { path: `${item}/deduct`, body: "{not json", headers: json },
      { path: `${item}/deduct`, body: '{"quantity":1}', headers: { ...json, "content-type": "text/plain" } },
      { path: `${item}/deduct`, body: '{"quantity":1,"extra":true}', headers: json },
      { path: `${item}/deduct`, body: '{"quantity":"1"}', headers: json },
      { path: `${item}/restock`, body: '{"quantity":1,"expiresOn":"2031-02-30"}', headers: json },
      {
        path: "/v1/inventory/transfers",
        body: '{"fromClinicId":"a","toClinicId":"a","medicationCode":"m","quantity":1}',
        headers: json,
      },
      {
        path: `${item}/deduct`,
        body: JSON.stringify({ quantity: 1, pad: "x".repeat(70_000) }),
        headers: json,
      },
    ];
    // A key the gateway made up differs between the two tries; that it is there, and the same in
    // header and problem, is what must hold.
    const madeUp = /gw-[0-9a-f-]{36}/g;
    const answer = async (res: Response) => ({
      status: res.status,
      replayed: res.headers.get("idempotent-replayed"),
      idempotencyKey: res.headers.get("idempotency-key")?.replace(madeUp, "gw-*") ?? null,
      type: res.headers.get("content-type"),
      retryAfter: res.headers.get("retry-after"),
      requestId: res.headers.get("x-request-id"),
      body: (await res.text()).replace(madeUp, "gw-*"),
    });
    for (const c of cases) {
      const init = { method: "POST", headers: c.headers, ...(c.body !== undefined ? { body: c.body } : {}) };
      const viaLane = await answer(await fetch(base + c.path, init));
      const viaHono = await answer(
        await fetch(base + c.path, { ...init, headers: { ...c.headers, ...viaHonoHeaders } }),
      );
      const { replayed: laneReplayed, ...lane } = viaLane;
      const { replayed: honoReplayed, ...hono } = viaHono;
      expect(lane, `${c.path} ${c.body?.slice(0, 60)}`).toEqual(hono);
      // Once a write's input was valid (its clinics then checked, the write tried), its answer names
      // the key it was tried with (made up if none came).
      const noClinic = lane.status === 404 && lane.body.includes("clinic-not-found");
      if (lane.status === 200 || noClinic || lane.status === 422 || lane.status >= 500) {
        expect(lane.idempotencyKey, c.path).toBe(c.headers["Idempotency-Key"] ?? "gw-*");
      }
      if (viaLane.status === 200 && c.headers["Idempotency-Key"]) {
        // The lane applied it; Hono's try with the same key, and the lane's again, are replays.
        expect(laneReplayed, c.path).toBeNull();
        expect(honoReplayed, c.path).toBe("true");
        const again = await answer(await fetch(base + c.path, init));
        expect(again.replayed, c.path).toBe("true");
        expect(again.body).toBe(viaLane.body);
      } else {
        expect(laneReplayed, c.path).toBeNull();
        expect(honoReplayed, c.path).toBeNull();
      }
    }
  });

  it("a stock write whose audit row cannot even be queued is not done: 503 problem, stock unchanged", async () => {
    const item = stock("tight", "para");
    expect(
      (await http(base, "POST", `${item}/restock`, { quantity: 10, lot: "T", expiresOn: "2035-01-01" }))
        .status,
    ).toBe(200);
    // One row in flight and one waiting fill this gateway's audit queue.
    const tight = await startGateway({ ...gwCfg, AUDIT_QUEUE_ROWS_MAX: 1, AUDIT_WRITE_TIMEOUT_MS: 30_000 }, [
      appointment,
    ]);
    const lock = new pg.Client({ connectionString: gwCfg.AUDIT_DATABASE_URL });
    await lock.connect();
    const quantity = async () => (await http(base, "GET", item)).json.quantity as number;
    try {
      await lock.query("BEGIN");
      await lock.query("LOCK TABLE audit_events IN SHARE MODE");
      const deduct = (key: string) =>
        http(tight.base, "POST", `${item}/deduct`, { quantity: 1 }, { "Idempotency-Key": key });
      // Each row is written beside its act: the acts are done while their rows wait on the lock.
      const first = deduct(`tight-1-${randomUUID()}`);
      await until(async () => (await quantity()) === 9, "the first deduct done, its row held");
      const second = deduct(`tight-2-${randomUUID()}`);
      await until(async () => (await quantity()) === 8, "the second deduct done, its row queued");
      const refused = await deduct(`tight-3-${randomUUID()}`);
      expect(refused.status).toBe(503);
      expect(refused.headers.get("content-type")).toContain("application/problem+json");
      expect(refused.json.code).toBe("OVERLOADED");
      await lock.query("COMMIT");
      const firstAnswer = await first;
      expect(firstAnswer.status, JSON.stringify(firstAnswer.json)).toBe(200);
      expect((await second).status).toBe(200);
      // The refused one never reached the cluster.
      expect(await quantity()).toBe(8);
    } finally {
      await lock.query("ROLLBACK").catch(() => undefined);
      await lock.end();
      await tight.close();
    }
  });

  it("with no leader reachable the gateway answers 503 with Retry-After, within its deadline", async () => {
    for (const id of cluster.ids) await cluster.signal(id, "SIGKILL");
    const t0 = Date.now();
    const r = await http(
      base,
      "POST",
      `${stock("harbour", "amox")}/deduct`,
      { quantity: 1 },
      { "Idempotency-Key": "lost" },
    );
    expect(r.status).toBe(503);
    expect(r.headers.get("retry-after")).toBe("1");
    expect(r.json.type).toBe("https://medisync.dev/problems/unavailable");
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(r.headers.get("idempotency-key")).toBe("lost");
    // Without a key the gateway made one up: the 503 says which, so the retry can reuse it.
    const keyless = await http(base, "POST", `${stock("harbour", "amox")}/deduct`, { quantity: 1 });
    expect(keyless.status).toBe(503);
    const made = keyless.headers.get("idempotency-key");
    expect(made).toMatch(/^gw-[0-9a-f-]{36}$/);
    expect(keyless.json.idempotencyKey).toBe(made);
    const c = await http(base, "GET", "/v1/cluster");
    expect((c.json.replicas as unknown as { healthy: boolean }[]).every((x) => !x.healthy)).toBe(true);
  });
});
