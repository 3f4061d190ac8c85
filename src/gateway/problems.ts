// Owns how the gateway says no: every failure leaves as application/problem+json built from an
// AppError (errors.ts maps codes to statuses), with the request id, and the field when there is one.
import type { Context } from "hono";
import type { ZodError } from "zod";
import { currentRequestId } from "../shared/context.ts";
import { AppError, type Problem, toProblem } from "../shared/errors.ts";

export const PROBLEM_CONTENT_TYPE = "application/problem+json";

export function problemResponse(c: Context, err: AppError, extra: Partial<Problem> = {}): Response {
  const requestId = currentRequestId();
  const problem = toProblem(err, { instance: c.req.path, ...(requestId ? { requestId } : {}), ...extra });
  const headers: Record<string, string> = { "content-type": PROBLEM_CONTENT_TYPE };
  const retryAfter = err.meta["retry-after"];
  if (retryAfter !== undefined) headers["retry-after"] = retryAfter;
  else if (problem.status === 503) headers["retry-after"] = "1";
  return new Response(JSON.stringify(problem), { status: problem.status, headers });
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
