// Starts a real gateway (in this process, on an ephemeral port) in front of real appointment
// instances, for HTTP tests.
import { runGateway } from "../../src/gateway/server.ts";
import type { Config } from "../../src/shared/config.ts";
import { createLogger } from "../../src/shared/logger.ts";
import type { Instance } from "./services.ts";

export interface TestGateway {
  base: string;
  close(): Promise<void>;
}

export async function startGateway(cfg: Config, instances: Instance[]): Promise<TestGateway> {
  const gw = await runGateway(
    { ...cfg, APPOINTMENT_ADDRS: instances.map((i) => `127.0.0.1:${i.service.grpcPort}`) },
    createLogger({ service: "gateway", level: "silent" }),
  );
  return { base: `http://127.0.0.1:${gw.port}`, close: () => gw.close() };
}

export async function http(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; json: Record<string, unknown> & unknown[] }> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)["content-type"] ??= "application/json";
  }
  const res = await fetch(base + path, init);
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = { unparsable: text };
  }
  return { status: res.status, headers: res.headers, json: json as Record<string, unknown> & unknown[] };
}
