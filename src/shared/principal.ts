// Owns who a request acts for: the principal a verified token names. Every authorization, audit
// row and rate limit reads this shape; nothing else in the gateway decodes a token.

export const roles = ["patient", "clinician", "pharmacist", "admin"] as const;
export type Role = (typeof roles)[number];

export interface Principal {
  /** The token's subject. For a patient it is the patient id (a UUID); for staff, the staff id. */
  sub: string;
  role: Role;
  /** Staff (clinician, pharmacist): the clinic codes the token is scoped to. Empty otherwise. */
  clinics: readonly string[];
}

export function isRole(x: unknown): x is Role {
  return typeof x === "string" && (roles as readonly string[]).includes(x);
}
