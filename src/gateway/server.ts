// Owns the gateway process: the gRPC clients, the HTTP server on PORT and closing both.
import { createServer, type RequestListener, type ServerOptions } from "node:http";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import type { Logger } from "pino";
import type { Config } from "../shared/config.ts";
import { createRedis } from "../shared/redis.ts";
import { createApp } from "./app.ts";
import { AppointmentClient } from "./appointment-client.ts";
import { InventoryClient } from "./inventory-client.ts";
import { addInventoryRoutes } from "./inventory-routes.ts";
import { createWriteLane } from "./write-lane.ts";

export interface Gateway {
  port: number;
  close(): Promise<void>;
}

export async function runGateway(cfg: Config, log: Logger): Promise<Gateway> {
  const appointments = new AppointmentClient({
    addrs: cfg.APPOINTMENT_ADDRS,
    deadlineMs: cfg.GRPC_DEADLINE_MS,
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
    redis,
    keyPrefix: cfg.REDIS_KEY_PREFIX,
  });
  const app = createApp({
    extend: (a) => addInventoryRoutes(a, inventory),
    appointments,
    log,
    bodyBytesMax: cfg.HTTP_BODY_BYTES_MAX,
    ready: async () => {
      await appointments.listClinics();
      return true;
    },
  });
  // The inventory writes take the direct lane (write-lane.ts); everything else goes through Hono.
  const lane = createWriteLane({ inventory, log, bodyBytesMax: cfg.HTTP_BODY_BYTES_MAX });
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve(
      {
        fetch: app.fetch,
        port: cfg.PORT,
        hostname: cfg.HOST,
        createServer: ((options: ServerOptions, honoListener: RequestListener) =>
          createServer(options, (req, res) => {
            if (!lane(req, res)) void honoListener(req, res);
          })) as typeof createServer,
      },
      () => resolve(s),
    );
    s.once("error", reject);
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ port }, "gateway listening");
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        appointments.close();
        inventory.close();
        redis.disconnect();
        server.close(() => resolve());
        // Keep-alive sockets of idle clients would hold close() open until they time out.
        (server as { closeIdleConnections?: () => void }).closeIdleConnections?.();
      }),
  };
}
