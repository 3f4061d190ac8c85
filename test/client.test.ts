// `medisync client` as a real process against a real stack (gateway and two appointment instances
// in this process, three inventory replicas and the medication service as processes, real
// PostgreSQL and Redis): every scenario runs through the authenticated gateway with the tokens the
// client mints (the test process's key: runCli points AUTH_JWKS_FILE at it), and the counts it
// reports match what the system recorded: appointments, cancels, prescriptions and stock. Each simulated patient stays under the gateway's per-patient limit unless told
// otherwise, and then the 429s are counted as such. A given token (--token) is used for everything.
// Also its refusals: a gateway that is not up, tokens the gateway does not trust (401), a role
// without the grant (403), and bad flags end in one line and exit code 2.
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ScenarioSummary } from "../src/client/stats.ts";
import { tokenFor } from "./support/auth.ts";
import { clinicsWithCodes, datesFrom, makeClinic } from "./support/fixtures.ts";
import { http, startGateway, type TestGateway } from "./support/gateway.ts";
import { InventoryCluster } from "./support/inventory-cluster.ts";
import { freePortRange, runCli, type Watched } from "./support/process.ts";
import {
  type Instance,
  PG_BASE,
  resetState,
  startInstance,
  stopInstance,
  testConfig,
  testPool,
} from "./support/services.ts";

let cluster: InventoryCluster;
let a: Instance;
let b: Instance;
let gw: TestGateway;
/** A gateway that lets a patient make 10 requests a minute: where the per-patient limit is met. */
let strict: TestGateway;
const strictPerMinute = 10;
let pool: pg.Pool;
let medication: Watched;
let medicationDb: pg.Pool;
let medicationAddr: string;
/** The codes of the clinics with slots (where bookings, so prescriptions, happen) and their medicine. */
let bookingClinics: string[];
const rx = "rx-client";
let tmp: string;
let cfg: ReturnType<typeof testConfig>;
// Eight days of slots, each run booking on days of its own so its counts can be checked exactly:
// REST [0, 2), gRPC [2, 4), the rate-limit runs 4 and 5, the given patient token [6, 8).
const dates = datesFrom("2031-06-02", 8);
const pastDay = "2020-01-06";

beforeAll(async () => {
  cluster = new InventoryCluster({ name: "client" });
  cfg = testConfig("client", {
    REDIS_KEY_PREFIX: cluster.prefix,
    LOG_LEVEL: "silent",
  });
  await resetState(cfg);
  await cluster.init();
  await cluster.startAll();
  await cluster.waitLeader(60_000);
  cfg = { ...cfg, INVENTORY_PEERS: cluster.peers };
  a = await startInstance(cfg, undefined, "client-a");
  b = await startInstance(cfg, undefined, "client-b");
  // The medication service as a process of its own, with a database of its own made afresh.
  const medicationUrl = `${cfg.DATABASE_URL}_medication`;
  const admin = new pg.Client({ connectionString: `${PG_BASE}/postgres` });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS "${new URL(medicationUrl).pathname.slice(1)}" WITH (FORCE)`);
  await admin.end();
  const medPort = await freePortRange(2);
  medicationAddr = `127.0.0.1:${medPort}`;
  medication = runCli(["medication"], {
    MEDICATION_DATABASE_URL: medicationUrl,
    MEDICATION_GRPC_PORT: String(medPort),
    MEDICATION_OPS_PORT: String(medPort + 1),
    APPOINTMENT_ADDRS: [a, b].map((i) => `127.0.0.1:${i.service.grpcPort}`).join(","),
    INVENTORY_PEERS: cluster.peers.map((p) => `${p.id}=${p.address}`).join(","),
    REDIS_URL: cfg.REDIS_URL,
    REDIS_KEY_PREFIX: cluster.prefix,
    LOG_LEVEL: "info",
  });
  await medication.waitFor(/medication service listening/, 60_000);
  medicationDb = new pg.Pool({ connectionString: medicationUrl, max: 2 });
  cfg = { ...cfg, MEDICATION_ADDRS: [medicationAddr] };
  pool = testPool(cfg);
  // The clinics before the gateways, so their clinic directories hold the codes from the first
  // request (a code made later is 404 until a directory reads the list again). Two clinics, 24
  // slots a day each: enough free slots that booking is never starved; each with a medicine in
  // stock to prescribe (a lot that never expires, plenty for every run).
  bookingClinics = [];
  for (let i = 0; i < 2; i++) bookingClinics.push((await makeClinic(pool, dates, 24)).code);
  const inventory = cluster.client(20_000);
  try {
    for (const code of bookingClinics) {
      await inventory.write("restock", {
        requestId: `seed-${code}`,
        clinicId: code,
        medicationCode: rx,
        quantity: 100_000,
        lot: "L1",
        expiresOn: "",
      });
    }
  } finally {
    inventory.close();
  }
  // Slots long past: free, but no patient can book them.
  await makeClinic(pool, [pastDay], 4);
  gw = await startGateway(cfg, [a, b]);
  // Its gRPC deadline is long: on a loaded machine a 504 would leave a booking's fate unknown and
  // the counts of the rate-limit runs inexact.
  strict = await startGateway(
    { ...cfg, RATE_LIMIT_PATIENT_PER_MINUTE: strictPerMinute, GRPC_DEADLINE_MS: 10_000 },
    [a, b],
  );
  tmp = mkdtempSync(path.join(os.tmpdir(), "medisync-client-"));
}, 180_000);

afterAll(async () => {
  await gw?.close();
  await strict?.close();
  await pool?.end();
  await medicationDb?.end();
  if (medication) {
    medication.proc.kill("SIGTERM");
    await medication.exited;
  }
  if (a) await stopInstance(a);
  if (b) await stopInstance(b);
  await cluster?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}, 60_000);

interface Summary {
  protocol: string;
  load: { intended: number; sent: number; dropped: number; late: number };
  scenarios: Record<string, ScenarioSummary>;
  total: ScenarioSummary;
  inventory: { stockDelta: Record<string, number> };
  appointments: { prescribed: number };
  auth: { tokens: string; patients?: number; requestsPerPatient?: number };
}

const allScenarios = ["browse", "book", "cancel", "prescribe", "restock", "transfer", "deduct"];
const mix = "browse=30,book=25,cancel=10,prescribe=10,restock=15,transfer=10,deduct=10";

async function runClient(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; lines: string[] }> {
  const w = runCli(["client", ...args], env);
  const { code } = await w.exited;
  // The streams may still hold a last line after exit.
  await new Promise((r) => setImmediate(r));
  return { code, lines: w.lines };
}

/** Appointments made on the given local dates: all of them, the cancelled ones, for how many patients. */
async function appointmentsOn(
  days: string[],
): Promise<{ all: number; cancelled: number; patients: number; patientIds: string[] }> {
  const r = await pool.query(
    `SELECT count(*)::int AS all, count(*) FILTER (WHERE a.status = 'cancelled')::int AS cancelled,
            count(DISTINCT a.patient_id)::int AS patients,
            coalesce(array_agg(DISTINCT a.patient_id::text), '{}') AS "patientIds"
       FROM appointments a JOIN slots s ON s.id = a.slot_id
      WHERE s.local_date = ANY($1::date[])`,
    [days],
  );
  return r.rows[0] as { all: number; cancelled: number; patients: number; patientIds: string[] };
}

/**
 * The prescriptions written for appointments on the given dates (the medication service's own
 * records): how many, how many dispensed, for how many appointments, how many units, and how many
 * of those appointments were cancelled afterwards.
 */
async function prescriptionsOn(days: string[]): Promise<{
  all: number;
  completed: number;
  appointments: number;
  quantity: number;
  clinics: string[];
  ofCancelledAppointments: number;
}> {
  const appts = await pool.query<{ id: string; status: string }>(
    `SELECT a.id::text AS id, a.status FROM appointments a JOIN slots s ON s.id = a.slot_id
      WHERE s.local_date = ANY($1::date[])`,
    [days],
  );
  const cancelled = new Set(appts.rows.filter((r) => r.status === "cancelled").map((r) => r.id));
  const rows = (
    await medicationDb.query<{
      appointment: string;
      status: string;
      dispense: string;
      quantity: number;
      clinic: string;
    }>(
      `SELECT p.appointment_id::text AS appointment, p.status, d.status AS dispense,
              p.quantity::int AS quantity, p.clinic
         FROM prescriptions p JOIN dispenses d ON d.prescription_id = p.id
        WHERE p.appointment_id = ANY($1::uuid[])`,
      [appts.rows.map((r) => r.id)],
    )
  ).rows;
  return {
    all: rows.length,
    completed: rows.filter((r) => r.status === "completed" && r.dispense === "completed").length,
    appointments: new Set(rows.map((r) => r.appointment)).size,
    quantity: rows.reduce((n, r) => n + r.quantity, 0),
    clinics: [...new Set(rows.map((r) => r.clinic))].sort(),
    ofCancelledAppointments: rows.filter((r) => cancelled.has(r.appointment)).length,
  };
}

/** The prescribable medicine's stock at each booking clinic, read before a run. */
async function rxStock(): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  for (const c of bookingClinics) m.set(c, await stockOf(c, rx));
  return m;
}

async function stockOf(clinic: string, medication: string): Promise<number> {
  const r = await http(gw.base, "GET", `/v1/inventory/${clinic}/stock/${medication}`);
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json.quantity as number;
}

/**
 * The stock while waiting for it to move: 0 until the gateway answers (a clinic made a moment ago is
 * 404 until the gateway's clinic list is read again; a read during an election is 503).
 */
async function stockSoFar(clinic: string, medication: string): Promise<number> {
  const r = await http(gw.base, "GET", `/v1/inventory/${clinic}/stock/${medication}`);
  return r.status === 200 ? (r.json.quantity as number) : 0;
}

/**
 * Answers other than success and a slot taken meanwhile (a browse that raced a booking can offer a
 * slot just booked: a normal outcome): none expected of a run that stays within its limits.
 */
const unexpected = (t: ScenarioSummary) =>
  Object.keys(t.statuses).filter((k) => !/^2\d\d$/.test(k) && k !== "409 SLOT_TAKEN");

/** What every run must show, whatever the protocol: each scenario ran, and the books balance. */
async function checkAgainstSystem(
  s: Summary,
  days: string[],
  clinics: string[],
  meds: string[],
  rxBefore: Map<string, number>,
) {
  for (const name of allScenarios) {
    const sc = s.scenarios[name];
    expect(sc, name).toBeDefined();
    expect(sc!.count, name).toBeGreaterThan(0);
    // A healthy system at low load: every request answered, no server errors, so the counts are exact.
    expect(sc!.errors, `${name} ${JSON.stringify(sc!.statuses)}`).toBe(0);
    expect(sc!["5xx"], `${name} ${JSON.stringify(sc!.statuses)}`).toBe(0);
    expect(sc!.ok + sc!["4xx"] + sc!["5xx"] + sc!.errors, name).toBe(sc!.count);
    expect(
      Object.values(sc!.statuses).reduce((x, y) => x + y, 0),
      name,
    ).toBe(sc!.count);
    // Latency from the intended start is never below the time the system took.
    expect(sc!.latencyMs.max, name).toBeGreaterThanOrEqual(sc!.serviceMs.max);
    expect(sc!.latencyMs.p50, name).toBeLessThanOrEqual(sc!.latencyMs.p99);
  }
  expect(s.total.count).toBe(allScenarios.reduce((n, k) => n + s.scenarios[k]!.count, 0));
  expect(s.load.sent).toBe(s.total.count);
  expect(s.load.intended).toBe(s.load.sent + s.load.dropped + s.total.skipped);
  // Booking only ever tries slots browsing found: none is unknown to the system.
  expect(s.scenarios.book!.statuses["404 SLOT_NOT_FOUND"]).toBeUndefined();
  expect(s.scenarios.book!.ok).toBeGreaterThan(0);
  expect(s.scenarios.cancel!.ok).toBeGreaterThan(0);
  // Cancelling only touches appointments this run booked, each once.
  expect(s.scenarios.cancel!["4xx"]).toBe(0);
  const made = await appointmentsOn(days);
  expect(made.all).toBe(s.scenarios.book!.ok);
  expect(made.cancelled).toBe(s.scenarios.cancel!.ok);
  // Each stock line moved by exactly what the acknowledged writes add up to.
  expect(s.scenarios.restock!.ok).toBeGreaterThan(0);
  for (const c of clinics) {
    for (const m of meds)
      expect(await stockOf(c, m), `${c}/${m}`).toBe(s.inventory.stockDelta[`${c}/${m}`] ?? 0);
  }
  // Prescribing: only for appointments this run booked (none unknown, none not booked), one each,
  // every one dispensed, none of those appointments cancelled after; the medicine's stock at each
  // booking clinic went down by exactly the units the acknowledged prescriptions name.
  const rxStats = JSON.stringify(s.scenarios.prescribe!.statuses);
  expect(s.scenarios.prescribe!.ok, rxStats).toBeGreaterThan(0);
  expect(s.scenarios.prescribe!["4xx"], rxStats).toBe(0);
  expect(s.appointments.prescribed).toBe(s.scenarios.prescribe!.ok);
  const rxs = await prescriptionsOn(days);
  expect(rxs.all).toBe(s.scenarios.prescribe!.ok);
  expect(rxs.completed).toBe(rxs.all);
  expect(rxs.appointments).toBe(rxs.all);
  expect(rxs.ofCancelledAppointments).toBe(0);
  expect(bookingClinics).toEqual(expect.arrayContaining(rxs.clinics));
  let dispensed = 0;
  for (const c of bookingClinics) {
    const delta = s.inventory.stockDelta[`${c}/${rx}`] ?? 0;
    expect(await stockOf(c, rx), `${c}/${rx}`).toBe(rxBefore.get(c)! + delta);
    dispensed -= delta;
  }
  expect(dispensed).toBe(rxs.quantity);
}

describe("medisync client", { timeout: 180_000 }, () => {
  it("runs every scenario through the gateway, prints its table, and its counts match the system's", async () => {
    const tag = randomBytes(3).toString("hex");
    const clinics = [`cl-${tag}-a`, `cl-${tag}-b`];
    await clinicsWithCodes(pool, clinics);
    const meds = [`med-${tag}`];
    const out = path.join(tmp, "rest.json");
    const rxBefore = await rxStock();
    const r = await runClient([
      "--target",
      gw.base,
      "--mix",
      mix,
      "--rate",
      "20",
      "--duration",
      "5s",
      "--from",
      dates[0]!,
      "--days",
      "2",
      "--inventory-clinics",
      clinics.join(","),
      "--medications",
      meds.join(","),
      "--out",
      out,
      // Longer than the gateway's own deadlines: every write gets the system's answer, never a
      // client-side timeout that leaves unknown whether it applied.
      "--timeout-ms",
      "15000",
    ]);
    expect(r.code, r.lines.join("\n")).toBe(0);
    const s = JSON.parse(readFileSync(out, "utf8")) as Summary;
    expect(s.protocol).toBe("rest");
    await checkAgainstSystem(s, dates.slice(0, 2), clinics, meds, rxBefore);

    // stdout is not a terminal here: no progress bar, just the table, one row per scenario and a total.
    const text = r.lines.join("\n");
    expect(text.includes("\r") || text.includes("\u001b[")).toBe(false);
    const header = r.lines.findIndex((l) => /^scenario\s+count\s+ok\s+4xx\s+429\s+5xx\s+errors/.test(l));
    expect(header).toBeGreaterThanOrEqual(0);
    const rows = new Map(
      r.lines
        .slice(header + 1)
        .filter((l) => /^[a-z]+\s+\d/.test(l))
        .map((l) => {
          const [name, ...cells] = l.trim().split(/\s+/);
          return [name!, cells] as const;
        }),
    );
    for (const name of [...allScenarios, "total"]) {
      const sc = name === "total" ? s.total : s.scenarios[name]!;
      const cells = rows.get(name);
      expect(cells, name).toBeDefined();
      expect(cells!.slice(0, 8).map(Number), name).toEqual([
        sc.count,
        sc.ok,
        sc["4xx"],
        sc["429"],
        sc["5xx"],
        sc.errors,
        sc.skipped,
        sc.dropped,
      ]);
      // The table rounds to two decimals (toFixed), the JSON keeps three.
      expect(Math.abs(Number(cells![10]) - sc.latencyMs.p99), name).toBeLessThanOrEqual(0.0051);
    }
    // Booked as patients, each with a token of their own: no 429 at this load, and every booking's
    // patient id is a patient the client minted a token for (the gateway refuses any other).
    expect(s.total["429"]).toBe(0);
    expect(s.auth.tokens).toMatch(/development tokens/);
    const made = await appointmentsOn(dates.slice(0, 2));
    expect(made.patients).toBeGreaterThan(0);
    expect(made.patients).toBeLessThanOrEqual(s.auth.patients!);
  });

  it("runs every scenario over gRPC straight to the services (--grpc --json), counts matching", async () => {
    const tag = randomBytes(3).toString("hex");
    const clinics = [`cl-${tag}-a`, `cl-${tag}-b`];
    await clinicsWithCodes(pool, clinics);
    const meds = [`med-${tag}`];
    const rxBefore = await rxStock();
    const r = await runClient([
      "--grpc",
      "--appointment-addrs",
      [a, b].map((i) => `127.0.0.1:${i.service.grpcPort}`).join(","),
      "--inventory-peers",
      cluster.peers.map((p) => `${p.id}=${p.address}`).join(","),
      "--medication-addrs",
      medicationAddr,
      "--mix",
      mix,
      "--vus",
      "2",
      "--duration",
      "3s",
      "--from",
      dates[2]!,
      "--days",
      "2",
      "--inventory-clinics",
      clinics.join(","),
      "--medications",
      meds.join(","),
      "--timeout-ms",
      "15000",
      "--json",
    ]);
    expect(r.code, r.lines.join("\n")).toBe(0);
    const s = JSON.parse(r.lines.join("\n")) as Summary;
    expect(s.protocol).toBe("grpc");
    expect(s.load.dropped).toBe(0);
    await checkAgainstSystem(s, dates.slice(2, 4), clinics, meds, rxBefore);
  });

  it("never tries to book a slot that has already started: with only past slots found, booking is skipped", async () => {
    const r = await runClient([
      "--target",
      gw.base,
      "--mix",
      "browse=1,book=1",
      "--rate",
      "10",
      "--duration",
      "2s",
      "--from",
      pastDay,
      "--days",
      "1",
      "--json",
    ]);
    expect(r.code, r.lines.join("\n")).toBe(0);
    const s = JSON.parse(r.lines.join("\n")) as Summary;
    expect(s.scenarios.browse!.ok).toBeGreaterThan(0);
    expect(s.scenarios.book?.count ?? 0).toBe(0);
    expect(s.scenarios.book!.skipped).toBeGreaterThan(0);
    expect((await appointmentsOn([pastDay])).all).toBe(0);
  });

  it("Ctrl-C ends the run early: requests in flight finish, the summary says interrupted, counts still match", async () => {
    const clinic = `cl-${randomBytes(3).toString("hex")}`;
    await clinicsWithCodes(pool, [clinic]);
    const med = "med-int";
    const w = runCli(
      [
        "client",
        "--target",
        gw.base,
        "--mix",
        "restock=1",
        "--rate",
        "10",
        "--duration",
        "10m",
        "--inventory-clinics",
        clinic,
        "--medications",
        med,
        "--timeout-ms",
        "15000",
        "--json",
      ],
      {},
    );
    // Running once its first restock has landed.
    const deadline = Date.now() + 60_000;
    while ((await stockSoFar(clinic, med)) === 0) {
      if (Date.now() > deadline) throw new Error(`no restock within 60 s:\n${w.lines.join("\n")}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    w.proc.kill("SIGINT");
    const { code } = await w.exited;
    await new Promise((r) => setImmediate(r));
    expect(code, w.lines.join("\n")).toBe(0);
    const s = JSON.parse(w.lines.join("\n")) as Summary & { interrupted: boolean; elapsedMs: number };
    expect(s.interrupted).toBe(true);
    expect(s.elapsedMs).toBeLessThan(120_000);
    expect(s.scenarios.restock!.ok).toBeGreaterThan(0);
    expect(s.scenarios.restock!.ok).toBe(s.scenarios.restock!.count);
    expect(await stockOf(clinic, med)).toBe(s.inventory.stockDelta[`${clinic}/${med}`]);
  });

  it("spreads the load over enough patients that none meets the per-patient limit; told to exceed it, the 429s are counted and named", async () => {
    const args = (day: string) => [
      "--target",
      strict.base,
      "--mix",
      "browse=2,book=1,cancel=1",
      "--rate",
      "20",
      "--duration",
      "3s",
      "--from",
      day,
      "--days",
      "1",
      "--timeout-ms",
      "15000",
      "--json",
    ];
    // The client's budget per patient is half of the limit its environment names (the gateway's).
    const env = { RATE_LIMIT_PATIENT_PER_MINUTE: String(strictPerMinute) };
    const spread = await runClient(args(dates[4]!), env);
    expect(spread.code, spread.lines.join("\n")).toBe(0);
    const s = JSON.parse(spread.lines.join("\n")) as Summary;
    expect(s.auth.requestsPerPatient).toBe(strictPerMinute / 2);
    expect(s.total["429"], JSON.stringify(s.total.statuses)).toBe(0);
    expect(unexpected(s.total), JSON.stringify(s.total.statuses)).toEqual([]);
    // Every request (and the uncounted warm-up browse) by a patient with at most 5 of them.
    expect(s.auth.patients!).toBeGreaterThanOrEqual(Math.ceil(s.total.count / (strictPerMinute / 2)));
    const made = await appointmentsOn([dates[4]!]);
    expect(made.all).toBe(s.scenarios.book!.ok);
    expect(made.cancelled).toBe(s.scenarios.cancel!.ok);

    // 60 requests a patient against a limit of 10 a minute: refused past it, 429 in the 4xx.
    const over = await runClient([...args(dates[5]!), "--requests-per-patient", "60"], env);
    expect(over.code, over.lines.join("\n")).toBe(0);
    const o = JSON.parse(over.lines.join("\n")) as Summary;
    expect(o.total["429"]).toBeGreaterThan(0);
    expect(o.total["429"]).toBeLessThanOrEqual(o.total["4xx"]);
    const named = Object.entries(o.total.statuses)
      .filter(([k]) => k.startsWith("429"))
      .reduce((n, [, v]) => n + v, 0);
    expect(named).toBe(o.total["429"]);
    expect(Object.keys(o.total.statuses).filter((k) => k.startsWith("429"))).toEqual(["429 RATE_LIMITED"]);
    const overMade = await appointmentsOn([dates[5]!]);
    expect(overMade.all).toBe(o.scenarios.book?.ok ?? 0);
  });

  it("--token: a patient's own token for every request, booking and cancelling as that patient only", async () => {
    const patientId = randomUUID();
    const token = await tokenFor({ role: "patient", sub: patientId });
    const r = await runClient([
      "--target",
      gw.base,
      "--token",
      token,
      "--mix",
      "browse=2,book=2,cancel=1",
      "--rate",
      "10",
      "--duration",
      "2s",
      "--from",
      dates[6]!,
      "--days",
      "2",
      "--timeout-ms",
      "15000",
      "--json",
    ]);
    expect(r.code, r.lines.join("\n")).toBe(0);
    const s = JSON.parse(r.lines.join("\n")) as Summary;
    expect(s.auth.tokens).toBe("the patient token from --token");
    expect(s.scenarios.book!.ok).toBeGreaterThan(0);
    expect(unexpected(s.total), JSON.stringify(s.total.statuses)).toEqual([]);
    const made = await appointmentsOn(dates.slice(6));
    expect(made.all).toBe(s.scenarios.book!.ok);
    expect(made.cancelled).toBe(s.scenarios.cancel?.ok ?? 0);
    expect(made.patientIds).toEqual([patientId]);
  });

  it("tokens the gateway does not trust (401) and a role without the grant (403): one line naming role and route, exit 2", async () => {
    // A key of its own: the client mints with a key the gateway has never seen.
    const otherKeys = path.join(tmp, "other-auth", "jwks.json");
    const untrusted = await runClient(["--target", gw.base, "--duration", "1s"], {
      AUTH_JWKS_FILE: otherKeys,
    });
    expect(untrusted.code).toBe(2);
    expect(untrusted.lines).toHaveLength(1);
    expect(untrusted.lines[0]).toMatch(
      /^medisync client: the gateway refused the admin token on GET \/v1\/clinics \(401 UNAUTHENTICATED: .+\): the gateway does not accept the client's tokens/,
    );

    // A pharmacist of one clinic told to restock at two: the first restock at the other is refused.
    const [mine, theirs] = [`cl-${randomBytes(3).toString("hex")}`, `cl-${randomBytes(3).toString("hex")}`];
    await clinicsWithCodes(pool, [mine, theirs]);
    const pharmacist = await tokenFor({ role: "pharmacist", sub: "pharm-1", clinics: [mine] });
    const scoped = await runClient([
      "--target",
      gw.base,
      "--token",
      pharmacist,
      "--mix",
      "restock=1",
      "--rate",
      "20",
      "--duration",
      "30s",
      "--inventory-clinics",
      `${mine},${theirs}`,
      "--medications",
      "med-scope",
      "--timeout-ms",
      "15000",
    ]);
    expect(scoped.code).toBe(2);
    expect(scoped.lines).toEqual([
      `medisync client: the gateway refused the pharmacist token on POST /v1/inventory/{clinicId}/stock/{medicationCode}/restock (403 FORBIDDEN: the token is not scoped to clinic ${theirs}): that role may not do this there (src/shared/access-policy.ts)`,
    ]);

    // A role the mix's scenarios are not granted to: refused before anything is sent.
    const patient = await tokenFor({ role: "patient", sub: randomUUID() });
    const wrongRole = await runClient([
      "--target",
      gw.base,
      "--token",
      patient,
      "--mix",
      "browse=1,deduct=1",
    ]);
    expect(wrongRole.code).toBe(2);
    expect(wrongRole.lines).toEqual([
      "medisync client: --token: a patient token may not deduct (POST /v1/inventory/{clinicId}/stock/{medicationCode}/deduct is for pharmacist, admin): leave deduct out of --mix or pass another token",
    ]);
  });

  it("a gateway that is not up: one clear line on stderr, exit code 2, no stack trace", async () => {
    const port = await freePortRange(1);
    const r = await runClient(["--target", `http://127.0.0.1:${port}`, "--duration", "1s"]);
    expect(r.code).toBe(2);
    expect(r.lines).toEqual([
      `medisync client: the gateway at http://127.0.0.1:${port} is not reachable (ECONNREFUSED): start it (npm start) or point --target at it`,
    ]);
  });

  it("bad flags: one line naming the flag, exit code 2", async () => {
    for (const [args, message] of [
      [["--mix", "browse=70,teleport=5"], /^medisync client: --mix: unknown scenario "teleport"/],
      [["--rate=-3"], /^medisync client: --rate: "-3" must be a number/],
      [["--rate", "-3"], /^medisync client: flags: Option '--rate' argument is ambiguous/],
      [["--stages", "10s:50", "--duration", "5s"], /^medisync client: --duration: not with --stages/],
      [["--vus", "2", "--rate", "5"], /^medisync client: --rate and --vus: choose one load model/],
    ] as const) {
      const r = await runClient([...args]);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.lines, args.join(" ")).toHaveLength(1);
      expect(r.lines[0], args.join(" ")).toMatch(message);
    }
  });
});
