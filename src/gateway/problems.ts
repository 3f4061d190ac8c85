// Owns how the gateway says no: every failure leaves as application/problem+json built from an
// AppError (errors.ts maps codes to statuses), with the request id, and the field when there is one.
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { ZodError } from "zod";
import { AppError, type Problem, toProblem } from "../shared/errors.ts";

export const PROBLEM_CONTENT_TYPE = "application/problem+json";

/** The request id the gateway's first middleware gave this request. */
export function requestIdOf(c: Context): string | undefined {
  return c.get("requestId") as string | undefined;
}

export function problemResponse(c: Context, err: AppError, extra: Partial<Problem> = {}): Response {
  const requestId = requestIdOf(c);
  const problem = toProblem(err, { instance: c.req.path, ...(requestId ? { requestId } : {}), ...extra });
  const headers: Record<string, string> = { "content-type": PROBLEM_CONTENT_TYPE };
  const retryAfter = err.meta["retry-after"];
  if (retryAfter !== undefined) headers["retry-after"] = retryAfter;
  else if (problem.status === 503) headers["retry-after"] = "1";
  // Through the context, so the headers set on it (X-Request-Id) come along.
  return c.body(JSON.stringify(problem), problem.status as ContentfulStatusCode, headers);
}

/** One problem for every issue zod found: `field` names the first, `errors` lists all. */
export function validationProblem(c: Context, target: string, error: ZodError): Response {
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
  return problemResponse(c, new AppError("VALIDATION", `${first.field}: ${first.message}`, first.field), {
    errors,
  });
}
