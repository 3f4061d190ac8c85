// Owns the development identity provider: the signing key npm start makes on first run and the
// JWKS the gateway trusts (both under data/auth/, git-ignored), and minting tokens with that key
// for `npm run token`, the client, the benchmarks and the tests. Production tokens come from a real
// identity provider (AUTH_JWKS_URL); nothing here is on a production request's path.
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { importJWK, type JWK, SignJWT } from "jose";

export const devAuthDir = "data/auth";

export interface DevKeys {
  /** The private key as a JWK (kid and alg set). */
  privateJwk: JWK;
  jwksFile: string;
}

/**
 * The signing key in `dir`, made on first run: an ES256 key (private.jwk.json, mode 0600) and the
 * JWKS with its public half (jwks.json). "wx" so two processes starting at once never make two keys.
 */
export function ensureDevKeys(dir: string = devAuthDir): DevKeys {
  const privateFile = join(dir, "private.jwk.json");
  const jwksFile = join(dir, "jwks.json");
  try {
    return { privateJwk: JSON.parse(readFileSync(privateFile, "utf8")) as JWK, jwksFile };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  // A JWKS someone put there without its private half is theirs: never overwritten.
  if (existsSync(jwksFile))
    throw new Error(`${jwksFile} exists without a signing key beside it (${privateFile})`);
  mkdirSync(dir, { recursive: true });
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const kid = randomUUID();
  const priv = { ...(privateKey.export({ format: "jwk" }) as JWK), kid, alg: "ES256", use: "sig" };
  const pub = { ...(publicKey.export({ format: "jwk" }) as JWK), kid, alg: "ES256", use: "sig" };
  try {
    writeFileSync(privateFile, `${JSON.stringify(priv)}\n`, { mode: 0o600, flag: "wx" });
    writeFileSync(jwksFile, `${JSON.stringify({ keys: [pub] })}\n`, { mode: 0o644 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  // Whoever won the race wrote both files; read back what is there.
  return { privateJwk: JSON.parse(readFileSync(privateFile, "utf8")) as JWK, jwksFile };
}

export interface TokenClaims {
  role: "patient" | "clinician" | "pharmacist" | "admin";
  sub: string;
  clinics?: readonly string[];
  issuer: string;
  audience: string;
  /** Lifetime from now (negative: already expired, for tests). */
  ttlS: number;
}

/** A signed JWT for `claims` with the development key. */
export async function mintToken(privateJwk: JWK, claims: TokenClaims): Promise<string> {
  const key = await importJWK(privateJwk, "ES256");
  const nowS = Math.floor(Date.now() / 1_000);
  const payload: Record<string, unknown> = { role: claims.role };
  if (claims.clinics && claims.clinics.length > 0) payload.clinics = [...claims.clinics];
  return new SignJWT(payload)
    .setProtectedHeader({ alg: "ES256", kid: privateJwk.kid!, typ: "JWT" })
    .setSubject(claims.sub)
    .setIssuer(claims.issuer)
    .setAudience(claims.audience)
    .setIssuedAt(nowS)
    .setExpirationTime(nowS + claims.ttlS)
    .setJti(randomUUID())
    .sign(key);
}
