// Owns who the client is at the gateway: the bearer tokens its REST requests carry. By default it
// mints development tokens with npm start's signing key (the one the gateway's AUTH_JWKS_FILE sits
// beside): a patient token per simulated patient, a pharmacist's for the stock clinics, a
// clinician's per clinic for prescribing there, an admin's for the setup reads the policy keeps to
// admins. With --token (or MEDISYNC_TOKEN) a real identity
// provider's token is used for everything its role may do. Over gRPC (mTLS, no JWT) nobody is.
import { randomUUID } from "node:crypto";
import { decodeJwt, type JWK } from "jose";
import { policy } from "../shared/access-policy.ts";
import { mintToken } from "../shared/dev-tokens.ts";
import { UsageError } from "./usage-error.ts";

export const roles = ["patient", "clinician", "pharmacist", "admin"] as const;
export type Role = (typeof roles)[number];

/** A token and the role it is, so a refusal can say which role was refused. */
export interface Credential {
  role: Role;
  /** The Authorization header's value ("Bearer …"). */
  authorization: string;
}

/** The patient a request acts for, and the credential it is sent with (none over gRPC). */
export interface Patient {
  id: string;
  credential?: Credential;
}

export interface Identity {
  /** For messages: where the tokens come from. */
  readonly describe: string;
  /**
   * The patient the next `requests` requests act as (a booking reserves two: its cancel is sent
   * with the same patient's token). A new patient once the current one has used its budget.
   */
  patient(requests: number): Promise<Patient>;
  /** Who writes and reads stock at the inventory clinics. */
  stock(): Promise<Credential>;
  /** Who prescribes at the clinic with code `clinicCode` (and reads its stock before the run). */
  clinician(clinicCode: string): Promise<Credential>;
  /** Who reads the directory and the cluster before the run. */
  setup(): Promise<Credential>;
  /** How many patients the run acted as. */
  readonly patientsMade: number;
  /** The clinic codes a staff token is scoped to; undefined when it may act anywhere. */
  readonly clinicScope: readonly string[] | undefined;
}

/** The route a scenario calls through the gateway: what a token's role must be granted. */
export const scenarioRoutes: Record<string, string> = {
  browse: "GET /v1/clinics/{clinicId}/slots",
  book: "POST /v1/appointments",
  cancel: "POST /v1/appointments/{id}/cancel",
  prescribe: "POST /v1/prescriptions",
  restock: "POST /v1/inventory/{clinicId}/stock/{medicationCode}/restock",
  deduct: "POST /v1/inventory/{clinicId}/stock/{medicationCode}/deduct",
  transfer: "POST /v1/inventory/transfers",
};

/** Roles granted `route` by the gateway's policy (src/shared/access-policy.ts, the one table). */
export function rolesGranted(route: string): Role[] {
  const rule = policy[route];
  return rule ? roles.filter((r) => rule.grants[r] !== undefined) : [];
}

export interface MintedOptions {
  privateJwk: JWK;
  issuer: string;
  audience: string;
  /** Each token's lifetime: longer than the run. */
  ttlS: number;
  /** Requests one simulated patient makes before the client moves on to a new patient. */
  requestsPerPatient: number;
  /** Clinic codes of the stock scenarios (the pharmacist's scope). */
  stockClinics: readonly string[];
}

/**
 * Development tokens minted here. Each simulated patient makes at most `requestsPerPatient`
 * requests in the whole run, so with that at most the gateway's per-minute patient budget, no
 * patient can be refused 429 however fast the run goes: the load spreads over more patients.
 */
export class MintedIdentity implements Identity {
  readonly describe = "development tokens signed with npm start's key (AUTH_JWKS_FILE's folder)";
  readonly clinicScope = undefined;
  patientsMade = 0;
  private current: { patient: Promise<Patient>; used: number } | undefined;
  private stockToken: Promise<Credential> | undefined;
  private adminToken: Promise<Credential> | undefined;
  private readonly clinicianTokens = new Map<string, Promise<Credential>>();
  private readonly sessionId = randomUUID().slice(0, 8);

  constructor(private readonly o: MintedOptions) {}

  private async mint(role: Role, sub: string, clinics: readonly string[] = []): Promise<Credential> {
    const token = await mintToken(this.o.privateJwk, {
      role,
      sub,
      clinics,
      issuer: this.o.issuer,
      audience: this.o.audience,
      ttlS: this.o.ttlS,
    });
    return { role, authorization: `Bearer ${token}` };
  }

  patient(requests: number): Promise<Patient> {
    if (!this.current || this.current.used + requests > this.o.requestsPerPatient) {
      const id = randomUUID();
      this.patientsMade++;
      this.current = {
        patient: this.mint("patient", id).then((credential) => ({ id, credential })),
        used: 0,
      };
    }
    this.current.used += requests;
    return this.current.patient;
  }

  stock(): Promise<Credential> {
    this.stockToken ??= this.mint("pharmacist", `client-pharmacist-${this.sessionId}`, this.o.stockClinics);
    return this.stockToken;
  }

  /** One clinician per clinic, scoped to that clinic only: the policy's compartment, nothing wider. */
  clinician(clinicCode: string): Promise<Credential> {
    let t = this.clinicianTokens.get(clinicCode);
    if (!t) {
      t = this.mint("clinician", `client-clinician-${this.sessionId}-${clinicCode}`, [clinicCode]);
      this.clinicianTokens.set(clinicCode, t);
    }
    return t;
  }

  setup(): Promise<Credential> {
    this.adminToken ??= this.mint("admin", `client-admin-${this.sessionId}`);
    return this.adminToken;
  }
}

/**
 * One token from a real identity provider, for every request. A patient token acts for its own
 * patient (its sub); a clinician's or admin's books for new patient ids. What the role may not do
 * is refused before the run (checkMix).
 */
export class GivenIdentity implements Identity {
  readonly describe: string;
  readonly role: Role;
  readonly clinicScope: readonly string[] | undefined;
  patientsMade = 0;
  private readonly credential: Credential;
  private readonly sub: string;

  constructor(token: string, flag: string) {
    let claims: ReturnType<typeof decodeJwt>;
    try {
      claims = decodeJwt(token);
    } catch {
      throw new UsageError(flag, "is not a JWT (three base64url parts)");
    }
    const role = claims.role;
    if (typeof role !== "string" || !(roles as readonly string[]).includes(role))
      throw new UsageError(flag, `the token's role claim must be one of ${roles.join(", ")}`);
    if (typeof claims.sub !== "string" || claims.sub === "")
      throw new UsageError(flag, "the token has no sub claim");
    this.role = role as Role;
    this.sub = claims.sub;
    const clinics = Array.isArray(claims.clinics) ? claims.clinics.map(String) : [];
    this.clinicScope = this.role === "clinician" || this.role === "pharmacist" ? clinics : undefined;
    this.credential = { role: this.role, authorization: `Bearer ${token}` };
    this.describe = `the ${this.role} token from ${flag}`;
  }

  async patient(): Promise<Patient> {
    if (this.role === "patient") {
      this.patientsMade = 1;
      return { id: this.sub, credential: this.credential };
    }
    this.patientsMade++;
    return { id: randomUUID(), credential: this.credential };
  }

  async stock(): Promise<Credential> {
    return this.credential;
  }

  async clinician(): Promise<Credential> {
    return this.credential;
  }

  async setup(): Promise<Credential> {
    return this.credential;
  }

  /** Refuses a mix with a scenario this token's role may not call: one line naming both. */
  checkMix(scenarios: readonly string[]): void {
    for (const s of scenarios) {
      const route = scenarioRoutes[s]!;
      const granted = rolesGranted(route);
      if (!granted.includes(this.role)) {
        throw new UsageError(
          "--token",
          `${this.role === "admin" ? "an" : "a"} ${this.role} token may not ${s} (${route} is for ${granted.join(", ")}): leave ${s} out of --mix or pass another token`,
        );
      }
    }
  }
}
