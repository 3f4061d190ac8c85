// The directory and stock lists page like every other list (docs/pagination.md): GET /v1/clinics and
// GET /v1/clinics/{id}/practitioners, paged by the gateway over the appointment service's answer,
// and GET /v1/inventory/{clinic}/stock, paged by the inventory itself (ListStock). Each walk sees
// every item exactly once in a stable order (name then id; medication code), an item added during
// the walk never repeats one, and a bad limit or cursor is 400 problem+json naming it. Against a
// real gateway, appointment instance and inventory replica, with an admin's token.
import { randomUUID } from "node:crypto";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { insertClinic, insertPractitioner } from "../src/appointment/repo.ts";
import { http } from "./support/gateway.ts";
import { clusterBehindGateway } from "./support/inventory-cluster.ts";
import { testConfig, testPool } from "./support/services.ts";

const name = "gw_list_pages";
let stack: Awaited<ReturnType<typeof clusterBehindGateway>>;
let base: string;
let pool: pg.Pool;
/** The clinic with many practitioners, and its id. */
let busyClinicId: string;

// Names that tie (so the id decides), differ only by case, and sort apart from their insert order.
const clinicNames = [
  ...Array.from({ length: 20 }, (_, i) => `Clinic ${String(25 - i).padStart(2, "0")}`),
  "Ärztehaus Süd",
  "clinic lower-case",
  "Twin Clinic",
  "Twin Clinic",
  "Twin Clinic",
];
const practitionerNames = [
  ...Array.from({ length: 18 }, (_, i) => `Dr ${String.fromCharCode(90 - i)}`),
  "Dr Same",
  "Dr Same",
  "Dr Same",
  "dr lower",
  "Dr Z",
];
const medications = Array.from({ length: 23 }, (_, i) => `med-${String(46 - 2 * i).padStart(2, "0")}`);

interface Page {
  items: Record<string, unknown>[];
  nextCursor: string | null;
}

/** Code-unit order of (key, id): the order the pages promise. */
const byKeyThenId =
  (key: (x: Record<string, unknown>) => string) =>
  (a: Record<string, unknown>, b: Record<string, unknown>) => {
    const [ka, kb, ia, ib] = [key(a), key(b), String(a.id ?? ""), String(b.id ?? "")];
    return ka < kb ? -1 : ka > kb ? 1 : ia < ib ? -1 : ia > ib ? 1 : 0;
  };

async function page(path: string, query: Record<string, string> = {}): Promise<Page> {
  const q = new URLSearchParams(query).toString();
  const r = await http(base, "GET", q ? `${path}?${q}` : path);
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json as unknown as Page;
}

/** Every page of `path`, `limit` at a time; `between` runs after the first page. */
async function walk(path: string, limit: number, between?: () => Promise<void>): Promise<Page[]> {
  const pages: Page[] = [];
  let cursor: string | null = null;
  do {
    const p = await page(path, { limit: String(limit), ...(cursor ? { cursor } : {}) });
    expect(p.items.length).toBeLessThanOrEqual(limit);
    pages.push(p);
    if (pages.length === 1) await between?.();
    cursor = p.nextCursor;
    expect(pages.length).toBeLessThan(100);
  } while (cursor !== null);
  return pages;
}

function expectProblem(r: Awaited<ReturnType<typeof http>>, field: string, what: string) {
  expect(r.status, what).toBe(400);
  expect(r.headers.get("content-type"), what).toBe("application/problem+json");
  expect(r.json.field, what).toBe(field);
}

const restock = async (medicationCode: string) => {
  const r = await http(
    base,
    "POST",
    `/v1/inventory/harbour/stock/${medicationCode}/restock`,
    { quantity: 5, lot: "L1", expiresOn: "2099-01-01" },
    { "Idempotency-Key": `list-pages-${medicationCode}` },
  );
  expect(r.status, JSON.stringify(r.json)).toBe(200);
};

beforeAll(async () => {
  stack = await clusterBehindGateway(name, { replicas: 1, clinics: ["harbour"] });
  base = stack.base;
  pool = testPool(testConfig(name));
  for (const [i, n] of clinicNames.entries())
    await insertClinic(pool, { id: randomUUID(), name: n, code: `list-${i}`, timeZone: "UTC" });
  busyClinicId = randomUUID();
  await insertClinic(pool, { id: busyClinicId, name: "Busy Clinic", code: "busy", timeZone: "UTC" });
  for (const n of practitionerNames)
    await insertPractitioner(pool, { id: randomUUID(), clinicId: busyClinicId, name: n });
  // Another clinic's practitioner, who must never show in the busy clinic's list.
  const other = (await pool.query<{ id: string }>("SELECT id FROM clinics WHERE code = 'list-0'")).rows[0]!;
  await insertPractitioner(pool, { id: randomUUID(), clinicId: other.id, name: "Dr Elsewhere" });
  for (const m of medications) await restock(m);
}, 180_000);

afterAll(async () => {
  await pool?.end();
  await stack?.close();
}, 60_000);

describe("directory and stock lists, a page at a time", { timeout: 120_000 }, () => {
  it("GET /v1/clinics: pages of 4 walk every clinic exactly once, by name then id", async () => {
    const rows = await pool.query<{ id: string; code: string; name: string; time_zone: string }>(
      "SELECT id, code, name, time_zone FROM clinics",
    );
    const expected = rows.rows
      .map((c) => ({ id: c.id, code: c.code, name: c.name, timeZone: c.time_zone }))
      .sort(byKeyThenId((x) => String(x.name)));
    expect(expected.length).toBeGreaterThan(25);
    const pages = await walk("/v1/clinics", 4);
    expect(pages.length).toBe(Math.ceil(expected.length / 4));
    expect(pages.flatMap((p) => p.items)).toEqual(expected);
    // The twins are told apart by id; the order is code units (upper case before lower).
    const names = expected.map((c) => c.name);
    expect(names.indexOf("Twin Clinic")).toBeLessThan(names.indexOf("clinic lower-case"));
    expect(names.indexOf("clinic lower-case")).toBeLessThan(names.indexOf("Ärztehaus Süd"));
    // No limit: the default page of 20, and a cursor to the rest.
    const first = await page("/v1/clinics");
    expect(first.items).toEqual(expected.slice(0, 20));
    expect(first.nextCursor).not.toBeNull();
    const rest = await page("/v1/clinics", { cursor: first.nextCursor!, limit: "100" });
    expect(rest).toEqual({ items: expected.slice(20), nextCursor: null });
  });

  it("a clinic added during the walk never repeats one; one ahead of the walk is seen, one behind not", async () => {
    const before = (await walk("/v1/clinics", 100))[0]!.items;
    const ahead = { id: randomUUID(), name: "Zz Last Clinic", code: "zz-last" };
    const behind = { id: randomUUID(), name: "Aa First Clinic", code: "aa-first" };
    const pages = await walk("/v1/clinics", 5, async () => {
      for (const c of [ahead, behind]) await insertClinic(pool, { ...c, timeZone: "UTC" });
    });
    const ids = pages.flatMap((p) => p.items.map((c) => c.id));
    expect(new Set(ids).size).toBe(ids.length);
    const expected = [...before, { ...ahead, timeZone: "UTC" }].sort(byKeyThenId((x) => String(x.name)));
    expect(ids).toEqual(expected.map((c) => c.id));
  });

  it("GET /v1/clinics/{id}/practitioners: pages of 5 walk the clinic's practitioners once, by name then id", async () => {
    const rows = await pool.query<{ id: string; clinic_id: string; name: string }>(
      "SELECT id, clinic_id, name FROM practitioners WHERE clinic_id = $1",
      [busyClinicId],
    );
    const expected = rows.rows
      .map((p) => ({ id: p.id, clinicId: p.clinic_id, name: p.name }))
      .sort(byKeyThenId((x) => String(x.name)));
    expect(expected).toHaveLength(practitionerNames.length);
    const path = `/v1/clinics/${busyClinicId}/practitioners`;
    const pages = await walk(path, 5);
    expect(pages.length).toBe(Math.ceil(expected.length / 5));
    expect(pages.flatMap((p) => p.items)).toEqual(expected);
    expect(await walk(path, 100)).toEqual([{ items: expected, nextCursor: null }]);
    // A clinic that does not exist is still 404, whatever the page asked.
    const missing = await http(base, "GET", `/v1/clinics/${randomUUID()}/practitioners?limit=2`);
    expect(missing.status).toBe(404);
  });

  it("GET /v1/inventory/{clinic}/stock: pages of 5 walk every line once, by medication code; lines added meanwhile never repeat one", async () => {
    const sorted = [...medications].sort();
    const path = "/v1/inventory/harbour/stock";
    const all = (await walk(path, 100)).flatMap((p) => p.items);
    expect(all.map((l) => l.medicationCode)).toEqual(sorted);
    expect(all[0]).toEqual({
      medicationCode: sorted[0],
      quantity: 5,
      reorderLevel: 0,
      lots: [{ lot: "L1", quantity: 5, expiresOn: "2099-01-01" }],
    });
    const pages = await walk(path, 5, async () => {
      // One behind the first page's last line (med-01 sorts before med-02), one after every line.
      await restock("med-01");
      await restock("med-99");
    });
    expect(pages.length).toBe(Math.ceil((sorted.length + 1) / 5));
    const codes = pages.flatMap((p) => p.items.map((l) => l.medicationCode));
    expect(codes).toEqual([...sorted, "med-99"]);
    const first = await page(path);
    expect(first.items).toHaveLength(20);
    expect(first.nextCursor).not.toBeNull();
  });

  it("a bad limit or cursor is 400 problem+json naming it, on every one of these lists", async () => {
    const forged = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
    const lists = ["/v1/clinics", `/v1/clinics/${busyClinicId}/practitioners`, "/v1/inventory/harbour/stock"];
    for (const path of lists) {
      for (const q of [
        "limit=101",
        "limit=0",
        "limit=-1",
        "limit=abc",
        "limit=2.5",
        "limit=",
        "limit=1&limit=2",
      ])
        expectProblem(await http(base, "GET", `${path}?${q}`), "limit", `${path}?${q}`);
      const good = (await page(path, { limit: "2" })).nextCursor!;
      expect(good).toBeTruthy();
      for (const cursor of [
        "not a cursor!",
        "x".repeat(513),
        "bm90LW91cnM", // base64url of "not-ours"
        forged(["2033-03-01T08:00:00.000000Z", randomUUID()]), // a time position (appointments')
        forged(["k", 1, ""]),
        forged(["k", "a", "not-an-id"]),
        good.slice(0, -2),
      ])
        expectProblem(
          await http(base, "GET", `${path}?cursor=${encodeURIComponent(cursor)}`),
          "cursor",
          `${path} cursor ${cursor.slice(0, 40)}`,
        );
      expectProblem(await http(base, "GET", `${path}?colour=red`), "colour", `${path}?colour=red`);
    }
  });

  it("is in the OpenAPI document: limit and cursor on each list, and its page schema", async () => {
    const doc = (await http(base, "GET", "/openapi.json")).json as unknown as {
      paths: Record<string, { get?: { parameters: { name: string; schema: unknown }[] } }>;
      components: { schemas: Record<string, { properties: Record<string, unknown> }> };
    };
    for (const [path, schema] of [
      ["/v1/clinics", "ClinicPage"],
      ["/v1/clinics/{clinicId}/practitioners", "PractitionerPage"],
      ["/v1/inventory/{clinicId}/stock", "StockLinePage"],
    ] as const) {
      const params = Object.fromEntries((doc.paths[path]?.get?.parameters ?? []).map((p) => [p.name, p]));
      expect(params.limit?.schema, path).toMatchObject({ minimum: 1, maximum: 100, default: 20 });
      expect(params.cursor, path).toBeDefined();
      expect(Object.keys(doc.components.schemas[schema]!.properties).sort()).toEqual(["items", "nextCursor"]);
    }
  });
});
