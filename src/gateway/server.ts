// Owns the gateway process: the gRPC clients, the HTTP server on PORT and closing both.
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import type { Logger } from "pino";
import type { Config } from "../shared/config.ts";
import { createApp } from "./app.ts";
import { AppointmentClient } from "./appointment-client.ts";

export interface Gateway {
  port: number;
  close(): Promise<void>;
}

export async function runGateway(cfg: Config, log: Logger): Promise<Gateway> {
  const appointments = new AppointmentClient({
    addrs: cfg.APPOINTMENT_ADDRS,
    deadlineMs: cfg.GRPC_DEADLINE_MS,
  });
  const app = createApp({
    appointments,
    log,
    bodyBytesMax: cfg.HTTP_BODY_BYTES_MAX,
    ready: async () => {
      await appointments.listClinics();
      return true;
    },
  });
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, port: cfg.PORT, hostname: cfg.HOST }, () => resolve(s));
    s.once("error", reject);
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ port }, "gateway listening");
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        appointments.close();
        server.close(() => resolve());
        // Keep-alive sockets of idle clients would hold close() open until they time out.
        (server as { closeIdleConnections?: () => void }).closeIdleConnections?.();
      }),
  };
}
