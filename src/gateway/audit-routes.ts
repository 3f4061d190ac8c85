// Owns GET /v1/audit: the audit trail read back, newest first, paginated, optionally one patient's,
// each row as a FHIR AuditEvent-shaped object. Who may read it (admin) is the access policy's
// decision, not this module's.
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { roles } from "../shared/principal.ts";
import type { GatewayEnv } from "./app.ts";
import { type AuditLog, type AuditRecord, auditActions, auditLimits } from "./audit.ts";
import { pageQuery } from "./pagination.ts";
import { mount } from "./route.ts";
import { json, problemDoc, uuid } from "./schemas.ts";

// The page query every list has (pagination.ts); audit.list refuses a cursor it did not give out,
// naming `cursor`, as the services do.
const AuditQuery = pageQuery(
  {
    limitMax: auditLimits.pageLimitMax,
    limitDefault: auditLimits.pageLimitDefault,
    cursorMax: auditLimits.cursorMax,
  },
  {
    patientId: uuid("patientId")
      .optional()
      .openapi({
        param: { name: "patientId", in: "query", required: false },
        description: "only this patient's rows",
      }),
  },
);

const AuditEvent = z
  .object({
    id: z.string().openapi({ description: "the row's id; rows are numbered in the order they were written" }),
    recorded: z
      .string()
      .openapi({ format: "date-time", description: "when the row was written (database clock)" }),
    occurred: z.string().openapi({
      format: "date-time",
      description: "when the gateway admitted (or refused) the request (its clock)",
    }),
    action: z.enum(auditActions).openapi({ description: "C create, R read, U update, D delete, E execute" }),
    outcome: z.number().int().nullable().openapi({
      description:
        "the HTTP status the request was answered with; null: not known yet (the request is still being answered, as this read of the trail is) or never recorded (the gateway stopped between the act and its outcome)",
    }),
    agent: z.object({
      who: z.string().nullable().openapi({ description: "the token's subject; null: unauthenticated" }),
      role: z.enum(roles).nullable(),
    }),
    entity: z.object({
      type: z.string().openapi({ example: "Appointment", description: "a FHIR resource type" }),
      id: z.string().nullable(),
      patientId: z.string().nullable(),
      clinic: z.string().nullable(),
    }),
    source: z.string().nullable().openapi({ description: "the client's address" }),
    requestId: z.string().nullable(),
    route: z.string().nullable().openapi({ example: "POST /v1/appointments" }),
  })
  .openapi("AuditEvent");

const AuditPage = z
  .object({ items: z.array(AuditEvent), nextCursor: z.string().nullable() })
  .openapi("AuditEventPage");

export function auditEventView(r: AuditRecord): z.infer<typeof AuditEvent> {
  return {
    id: r.id,
    recorded: r.recorded,
    occurred: r.occurred,
    action: r.action,
    outcome: r.outcome ?? null,
    agent: { who: r.actor?.sub ?? null, role: r.actor?.role ?? null },
    entity: {
      type: r.resourceType,
      id: r.resourceId ?? null,
      patientId: r.patientId ?? null,
      clinic: r.clinic ?? null,
    },
    source: r.source ?? null,
    requestId: r.requestId ?? null,
    route: r.route ?? null,
  };
}

export function addAuditRoutes(app: OpenAPIHono<GatewayEnv>, audit: AuditLog): void {
  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/audit",
      summary: "The audit trail (admin), newest first: every write and every read of patient data",
      description:
        "One row per request, shaped as a FHIR AuditEvent (docs/security.md, Audit trail). " +
        "Rows are never changed or deleted.",
      request: { query: AuditQuery },
      responses: {
        200: json(AuditPage, "One page; nextCursor is null on the last"),
        400: problemDoc("Invalid patientId, limit or cursor"),
        503: problemDoc("The audit database is unavailable"),
      },
    }),
    async (c) => {
      const { patientId, limit, cursor } = c.req.valid("query");
      const page = await audit.list({
        ...(patientId !== undefined ? { patientId } : {}),
        limit,
        ...(cursor !== undefined ? { cursor } : {}),
      });
      return c.json({ items: page.items.map(auditEventView), nextCursor: page.nextCursor ?? null }, 200);
    },
  );
}
