// Owns the direct lane for the inventory writes (restock, deduct, reorder-level, transfers): on Node
// they are served straight off the http request, not through Hono. Everything that decides an
// answer is shared with the Hono routes — the route specs and their zod schemas and command mapping
// (inventory-routes.ts), the order of the checks and their problems (route.ts, problems.ts), the
// body rules (body.ts), the request id, the count and the access log (access.ts) — and the
// gateway's HTTP tests run against this lane. What the lane drops is Hono's per-request machinery
// (web Request and Response shims, router, context, middleware chain): measured at more than half
// of the gateway's CPU per write, and the gateway was the busiest process under the write load.
import type { IncomingMessage, ServerResponse } from "node:http";
import { getPath, tryDecodeURIComponent } from "hono/utils/url";
import type { Logger } from "pino";
import type { ZodType } from "zod";
import { REQUEST_ID_HEADER, sanitizeRequestId } from "../shared/context.ts";
import { AppError, type Problem } from "../shared/errors.ts";
import { recordRequest } from "./access.ts";
import { isJsonMediaType, readBody, tooLargeBody, unreadableBody } from "./body.ts";
import type { InventoryClient } from "./inventory-client.ts";
import { idempotencyKeyOf, type WriteSpec, writeSpecs } from "./inventory-routes.ts";
import { problemAnswer, validationError } from "./problems.ts";
import { malformedJsonMessage } from "./route.ts";

interface LaneRoute {
  spec: WriteSpec;
  pattern: RegExp;
  paramNames: string[];
  params: ZodType | undefined;
  headers: (ZodType & { shape: Record<string, unknown> }) | undefined;
  body: ZodType;
}

function compile(spec: WriteSpec): LaneRoute {
  const paramNames: string[] = [];
  const source = spec.route.path
    .split("/")
    .map((seg) => {
      const m = /^{(.+)}$/.exec(seg);
      if (!m) return seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      paramNames.push(m[1]!);
      return "([^/]+)";
    })
    .join("/");
  const req = spec.route.request;
  const media = req?.body?.content?.["application/json"];
  const body = media && "schema" in media ? (media.schema as unknown as ZodType) : undefined;
  if (!body) throw new Error(`write route ${spec.route.path} has no JSON body schema`);
  return {
    spec,
    pattern: new RegExp(`^${source}$`),
    paramNames,
    params: req?.params as unknown as ZodType | undefined,
    headers: req?.headers as unknown as LaneRoute["headers"],
    body,
  };
}

/** As Hono decodes path params: percent-decoded when they hold a %, as sent when that fails. */
function decodeParam(v: string): string {
  return v.includes("%") ? tryDecodeURIComponent(v) : v;
}

const dotSegment = /%2e|\/\.\.?(?:[/?#]|$)/i;

export interface WriteLaneOptions {
  inventory: InventoryClient;
  log: Logger;
  bodyBytesMax: number;
}

/** Returns a request handler that answers the inventory writes and returns false for anything else. */
export function createWriteLane(o: WriteLaneOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  const routes = writeSpecs.map(compile);
  return (req, res) => {
    if (req.method !== "POST") return false;
    const url = req.url ?? "/";
    // Dot segments (plain or percent-encoded) are resolved by the URL parser on Hono's side; such
    // paths are rare and odd, so they go there rather than be resolved twice differently.
    if (dotSegment.test(url)) return false;
    // The path as Hono routes on it (and reports as a problem's instance): query dropped, decoded.
    const path = getPath({ url: `http://gateway${url}` } as Request);
    for (const route of routes) {
      const m = route.pattern.exec(path);
      if (m) {
        void serve(o, route, m, path, req, res);
        return true;
      }
    }
    return false;
  };
}

async function serve(
  o: WriteLaneOptions,
  route: LaneRoute,
  match: RegExpExecArray,
  path: string,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const startedAt = performance.now();
  const header = (name: string) => {
    const v = req.headers[name];
    return Array.isArray(v) ? v.join(", ") : v;
  };
  const requestId = sanitizeRequestId(header(REQUEST_ID_HEADER));
  let routeLabel = route.spec.routePath;
  const send = (status: number, headers: Record<string, string>, body: string) => {
    if (!res.headersSent) {
      // A known length: no chunked framing, so headers and body leave in one write.
      res.writeHead(status, {
        ...headers,
        "content-length": String(Buffer.byteLength(body)),
        "X-Request-Id": requestId,
      });
      res.end(body);
    }
    recordRequest(o.log, { requestId, method: "POST", route: routeLabel, status, startedAt });
  };
  const problem = (err: AppError, extra?: Partial<Problem>) => {
    const a = problemAnswer(err, path, requestId, extra);
    send(a.status, a.headers, a.body);
  };
  try {
    // 1. The body, as the gateway's first middleware reads it: media type, size, readable.
    const length = header("content-length");
    const isJson = isJsonMediaType(header("content-type"));
    const hasBody = (length !== undefined && length !== "0") || header("transfer-encoding") !== undefined;
    let text = "";
    if (hasBody) {
      routeLabel = "body-refused";
      if (!isJson) {
        return problem(
          new AppError("UNSUPPORTED_MEDIA_TYPE", "send the body as application/json", "content-type"),
        );
      }
      const tooLarge = () =>
        problem(new AppError("PAYLOAD_TOO_LARGE", `body exceeds ${o.bodyBytesMax} bytes`, "body"));
      if (length !== undefined && Number(length) > o.bodyBytesMax) return tooLarge();
      const body = await readBody(req, o.bodyBytesMax);
      if (body === tooLargeBody) return tooLarge();
      if (body === unreadableBody) {
        return problem(new AppError("MALFORMED_JSON", "the body could not be read", "body"));
      }
      text = body;
      routeLabel = route.spec.routePath;
    }
    // 2. Path params, headers, then the JSON body, in route.ts's order and with its problems.
    let params: Record<string, string> = {};
    if (route.params) {
      const raw: Record<string, string> = {};
      route.paramNames.forEach((name, i) => {
        raw[name] = decodeParam(match[i + 1]!);
      });
      const r = route.params.safeParse(raw);
      if (!r.success) {
        const v = validationError("param", r.error);
        return problem(v.err, v.extra);
      }
      params = r.data as Record<string, string>;
    }
    let headers: { "Idempotency-Key"?: string } = {};
    if (route.headers) {
      const raw: Record<string, string> = {};
      for (const key of Object.keys(route.headers.shape)) {
        const v = header(key.toLowerCase());
        if (v !== undefined) raw[key] = v;
      }
      const r = route.headers.safeParse(raw);
      if (!r.success) {
        const v = validationError("header", r.error);
        return problem(v.err, v.extra);
      }
      headers = r.data as typeof headers;
    }
    let json: unknown = {};
    if (isJson) {
      try {
        json = JSON.parse(text);
      } catch {
        return problem(new AppError("MALFORMED_JSON", malformedJsonMessage, "body"));
      }
    }
    const body = route.body.safeParse(json);
    if (!body.success) {
      const v = validationError("json", body.error);
      return problem(v.err, v.extra);
    }
    // 3. The write, on the leader, with the gateway's retry policy.
    const result = await o.inventory.write(
      route.spec.method,
      { requestId: idempotencyKeyOf(headers), ...route.spec.fields(params, body.data) },
      requestId,
    );
    send(200, { "content-type": "application/json" }, JSON.stringify(result));
  } catch (err) {
    if (err instanceof AppError) {
      if (err.code === "INTERNAL") o.log.error({ requestId, code: err.code }, "upstream internal error");
      return problem(err);
    }
    o.log.error({ requestId, err }, "unhandled error in gateway");
    problem(new AppError("INTERNAL", "internal error"));
  }
}
