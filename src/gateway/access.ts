// Owns what the gateway records of every answered request, whichever path served it (Hono or the
// direct write lane): the count per route and status, and the access log line (request id, method,
// route template, status, time — never the path's values or the body).
import type { Logger } from "pino";
import { counter } from "../shared/metrics.ts";

const httpRequests = counter("medisync_http_requests_total", "HTTP requests answered by the gateway", [
  "route",
  "status",
]);

/** One labelled counter child per route and status, so counting a request hashes no labels. */
const counted = new Map<string, { inc: () => void }>();

export function recordRequest(
  log: Logger,
  a: { requestId: string; method: string; route: string; status: number; startedAt: number },
): void {
  const key = `${a.status} ${a.route}`;
  let child = counted.get(key);
  if (!child) {
    child = httpRequests.labels({ route: a.route, status: String(a.status) });
    counted.set(key, child);
  }
  child.inc();
  if (log.isLevelEnabled("info")) {
    log.info(
      {
        requestId: a.requestId,
        method: a.method,
        route: a.route,
        status: a.status,
        ms: Math.round((performance.now() - a.startedAt) * 100) / 100,
      },
      "http request",
    );
  }
}
