// Owns the retry policy of calls between services: which failures may be retried, how many times,
// how long to wait between tries, and the one overall deadline no retry may outlive.
import { AppError } from "./errors.ts";

export interface RetryPolicy {
  /** Tries in all, the first included. */
  attemptsMax: number;
  /** Wall-clock budget of all tries together; a try never starts after it. */
  overallDeadlineMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
}

export const defaultRetryPolicy: RetryPolicy = {
  attemptsMax: 4,
  overallDeadlineMs: 5_000,
  backoffBaseMs: 20,
  backoffMaxMs: 400,
};

/** Failures where the request may not have reached a server that could answer it. */
export function isRetryable(err: unknown): boolean {
  return (
    err instanceof AppError &&
    (err.code === "UNAVAILABLE" || err.code === "DEADLINE_EXCEEDED" || err.code === "NOT_LEADER")
  );
}

export interface Attempt {
  /** 0 for the first try. */
  n: number;
  /** Time left in the overall budget when this try starts: the try's own deadline may not exceed it. */
  remainingMs: number;
  /** The error of the previous try, if any. */
  previous?: unknown;
}

/**
 * Runs fn until it succeeds, fails with a non-retryable error, or the attempts or the overall budget
 * run out (then the last error is thrown). Backoff is exponential with full jitter.
 */
export async function withRetries<T>(
  policy: RetryPolicy,
  fn: (attempt: Attempt) => Promise<T>,
  retryable: (err: unknown) => boolean = isRetryable,
): Promise<T> {
  const deadline = Date.now() + policy.overallDeadlineMs;
  let previous: unknown;
  for (let n = 0; n < policy.attemptsMax; n++) {
    const remainingMs = deadline - Date.now();
    if (remainingMs <= 0) break;
    try {
      return await fn(previous === undefined ? { n, remainingMs } : { n, remainingMs, previous });
    } catch (err) {
      previous = err;
      if (!retryable(err) || n + 1 >= policy.attemptsMax) throw err;
      const capMs = Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** n);
      const waitMs = Math.min(Math.random() * capMs, Math.max(0, deadline - Date.now() - 1));
      await new Promise((r) => setTimeout(r, waitMs));
    }
  }
  throw previous ?? new AppError("DEADLINE_EXCEEDED", "no time left to try the call");
}
