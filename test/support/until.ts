// Owns the tests' one way to wait for a condition: poll it, and fail naming what never came.
// (A condition to wait for, never a sleep standing in for one.)

/** Polls until `cond` holds, failing with `what` after `timeoutMs`. */
export async function until(
  cond: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
