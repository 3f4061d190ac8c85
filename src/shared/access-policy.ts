// Owns who may do what: one row per route, naming for each role whether it may call the route and
// within which compartment (own patient, own clinics, anywhere), where a request's patient and
// clinic come from, and what the audit trail records of it. docs/security.md's table is rendered
// from this one (policyTable), and the gateway's auth matrix test walks it, so the three cannot
// drift. A route with no row here is refused to every token: forgetting a row fails closed. It
// lives in src/shared because the client reads it too (which scenarios a token's role may run);
// the gateway's auth/guard.ts is what enforces it.
import { AppError } from "./errors.ts";
import type { Principal, Role } from "./principal.ts";

/**
 * What a role may do on a route: `any` (no compartment), `own` (a patient, on their own records),
 * `clinic` (staff, at the clinics named in their token). A role the rule leaves out is refused.
 */
export type Grant = "any" | "own" | "clinic";

/**
 * Where a request's patient and clinic come from, so a grant can be checked before the act:
 * a path parameter, the body, or the record the path names (read before the act).
 */
export type Subject =
  | { from: "none" }
  | { from: "path-patient"; param: string }
  | { from: "path-clinic-id"; param: string }
  | { from: "path-clinic-code"; param: string }
  | { from: "booking-body" }
  | { from: "transfer-body" }
  | { from: "prescribe-body" }
  | { from: "appointment"; param: string }
  | { from: "prescription"; param: string };

/** FHIR AuditEvent.action: Create, Read, Update, Delete, Execute (an operation: cancel, deduct, transfer…). */
export const auditActions = ["C", "R", "U", "D", "E"] as const;
export type AuditAction = (typeof auditActions)[number];

/**
 * What a row is about, as FHIR resource names. Stock (a clinic's medicine, its lots, reorder level)
 * is R5's "InventoryItem" with the medication code as id and the clinic set; notifications are
 * "Communication", webhooks "Subscription", clinics "Organization", replicas and cluster operations
 * "Device", the audit trail itself "AuditEvent". each audited route below names one.
 */
export const auditResourceTypes = [
  "Appointment",
  "Slot",
  "MedicationRequest",
  "MedicationDispense",
  "InventoryItem",
  "Patient",
  "Practitioner",
  "Organization",
  "Communication",
  "Subscription",
  "AuditEvent",
  "Device",
] as const;
export type AuditResourceType = (typeof auditResourceTypes)[number];

export interface RouteRule {
  grants: Partial<Record<Role, Grant>>;
  subject: Subject;
  /**
   * A `clinic` grant enforced by the service, told the token's clinics (the request names none the
   * gateway could check): a booking's clinic is the slot's; a patient's list keeps those clinics'.
   */
  clinicScopeAt?: "service";
  /** Recorded in the audit trail (every write, every read of patient data); absent: not recorded. */
  /**
   * The route's audit row: its action, the resource type, and the path parameter that names the
   * resource (`id` unless said; a create names what it made itself, c.set("resourceId")).
   */
  audit?: { action: AuditAction; resourceType: AuditResourceType; idParam?: string };
}

const none = { from: "none" } as const;
const staff = (g: Partial<Record<Role, Grant>>) => g;

/** Every authenticated route of the gateway, keyed "METHOD /path/{param}" as in the OpenAPI document. */
export const policy: Record<string, RouteRule> = {
  // Directory: anyone signed in may look up clinics, practitioners and free slots.
  "GET /v1/clinics": {
    grants: { patient: "any", clinician: "any", pharmacist: "any", admin: "any" },
    subject: none,
  },
  "GET /v1/clinics/{clinicId}/practitioners": {
    grants: { patient: "any", clinician: "any", pharmacist: "any", admin: "any" },
    subject: none,
  },
  "GET /v1/clinics/{clinicId}/slots": {
    grants: { patient: "any", clinician: "any", pharmacist: "any", admin: "any" },
    subject: none,
  },
  "POST /v1/clinics/{clinicId}/slots": {
    grants: { admin: "any" },
    subject: { from: "path-clinic-id", param: "clinicId" },
    audit: { action: "C", resourceType: "Slot" },
  },

  // Appointments: a patient their own; a clinician their clinics' patients; an admin anyone's.
  "POST /v1/appointments": {
    grants: { patient: "own", clinician: "clinic", admin: "any" },
    subject: { from: "booking-body" },
    clinicScopeAt: "service",
    audit: { action: "C", resourceType: "Appointment" },
  },
  "GET /v1/appointments/{id}": {
    grants: { patient: "own", clinician: "clinic", admin: "any" },
    subject: { from: "appointment", param: "id" },
    audit: { action: "R", resourceType: "Appointment" },
  },
  "POST /v1/appointments/{id}/cancel": {
    grants: { patient: "own", clinician: "clinic", admin: "any" },
    subject: { from: "appointment", param: "id" },
    audit: { action: "U", resourceType: "Appointment" },
  },
  "GET /v1/patients/{id}/appointments": {
    grants: { patient: "own", clinician: "clinic", admin: "any" },
    subject: { from: "path-patient", param: "id" },
    clinicScopeAt: "service",
    audit: { action: "R", resourceType: "Appointment" },
  },

  // Prescriptions: clinicians prescribe and cancel at their clinics; pharmacists read what they
  // dispense; a patient reads their own. Prescribing is a clinical act: not an admin's.
  "POST /v1/prescriptions": {
    grants: { clinician: "clinic" },
    subject: { from: "prescribe-body" },
    audit: { action: "C", resourceType: "MedicationRequest" },
  },
  "GET /v1/prescriptions/{id}": {
    grants: { patient: "own", clinician: "clinic", pharmacist: "clinic", admin: "any" },
    subject: { from: "prescription", param: "id" },
    audit: { action: "R", resourceType: "MedicationRequest" },
  },
  "GET /v1/appointments/{id}/prescriptions": {
    grants: { patient: "own", clinician: "clinic", pharmacist: "clinic", admin: "any" },
    subject: { from: "appointment", param: "id" },
    audit: { action: "R", resourceType: "MedicationRequest" },
  },
  "POST /v1/prescriptions/{id}/cancel": {
    grants: { clinician: "clinic", admin: "any" },
    subject: { from: "prescription", param: "id" },
    audit: { action: "U", resourceType: "MedicationRequest" },
  },

  // Stock: pharmacists write at their clinics; clinicians read theirs; settings are an admin's.
  "POST /v1/inventory/{clinicId}/stock/{medicationCode}/restock": {
    grants: staff({ pharmacist: "clinic", admin: "any" }),
    subject: { from: "path-clinic-code", param: "clinicId" },
    audit: { action: "U", resourceType: "InventoryItem", idParam: "medicationCode" },
  },
  "POST /v1/inventory/{clinicId}/stock/{medicationCode}/deduct": {
    grants: staff({ pharmacist: "clinic", admin: "any" }),
    subject: { from: "path-clinic-code", param: "clinicId" },
    audit: { action: "U", resourceType: "InventoryItem", idParam: "medicationCode" },
  },
  "POST /v1/inventory/{clinicId}/stock/{medicationCode}/reorder-level": {
    grants: { admin: "any" },
    subject: { from: "path-clinic-code", param: "clinicId" },
    audit: { action: "U", resourceType: "InventoryItem", idParam: "medicationCode" },
  },
  "POST /v1/inventory/{clinicId}/time-zone": {
    grants: { admin: "any" },
    subject: { from: "path-clinic-code", param: "clinicId" },
    audit: { action: "U", resourceType: "Organization", idParam: "clinicId" },
  },
  "POST /v1/inventory/transfers": {
    grants: staff({ pharmacist: "clinic", admin: "any" }),
    subject: { from: "transfer-body" },
    audit: { action: "U", resourceType: "InventoryItem" },
  },
  "GET /v1/inventory/{clinicId}/stock": {
    grants: staff({ pharmacist: "clinic", clinician: "clinic", admin: "any" }),
    subject: { from: "path-clinic-code", param: "clinicId" },
  },
  "GET /v1/inventory/{clinicId}/stock/{medicationCode}": {
    grants: staff({ pharmacist: "clinic", clinician: "clinic", admin: "any" }),
    subject: { from: "path-clinic-code", param: "clinicId" },
  },

  // Notifications: a patient's own inbox and contact; webhooks are an admin's.
  "GET /v1/patients/{id}/notifications": {
    grants: { patient: "own", admin: "any" },
    subject: { from: "path-patient", param: "id" },
    audit: { action: "R", resourceType: "Communication" },
  },
  "PUT /v1/patients/{id}/contact": {
    grants: { patient: "own", admin: "any" },
    subject: { from: "path-patient", param: "id" },
    audit: { action: "U", resourceType: "Patient" },
  },
  "POST /v1/webhooks": {
    grants: { admin: "any" },
    subject: none,
    audit: { action: "C", resourceType: "Subscription" },
  },
  "GET /v1/webhooks": { grants: { admin: "any" }, subject: none },
  "GET /v1/webhooks/{id}/deliveries": { grants: { admin: "any" }, subject: none },
  "POST /v1/webhooks/{id}/deliveries/{deliveryId}/redeliver": {
    grants: { admin: "any" },
    subject: none,
    audit: { action: "E", resourceType: "Subscription" },
  },

  // Cluster operations and the audit trail itself: admins only.
  "GET /v1/cluster": { grants: { admin: "any" }, subject: none },
  "GET /v1/cluster/members": { grants: { admin: "any" }, subject: none },
  "GET /v1/cluster/services": { grants: { admin: "any" }, subject: none },
  "POST /v1/cluster/members": {
    grants: { admin: "any" },
    subject: none,
    audit: { action: "C", resourceType: "Device" },
  },
  "POST /v1/cluster/members/{id}/promote": {
    grants: { admin: "any" },
    subject: none,
    audit: { action: "U", resourceType: "Device" },
  },
  "DELETE /v1/cluster/members/{id}": {
    grants: { admin: "any" },
    subject: none,
    audit: { action: "D", resourceType: "Device" },
  },
  "POST /v1/cluster/leader": {
    grants: { admin: "any" },
    subject: none,
    audit: { action: "E", resourceType: "Device" },
  },
  "GET /v1/audit": {
    grants: { admin: "any" },
    subject: none,
    audit: { action: "R", resourceType: "AuditEvent" },
  },
};

/** Routes anyone may call without a token: probes and the API's own description. */
export const publicRoutes = ["GET /healthz", "GET /readyz", "GET /openapi.json", "GET /docs"] as const;

/** The key of a route in `policy`: its method and OpenAPI path template. */
export function routeKey(method: string, pathTemplate: string): string {
  return `${method.toUpperCase()} ${pathTemplate}`;
}

export function ruleOf(key: string): RouteRule {
  const rule = policy[key];
  // A route mounted without a rule is a programming error, caught when the app is built.
  if (!rule) throw new Error(`no access rule for ${key} in src/shared/access-policy.ts`);
  return rule;
}

/**
 * The patient and clinics a request acts on. `clinics` are codes; every one must be in a staff
 * token's scope. `clinicIdsAllowed`: a booking's clinic is the slot's, known only to the
 * appointment service, which is told which clinics the caller may book at.
 */
export interface Facts {
  patientId?: string;
  clinics: string[];
}

/** The grant `principal` holds on `rule`, or FORBIDDEN saying what is missing. */
export function grantOf(principal: Principal, rule: RouteRule, key: string): Grant {
  const grant = rule.grants[principal.role];
  if (!grant) {
    const allowed = Object.keys(rule.grants).join(", ") || "nobody";
    throw new AppError(
      "FORBIDDEN",
      `role ${principal.role} may not call ${key} (allowed: ${allowed})`,
      "role",
    );
  }
  return grant;
}

/** Checks a granted compartment against the facts of the request; FORBIDDEN naming what is missing. */
export function checkCompartment(principal: Principal, grant: Grant, facts: Facts): void {
  if (grant === "any") return;
  if (grant === "own") {
    if (facts.patientId !== principal.sub)
      throw new AppError(
        "FORBIDDEN",
        "a patient token acts only on its own records (sub must be the patient id)",
        "patientId",
      );
    return;
  }
  for (const clinic of facts.clinics) {
    if (!principal.clinics.includes(clinic))
      throw new AppError("FORBIDDEN", `the token is not scoped to clinic ${clinic}`, "clinics");
  }
  if (facts.clinics.length === 0)
    throw new AppError("FORBIDDEN", "the request names no clinic the token is scoped to", "clinics");
}
