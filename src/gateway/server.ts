// Owns the gateway process: the gRPC clients, the HTTP server on PORT, and closing them in the order
// that loses no request: unready first, then stop accepting, then drain, then the clients.
import { createServer, type RequestListener, type Server, type ServerOptions } from "node:http";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import type { Logger } from "pino";
import { AppointmentClient } from "../shared/appointment-client.ts";
import type { Config } from "../shared/config.ts";
import { InventoryClient } from "../shared/inventory-client.ts";
import { registry } from "../shared/metrics.ts";
import { createRedis } from "../shared/redis.ts";
import { discover, startingAddresses } from "../shared/service-registry.ts";
import { loadTransportSecurity } from "../shared/tls.ts";
import { composePeers, createApp } from "./app.ts";
import { addAppointmentRoutes } from "./appointment-routes.ts";
import { openAuditLog } from "./audit.ts";
import { addAuditRoutes } from "./audit-routes.ts";
import { Guard } from "./auth/guard.ts";
import { TokenVerifier } from "./auth/tokens.ts";
import { ClinicDirectory } from "./clinics.ts";
import { addClusterRoutes } from "./cluster-routes.ts";
import { addInventoryRoutes } from "./inventory-routes.ts";
import { MedicationClient } from "./medication-client.ts";
import { NotificationClient } from "./notification-client.ts";
import { addNotificationRoutes } from "./notification-routes.ts";
import { addOpsRoutes } from "./ops-routes.ts";
import { OpsState } from "./ops-state.ts";
import { addPatientRoutes } from "./patient-routes.ts";
import { addPrescriptionRoutes } from "./prescription-routes.ts";
import { createRateLimits, rateLimitsFromConfig } from "./rate-limit.ts";
import { SlotTier } from "./slot-tier.ts";
import { createWriteLane } from "./write-lane.ts";

export interface Gateway {
  port: number;
  /** /healthz, /readyz, /metrics and the /ops dashboard: never published outside the cluster. */
  opsPort: number;
  close(): Promise<void>;
}

/** While draining, idle keep-alive connections are closed this often (each as soon as it goes idle). */
const idleSweepMs = 50;
/** How often an open /ops dashboard is brought up to date. */
const opsPollMs = 1_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runGateway(cfg: Config, log: Logger): Promise<Gateway> {
  /** Set by close(): /readyz answers 503 and every response asks the client to close its connection. */
  let draining = false;
  // The gateway's certificate for every gRPC call (mTLS); plaintext only with everything on loopback.
  const security = loadTransportSecurity(cfg, log, { service: "gateway" });
  const appointments = new AppointmentClient({
    addrs: startingAddresses(cfg, "appointment"),
    deadlineMs: cfg.GRPC_DEADLINE_MS,
    security,
  });
  const medication = new MedicationClient({
    addrs: startingAddresses(cfg, "medication"),
    deadlineMs: cfg.GRPC_DEADLINE_MS,
    security,
  });
  const notifications = new NotificationClient({
    addrs: startingAddresses(cfg, "notification"),
    deadlineMs: cfg.GRPC_DEADLINE_MS,
    security,
  });
  const redis = createRedis({
    url: cfg.REDIS_URL,
    commandTimeoutMs: cfg.REDIS_COMMAND_TIMEOUT_MS,
    log,
    name: "leader-hint",
  });
  // DISCOVERY=redis: the three clients follow the service registry (src/shared/service-registry.ts).
  const discovery = discover(cfg, {
    redis,
    log,
    targets: { appointment: appointments, medication, notification: notifications },
  });
  const inventory = new InventoryClient({
    peers: cfg.INVENTORY_PEERS,
    deadlineMs: cfg.GRPC_DEADLINE_MS,
    security,
    redis,
    keyPrefix: cfg.REDIS_KEY_PREFIX,
    queueCommandsMax: cfg.GATEWAY_INVENTORY_QUEUE_COMMANDS_MAX,
  });
  // Which codes name a clinic, for the inventory routes: read from the appointment service at
  // start and kept fresh, so the check costs a write no call (clinics.ts).
  const clinics = new ClinicDirectory({
    list: async (requestId) => (await appointments.listClinics(requestId)).clinics,
    log,
  });
  clinics.start();
  // Tokens from the identity provider's JWKS (or npm start's own file), checked on every /v1 route.
  const tokens = new TokenVerifier({
    ...(cfg.AUTH_JWKS_URL ? { jwksUrl: cfg.AUTH_JWKS_URL } : { jwksFile: cfg.AUTH_JWKS_FILE }),
    issuer: cfg.AUTH_ISSUER,
    audience: cfg.AUTH_AUDIENCE,
    clockSkewMs: cfg.AUTH_CLOCK_SKEW_MS,
    cacheTokensMax: cfg.AUTH_TOKEN_CACHE_MAX,
  });
  const guard = new Guard({
    tokens,
    clinicCodeOf: (id, requestId) => clinics.codeOfFresh(id, requestId),
    lookups: {
      appointment: async (id, requestId) => {
        const a = await appointments.get(id, requestId);
        return { patientId: a.patientId, clinicCode: a.clinicCode };
      },
      prescription: async (id, requestId) => {
        const p = await medication.get(id, requestId);
        return { patientId: p.patientId, clinic: p.clinic };
      },
    },
  });
  const limits = createRateLimits({
    redis,
    keyPrefix: cfg.REDIS_KEY_PREFIX,
    limits: rateLimitsFromConfig(cfg),
    log,
  });
  // Every write and every read of patient data leaves a row before its answer leaves (audit.ts).
  const audit = await openAuditLog(cfg, log);
  const pipeline = { guard, limits, audit };
  const slotTier = new SlotTier({
    redis,
    keyPrefix: cfg.REDIS_KEY_PREFIX,
    entriesMax: cfg.GATEWAY_SLOT_CACHE_MAX_ENTRIES,
    ttlMs: cfg.GATEWAY_SLOT_CACHE_TTL_MS,
  });
  const ready = async () => {
    if (draining) return false;
    await appointments.listClinics();
    return true;
  };
  const app = createApp({
    corsOrigins: cfg.CORS_ORIGINS,
    pipeline,
    log,
    bodyBytesMax: cfg.HTTP_BODY_BYTES_MAX,
    ready,
  });
  // The route modules, as peers: each owns its routes and their documents; the app owns the
  // middleware, the pipeline and the problems.
  composePeers(app, pipeline, [
    (a) => addAppointmentRoutes(a, { appointments, slotTier }),
    (a) =>
      addPatientRoutes(a, {
        appointments,
        // A clinician sees the patient's appointments at the token's clinics only.
        clinicScope: (c) => {
          const { grant, principal } = c.get("admission");
          return grant === "clinic" ? { clinicIds: [], clinicCodes: [...principal.clinics] } : undefined;
        },
      }),
    (a) => addInventoryRoutes(a, { inventory, clinics, services: () => discovery.view() }),
    (a) => addClusterRoutes(a, inventory, () => discovery.view()),
    (a) => addPrescriptionRoutes(a, medication),
    (a) => addNotificationRoutes(a, notifications),
    (a) => addAuditRoutes(a, audit),
  ]);
  // The inventory writes take the direct lane (write-lane.ts); everything else goes through Hono.
  const lane = createWriteLane({ inventory, clinics, log, bodyBytesMax: cfg.HTTP_BODY_BYTES_MAX, pipeline });
  // The ops port: probes, metrics and the dashboard, for the cluster's own eyes (compose and the
  // manifests do not publish it), so they need no token.
  const opsApp = new Hono();
  opsApp.get("/healthz", (c) => c.json({ status: "ok" }));
  opsApp.get("/readyz", async (c) => {
    const ok = await ready().catch(() => false);
    return c.json({ status: ok ? "ready" : "not ready" }, ok ? 200 : 503);
  });
  opsApp.get("/metrics", async (c) =>
    c.body(await registry.metrics(), 200, { "content-type": registry.contentType }),
  );
  const ops = addOpsRoutes(
    opsApp,
    new OpsState({ inventory, redis, stream: `${cfg.REDIS_KEY_PREFIX}events`, log, pollMs: opsPollMs }),
  );
  const opsServer = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: opsApp.fetch, port: cfg.GATEWAY_OPS_PORT, hostname: cfg.HOST }, () =>
      resolve(s),
    );
    s.once("error", reject);
  });
  const opsPort = (opsServer.address() as AddressInfo).port;
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve(
      {
        fetch: app.fetch,
        port: cfg.PORT,
        hostname: cfg.HOST,
        createServer: ((options: ServerOptions, honoListener: RequestListener) =>
          createServer(options, (req, res) => {
            // A keep-alive client must not send its next request on a connection we are closing.
            if (draining) res.setHeader("connection", "close");
            if (!lane(req, res)) void honoListener(req, res);
          })) as typeof createServer,
      },
      () => resolve(s),
    );
    s.once("error", reject);
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ port, opsPort }, "gateway listening");
  let closing: Promise<void> | undefined;
  const close = async () => {
    draining = true;
    log.info({ unreadyMs: cfg.SHUTDOWN_UNREADY_MS }, "gateway draining: /readyz answers 503");
    // Load balancers stop sending once they see /readyz fail; until then requests are still served.
    await sleep(cfg.SHUTDOWN_UNREADY_MS);
    // Dashboards' event streams are never idle: ended here, so they do not hold the drain open.
    ops.close();
    const http = server as Server;
    const closed = new Promise<void>((resolve) => http.close(() => resolve()));
    log.info({ drainMs: cfg.SHUTDOWN_DRAIN_MS }, "gateway stopped accepting; draining requests in flight");
    http.closeIdleConnections();
    const sweep = setInterval(() => http.closeIdleConnections(), idleSweepMs);
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      closed.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), cfg.SHUTDOWN_DRAIN_MS);
      }),
    ]);
    clearTimeout(timer);
    clearInterval(sweep);
    if (!drained) {
      log.warn({ drainMs: cfg.SHUTDOWN_DRAIN_MS }, "drain deadline passed: closing connections in flight");
      http.closeAllConnections();
      await closed;
    }
    // Only now: a request in flight still needed its gRPC client to finish.
    clinics.stop();
    discovery.stop();
    appointments.close();
    medication.close();
    notifications.close();
    inventory.close();
    await limits.close();
    await audit.close();
    redis.disconnect();
    await new Promise<void>((resolve) => (opsServer as Server).close(() => resolve()));
    log.info("gateway closed");
  };
  return {
    port,
    opsPort,
    close: () => {
      closing ??= close();
      return closing;
    },
  };
}
