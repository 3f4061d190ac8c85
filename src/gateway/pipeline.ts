// Owns the order in which the gateway lets a request in and records it, for every route on either
// path (a Hono route through route.ts's mount, or the direct write lane): the token (401), the rate
// limit (429), the role's grant (403), the input (400), the compartment (403), then the audit row:
// a refusal's after it, an admitted request's beside its act (beginAudit), the answer waiting for
// it. Each step has one owner (auth/guard.ts, rate-limit.ts, route.ts's checks, audit.ts); this
// module only strings them together, so the two paths cannot disagree on the order.

import { AppError, type Problem } from "../shared/errors.ts";
import type { Principal, Role } from "../shared/principal.ts";
import type { AuditAttempt, AuditAttemptEntry, AuditEntry } from "./audit.ts";
import type { Admission, Guard } from "./auth/guard.ts";
import { addressKey, type RateLimits, rateLimitedError } from "./rate-limit.ts";
import { checkInput, type InputCheck, type InputSource } from "./route.ts";

export interface AuditSink {
  record(entry: AuditEntry): Promise<void>;
  begin(entry: AuditAttemptEntry): AuditAttempt;
}

export interface Pipeline {
  guard: Guard;
  limits?: RateLimits;
  audit?: AuditSink;
}

/** What a request brings besides its input: its token and where it came from. */
export interface Caller {
  authorization: string | undefined;
  address: string;
}

export type Admitted =
  | {
      ok: true;
      valid: Partial<Record<string, unknown>>;
      admission: Admission;
      headers: Record<string, string>;
    }
  | {
      ok: false;
      err: AppError;
      extra?: Partial<Problem>;
      principal?: Principal;
      headers: Record<string, string>;
    };

/** Runs a request through token, limit, input and grant, in that order; the first refusal wins. */
export async function admit(
  p: Pipeline,
  key: string,
  checks: InputCheck[],
  from: InputSource,
  caller: Caller,
  requestId: string,
): Promise<Admitted> {
  let principal: Principal | undefined;
  let headers: Record<string, string> = {};
  try {
    principal = await p.guard.authenticate(caller.authorization);
  } catch (err) {
    // Who cannot show a token is limited by address, so guessing tokens costs a budget too.
    const refused = await limit(p, "address", addressKey(caller.address), undefined);
    if (refused?.err) return { ok: false, err: refused.err, headers: refused.headers };
    return { ok: false, err: asAppError(err), headers };
  }
  const limited = await limit(p, "principal", principal.sub, principal.role);
  if (limited) {
    headers = limited.headers;
    if (limited.err) return { ok: false, err: limited.err, principal, headers };
  }
  // A role the route does not admit is told so before its input is looked at: what a route
  // accepts is not for callers who may not call it.
  try {
    p.guard.grantFor(key, principal);
  } catch (err) {
    return { ok: false, err: asAppError(err), principal, headers };
  }
  const input = await checkInput(checks, from);
  if (!input.ok) return { ok: false, err: input.err, extra: input.extra, principal, headers };
  try {
    const admission = await p.guard.admit(
      key,
      principal,
      { param: input.valid.param as Record<string, string> | undefined, json: input.valid.json },
      requestId,
    );
    return { ok: true, valid: input.valid, admission, headers };
  } catch (err) {
    return { ok: false, err: asAppError(err), principal, headers };
  }
}

/** The limiter's headers, and a RATE_LIMITED error when the budget is spent; undefined: no limiter. */
async function limit(
  p: Pipeline,
  kind: "principal" | "address",
  key: string,
  role: Role | undefined,
): Promise<{ headers: Record<string, string>; err?: AppError } | undefined> {
  if (!p.limits) return undefined;
  const d = await p.limits.consume(kind, key, role);
  const headers = p.limits.headers(d);
  if (d.allowed) return { headers };
  return { headers, err: rateLimitedError(d) };
}

function asAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  throw err;
}

/** What an audit row says of a request besides the route's rule. */
interface AuditFacts {
  principal: Principal | undefined;
  admission?: Admission;
  /** What a create made; otherwise the rule's idParam (default `id`) of `params` names the resource. */
  resourceId?: string;
  params?: Record<string, string | undefined>;
  requestId: string;
  source: string;
}

function entryOf(p: Pipeline, key: string, a: AuditFacts): AuditAttemptEntry | undefined {
  const rule = p.guard.rule(key);
  if (!rule.audit || !p.audit) return undefined;
  const facts = a.admission?.facts;
  return {
    actor: a.principal,
    action: rule.audit.action,
    resourceType: rule.audit.resourceType,
    resourceId: a.resourceId ?? a.params?.[rule.audit.idParam ?? "id"],
    patientId: facts?.patientId,
    clinic: facts?.clinics[0],
    requestId: a.requestId,
    source: a.source,
    route: key,
  };
}

/**
 * An admitted request's row, queued now so that it is written while the act runs. The caller acts,
 * calls `finish(status, createdId)`, and awaits `written` before answering (a failure to write is
 * its to answer). Undefined for a route that is not audited.
 */
export function beginAudit(p: Pipeline, key: string, a: AuditFacts): AuditAttempt | undefined {
  const entry = entryOf(p, key, a);
  if (!entry) return undefined;
  const attempt = p.audit!.begin(entry);
  // Answered by the caller after the act; until then a rejection must not count as unhandled.
  attempt.written.catch(() => undefined);
  return attempt;
}

/**
 * Records a refused request whole: who, what, on whom, with which status. Resolves once the row
 * is written; a failure to write is the caller's to answer.
 */
export function recordAudit(
  p: Pipeline,
  key: string,
  a: AuditFacts & { status: number },
): Promise<void> | undefined {
  const entry = entryOf(p, key, a);
  if (!entry) return undefined;
  return p.audit!.record({ ...entry, outcome: a.status });
}
