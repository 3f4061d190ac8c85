// Gives a benchmark's gateway an appointment instance that knows the clinics the benchmark names
// (inventory routes answer 404 clinic-not-found for a code that is no clinic): in this process, in a
// database of the benchmark's own.
import { clinicsWithCodes } from "../../test/support/fixtures.ts";
import {
  resetState,
  startInstance,
  stopInstance,
  testConfig,
  testPool,
} from "../../test/support/services.ts";

export async function appointmentWithClinics(
  name: string,
  codes: string[],
): Promise<{ address: string; close: () => Promise<void> }> {
  const cfg = testConfig(name);
  await resetState(cfg);
  const instance = await startInstance(cfg);
  const pool = testPool(cfg);
  await clinicsWithCodes(pool, codes);
  await pool.end();
  return { address: `127.0.0.1:${instance.service.grpcPort}`, close: () => stopInstance(instance) };
}
