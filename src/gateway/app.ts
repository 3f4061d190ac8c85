import type { IncomingMessage, ServerResponse } from "node:http";
import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import { HTTPException } from "hono/http-exception";
import type { Logger } from "pino";
import { REQUEST_ID_HEADER, sanitizeRequestId } from "../shared/context.ts";
import { AppError } from "../shared/errors.ts";
import { recordRequest } from "./access.ts";
import type { Admission } from "./auth/guard.ts";
import { hasBody, refuseByHeaders, takeBody, tooLargeError } from "./body.ts";
import { mountDocs } from "./docs-page.ts";
import type { Pipeline } from "./pipeline.ts";
import { failureOf, problemResponse, requestIdOf, validationProblem } from "./problems.ts";
import { usePipeline } from "./route.ts";

/**
 * What a request carries through the middleware: its id, set first. The gateway passes it by hand
 * (to log lines, problems and outgoing calls) rather than through AsyncLocalStorage, whose promise
 * hooks cost every request about a fifth of the gateway's CPU on Node 20.
 */
export type GatewayEnv = {
  Variables: {
    requestId: string;
    /** Bookings: the key tried, named in a failure's problem (errorResponse) so a retry can use it. */
    idempotencyKey?: string;
    /** Who the request acts for and on what, once the pipeline let it in (pipeline.ts). */
    admission: Admission;
    /** The record a create made, for its audit row (reads and updates name it in the path). */
    resourceId?: string;
  };
};

export interface GatewayDeps {
  log: Logger;
  bodyBytesMax: number;
  /** Browser origins allowed to call /v1 (CORS_ORIGINS); none: no CORS headers at all. */
  corsOrigins?: readonly string[];
  /** Token, rate limit, grant and audit, for every /v1 route (pipeline.ts). */
  pipeline: Pipeline;
  /** Resolves true when the services behind the gateway answer. */
  ready: () => Promise<boolean>;
}

/**
 * Mounts route modules as peers (app.route): each on an app of its own with the same pipeline,
 * merged into `app`'s router and OpenAPI document behind its middleware.
 */
export function composePeers(
  app: OpenAPIHono<GatewayEnv>,
  pipeline: Pipeline,
  modules: ((peer: OpenAPIHono<GatewayEnv>) => void)[],
): void {
  for (const add of modules) {
    const peer = new OpenAPIHono<GatewayEnv>();
    usePipeline(peer, pipeline);
    add(peer);
    app.route("/", peer);
  }
}

export function createApp(deps: GatewayDeps): OpenAPIHono<GatewayEnv> {
  const { log } = deps;
  const app = new OpenAPIHono<GatewayEnv>({
    defaultHook: (result, c) => {
      if (!result.success) return validationProblem(c, result.target, result.error);
    },
  });
  usePipeline(app, deps.pipeline);

  // Hono's own limit, for when the app runs outside @hono/node-server (no Node request to read).
  const limitBody = bodyLimit({
    maxSize: deps.bodyBytesMax,
    onError: (c) => problemResponse(c, tooLargeError(deps.bodyBytesMax)),
  });

  /**
   * A write's body, read before routing (body.ts): refused with a problem, or put in Hono's body
   * cache. `undefined`: nothing to read, or the body is in the cache.
   */
  const prepareBody = async (c: Context): Promise<Response | "hono-limit" | undefined> => {
    const h = {
      contentLength: c.req.header("content-length"),
      transferEncoding: c.req.header("transfer-encoding"),
      contentType: c.req.header("content-type"),
    };
    if (!hasBody(h)) return undefined;
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
    if (!incoming) {
      const refused = refuseByHeaders(h, deps.bodyBytesMax);
      return refused ? problemResponse(c, refused) : "hono-limit";
    }
    const body = await takeBody(incoming, h, deps.bodyBytesMax);
    if (body instanceof AppError) return problemResponse(c, body);
    (c.req.bodyCache as Record<string, unknown>).text = Promise.resolve(body);
    return undefined;
  };

  // One middleware in front of every route (each Hono middleware is another match and another
  // async layer per request): the request id first, so every later line and every gRPC call of the
  // request carries it; then a write's body; then the access log and the count.
  app.use("*", async (c, next) => {
    const requestId = sanitizeRequestId(c.req.header(REQUEST_ID_HEADER));
    c.set("requestId", requestId);
    // On Node the header goes straight onto the ServerResponse, merged into whatever response the
    // handler builds: c.header() would make Hono build a web Headers object for every response.
    // Elsewhere (app.request in tests) through the context.
    const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
    if (outgoing) outgoing.setHeader("X-Request-Id", requestId);
    else c.header("X-Request-Id", requestId);
    const startedAt = performance.now();
    const method = c.req.method;
    const write = method !== "GET" && method !== "HEAD" && c.req.path.startsWith("/v1/");
    const early = write ? await prepareBody(c) : undefined;
    let refused: Response | undefined;
    if (early === "hono-limit") {
      // Hono's limit answers a body that is too large itself, or passes on to the route.
      const limited: unknown = await limitBody(c, next);
      if (limited instanceof Response) refused = limited;
    } else if (early) refused = early;
    else await next();
    const status = refused ? refused.status : c.res.status;
    // A body refused before routing is counted apart; so are paths no route matched.
    const route = refused ? "body-refused" : c.req.routePath === "/*" ? "unmatched" : c.req.routePath;
    recordRequest(log, { requestId, method, route, status, startedAt });
    return refused;
  });

  // CORS for a browser front end, from CORS_ORIGINS only; nothing is allowed by default. Requests
  // with an Origin never take the direct write lane (write-lane.ts), so this is the one place.
  if (deps.corsOrigins && deps.corsOrigins.length > 0) {
    app.use(
      "/v1/*",
      cors({
        origin: [...deps.corsOrigins],
        allowMethods: ["GET", "POST", "PUT", "DELETE"],
        allowHeaders: ["authorization", "content-type", "idempotency-key", "x-request-id"],
        exposeHeaders: [
          "x-request-id",
          "idempotency-key",
          "idempotent-replayed",
          "retry-after",
          "ratelimit",
          "ratelimit-policy",
          "www-authenticate",
          "x-cache",
        ],
        maxAge: 600,
      }),
    );
  }

  app.get("/healthz", (c) => c.json({ status: "ok" }));
  app.get("/readyz", async (c) => {
    const ok = await deps.ready().catch(() => false);
    return c.json({ status: ok ? "ready" : "not ready" }, ok ? 200 : 503);
  });

  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "MediSync",
      version: "1.0.0",
      description: "Appointments and medicine stock for a group of clinics. Errors are RFC 9457 problems.",
    },
  });
  mountDocs(app);

  app.notFound((c) =>
    problemResponse(c, new AppError("ROUTE_NOT_FOUND", `no route for ${c.req.method} ${c.req.path}`)),
  );

  app.onError((err, c) => errorResponse(c, err, log));
  return app;
}

function errorResponse(c: Context, err: unknown, log: Logger): Response {
  if (err instanceof HTTPException) {
    // Hono raises these for bodies it cannot read; say which.
    if (err.status === 400) return problemResponse(c, new AppError("MALFORMED_JSON", err.message, "body"));
    if (err.status === 413) return problemResponse(c, new AppError("PAYLOAD_TOO_LARGE", err.message, "body"));
    return problemResponse(c, new AppError("VALIDATION", err.message));
  }
  const idempotencyKey = c.get("idempotencyKey") as string | undefined;
  return problemResponse(c, failureOf(err, log, requestIdOf(c)), idempotencyKey ? { idempotencyKey } : {});
}
