// Owns the gateway process: the gRPC clients, the HTTP server on PORT, and closing them in the order
// that loses no request: unready first, then stop accepting, then drain, then the clients.
import { createServer, type RequestListener, type Server, type ServerOptions } from "node:http";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import type { Logger } from "pino";
import { AppointmentClient } from "../shared/appointment-client.ts";
import type { Config } from "../shared/config.ts";
import { InventoryClient } from "../shared/inventory-client.ts";
import { createRedis } from "../shared/redis.ts";
import { loadTransportSecurity } from "../shared/tls.ts";
import { createApp } from "./app.ts";
import { ClinicDirectory } from "./clinics.ts";
import { addClusterRoutes } from "./cluster-routes.ts";
import { addInventoryRoutes } from "./inventory-routes.ts";
import { MedicationClient } from "./medication-client.ts";
import { NotificationClient } from "./notification-client.ts";
import { addNotificationRoutes } from "./notification-routes.ts";
import { addOpsRoutes } from "./ops-routes.ts";
import { OpsState } from "./ops-state.ts";
import { addPrescriptionRoutes } from "./prescription-routes.ts";
import { createWriteLane } from "./write-lane.ts";

export interface Gateway {
  port: number;
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
    addrs: cfg.APPOINTMENT_ADDRS,
    deadlineMs: cfg.GRPC_DEADLINE_MS,
    security,
  });
  const medication = new MedicationClient({
    addrs: cfg.MEDICATION_ADDRS,
    deadlineMs: cfg.GRPC_DEADLINE_MS,
    security,
  });
  const notifications = new NotificationClient({
    addrs: cfg.NOTIFICATION_ADDRS,
    deadlineMs: cfg.GRPC_DEADLINE_MS,
    security,
  });
  const redis = createRedis({
    url: cfg.REDIS_URL,
    commandTimeoutMs: cfg.REDIS_COMMAND_TIMEOUT_MS,
    log,
    name: "leader-hint",
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
  let ops: { close(): void } | undefined;
  const app = createApp({
    extend: (a) => {
      ops = addOpsRoutes(
        a,
        new OpsState({ inventory, redis, stream: `${cfg.REDIS_KEY_PREFIX}events`, log, pollMs: opsPollMs }),
      );
      addInventoryRoutes(a, { inventory, clinics });
      addClusterRoutes(a, inventory);
      addPrescriptionRoutes(a, medication);
      addNotificationRoutes(a, notifications);
    },
    appointments,
    log,
    bodyBytesMax: cfg.HTTP_BODY_BYTES_MAX,
    ready: async () => {
      if (draining) return false;
      await appointments.listClinics();
      return true;
    },
  });
  // The inventory writes take the direct lane (write-lane.ts); everything else goes through Hono.
  const lane = createWriteLane({ inventory, clinics, log, bodyBytesMax: cfg.HTTP_BODY_BYTES_MAX });
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
  log.info({ port }, "gateway listening");
  let closing: Promise<void> | undefined;
  const close = async () => {
    draining = true;
    log.info({ unreadyMs: cfg.SHUTDOWN_UNREADY_MS }, "gateway draining: /readyz answers 503");
    // Load balancers stop sending once they see /readyz fail; until then requests are still served.
    await sleep(cfg.SHUTDOWN_UNREADY_MS);
    // Dashboards' event streams are never idle: ended here, so they do not hold the drain open.
    ops?.close();
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
    appointments.close();
    medication.close();
    notifications.close();
    inventory.close();
    redis.disconnect();
    log.info("gateway closed");
  };
  return {
    port,
    close: () => {
      closing ??= close();
      return closing;
    },
  };
}
