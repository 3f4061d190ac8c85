// Starts a real gateway (in this process, on an ephemeral port) in front of real appointment
// instances, for HTTP tests.
import { runGateway } from "../../src/gateway/server.ts";
import type { Config } from "../../src/shared/config.ts";
import { createLogger, type Logger } from "../../src/shared/logger.ts";
import { admin, tokenFor } from "./auth.ts";
import type { Instance } from "./services.ts";

export interface TestGateway {
  base: string;
  /** The ops port's base: /metrics, /ops (no token). */
  opsBase: string;
  close(): Promise<void>;
}

export async function startGateway(cfg: Config, instances: Instance[], log?: Logger): Promise<TestGateway> {
  const gw = await runGateway(
    { ...cfg, APPOINTMENT_ADDRS: instances.map((i) => `127.0.0.1:${i.service.grpcPort}`) },
    log ?? createLogger({ service: "gateway", level: "silent" }),
  );
  return {
    base: `http://127.0.0.1:${gw.port}`,
    opsBase: `http://127.0.0.1:${gw.opsPort}`,
    close: () => gw.close(),
  };
}

export async function http(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; json: Record<string, unknown> & unknown[] }> {
  // Every test request carries a token: an admin's unless the test names another, or none at all
  // when it passes `authorization: ""` (a request without a token).
  const auth = headers.authorization ?? headers.Authorization;
  const sent = { ...headers };
  delete sent.Authorization;
  if (auth === undefined) sent.authorization = `Bearer ${await tokenFor(admin)}`;
  else if (auth === "") delete sent.authorization;
  const init: RequestInit = { method, headers: sent };
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
