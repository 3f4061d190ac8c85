// Owns the gateway's admission of a request, whichever path serves it (a Hono route or the direct
// write lane): the token checked (401), the role's grant on the route and the compartment it acts
// in checked (403) against the request's patient and clinics — read from the path, the body, or
// the record the path names — before anything is done. Both paths call this, so a rule is written
// once (policy.ts) and enforced once (here).

import {
  checkCompartment,
  type Facts,
  type Grant,
  grantOf,
  type RouteRule,
  ruleOf,
} from "../../shared/access-policy.ts";
import { AppError } from "../../shared/errors.ts";
import type { Principal } from "../../shared/principal.ts";
import type { TokenVerifier } from "./tokens.ts";

/** What the guard reads of the records a path names (the appointment and medication services). */
export interface RecordLookups {
  appointment(id: string, requestId: string): Promise<{ patientId: string; clinicCode: string }>;
  prescription(id: string, requestId: string): Promise<{ patientId: string; clinic: string }>;
}

export interface GuardDeps {
  tokens: Pick<TokenVerifier, "verify">;
  /** Clinic id → code (the directory the gateway keeps); undefined for an id it does not know. */
  clinicCodeOf: (clinicId: string, requestId: string) => string | undefined | Promise<string | undefined>;
  lookups: RecordLookups;
}

/** A request let in: who acts, on what, with which grant. */
export interface Admission {
  key: string;
  principal: Principal;
  grant: Grant;
  facts: Facts;
}

/** A request's validated input, as far as the guard needs it. */
export interface GuardInput {
  param?: Record<string, string>;
  json?: unknown;
}

export class Guard {
  constructor(private readonly deps: GuardDeps) {}

  authenticate(authorization: string | undefined): Promise<Principal> {
    return this.deps.tokens.verify(authorization);
  }

  /** The rule of a route key; throws at mount time for a route the policy does not name. */
  rule(key: string): RouteRule {
    return ruleOf(key);
  }

  /** The role's grant on a route, or FORBIDDEN naming the roles it admits. */
  grantFor(key: string, principal: Principal): Grant {
    return grantOf(principal, ruleOf(key), key);
  }

  /** Lets `principal` do `key` on `input`, or throws FORBIDDEN (or the lookup's NOT_FOUND). */
  async admit(key: string, principal: Principal, input: GuardInput, requestId: string): Promise<Admission> {
    const rule = ruleOf(key);
    const grant = grantOf(principal, rule, key);
    const facts = await this.factsOf(rule, principal, input, requestId, grant);
    // Where only the service knows the clinic (a booking's slot, a patient's list), it is told the
    // token's clinics and keeps to them; with none, there is nothing it could keep to.
    if (grant === "clinic" && rule.clinicScopeAt === "service") {
      if (principal.clinics.length === 0)
        throw new AppError("FORBIDDEN", "the token is scoped to no clinic", "clinics");
    } else checkCompartment(principal, grant, facts);
    return { key, principal, grant, facts };
  }

  private async factsOf(
    rule: RouteRule,
    principal: Principal,
    input: GuardInput,
    requestId: string,
    grant: Grant,
  ): Promise<Facts> {
    const s = rule.subject;
    const param = input.param ?? {};
    const body = (input.json ?? {}) as Record<string, unknown>;
    // An id no clinic has stays itself: no token is scoped to it, so a staff grant is refused.
    const codeOf = async (id: string) => (await this.deps.clinicCodeOf(id, requestId)) ?? `id:${id}`;
    switch (s.from) {
      case "none":
        return { clinics: [] };
      case "path-patient":
        return { patientId: param[s.param], clinics: [] };
      case "path-clinic-id":
        return { clinics: [await codeOf(param[s.param]!)] };
      case "path-clinic-code":
        return { clinics: [param[s.param]!] };
      case "booking-body": {
        const patientId = typeof body.patientId === "string" ? body.patientId : undefined;
        if (patientId === undefined && principal.role !== "patient")
          throw new AppError("VALIDATION", "patientId: required when a staff token books", "patientId");
        return { patientId: patientId ?? principal.sub, clinics: [] };
      }
      case "transfer-body":
        return { clinics: [String(body.fromClinicId), String(body.toClinicId)] };
      case "prescribe-body":
      case "appointment": {
        const id = s.from === "appointment" ? param[s.param]! : String(body.appointmentId);
        // An admin's grant needs no lookup, but the audit row wants the patient: read it anyway
        // when the route is audited; a free read otherwise.
        if (grant === "any" && !rule.audit) return { clinics: [] };
        const a = await this.deps.lookups.appointment(id, requestId);
        return { patientId: a.patientId, clinics: [a.clinicCode] };
      }
      case "prescription": {
        if (grant === "any" && !rule.audit) return { clinics: [] };
        const p = await this.deps.lookups.prescription(param[s.param]!, requestId);
        return { patientId: p.patientId, clinics: [p.clinic] };
      }
    }
  }
}
