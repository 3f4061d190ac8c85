// Owns Prometheus metrics (one registry per process) and the small ops HTTP server every service
// exposes: /healthz (alive), /readyz (dependencies reachable), /metrics.
import { createServer, type Server } from "node:http";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export const registry = new Registry();
collectDefaultMetrics({ register: registry });

export interface OpsServerOptions {
  host: string;
  port: number;
  /** Resolves true when the service can do useful work now. */
  ready: () => Promise<boolean>;
}

/** The port an ops server listens on (the configured one when it was not 0). */
export function portOf(server: Server, configured: number): number {
  const address = server.address();
  return typeof address === "object" && address ? address.port : configured;
}

export function startOpsServer(opts: OpsServerOptions): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, type: string, body: string) => {
      res.writeHead(status, { "content-type": type });
      res.end(body);
    };
    if (req.method !== "GET") return send(405, "text/plain", "method not allowed\n");
    if (path === "/healthz") return send(200, "application/json", '{"status":"ok"}');
    if (path === "/readyz") {
      opts.ready().then(
        (ok) =>
          send(ok ? 200 : 503, "application/json", JSON.stringify({ status: ok ? "ready" : "not ready" })),
        () => send(503, "application/json", '{"status":"not ready"}'),
      );
      return;
    }
    if (path === "/metrics") {
      registry.metrics().then(
        (text) => send(200, registry.contentType, text),
        () => send(500, "text/plain", "metrics failed\n"),
      );
      return;
    }
    send(404, "text/plain", "not found\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => resolve(server));
  });
}

/**
 * Metrics are process-wide; a test may run several service instances in one process, so a metric
 * is created once and shared (its labels tell instances apart where that matters).
 */
export function counter<L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L> {
  return (
    (registry.getSingleMetric(name) as Counter<L> | undefined) ??
    new Counter({ name, help, labelNames, registers: [registry] })
  );
}

export function gauge<L extends string>(name: string, help: string, labelNames: readonly L[]): Gauge<L> {
  return (
    (registry.getSingleMetric(name) as Gauge<L> | undefined) ??
    new Gauge({ name, help, labelNames, registers: [registry] })
  );
}

export function histogram<L extends string>(
  name: string,
  help: string,
  labelNames: readonly L[],
  buckets: number[],
): Histogram<L> {
  return (
    (registry.getSingleMetric(name) as Histogram<L> | undefined) ??
    new Histogram({ name, help, labelNames, buckets, registers: [registry] })
  );
}
