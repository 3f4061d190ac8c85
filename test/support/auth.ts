// Gives tests a development identity provider of their own: a signing key and JWKS in a temp
// folder (made once per test process; testConfig points every gateway at it) and tokens minted
// with it. `http()` sends an admin token unless a test names another (`as(...)`).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Guard, type RecordLookups } from "../../src/gateway/auth/guard.ts";
import { TokenVerifier } from "../../src/gateway/auth/tokens.ts";
import type { Pipeline } from "../../src/gateway/pipeline.ts";
import { type DevKeys, ensureDevKeys, mintToken, type TokenClaims } from "../../src/shared/dev-tokens.ts";

let keys: DevKeys | undefined;

/** This test process's key and JWKS file (made on first use). */
export function testKeys(): DevKeys {
  keys ??= ensureDevKeys(join(mkdtempSync(join(tmpdir(), "medisync-test-auth-")), "auth"));
  return keys;
}

export const TEST_ISSUER = "medisync-dev";
export const TEST_AUDIENCE = "medisync";

export interface Who {
  role: TokenClaims["role"];
  sub?: string;
  clinics?: readonly string[];
  ttlS?: number;
}

const minted = new Map<string, Promise<string>>();

/** A token for `who`, valid for an hour by default; the same `who` gets the same token. */
export function tokenFor(who: Who): Promise<string> {
  const key = JSON.stringify([who.role, who.sub, who.clinics, who.ttlS]);
  let t = minted.get(key);
  if (!t) {
    t = mintToken(testKeys().privateJwk, {
      role: who.role,
      sub: who.sub ?? `${who.role}-test`,
      clinics: who.clinics ?? [],
      issuer: TEST_ISSUER,
      audience: TEST_AUDIENCE,
      ttlS: who.ttlS ?? 3_600,
    });
    minted.set(key, t);
  }
  return t;
}

/** The Authorization header of `who`. */
export async function as(who: Who): Promise<{ authorization: string }> {
  return { authorization: `Bearer ${await tokenFor(who)}` };
}

export const admin: Who = { role: "admin", sub: "admin-test" };

/**
 * A pipeline for an app built in a test (createApp + app.request) that trusts this process's key;
 * records are looked up through the given clients when a rule needs them.
 */
export function testPipeline(o: {
  clinics: { codeOf(id: string): string | undefined };
  lookups?: Partial<RecordLookups>;
}): Pipeline {
  const tokens = new TokenVerifier({
    jwksFile: testKeys().jwksFile,
    issuer: TEST_ISSUER,
    audience: TEST_AUDIENCE,
    clockSkewMs: 30_000,
    cacheTokensMax: 1_000,
  });
  const missing = () => Promise.reject(new Error("no lookup in this test's pipeline"));
  return {
    guard: new Guard({
      tokens,
      clinicCodeOf: (id) => o.clinics.codeOf(id),
      lookups: {
        appointment: o.lookups?.appointment ?? missing,
        prescription: o.lookups?.prescription ?? missing,
      },
    }),
  };
}
