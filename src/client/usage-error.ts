// Owns the client's refusals: a bad flag, an unreachable target or a gateway that refuses the
// client's tokens is one line on stderr and exit code 2, never a stack trace.

/** A flag or scenario file the client cannot run with. */
export class UsageError extends Error {
  constructor(
    readonly flag: string,
    detail: string,
  ) {
    super(`${flag}: ${detail}`);
    this.name = "UsageError";
  }
}

/** The system under test does not answer, so there is nothing to measure. */
export class TargetDownError extends Error {
  override name = "TargetDownError";
}

/**
 * The gateway answered 401 or 403: the client's tokens are not trusted there, or a role lacks the
 * grant. Nothing the run would measure means anything then; the message names role and route.
 */
export class AuthRefusedError extends Error {
  override name = "AuthRefusedError";
}

export const usageExitCode = 2;
