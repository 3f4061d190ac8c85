// Owns the direct lane for the inventory writes (restock, deduct, reorder-level, transfers): on Node
// they are served straight off the http request, not through Hono. Everything that decides an
// answer is shared with the Hono routes — the route specs and their zod schemas and command mapping,
// and submitWrite, which checks the clinics a write names before it leaves (inventory-routes.ts);
// the order of the checks and their problems (route.ts, problems.ts), the body rules (body.ts), the
// request id, the count and the access log (access.ts) — and the gateway's HTTP tests run against
// this lane. What the lane drops is Hono's per-request machinery
// (web Request and Response shims, router, context, middleware chain): measured at more than half
// of the gateway's CPU per write, and the gateway was the busiest process under the write load.
import type { IncomingMessage, ServerResponse } from "node:http";
import { getPath, tryDecodeURIComponent } from "hono/utils/url";
import type { Logger } from "pino";
import { routeKey, ruleOf } from "../shared/access-policy.ts";
import { REQUEST_ID_HEADER, sanitizeRequestId } from "../shared/context.ts";
import { AppError, type Problem } from "../shared/errors.ts";
import { recordRequest } from "./access.ts";
import type { AuditAttempt } from "./audit.ts";
import { takeBody } from "./body.ts";
import {
  type InventoryDeps,
  idempotencyKeyOf,
  submitWrite,
  type WriteSpec,
  writeBody,
  writeHeaders,
  writeSpecs,
} from "./inventory-routes.ts";
import { admit, beginAudit, type Pipeline, recordAudit } from "./pipeline.ts";
import { failureOf, problemAnswer } from "./problems.ts";
import { checksOf } from "./route.ts";

interface LaneRoute {
  spec: WriteSpec;
  key: string;
  pattern: RegExp;
  paramNames: string[];
  checks: ReturnType<typeof checksOf>;
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
  const checks = checksOf(spec.route);
  // The lane reads no query string; a write route that wanted one would need Hono.
  if (checks.some((c) => c.target === "query")) throw new Error(`write route ${spec.route.path} has a query`);
  const key = routeKey("POST", spec.route.path);
  ruleOf(key);
  return { spec, key, pattern: new RegExp(`^${source}$`), paramNames, checks };
}

/** As Hono decodes path params: percent-decoded when they hold a %, as sent when that fails. */
function decodeParam(v: string): string {
  return v.includes("%") ? tryDecodeURIComponent(v) : v;
}

const dotSegment = /%2e|\/\.\.?(?:[/?#]|$)/i;

export interface WriteLaneOptions extends InventoryDeps {
  log: Logger;
  bodyBytesMax: number;
  pipeline: Pipeline;
}

/** Returns a request handler that answers the inventory writes and returns false for anything else. */
export function createWriteLane(o: WriteLaneOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  const routes = writeSpecs.map(compile);
  return (req, res) => {
    // A browser's request (it carries an Origin) goes through Hono, whose CORS middleware owns
    // the Access-Control headers (app.ts); the lane is for the till, not the browser.
    if (req.method !== "POST" || req.headers.origin !== undefined) return false;
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
  const source = req.socket.remoteAddress ?? "unknown";
  /** Set by the pipeline: the rate limit's headers, on every answer once the token was read. */
  let extraHeaders: Record<string, string> = {};
  let principal: Parameters<typeof recordAudit>[2]["principal"];
  /** The admitted write's audit row, written while the write runs (pipeline.ts beginAudit). */
  let attempt: AuditAttempt | undefined;
  const send = async (status: number, headers: Record<string, string>, body: string) => {
    // No answer leaves before its audit row is written (pipeline.ts); a failed write of it turns
    // the answer into a 503 the caller retries with the same Idempotency-Key.
    try {
      if (attempt) {
        attempt.finish(status);
        await attempt.written;
      } else await recordAudit(o.pipeline, route.key, { principal, status, requestId, source });
    } catch (err) {
      const a = problemAnswer(failureOf(err, o.log, requestId), path, requestId);
      status = a.status;
      headers = key === undefined ? a.headers : { ...a.headers, "Idempotency-Key": key };
      body = a.body;
    }
    if (!res.headersSent) {
      // A known length: no chunked framing, so headers and body leave in one write.
      res.writeHead(status, {
        ...extraHeaders,
        ...headers,
        "content-length": String(Buffer.byteLength(body)),
        "X-Request-Id": requestId,
      });
      res.end(body);
    }
    recordRequest(o.log, { requestId, method: "POST", route: routeLabel, status, startedAt });
  };
  /** The write's request id, once the input was valid and the write is about to be tried. */
  let key: string | undefined;
  const problem = (err: AppError, extra?: Partial<Problem>) => {
    const a = problemAnswer(err, path, requestId, extra);
    return send(a.status, key === undefined ? a.headers : { ...a.headers, "Idempotency-Key": key }, a.body);
  };
  try {
    // 1. The body, by the rules the gateway's first middleware applies (body.ts).
    const bodyHeaders = {
      contentLength: header("content-length"),
      transferEncoding: header("transfer-encoding"),
      contentType: header("content-type"),
    };
    const text = await takeBody(req, bodyHeaders, o.bodyBytesMax);
    if (text instanceof AppError) {
      routeLabel = "body-refused";
      return await problem(text);
    }
    // 2. Token, rate limit, path params, headers, the JSON body, then the grant: the pipeline's
    // steps, order and problems, as every Hono route has them (pipeline.ts, route.ts).
    const input = await admit(
      o.pipeline,
      route.key,
      route.checks,
      {
        query: () => ({}),
        param: () => {
          const raw: Record<string, string> = {};
          route.paramNames.forEach((name, i) => {
            raw[name] = decodeParam(match[i + 1]!);
          });
          return raw;
        },
        header,
        contentType: bodyHeaders.contentType,
        bodyText: async () => text,
      },
      { authorization: header("authorization"), address: source },
      requestId,
    );
    extraHeaders = input.headers;
    if (!input.ok) {
      principal = input.principal;
      return await problem(input.err, input.extra);
    }
    principal = input.admission.principal;
    attempt = beginAudit(o.pipeline, route.key, {
      principal,
      admission: input.admission,
      params: input.valid.param as Record<string, string> | undefined,
      requestId,
      source,
    });
    // Not acted on: the row could not even be queued. Its refusal is the answer (a 503), and no
    // second row is tried for it (send() finds the attempt's `written` rejected with it).
    if (attempt?.refused) return await problem(attempt.refused);
    const headers = (input.valid.header ?? {}) as { "Idempotency-Key"?: string };
    const params = (input.valid.param ?? {}) as Record<string, string>;
    // 3. Its clinics checked, then the write, on the leader, with the gateway's retry policy.
    key = idempotencyKeyOf(headers);
    const result = await submitWrite(o, route.spec, params, input.valid.json, key, requestId);
    await send(
      200,
      { "content-type": "application/json", ...writeHeaders(result, key) },
      JSON.stringify(writeBody(result)),
    );
  } catch (err) {
    await problem(failureOf(err, o.log, requestId), key === undefined ? {} : { idempotencyKey: key });
  }
}
