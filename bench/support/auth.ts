// Owns the benchmarks' tokens. The gateways a benchmark starts (test/support/process.ts runCli, or
// in process with testConfig) trust the test signing key of test/support/auth.ts, a temp folder
// made once per benchmark process; the load carries tokens minted with that key. Staff tokens
// (admin, pharmacist, clinician) only: the gateway allows a patient token 600 requests a minute
// (RATE_LIMIT_PATIENT_PER_MINUTE), which would measure the limiter, not the system.
import { as, tokenFor, type Who } from "../../test/support/auth.ts";

/** The Authorization header of `who`. */
export const authHeader = (who: Who): Promise<{ authorization: string }> => as(who);

/**
 * `count` Authorization values of staff members like `who`, each its own sub: a load generator
 * sends them in turn, so each one's budget (RATE_LIMIT_STAFF_PER_MINUTE, per sub) takes a share of
 * the load, as a pharmacy's tills would, and no run reaches it however fast it goes.
 */
export async function staffAuthorizations(who: Who, count: number): Promise<string[]> {
  const subs = Array.from({ length: Math.max(1, count) }, (_, i) => `${who.sub ?? who.role}-${i + 1}`);
  return Promise.all(subs.map(async (sub) => `Bearer ${await tokenFor({ ...who, sub })}`));
}
