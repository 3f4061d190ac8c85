// Owns what the gateway records of every answered request, whichever path served it (Hono or the
// direct write lane): the count per route and status, and the access log line (request id, method,
// route template, status, time — never the path's values or the body), and its duration.
import type { Logger } from "pino";
import { counter, histogram } from "../shared/metrics.ts";

const httpRequests = counter("medisync_http_requests_total", "HTTP requests answered by the gateway", [
  "route",
  "status",
]);

// Per route only (status would multiply the series); 0.5 ms to 5 s covers a cached slot read to a
// write that waited out a failover.
const httpSeconds = histogram(
  "medisync_http_request_duration_seconds",
  "Time from a request's arrival to its answer, by route template",
  ["route"],
  [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
);

/** One labelled counter child per route and status, so counting a request hashes no labels. */
const counted = new Map<string, { inc: () => void }>();
const timed = new Map<string, { observe: (v: number) => void }>();

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
  let hist = timed.get(a.route);
  if (!hist) {
    hist = httpSeconds.labels({ route: a.route });
    timed.set(a.route, hist);
  }
  const ms = performance.now() - a.startedAt;
  hist.observe(ms / 1_000);
  if (log.isLevelEnabled("info")) {
    log.info(
      {
        requestId: a.requestId,
        method: a.method,
        route: a.route,
        status: a.status,
        ms: Math.round(ms * 100) / 100,
      },
      "http request",
    );
  }
}
