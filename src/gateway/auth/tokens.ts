// Owns checking a bearer token: its signature against the JWKS (a URL in production, a file for
// development), issuer, audience, expiry with a small skew, and an algorithm allowlist that holds
// asymmetric algorithms only (an HMAC or `none` token is refused before any key is looked at: the
// algorithm-confusion attack needs the verifier to accept what the token says it is). A verified
// token is cached until it expires, so a hot path pays one map lookup, not a signature check.
import { readFileSync } from "node:fs";
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from "jose";
import { LRUCache } from "lru-cache";
import { AppError } from "../../shared/errors.ts";
import { counter } from "../../shared/metrics.ts";
import { isRole, type Principal } from "../../shared/principal.ts";

/** Asymmetric only: a verifier that took HS256 could be handed the public key as the secret. */
export const allowedAlgorithms = ["ES256", "ES384", "RS256", "PS256", "EdDSA"] as const;

/** The claim that names the role, and the one that names a staff token's clinics (codes). */
export const ROLE_CLAIM = "role";
export const CLINICS_CLAIM = "clinics";

const refused = counter("medisync_gateway_tokens_refused_total", "Bearer tokens refused, by reason", [
  "reason",
]);

export interface TokenVerifierOptions {
  /** JWKS URL (production) or a JWKS file (development); exactly one. */
  jwksUrl?: string;
  jwksFile?: string;
  issuer: string;
  audience: string;
  clockSkewMs: number;
  cacheTokensMax: number;
  /** A token longer than this is refused unread (a header is not a place for megabytes). */
  tokenBytesMax?: number;
  now?: () => number;
}

interface Cached {
  principal: Principal;
  expiresAtMs: number;
}

/** RFC 6750 §3: what a 401 says in WWW-Authenticate. */
export function wwwAuthenticate(error?: "invalid_token" | "invalid_request", description?: string): string {
  let v = 'Bearer realm="medisync"';
  if (error) v += `, error="${error}"`;
  if (description) v += `, error_description="${description.replaceAll('"', "'")}"`;
  return v;
}

export function unauthenticated(detail: string, error?: "invalid_token" | "invalid_request"): AppError {
  return new AppError("UNAUTHENTICATED", detail, "authorization", {
    "www-authenticate": wwwAuthenticate(error, error ? detail : undefined),
  });
}

export class TokenVerifier {
  private readonly keys: JWTVerifyGetKey;
  private readonly cache: LRUCache<string, Cached>;
  private readonly now: () => number;
  private readonly tokenBytesMax: number;

  constructor(private readonly o: TokenVerifierOptions) {
    if ((o.jwksUrl === undefined) === (o.jwksFile === undefined))
      throw new Error("exactly one of AUTH_JWKS_URL and AUTH_JWKS_FILE must be set");
    this.keys = o.jwksUrl
      ? createRemoteJWKSet(new URL(o.jwksUrl))
      : createLocalJWKSet(JSON.parse(readFileSync(o.jwksFile!, "utf8")) as JSONWebKeySet);
    this.cache = new LRUCache({ max: o.cacheTokensMax });
    this.now = o.now ?? Date.now;
    this.tokenBytesMax = o.tokenBytesMax ?? 8_192;
  }

  /** The principal an Authorization header names, or AppError UNAUTHENTICATED saying why not. */
  async verify(authorization: string | undefined): Promise<Principal> {
    if (authorization === undefined || authorization === "") {
      refused.inc({ reason: "missing" });
      throw unauthenticated("a bearer token is required (Authorization: Bearer <token>)");
    }
    const m = /^Bearer +([A-Za-z0-9._~+/-]+=*)$/i.exec(authorization);
    if (!m || authorization.length > this.tokenBytesMax) {
      refused.inc({ reason: "malformed" });
      throw unauthenticated("the Authorization header is not a bearer token", "invalid_request");
    }
    const token = m[1]!;
    const hit = this.cache.get(token);
    if (hit) {
      if (this.now() < hit.expiresAtMs + this.o.clockSkewMs) return hit.principal;
      this.cache.delete(token);
      refused.inc({ reason: "expired" });
      throw unauthenticated("the token has expired", "invalid_token");
    }
    const { principal, expiresAtMs } = await this.check(token);
    this.cache.set(token, { principal, expiresAtMs });
    return principal;
  }

  private async check(token: string): Promise<Cached> {
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch {
      refused.inc({ reason: "malformed" });
      throw unauthenticated("the token is not a JWT", "invalid_token");
    }
    if (!(allowedAlgorithms as readonly unknown[]).includes(alg)) {
      refused.inc({ reason: "algorithm" });
      throw unauthenticated(
        `the token's algorithm ${JSON.stringify(alg)} is not allowed (allowed: ${allowedAlgorithms.join(", ")})`,
        "invalid_token",
      );
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.keys, {
        algorithms: [...allowedAlgorithms],
        issuer: this.o.issuer,
        audience: this.o.audience,
        clockTolerance: Math.ceil(this.o.clockSkewMs / 1_000),
        requiredClaims: ["exp", "sub"],
        currentDate: new Date(this.now()),
      }));
    } catch (err) {
      throw this.refusal(err);
    }
    const role = payload[ROLE_CLAIM];
    if (!isRole(role)) {
      refused.inc({ reason: "claims" });
      throw unauthenticated(`the token's ${ROLE_CLAIM} claim is not a MediSync role`, "invalid_token");
    }
    const rawClinics = payload[CLINICS_CLAIM] ?? [];
    if (
      !Array.isArray(rawClinics) ||
      rawClinics.length > 64 ||
      !rawClinics.every((c) => typeof c === "string" && /^[A-Za-z0-9_-]{1,32}$/.test(c))
    ) {
      refused.inc({ reason: "claims" });
      throw unauthenticated(
        `the token's ${CLINICS_CLAIM} claim must be a list of clinic codes`,
        "invalid_token",
      );
    }
    const sub = payload.sub!;
    if (sub.length > 128) {
      refused.inc({ reason: "claims" });
      throw unauthenticated("the token's sub claim is too long", "invalid_token");
    }
    return {
      principal: { sub, role, clinics: Object.freeze([...(rawClinics as string[])]) },
      expiresAtMs: payload.exp! * 1_000,
    };
  }

  private refusal(err: unknown): AppError {
    if (err instanceof errors.JWTExpired) {
      refused.inc({ reason: "expired" });
      return unauthenticated("the token has expired", "invalid_token");
    }
    if (err instanceof errors.JWTClaimValidationFailed) {
      refused.inc({ reason: "claims" });
      return unauthenticated(`the token's ${err.claim} claim is not accepted`, "invalid_token");
    }
    if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWSSignatureVerificationFailed) {
      refused.inc({ reason: "signature" });
      return unauthenticated("the token's signature does not verify", "invalid_token");
    }
    if (
      err instanceof errors.JWKSTimeout ||
      (err instanceof errors.JOSEError && err.code === "ERR_JWKS_INVALID")
    ) {
      refused.inc({ reason: "jwks" });
      return new AppError("UNAVAILABLE", "the token's keys could not be read; retry");
    }
    if (err instanceof errors.JOSEError) {
      refused.inc({ reason: "invalid" });
      return unauthenticated("the token is not valid", "invalid_token");
    }
    // A JWKS URL that cannot be reached: not the caller's fault.
    refused.inc({ reason: "jwks" });
    return new AppError("UNAVAILABLE", "the token's keys could not be read; retry");
  }
}
