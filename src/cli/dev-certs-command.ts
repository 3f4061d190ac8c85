// Owns `medisync certs` (npm run certs): makes or renews the development CA and one certificate per
// process of npm start's plan in data/certs/, the files docker-compose.yml mounts as secrets (its
// services have npm start's names: test/compose.test.ts holds that). npm start does the same itself.
import type { Config } from "../shared/config.ts";
import { ensureCertsLocked, localCertPlan, localCertsDir } from "./dev-certs.ts";
import { planChildren } from "./supervisor.ts";

export async function writeLocalCerts(cfg: Config, dir = localCertsDir): Promise<number> {
  try {
    const files = await ensureCertsLocked(dir, localCertPlan(planChildren(cfg)));
    process.stdout.write(`${dir}/ca.crt and a certificate for each of: ${[...files.keys()].join(", ")}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`medisync: making certificates in ${dir} failed: ${(err as Error).message}\n`);
    return 1;
  }
}
