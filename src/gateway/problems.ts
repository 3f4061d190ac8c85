// Owns how the gateway says no: every failure leaves as application/problem+json built from an
// AppError (errors.ts maps codes to statuses), with the request id, and the field when there is one.
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { Logger } from "pino";
import type { ZodError } from "zod";
import { AppError, type Problem, toProblem } from "../shared/errors.ts";

export const PROBLEM_CONTENT_TYPE = "application/problem+json";

/** The request id the gateway's first middleware gave this request. */
export function requestIdOf(c: Context): string | undefined {
  return c.get("requestId") as string | undefined;
}

/**
 * The AppError a failed request answers with: its own, or INTERNAL for anything else. Internal
 * failures are logged here (once, with the request id); the rest are the caller's to see.
 */
export function failureOf(err: unknown, log: Logger, requestId: string | undefined): AppError {
  if (err instanceof AppError) {
    if (err.code === "INTERNAL") log.error({ requestId, code: err.code }, "upstream internal error");
    return err;
  }
  log.error({ requestId, err }, "unhandled error in gateway");
  return new AppError("INTERNAL", "internal error");
}

/** A problem answer, whoever sends it (a Hono context or the direct write lane). */
export interface ProblemAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export function problemAnswer(
  err: AppError,
  instance: string,
  requestId: string | undefined,
  extra: Partial<Problem> = {},
): ProblemAnswer {
  const problem = toProblem(err, { instance, ...(requestId ? { requestId } : {}), ...extra });
  const headers: Record<string, string> = { "content-type": PROBLEM_CONTENT_TYPE };
  const retryAfter = err.meta["retry-after"];
  if (retryAfter !== undefined) headers["retry-after"] = retryAfter;
  else if (problem.status === 503) headers["retry-after"] = "1";
  const challenge = err.meta["www-authenticate"];
  if (challenge !== undefined) headers["www-authenticate"] = challenge;
  return { status: problem.status, headers, body: JSON.stringify(problem) };
}

export function problemResponse(c: Context, err: AppError, extra: Partial<Problem> = {}): Response {
  const a = problemAnswer(err, c.req.path, requestIdOf(c), extra);
  // Through the context, so the headers set on it (X-Request-Id) come along.
  return c.body(a.body, a.status as ContentfulStatusCode, a.headers);
}

/** The problem for what zod found wrong: `field` names the first issue, `errors` lists all. */
export function validationError(
  target: string,
  error: ZodError,
): { err: AppError; extra: Pick<Problem, "errors"> } {
  const errors: { field: string; message: string }[] = [];
  for (const issue of error.issues) {
    const path = issue.path.map(String);
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys)
        errors.push({ field: [...path, key].join("."), message: "unknown field" });
      continue;
    }
    const field = path.join(".");
    errors.push({ field: field === "" ? "body" : field, message: issue.message });
  }
  const first = errors[0] ?? { field: target, message: "invalid" };
  return {
    err: new AppError("VALIDATION", `${first.field}: ${first.message}`, first.field),
    extra: { errors },
  };
}

export function validationProblem(c: Context, target: string, error: ZodError): Response {
  const v = validationError(target, error);
  return problemResponse(c, v.err, v.extra);
}
