// Owns the HTTP load generator of the benchmarks. wrk (C + LuaJIT, Debian's `wrk`) when installed:
// it costs the shared two cores a fraction of what a Node load generator does, so more of the
// machine measures the system instead of the load. autocannon otherwise. Every request can carry
// a fresh idempotency key (a per-run prefix and a counter), as a real client's retries-safe writes do,
// and a bearer token (the gateway wants one on every /v1 route): one, or several sent in turn.
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import autocannon from "autocannon";

export interface LoadSpec {
  url: string;
  method: "GET" | "POST";
  path: string;
  headers?: Record<string, string>;
  body?: string;
  /** A header set to a value unique to each request (e.g. idempotency-key). */
  uniqueHeader?: string;
  /**
   * Authorization header values ("Bearer …"), sent in turn, one per request (bench/support/auth.ts):
   * several staff tokens share the load between their per-token rate budgets.
   */
  authorizations?: string[];
  connections: number;
  durationS: number;
}

export interface LoadResult {
  tool: "wrk" | "autocannon";
  rps: number;
  p50: number;
  p99: number;
  ok: number;
  errors: number;
}

let wrkPath: string | null | undefined;

async function findWrk(): Promise<string | null> {
  if (wrkPath !== undefined) return wrkPath;
  wrkPath = await new Promise<string | null>((resolve) =>
    execFile("which", ["wrk"], (err, out) => resolve(err ? null : out.trim() || null)),
  );
  return wrkPath;
}

const luaString = (s: string) => JSON.stringify(s); // a JSON string literal is a valid Lua literal here

function wrkScript(spec: LoadSpec, prefix: string): string {
  const headers = Object.entries(spec.headers ?? {})
    .map(([k, v]) => `wrk.headers[${luaString(k)}] = ${luaString(v)}`)
    .join("\n");
  const unique = spec.uniqueHeader
    ? `counter = counter + 1
  wrk.headers[${luaString(spec.uniqueHeader)}] = prefix .. thread_id .. "-" .. counter`
    : "";
  const tokens = spec.authorizations ?? [];
  const auth =
    tokens.length === 0
      ? ""
      : tokens.length === 1
        ? `wrk.headers["authorization"] = ${luaString(tokens[0]!)}`
        : `token_i = token_i % #tokens + 1
  wrk.headers["authorization"] = tokens[token_i]`;
  return `
wrk.method = ${luaString(spec.method)}
wrk.path = ${luaString(spec.path)}
${spec.body !== undefined ? `wrk.body = ${luaString(spec.body)}` : ""}
${headers}
-- Globals, not locals: setup() reaches each thread's copy through thread:set/get.
counter = 0
token_i = 0
tokens = { ${tokens.map(luaString).join(", ")} }
prefix = ${luaString(prefix)}
thread_id = 0
non2xx = 0
local threads = {}
function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end
function request()
  ${unique}
  ${auth}
  return wrk.format()
end
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + t:get("non2xx") end
  local e = summary.errors
  io.write(string.format('\\nRESULT {"requests":%d,"us":%d,"p50":%d,"p99":%d,"non2xx":%d,"errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), bad,
    e.connect + e.read + e.write + e.timeout))
end
`;
}

async function viaWrk(wrk: string, spec: LoadSpec): Promise<LoadResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "bench-wrk-"));
  const script = path.join(dir, "load.lua");
  writeFileSync(script, wrkScript(spec, `${randomUUID().slice(0, 8)}-`));
  try {
    const out = await new Promise<string>((resolve, reject) =>
      execFile(
        wrk,
        [
          "-t1",
          `-c${spec.connections}`,
          `-d${spec.durationS}s`,
          "--timeout",
          "10s",
          "-s",
          script,
          `${spec.url}${spec.path}`,
        ],
        { maxBuffer: 1 << 20 },
        (err, stdout, stderr) =>
          err ? reject(new Error(`wrk failed: ${stderr || err.message}`)) : resolve(stdout),
      ),
    );
    const line = out.split("\n").find((l) => l.startsWith("RESULT "));
    if (!line) throw new Error(`wrk printed no result:\n${out}`);
    const r = JSON.parse(line.slice(7)) as {
      requests: number;
      us: number;
      p50: number;
      p99: number;
      non2xx: number;
      errors: number;
    };
    return {
      tool: "wrk",
      rps: r.requests / (r.us / 1e6),
      p50: Math.round(r.p50 / 10) / 100,
      p99: Math.round(r.p99 / 10) / 100,
      ok: r.requests - r.non2xx,
      errors: r.non2xx + r.errors,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function viaAutocannon(spec: LoadSpec): Promise<LoadResult> {
  const prefix = `${randomUUID().slice(0, 8)}-`;
  let counter = 0;
  const tokens = spec.authorizations ?? [];
  const perRequest = spec.uniqueHeader !== undefined || tokens.length > 1;
  const result = await autocannon({
    url: spec.url,
    connections: spec.connections,
    duration: spec.durationS,
    requests: [
      {
        method: spec.method,
        path: spec.path,
        headers: { ...(spec.headers ?? {}), ...(tokens.length === 1 ? { authorization: tokens[0]! } : {}) },
        ...(spec.body !== undefined ? { body: spec.body } : {}),
        ...(perRequest
          ? {
              setupRequest: (req) => {
                const n = ++counter;
                const h = { ...req.headers };
                if (spec.uniqueHeader) h[spec.uniqueHeader] = `${prefix}${n}`;
                if (tokens.length > 1) h.authorization = tokens[n % tokens.length]!;
                req.headers = h;
                return req;
              },
            }
          : {}),
      },
    ],
  });
  return {
    tool: "autocannon",
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    ok: result["2xx"],
    errors: result.non2xx + result.errors,
  };
}

/** Runs the load with wrk when installed (or when `tool` says so), else autocannon. */
export async function runLoad(spec: LoadSpec, tool?: "wrk" | "autocannon"): Promise<LoadResult> {
  const wrk = tool === "autocannon" ? null : await findWrk();
  if (tool === "wrk" && !wrk) throw new Error("wrk is not installed (apt-get install wrk)");
  return wrk ? viaWrk(wrk, spec) : viaAutocannon(spec);
}
