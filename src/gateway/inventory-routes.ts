// Owns the inventory REST routes: stock reads (linearizable by default, stale on request), writes
// carrying the Idempotency-Key as the command's request id, transfers, and the cluster's view. Every
// clinic a route names is a clinic's code, checked against the gateway's clinic list (clinics.ts)
// before the inventory is asked: here for reads, in submitWrite for both write paths.
import { randomUUID } from "node:crypto";
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { StockItem as StockItemMsg } from "../gen/medisync/v1/inventory.ts";
import type { InventoryClient, WriteResult as WriteAnswer, WriteMethod } from "../shared/inventory-client.ts";
import type { ServiceView } from "../shared/service-registry.ts";
import { inventoryLimits, isTimeZone } from "../shared/validation.ts";
import type { GatewayEnv } from "./app.ts";
import type { ClinicDirectory, NamedClinic } from "./clinics.ts";
import { type PageLimits, pageOf, pageQuery, pageSchema, pageTokenOf } from "./pagination.ts";
import { mount } from "./route.ts";
import { calendarDate, IdempotencyHeaders, json, jsonBody, problemDoc } from "./schemas.ts";
import { ServiceList, servicesAnswer } from "./services-view.ts";

const { codeMax, codePattern, quantityMax } = inventoryLimits;
const code = (name: string) =>
  z
    .string()
    .regex(codePattern, `${name} must be 1-${codeMax} of [A-Za-z0-9_.:-]`)
    .max(codeMax)
    .openapi({ example: name === "medicationCode" ? "amoxicillin-500mg" : "harbour" });
/** A clinic, by its code (GET /v1/clinics): one the appointment service knows, or 404 clinic-not-found. */
const clinicCode = (name: string) =>
  code(name).openapi({
    description:
      "the clinic's code, as GET /v1/clinics lists it; a code that names no clinic is 404 clinic-not-found",
  });
const clinicPathParam = clinicCode("clinicId").openapi({ param: { name: "clinicId", in: "path" } });
const quantity = z.number().int().min(1).max(quantityMax).openapi({ example: 10 });

const ClinicParam = z.object({ clinicId: clinicPathParam });
const ItemParams = z.object({
  clinicId: clinicPathParam,
  medicationCode: code("medicationCode").openapi({ param: { name: "medicationCode", in: "path" } }),
});

const Lot = z
  .object({ lot: z.string(), quantity: z.number().int(), expiresOn: z.string().nullable() })
  .openapi("Lot");
const StockLine = z
  .object({
    medicationCode: z.string(),
    quantity: z.number().int(),
    reorderLevel: z.number().int(),
    lots: z.array(Lot),
  })
  .openapi("StockLine");
const StockItem = z
  .object({
    clinicId: z.string(),
    medicationCode: z.string(),
    quantity: z.number().int(),
    reorderLevel: z.number().int(),
    lots: z.array(Lot),
    index: z.number().int().openapi({ description: "Raft index the answer reflects" }),
  })
  .openapi("StockItem");
const WriteResult = z
  .object({ quantity: z.number().int(), index: z.number().int() })
  .openapi("StockWriteResult", { description: "quantity after the write; index: its Raft log index" });

const RestockBody = z
  .strictObject({ quantity, lot: code("lot").optional(), expiresOn: calendarDate.optional() })
  .openapi("RestockRequest");
const DeductBody = z.strictObject({ quantity }).openapi("DeductRequest");
const TimeZoneBody = z
  .strictObject({
    timeZone: z
      .string()
      .refine(isTimeZone, "must be an IANA time zone name")
      .openapi({ example: "Australia/Sydney" }),
  })
  .openapi("ClinicTimeZoneRequest");
const ClinicOnly = z.object({ clinicId: clinicPathParam });
const ReorderBody = z
  .strictObject({ level: z.number().int().min(0).max(quantityMax) })
  .openapi("ReorderLevelRequest");
const TransferBody = z
  .strictObject({
    fromClinicId: clinicCode("fromClinicId"),
    toClinicId: clinicCode("toClinicId"),
    medicationCode: code("medicationCode"),
    quantity,
  })
  .refine((b) => b.fromClinicId !== b.toClinicId, {
    message: "must differ from fromClinicId",
    path: ["toClinicId"],
  })
  .openapi("TransferRequest");
/** A clinic's stock, paged by the inventory (ListStock, keyset by medication code). */
export const stockPageLimits: PageLimits = {
  limitMax: inventoryLimits.pageLimitMax,
  limitDefault: inventoryLimits.pageLimitDefault,
  cursorMax: inventoryLimits.cursorMax,
};
const StockListQuery = pageQuery(stockPageLimits);
const StockPage = pageSchema(StockLine, "StockLinePage");
const StockQuery = z.strictObject({
  consistency: z
    .enum(["linearizable", "stale"])
    .optional()
    .openapi({ param: { name: "consistency", in: "query", required: false } }),
});
const Cluster = z
  .object({
    leaderId: z.string().nullable(),
    term: z.number().int(),
    replicas: z.array(
      z.object({
        id: z.string(),
        address: z.string(),
        role: z.string(),
        term: z.number().int(),
        commitIndex: z.number().int(),
        appliedIndex: z.number().int(),
        lastIndex: z.number().int(),
        healthy: z.boolean(),
        stateHash: z.string().optional(),
        identity: z.string().optional().openapi({
          description: "member, joining (new, not yet vouched for by every other voter) or lost (log wiped)",
        }),
      }),
    ),
  })
  .extend({ services: ServiceList })
  .openapi("Cluster");

const writeResponses = {
  200: json(
    WriteResult,
    "Applied (a retry with the same Idempotency-Key within the idempotency window returns the first result, with Idempotent-Replayed: true)",
  ),
  400: problemDoc("Invalid input"),
  404: problemDoc("clinic-not-found: a clinic the write names (field) is no clinic's code"),
  422: problemDoc("idempotency-key-reused: the Idempotency-Key was used for a different write"),
  503: problemDoc(
    "No leader answered in time, or idempotency-window-full, or overloaded, or the clinic list could not be read: retry after Retry-After with the same Idempotency-Key (the one in the answer's header and idempotencyKey, made up when none was sent)",
  ),
};

/**
 * The headers of a write's 200: the Idempotency-Key it was applied under (made up when none came,
 * as for every answer once the write was tried), and Idempotent-Replayed when it repeats one.
 */
export const writeHeaders = (r: WriteAnswer, key: string): Record<string, string> =>
  r.replayed ? { "Idempotency-Key": key, "Idempotent-Replayed": "true" } : { "Idempotency-Key": key };
/** A write's 200 body: the first result, the same on a replay. */
export const writeBody = (r: WriteAnswer) => ({ quantity: r.quantity, index: r.index });

const lotView = (l: { lot: string; quantity: number; expiresOn: string }) => ({
  lot: l.lot,
  quantity: l.quantity,
  expiresOn: l.expiresOn === "" ? null : l.expiresOn,
});
const line = (i: StockItemMsg) => ({
  medicationCode: i.medicationCode,
  quantity: i.quantity,
  reorderLevel: i.reorderLevel,
  lots: i.lots.map(lotView),
});

type IdempotencyHeader = { "Idempotency-Key"?: string | undefined };

/**
 * A write's request id: the caller's Idempotency-Key, or a fresh one. Every answer after the write
 * was tried names it (header, and `idempotencyKey` in a problem), so a caller that sent none can
 * still retry a 503 safely with the key from the answer.
 */
export const idempotencyKeyOf = (h: IdempotencyHeader): string =>
  h["Idempotency-Key"] ?? `gw-${randomUUID()}`;

/** The fields of a command or of a route's params that name a clinic (transfers name two). */
const clinicFields = ["clinicId", "fromClinicId", "toClinicId"] as const;

/** The clinics `input` names, each with the field that names it, in the order of clinicFields. */
function clinicsNamed(input: Record<string, unknown>): NamedClinic[] {
  const named: NamedClinic[] = [];
  for (const field of clinicFields) {
    const v = input[field];
    if (typeof v === "string") named.push([field, v]);
  }
  return named;
}

/** What the inventory routes and the write lane answer from. */
export interface InventoryDeps {
  inventory: InventoryClient;
  clinics: ClinicDirectory;
  /** The stateless services' instances (the registry's view), listed by /v1/cluster beside the replicas. */
  services?: () => ServiceView[];
}

/**
 * A write as both paths submit it (the Hono routes below and the direct lane, write-lane.ts): every
 * clinic the command names must be a clinic (else 404 clinic-not-found naming the field, or 503 when
 * the list could not be read), then the command goes to the leader. One function, so neither path
 * can skip the check or order it differently.
 */
export async function submitWrite(
  deps: InventoryDeps,
  spec: WriteSpec,
  params: Record<string, string>,
  body: unknown,
  key: string,
  requestId: string,
): Promise<WriteAnswer> {
  const command = { requestId: key, ...spec.fields(params, body) };
  const checking = deps.clinics.check(clinicsNamed(command), requestId);
  if (checking) await checking;
  return deps.inventory.write(spec.method, command, requestId);
}

/** One write route: its OpenAPI route (schemas included) and how its valid input becomes a command. */
export interface WriteSpec {
  route: ReturnType<typeof createRoute>;
  /** The route as Hono writes it (":param"), for metrics and logs. */
  routePath: string;
  method: WriteMethod;
  fields: (params: Record<string, string>, body: unknown) => Record<string, unknown>;
}

function writeSpec<P, B>(
  route: ReturnType<typeof createRoute>,
  method: WriteMethod,
  fields: (params: P, body: B) => Record<string, unknown>,
): WriteSpec {
  return {
    route,
    routePath: route.path.replaceAll(/\/{(.+?)}/g, "/:$1"),
    method,
    fields: fields as WriteSpec["fields"],
  };
}

type ItemParamsT = z.infer<typeof ItemParams>;

export const writeSpecs: WriteSpec[] = [
  writeSpec(
    createRoute({
      method: "post",
      path: "/v1/inventory/{clinicId}/stock/{medicationCode}/restock",
      summary: "Add a lot (optionally with its expiry date)",
      request: { params: ItemParams, headers: IdempotencyHeaders, body: jsonBody(RestockBody) },
      responses: {
        ...writeResponses,
        422: problemDoc(
          "lot-expired: expiresOn is before today in the clinic's time zone; or idempotency-key-reused",
        ),
      },
    }),
    "restock",
    (p: ItemParamsT, b: z.infer<typeof RestockBody>) => ({
      clinicId: p.clinicId,
      medicationCode: p.medicationCode,
      quantity: b.quantity,
      lot: b.lot ?? "",
      expiresOn: b.expiresOn ?? "",
    }),
  ),
  writeSpec(
    createRoute({
      method: "post",
      path: "/v1/inventory/{clinicId}/stock/{medicationCode}/deduct",
      summary: "Take stock, first expiry first out, never below zero, expired lots excluded",
      request: { params: ItemParams, headers: IdempotencyHeaders, body: jsonBody(DeductBody) },
      responses: { ...writeResponses, 409: problemDoc("Not enough usable stock") },
    }),
    "deduct",
    (p: ItemParamsT, b: z.infer<typeof DeductBody>) => ({
      clinicId: p.clinicId,
      medicationCode: p.medicationCode,
      quantity: b.quantity,
    }),
  ),
  writeSpec(
    createRoute({
      method: "post",
      path: "/v1/inventory/{clinicId}/stock/{medicationCode}/reorder-level",
      summary: "Set the level below which a low-stock event is raised",
      request: { params: ItemParams, headers: IdempotencyHeaders, body: jsonBody(ReorderBody) },
      responses: writeResponses,
    }),
    "setReorderLevel",
    (p: ItemParamsT, b: z.infer<typeof ReorderBody>) => ({
      clinicId: p.clinicId,
      medicationCode: p.medicationCode,
      level: b.level,
    }),
  ),
  writeSpec(
    createRoute({
      method: "post",
      path: "/v1/inventory/{clinicId}/time-zone",
      summary: "Set the IANA time zone whose calendar decides when the clinic's lots expire (UTC until set)",
      request: { params: ClinicOnly, headers: IdempotencyHeaders, body: jsonBody(TimeZoneBody) },
      responses: writeResponses,
    }),
    "setClinicTimeZone",
    (p: z.infer<typeof ClinicOnly>, b: z.infer<typeof TimeZoneBody>) => ({
      clinicId: p.clinicId,
      timeZone: b.timeZone,
    }),
  ),
  writeSpec(
    createRoute({
      method: "post",
      path: "/v1/inventory/transfers",
      summary: "Move stock between clinics, atomically",
      request: { headers: IdempotencyHeaders, body: jsonBody(TransferBody) },
      responses: { ...writeResponses, 409: problemDoc("Not enough usable stock at the source") },
    }),
    "transfer",
    (_p: Record<string, never>, b: z.infer<typeof TransferBody>) => ({ ...b }),
  ),
];

export function addInventoryRoutes(app: OpenAPIHono<GatewayEnv>, deps: InventoryDeps): void {
  const { inventory, clinics } = deps;
  /** A read's clinic, checked as a write's is (submitWrite). */
  const requireClinic = async (params: { clinicId: string }, requestId: string) => {
    const checking = clinics.check(clinicsNamed(params), requestId);
    if (checking) await checking;
  };
  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/inventory/{clinicId}/stock",
      summary: "A clinic's stock lines by medication code, a page at a time (each page linearizable)",
      request: { params: ClinicParam, query: StockListQuery },
      responses: {
        200: json(StockPage, "Stock lines; nextCursor is null on the last page"),
        400: problemDoc("Invalid clinicId, limit or cursor"),
        404: problemDoc("clinic-not-found: clinicId is no clinic's code"),
        503: problemDoc("No leader, or the clinic list could not be read"),
      },
    }),
    async (c) => {
      const params = c.req.valid("param");
      const { limit, cursor } = c.req.valid("query");
      await requireClinic(params, c.get("requestId"));
      const r = await inventory.listStock(params.clinicId, c.get("requestId"), {
        pageSize: limit,
        pageToken: pageTokenOf(cursor, stockPageLimits),
      });
      return c.json(pageOf(r.items, line, r.nextPageToken), 200);
    },
  );

  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/inventory/{clinicId}/stock/{medicationCode}",
      summary: "One medication's stock; ?consistency=stale reads any replica without asking the leader",
      request: { params: ItemParams, query: StockQuery },
      responses: {
        200: json(StockItem, "Stock"),
        400: problemDoc("Invalid input"),
        404: problemDoc("clinic-not-found: clinicId is no clinic's code"),
        503: problemDoc("No leader, or the clinic list could not be read"),
      },
    }),
    async (c) => {
      const { clinicId, medicationCode } = c.req.valid("param");
      await requireClinic({ clinicId }, c.get("requestId"));
      const stale = c.req.valid("query").consistency === "stale";
      const r = await inventory.getStock(clinicId, medicationCode, stale, c.get("requestId"));
      const item = r.item ?? { clinicId, medicationCode, quantity: 0, reorderLevel: 0, lots: [] };
      return c.json({ clinicId, ...line(item), index: r.index }, 200);
    },
  );

  // The writes: one spec each, mounted here for Hono (and the OpenAPI document) and served on
  // Node by the direct write lane (write-lane.ts) with the same schemas and the same mapping.
  for (const spec of writeSpecs) {
    mount(app, spec.route, async (c) => {
      const valid = (target: string) =>
        (c.req.valid as unknown as (t: string) => unknown).call(c.req, target);
      const params = (spec.route.request?.params ? valid("param") : {}) as Record<string, string>;
      const key = idempotencyKeyOf(valid("header") as IdempotencyHeader);
      // The app's error handler reads it for the problem, and the context's headers go along.
      c.header("Idempotency-Key", key);
      c.set("idempotencyKey", key);
      const r = await submitWrite(deps, spec, params, valid("json"), key, c.get("requestId"));
      return c.json(writeBody(r), 200, writeHeaders(r, key));
    });
  }

  mount(
    app,
    createRoute({
      method: "get",
      path: "/v1/cluster",
      summary: "Every inventory replica's own view of the Raft cluster",
      responses: { 200: json(Cluster, "Replicas; healthy=false when a replica did not answer") },
    }),
    async (c) => {
      const views = await inventory.cluster(c.get("requestId"));
      let leaderId: string | null = null;
      let term = 0;
      for (const v of views) {
        // The newest term's claim wins; a deposed leader may still believe in an older one.
        if (v.status && v.status.term >= term && v.status.leaderId) {
          term = v.status.term;
          leaderId = v.status.leaderId;
        }
      }
      const replicas = views.map((v) => ({
        id: v.id,
        address: v.address,
        role: v.status?.role ?? "unreachable",
        term: v.status?.term ?? 0,
        commitIndex: v.status?.commitIndex ?? 0,
        appliedIndex: v.status?.appliedIndex ?? 0,
        lastIndex: v.status?.lastIndex ?? 0,
        healthy: v.status !== undefined,
        ...(v.status ? { stateHash: v.status.stateHash, identity: v.status.identity } : {}),
      }));
      const services = servicesAnswer(deps.services?.() ?? []);
      return c.json({ leaderId, term, replicas, services }, 200);
    },
  );
}
