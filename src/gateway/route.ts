// Owns how a documented route is mounted on the gateway: its OpenAPI entry goes into the app's
// registry (so /openapi.json is still made from the same zod schemas) and its input — path params,
// query, headers, JSON body — is checked by one synchronous middleware with those schemas.
// @hono/zod-openapi's own `app.openapi()` chains four async validators per route (param, header,
// media type, body; each with safeParseAsync and a hook), which under load cost a fifth of the
// gateway's CPU per write. Handlers read their input with c.req.valid() either way.
import type { OpenAPIHono, RouteConfig, RouteHandler } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import type { ZodType } from "zod";
import { AppError } from "../shared/errors.ts";
import type { GatewayEnv } from "./app.ts";
import { isJsonMediaType } from "./body.ts";
import { problemResponse, validationProblem } from "./problems.ts";

type Target = "query" | "param" | "header" | "json";

/** The checks of one route, worked out once when it is mounted. */
function checksOf(route: RouteConfig): { target: Target; schema: ZodType; read: (c: Context) => unknown }[] {
  const req = route.request;
  const checks: { target: Target; schema: ZodType; read: (c: Context) => unknown }[] = [];
  if (req?.query) {
    checks.push({
      target: "query",
      schema: req.query as unknown as ZodType,
      read: (c) =>
        Object.fromEntries(Object.entries(c.req.queries()).map(([k, v]) => [k, v.length === 1 ? v[0] : v])),
    });
  }
  if (req?.params) {
    checks.push({ target: "param", schema: req.params as unknown as ZodType, read: (c) => c.req.param() });
  }
  if (req?.headers) {
    const schema = req.headers as unknown as ZodType & { shape: Record<string, unknown> };
    // Headers arrive lower-cased; the schema names them as documented ("Idempotency-Key").
    const keys = Object.keys(schema.shape).map((k) => [k.toLowerCase(), k] as const);
    checks.push({
      target: "header",
      schema,
      read: (c) => {
        const out: Record<string, string> = {};
        for (const [lower, key] of keys) {
          const v = c.req.header(lower);
          if (v !== undefined) out[key] = v;
        }
        return out;
      },
    });
  }
  const media = req?.body?.content?.["application/json"];
  const body = media && "schema" in media ? media.schema : undefined;
  if (body) checks.push({ target: "json", schema: body as unknown as ZodType, read: () => undefined });
  return checks;
}

export const malformedJsonMessage = "Malformed JSON in request body";

/** Registers `route` in the OpenAPI document and mounts `handler` behind one input check. */
export function mount<R extends RouteConfig>(
  app: OpenAPIHono<GatewayEnv>,
  route: R,
  handler: RouteHandler<R, GatewayEnv>,
): void {
  app.openAPIRegistry.registerPath(route);
  const checks = checksOf(route);
  const validate: MiddlewareHandler<GatewayEnv> = async (c, next) => {
    for (const check of checks) {
      let value: unknown;
      if (check.target === "json") {
        // A body in another media type was refused (415) before; no body is checked as {}.
        if (isJsonMediaType(c.req.header("content-type"))) {
          const text = await c.req.text();
          try {
            value = JSON.parse(text);
          } catch {
            return problemResponse(c, new AppError("MALFORMED_JSON", malformedJsonMessage, "body"));
          }
        } else value = {};
      } else value = check.read(c);
      const result = check.schema.safeParse(value);
      if (!result.success) return validationProblem(c, check.target, result.error);
      c.req.addValidatedData(check.target, result.data as object);
    }
    await next();
  };
  const path = route.path.replaceAll(/\/{(.+?)}/g, "/:$1");
  app.on([route.method.toUpperCase()], [path], validate, handler as unknown as MiddlewareHandler<GatewayEnv>);
}
