// Owns how a documented route is mounted on the gateway: its OpenAPI entry goes into the app's
// registry (so /openapi.json is still made from the same zod schemas) and its input — path params,
// query, headers, JSON body — is checked by one synchronous middleware with those schemas.
// @hono/zod-openapi's own `app.openapi()` chains four async validators per route (param, header,
// media type, body; each with safeParseAsync and a hook), which under load cost a fifth of the
// gateway's CPU per write. Handlers read their input with c.req.valid() either way.

import type { IncomingMessage } from "node:http";
import type { OpenAPIHono, RouteConfig, RouteHandler } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import type { ZodType } from "zod";
import { routeKey, ruleOf } from "../shared/access-policy.ts";
import { AppError, type Problem } from "../shared/errors.ts";
import type { GatewayEnv } from "./app.ts";
import { isJsonMediaType } from "./body.ts";
import { admit, beginAudit, type Pipeline, recordAudit } from "./pipeline.ts";
import { problemResponse, validationError } from "./problems.ts";

type Target = "query" | "param" | "header" | "json";

/** One check of a route's input: what it reads and the schema it must satisfy. */
export interface InputCheck {
  target: Target;
  schema: ZodType;
  /** Header checks: [lower-case name as it arrives, name the schema uses ("Idempotency-Key")]. */
  headerKeys: (readonly [string, string])[];
}

/** The checks of one route, in the order they run, worked out once when it is mounted. */
export function checksOf(route: RouteConfig): InputCheck[] {
  const req = route.request;
  const checks: InputCheck[] = [];
  const add = (target: Target, schema: unknown, headerKeys: InputCheck["headerKeys"] = []) =>
    checks.push({ target, schema: schema as ZodType, headerKeys });
  if (req?.query) add("query", req.query);
  if (req?.params) add("param", req.params);
  if (req?.headers) {
    const shape = (req.headers as unknown as { shape: Record<string, unknown> }).shape;
    add(
      "header",
      req.headers,
      Object.keys(shape).map((k) => [k.toLowerCase(), k] as const),
    );
  }
  const media = req?.body?.content?.["application/json"];
  if (media && "schema" in media) add("json", media.schema);
  return checks;
}

/** Where a request's input comes from: Hono's context, or Node's request on the direct write lane. */
export interface InputSource {
  query(): Record<string, string | string[]>;
  param(): Record<string, string>;
  header(lowerCaseName: string): string | undefined;
  contentType: string | undefined;
  bodyText(): Promise<string>;
}

export const malformedJsonMessage = "Malformed JSON in request body";

/**
 * Runs a route's checks in order: the valid input per target, or the problem of the first that
 * fails. A body in another media type was refused (415) before; no JSON body is checked as {}.
 */
export async function checkInput(
  checks: InputCheck[],
  from: InputSource,
): Promise<
  | { ok: true; valid: Partial<Record<Target, unknown>> }
  | { ok: false; err: AppError; extra?: Partial<Problem> }
> {
  const valid: Partial<Record<Target, unknown>> = {};
  for (const check of checks) {
    let value: unknown;
    if (check.target === "json") {
      value = {};
      if (isJsonMediaType(from.contentType)) {
        try {
          value = JSON.parse(await from.bodyText());
        } catch {
          return { ok: false, err: new AppError("MALFORMED_JSON", malformedJsonMessage, "body") };
        }
      }
    } else if (check.target === "header") {
      const out: Record<string, string> = {};
      for (const [lower, key] of check.headerKeys) {
        const v = from.header(lower);
        if (v !== undefined) out[key] = v;
      }
      value = out;
    } else value = check.target === "query" ? from.query() : from.param();
    const result = check.schema.safeParse(value);
    if (!result.success) {
      const v = validationError(check.target, result.error);
      return { ok: false, err: v.err, extra: v.extra };
    }
    valid[check.target] = result.data;
  }
  return { ok: true, valid };
}

const pipelines = new WeakMap<object, Pipeline>();

/** Gives an app the pipeline its routes admit requests through; mount() needs one. */
export function usePipeline(app: OpenAPIHono<GatewayEnv>, pipeline: Pipeline): void {
  pipelines.set(app, pipeline);
}

/** The address a request came from (the socket's peer on Node; unknown under app.request). */
export function addressOf(c: Context): string {
  return (c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket.remoteAddress ?? "unknown";
}

/**
 * Registers `route` in the OpenAPI document and mounts `handler` behind the pipeline: token, rate
 * limit, input check, grant (pipeline.ts), then the handler beside its audit row. A route without a
 * rule in access-policy.ts (src/shared) throws here, when the app is built: nothing is ever mounted unguarded.
 */
export function mount<R extends RouteConfig>(
  app: OpenAPIHono<GatewayEnv>,
  route: R,
  handler: RouteHandler<R, GatewayEnv>,
): void {
  app.openAPIRegistry.registerPath(route);
  const checks = checksOf(route);
  const key = routeKey(route.method, route.path);
  ruleOf(key);
  const guarded: MiddlewareHandler<GatewayEnv> = async (c, next) => {
    const pipeline = pipelines.get(app);
    if (!pipeline) throw new Error(`route ${key} mounted on an app without a pipeline (usePipeline)`);
    const requestId = c.get("requestId");
    const source = addressOf(c);
    const r = await admit(
      pipeline,
      key,
      checks,
      {
        query: () =>
          Object.fromEntries(
            Object.entries(c.req.queries()).map(([k, v]) => [k, v.length === 1 ? v[0]! : v]),
          ),
        param: () => c.req.param(),
        header: (name) => c.req.header(name),
        contentType: c.req.header("content-type"),
        bodyText: () => c.req.text(),
      },
      { authorization: c.req.header("authorization"), address: source },
      requestId,
    );
    for (const [name, value] of Object.entries(r.headers)) c.header(name, value);
    if (!r.ok) {
      const refused = problemResponse(c, r.err, r.extra);
      await recordAudit(pipeline, key, {
        principal: r.principal,
        resourceId: c.get("resourceId"),
        params: c.req.param(),
        status: refused.status,
        requestId,
        source,
      });
      return refused;
    }
    for (const [target, data] of Object.entries(r.valid))
      c.req.addValidatedData(target as Target, data as object);
    c.set("admission", r.admission);
    // Written while the handler runs; no answer leaves before it is (a failure to write throws
    // here, after the act, and is answered as the problem it is).
    const attempt = beginAudit(pipeline, key, {
      principal: r.admission.principal,
      admission: r.admission,
      params: c.req.param(),
      requestId,
      source,
    });
    // Refused at once (the log closed or its queue full): answered before the act, which could
    // not be recorded.
    if (attempt?.refused) throw attempt.refused;
    await next();
    if (attempt) {
      attempt.finish(c.res.status, c.get("resourceId"));
      await attempt.written;
    }
  };
  const path = route.path.replaceAll(/\/{(.+?)}/g, "/:$1");
  app.on([route.method.toUpperCase()], [path], guarded, handler as unknown as MiddlewareHandler<GatewayEnv>);
}
