// Owns `medisync token` (npm run token): mints a development token with npm start's signing key
// (data/auth/, made on first run), so the README's curl examples and a user's first requests carry
// a real token the gateway verifies like any other. Prints the token alone on stdout.
//   npm run token -- --role patient --sub <patient uuid>
//   npm run token -- --role pharmacist --sub <staff id> --clinic SYD [--clinic MEL] [--ttl 3600]
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import type { Config } from "../shared/config.ts";
import { ensureDevKeys, mintToken, type TokenClaims } from "../shared/dev-tokens.ts";
import { isUuid } from "../shared/validation.ts";

const roles = ["patient", "clinician", "pharmacist", "admin"] as const;
const usage =
  "usage: npm run token -- --role <patient|clinician|pharmacist|admin> --sub <id> [--clinic CODE]... [--ttl SECONDS]";

export async function runToken(argv: string[], cfg: Config): Promise<number> {
  let values: { role?: string; sub?: string; clinic?: string[]; ttl?: string };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        role: { type: "string" },
        sub: { type: "string" },
        clinic: { type: "string", multiple: true },
        ttl: { type: "string" },
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`medisync token: ${(err as Error).message}\n${usage}\n`);
    return 2;
  }
  const role = values.role as TokenClaims["role"] | undefined;
  if (!role || !roles.includes(role)) return fail(`--role must be one of ${roles.join(", ")}`);
  const sub = values.sub ?? (role === "admin" ? "admin" : undefined);
  if (!sub) return fail("--sub is required (a patient's id for --role patient)");
  if (role === "patient" && !isUuid(sub)) return fail("--sub must be the patient's UUID for --role patient");
  const clinics = values.clinic ?? [];
  if ((role === "clinician" || role === "pharmacist") && clinics.length === 0)
    return fail(`--clinic CODE is required for --role ${role} (the clinics the token may act at)`);
  const ttlS = values.ttl === undefined ? 3_600 : Number(values.ttl);
  if (!Number.isInteger(ttlS) || ttlS < 1 || ttlS > 30 * 86_400)
    return fail("--ttl must be 1 to 2592000 seconds");
  if (cfg.AUTH_JWKS_URL)
    return fail("AUTH_JWKS_URL is set: tokens come from that identity provider, not from this command");
  const { privateJwk } = ensureDevKeys(dirname(cfg.AUTH_JWKS_FILE));
  const token = await mintToken(privateJwk, {
    role,
    sub,
    clinics,
    issuer: cfg.AUTH_ISSUER,
    audience: cfg.AUTH_AUDIENCE,
    ttlS,
  });
  process.stdout.write(`${token}\n`);
  return 0;
}

function fail(message: string): number {
  process.stderr.write(`medisync token: ${message}\n${usage}\n`);
  return 2;
}
