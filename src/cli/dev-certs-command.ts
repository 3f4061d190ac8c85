// Owns `medisync certs` (npm run certs): makes or renews a CA and its certificates. Without
// arguments, npm start's set in data/certs/ (the files docker-compose.yml mounts as secrets: its
// services carry npm start's names, test/compose.test.ts holds that; npm start does the same itself).
// With `--out DIR name=service/id ...`, that set in DIR: what the Kubernetes Secrets and Fly
// secrets are made from (docs/security.md).
import type { Config } from "../shared/config.ts";
import { type PeerIdentity, parseSpiffeId } from "../shared/tls.ts";
import { ensureCertsLocked, localCertPlan, localCertsDir } from "./dev-certs.ts";
import { planChildren } from "./supervisor.ts";

const usage =
  "usage: medisync certs                                   (npm start's set in data/certs/)\n" +
  "       medisync certs --out DIR name=service/id ...     (e.g. inv-0=inventory/inv-0 gateway=gateway/gateway)";

/** The set the arguments name; a string is the usage error. */
export function parseCertsArgs(
  args: string[],
  cfg: Config,
): { dir: string; plan: Map<string, PeerIdentity> } | string {
  if (args.length === 0) return { dir: localCertsDir, plan: localCertPlan(planChildren(cfg)) };
  if (args[0] !== "--out" || !args[1] || args.length < 3) return usage;
  const plan = new Map<string, PeerIdentity>();
  for (const a of args.slice(2)) {
    const m = /^([a-z0-9][a-z0-9-]{0,63})=([a-z]+\/[^/]+)$/.exec(a);
    const identity = m ? parseSpiffeId(`spiffe://medisync/${m[2]}`) : undefined;
    if (!m || !identity || m[1] === "ca") return `medisync certs: ${a}: expected name=service/id\n${usage}`;
    plan.set(m[1]!, identity);
  }
  return { dir: args[1], plan };
}

export async function writeCerts(args: string[], cfg: Config): Promise<number> {
  const parsed = parseCertsArgs(args, cfg);
  if (typeof parsed === "string") {
    process.stderr.write(`${parsed}\n`);
    return 2;
  }
  try {
    const files = await ensureCertsLocked(parsed.dir, parsed.plan);
    process.stdout.write(
      `${parsed.dir}/ca.crt and a certificate for each of: ${[...files.keys()].join(", ")}\n`,
    );
    return 0;
  } catch (err) {
    process.stderr.write(
      `medisync: making certificates in ${parsed.dir} failed: ${(err as Error).message}\n`,
    );
    return 1;
  }
}
