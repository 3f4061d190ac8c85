// SIGTERM to a real gateway process with a request in flight: the request is held inside a real
// appointment service (its booking waits on a row lock this test holds in PostgreSQL), and must
// still get its answer; meanwhile /readyz says 503, then new connections are refused, and the
// process exits 0 once the request is done.
import { randomUUID } from "node:crypto";
import http from "node:http";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { admin, as } from "./support/auth.ts";
import { makeClinic } from "./support/fixtures.ts";
import { freePortRange, runCli, type Watched } from "./support/process.ts";
import { type Instance, resetState, startInstance, stopInstance, testConfig } from "./support/services.ts";

const cfg = testConfig("gw_shutdown");
let appointment: Instance;
let gateway: Watched;
let port = 0;
let slotId = "";
let holder: pg.Client;
/** pg_stat_activity is read from outside the holder's transaction, which would see one snapshot of it. */
let observer: pg.Client;

/** One request on a connection of its own (no keep-alive), so "refused" means the listener is gone. */
function get(path: string): Promise<{ status: number } | { error: string }> {
  return new Promise((resolve) => {
    const req = http.request(
      { host: "127.0.0.1", port, path, method: "GET", agent: false, timeout: 5_000 },
      (res) => {
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode ?? 0 }));
      },
    );
    req.on("error", (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.end();
  });
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, boundMs: number): Promise<T> {
  const deadline = Date.now() + boundMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what} not within ${boundMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function startGatewayProcess(): Promise<{ gateway: Watched; port: number }> {
  const port = await freePortRange(1);
  const gateway = runCli(["gateway"], {
    PORT: String(port),
    APPOINTMENT_ADDRS: `127.0.0.1:${appointment.service.grpcPort}`,
    INVENTORY_PEERS: "inv-1=127.0.0.1:1",
    REDIS_URL: cfg.REDIS_URL,
    REDIS_KEY_PREFIX: cfg.REDIS_KEY_PREFIX,
    AUDIT_DATABASE_URL: cfg.AUDIT_DATABASE_URL,
    // The held booking must outlive neither its gRPC deadline nor the drain deadline.
    GRPC_DEADLINE_MS: "30000",
    SHUTDOWN_UNREADY_MS: "1500",
    SHUTDOWN_DRAIN_MS: "20000",
    LOG_LEVEL: "info",
  });
  await gateway.waitFor(/gateway listening/, 60_000);
  return { gateway, port };
}

/** Holds the booking of `key`: its idempotency key claimed in a transaction left open. */
async function holdBooking(key: string, patientId: string): Promise<void> {
  await holder.query("BEGIN");
  await holder.query("INSERT INTO booking_idempotency (key, request_hash) VALUES ($1, $2)", [
    key,
    `${slotId}|${patientId}`,
  ]);
}

function untilBookingWaits(): Promise<true> {
  return until(
    "the booking waiting on the held lock",
    async () => {
      const r = await observer.query(
        `SELECT 1 FROM pg_stat_activity
          WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO booking_idempotency%'`,
      );
      return r.rowCount ? true : undefined;
    },
    20_000,
  );
}

beforeAll(async () => {
  await resetState(cfg);
  appointment = await startInstance(cfg, undefined, "shutdown-a");
  const pool = new pg.Pool({ connectionString: cfg.DATABASE_URL, max: 2 });
  try {
    const fx = await makeClinic(pool, ["2031-07-01"], 4);
    slotId = fx.days.get("2031-07-01")![0]!.id;
  } finally {
    await pool.end();
  }
  ({ gateway, port } = await startGatewayProcess());
  holder = new pg.Client({ connectionString: cfg.DATABASE_URL });
  await holder.connect();
  observer = new pg.Client({ connectionString: cfg.DATABASE_URL });
  await observer.connect();
}, 120_000);

afterAll(async () => {
  if (gateway && gateway.proc.exitCode === null && gateway.proc.signalCode === null) {
    gateway.proc.kill("SIGKILL");
    await gateway.exited;
  }
  await holder?.query("ROLLBACK").catch(() => undefined);
  await holder?.end();
  await observer?.end();
  if (appointment) await stopInstance(appointment);
});

describe("gateway shutdown", { timeout: 120_000 }, () => {
  it("SIGTERM: /readyz 503, new connections refused, the in-flight booking answered, exit 0", async () => {
    expect(await get("/readyz")).toEqual({ status: 200 });
    const key = `shutdown-${randomUUID()}`;
    const patientId = randomUUID();
    // Hold the booking: claim its idempotency key in a transaction left open, so the service's own
    // INSERT of that key waits on our row lock until we roll back.
    await holdBooking(key, patientId);
    const inFlight = fetch(`http://127.0.0.1:${port}/v1/appointments`, {
      method: "POST",
      headers: { "content-type": "application/json", "idempotency-key": key, ...(await as(admin)) },
      body: JSON.stringify({ slotId, patientId }),
    }).then(async (r) => ({ status: r.status, json: (await r.json()) as Record<string, unknown> }));
    await untilBookingWaits();

    gateway.proc.kill("SIGTERM");
    await until(
      "/readyz 503",
      async () => {
        const r = await get("/readyz");
        return "status" in r && r.status === 503 ? r : undefined;
      },
      10_000,
    );
    await until(
      "new connections refused",
      async () => {
        const r = await get("/healthz");
        return "error" in r && r.error === "ECONNREFUSED" ? r : undefined;
      },
      15_000,
    );
    // The process waits for the booking it still owes an answer.
    expect(gateway.proc.exitCode).toBeNull();

    await holder.query("ROLLBACK");
    const answer = await inFlight;
    expect(answer.status).toBe(201);
    expect(answer.json).toMatchObject({ slotId, patientId, status: "booked" });
    const exit = await gateway.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(gateway.lines.some((l) => /"msg":"shutting down"/.test(l))).toBe(true);
  });

  it("SIGKILL mid-booking: the trail holds who attempted what, its outcome unknown", async () => {
    const killed = await startGatewayProcess();
    gateway = killed.gateway;
    const audit = new pg.Client({ connectionString: cfg.AUDIT_DATABASE_URL });
    await audit.connect();
    try {
      const key = `killed-${randomUUID()}`;
      const patientId = randomUUID();
      const requestId = `killed-${randomUUID()}`;
      await holdBooking(key, patientId);
      const attempt = fetch(`http://127.0.0.1:${killed.port}/v1/appointments`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "idempotency-key": key,
          "x-request-id": requestId,
          ...(await as(admin)),
        },
        body: JSON.stringify({ slotId, patientId }),
      }).catch((err: Error) => err);
      await untilBookingWaits();
      // Written while the act waits; a gateway that answered only after the act had no row yet.
      await until(
        "the attempt's audit row",
        async () => {
          const r = await audit.query("SELECT 1 FROM audit_events WHERE request_id = $1", [requestId]);
          return r.rowCount ? true : undefined;
        },
        10_000,
      );
      gateway.proc.kill("SIGKILL");
      await gateway.exited;
      expect(await attempt).toBeInstanceOf(Error);
      await holder.query("ROLLBACK");
      const trail = await audit.query(
        "SELECT action, resource_type, outcome, route FROM audit_trail WHERE request_id = $1",
        [requestId],
      );
      expect(trail.rows).toEqual([
        { action: "C", resource_type: "Appointment", outcome: null, route: "POST /v1/appointments" },
      ]);
    } finally {
      await audit.end();
    }
  });
});
