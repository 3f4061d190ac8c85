// Owns the client's refusals: a bad flag or an unreachable target is one line on stderr and exit
// code 2, never a stack trace.

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

export const usageExitCode = 2;
