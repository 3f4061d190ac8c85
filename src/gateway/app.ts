// Owns the REST surface of MediSync: the Hono app, its middleware (request id, access log, body
// limit, content type, metrics), the appointment routes and the OpenAPI document. It holds no
// state; every answer comes from a service over gRPC.
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { cors } from "hono/cors";
import { HTTPException } from "hono/http-exception";
import type { Logger } from "pino";
import { CacheTier } from "../gen/medisync/v1/appointment.ts";
import type { AppointmentClient } from "../shared/appointment-client.ts";
import { REQUEST_ID_HEADER, sanitizeRequestId } from "../shared/context.ts";
import { AppError } from "../shared/errors.ts";
import { counter } from "../shared/metrics.ts";
import { recordRequest } from "./access.ts";
import type { Admission } from "./auth/guard.ts";
import type { Principal } from "./auth/principal.ts";
import { hasBody, refuseByHeaders, takeBody, tooLargeError } from "./body.ts";
import { mountDocs } from "./docs-page.ts";
import type { Pipeline } from "./pipeline.ts";
import { failureOf, problemResponse, requestIdOf, validationProblem } from "./problems.ts";
import { mount, usePipeline } from "./route.ts";
import {
  Appointment,
  AppointmentParams,
  BookBody,
  Clinic,
  ClinicParams,
  CreateSlotsBody,
  IdempotencyHeaders,
  IdempotencyKeyHeader,
  json,
  jsonBody,
  Practitioner,
  problemDoc,
  Slot,
  SlotDay,
  SlotsQuery,
} from "./schemas.ts";
import { appointmentView, slotView } from "./views.ts";

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
  appointments: AppointmentClient;
  log: Logger;
  bodyBytesMax: number;
  /** Browser origins allowed to call /v1 (CORS_ORIGINS); none: no CORS headers at all. */
  corsOrigins?: readonly string[];
  /** Token, rate limit, grant and audit, for every /v1 route (pipeline.ts). */
  pipeline: Pipeline;
  /** The clinic ids a staff token is scoped to (its clinics claim holds codes). */
  clinicIdsOf: (principal: Principal) => string[];
  /** Resolves true when the services behind the gateway answer. */
  ready: () => Promise<boolean>;
  /** Extra routes (inventory) mounted on the same app, so they share middleware and the document. */
  extend?: (app: OpenAPIHono<GatewayEnv>) => void;
}

const slotTiers = counter("medisync_gateway_slot_reads_total", "Slot reads by the tier that served them", [
  "tier",
]);

const tierName: Record<CacheTier, string> = {
  [CacheTier.CACHE_TIER_UNSPECIFIED]: "db",
  [CacheTier.CACHE_TIER_LRU]: "lru",
  [CacheTier.CACHE_TIER_REDIS]: "redis",
  [CacheTier.CACHE_TIER_DB]: "db",
  [CacheTier.UNRECOGNIZED]: "db",
};

export function createApp(deps: GatewayDeps): OpenAPIHono<GatewayEnv> {
  const { appointments, log } = deps;
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

  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/clinics",
      summary: "List clinics",
      responses: { 200: json(z.array(Clinic), "Clinics with their IANA time zones") },
    }),
    async (c) => {
      const { clinics } = await appointments.listClinics(c.get("requestId"));
      return c.json(
        clinics.map((k) => ({ id: k.id, code: k.code, name: k.name, timeZone: k.timeZone })),
        200,
      );
    },
  );

  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/clinics/{clinicId}/practitioners",
      summary: "List a clinic's practitioners",
      request: { params: ClinicParams },
      responses: {
        200: json(z.array(Practitioner), "Practitioners"),
        400: problemDoc("Invalid clinic id"),
        404: problemDoc("No such clinic"),
      },
    }),
    async (c) => {
      const { clinicId } = c.req.valid("param");
      const { practitioners } = await appointments.listPractitioners(clinicId, c.get("requestId"));
      return c.json(
        practitioners.map((p) => ({ id: p.id, clinicId: p.clinicId, name: p.name })),
        200,
      );
    },
  );

  mount(
    app,
    createRoute({
      method: "post",
      path: "/v1/clinics/{clinicId}/slots",
      summary: "Create slots of `minutes` each between start and end (admin)",
      request: { params: ClinicParams, body: jsonBody(CreateSlotsBody) },
      responses: {
        201: json(z.array(Slot), "The created slots"),
        400: problemDoc("Invalid input"),
        404: problemDoc("No such clinic or practitioner"),
        409: problemDoc("Overlaps existing slots"),
        422: problemDoc("start is in the past"),
      },
    }),
    async (c) => {
      const { clinicId } = c.req.valid("param");
      const body = c.req.valid("json");
      const { slots } = await appointments.createSlots({ clinicId, ...body }, c.get("requestId"));
      return c.json(slots.map(slotView), 201);
    },
  );

  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/clinics/{clinicId}/slots",
      summary: "Slots of one day in the clinic's own time zone; X-Cache names the tier that answered",
      request: { params: ClinicParams, query: SlotsQuery },
      responses: {
        200: {
          ...json(SlotDay, "The day's slots"),
          headers: z.object({ "X-Cache": z.enum(["lru", "redis", "db"]) }),
        },
        400: problemDoc("Invalid input"),
        404: problemDoc("No such clinic"),
      },
    }),
    async (c) => {
      const { clinicId } = c.req.valid("param");
      const { date, practitionerId } = c.req.valid("query");
      const day = await appointments.listSlots(clinicId, date, practitionerId, c.get("requestId"));
      const tier = tierName[day.tier];
      slotTiers.inc({ tier });
      c.header("X-Cache", tier);
      return c.json({ clinicId: day.clinicId, date: day.date, slots: day.slots.map(slotView) }, 200);
    },
  );

  mount(
    app,
    createRoute({
      method: "post",
      path: "/v1/appointments",
      summary: "Book a slot; the same Idempotency-Key returns the first result and books nothing new",
      description:
        "Without an Idempotency-Key the gateway makes one up. Every answer names the key used (header " +
        '`Idempotency-Key`, and `idempotencyKey` in a problem), so a client told 503 "retry with the ' +
        'same Idempotency-Key" can do exactly that.',
      request: { headers: IdempotencyHeaders, body: jsonBody(BookBody) },
      responses: {
        201: {
          ...json(Appointment, "Booked (Idempotent-Replayed: true when this repeats an earlier request)"),
          headers: IdempotencyKeyHeader,
        },
        400: problemDoc("Invalid input"),
        404: problemDoc("No such slot"),
        409: problemDoc("Slot already booked"),
        422: problemDoc("Idempotency key used for a different request, or the slot is in the past"),
        503: {
          ...problemDoc("Not acknowledged yet: retry with the same Idempotency-Key (the one in the answer)"),
          headers: IdempotencyKeyHeader,
        },
      },
    }),
    async (c) => {
      const { slotId } = c.req.valid("json");
      // A patient books for themselves (the body's patientId, when given, was checked to be theirs).
      const admission = c.get("admission");
      const patientId = admission.facts.patientId ?? admission.principal.sub;
      // Without a caller's key the gateway makes one, so its own retries can never book twice; the
      // answer names it, so the caller's retries cannot either.
      const key = c.req.valid("header")["Idempotency-Key"] ?? `gw-${randomUUID()}`;
      c.header("Idempotency-Key", key);
      c.set("idempotencyKey", key);
      const clinicScope = admission.grant === "clinic" ? deps.clinicIdsOf(admission.principal) : undefined;
      const { appointment, replayed } = await appointments.book(
        slotId,
        patientId,
        key,
        c.get("requestId"),
        clinicScope,
      );
      c.set("resourceId", appointment.id);
      if (replayed) c.header("Idempotent-Replayed", "true");
      return c.json(appointmentView(appointment), 201);
    },
  );

  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/appointments/{id}",
      summary: "One appointment",
      request: { params: AppointmentParams },
      responses: {
        200: json(Appointment, "The appointment"),
        400: problemDoc("Invalid id"),
        404: problemDoc("No such appointment"),
      },
    }),
    async (c) =>
      c.json(appointmentView(await appointments.get(c.req.valid("param").id, c.get("requestId"))), 200),
  );

  mount(
    app,
    createRoute({
      method: "post",
      path: "/v1/appointments/{id}/cancel",
      summary: "Cancel an appointment; its slot becomes free",
      request: { params: AppointmentParams },
      responses: {
        200: json(Appointment, "Cancelled"),
        400: problemDoc("Invalid id"),
        404: problemDoc("No such appointment"),
        409: problemDoc("Already cancelled"),
      },
    }),
    async (c) =>
      c.json(appointmentView(await appointments.cancel(c.req.valid("param").id, c.get("requestId"))), 200),
  );

  deps.extend?.(app);

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
