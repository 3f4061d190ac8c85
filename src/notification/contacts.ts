// Owns patients' contacts: the e-mail address kept encrypted at rest with AES-256-GCM under
// NOTIFICATION_CONTACT_KEY, the patient's id bound in as associated data (a ciphertext copied onto
// another patient's row does not decrypt), and storing one. An address is never logged, never put
// in a webhook payload, and leaves this module only towards the SMTP server (deliveries.ts).
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import type pg from "pg";

/** Format byte of the stored value: 1 = AES-256-GCM, 12-byte IV, 16-byte tag, then the ciphertext. */
const formatV1 = 1;
const ivBytes = 12;
const tagBytes = 16;

export class ContactCipher {
  private readonly key: Buffer;

  constructor(keyBase64: string) {
    this.key = Buffer.from(keyBase64, "base64");
    if (this.key.length !== 32) throw new Error("NOTIFICATION_CONTACT_KEY must be 32 bytes");
  }

  encrypt(patientId: string, email: string): Buffer {
    const iv = randomBytes(ivBytes);
    const c = createCipheriv("aes-256-gcm", this.key, iv);
    c.setAAD(Buffer.from(`contact:${patientId}`));
    const ct = Buffer.concat([c.update(email, "utf8"), c.final()]);
    return Buffer.concat([Buffer.from([formatV1]), iv, c.getAuthTag(), ct]);
  }

  /** Throws when the value was not sealed by this key for this patient (or was altered). */
  decrypt(patientId: string, sealed: Buffer): string {
    if (sealed.length < 1 + ivBytes + tagBytes || sealed[0] !== formatV1)
      throw new Error("contact: unknown format");
    const iv = sealed.subarray(1, 1 + ivBytes);
    const tag = sealed.subarray(1 + ivBytes, 1 + ivBytes + tagBytes);
    const d = createDecipheriv("aes-256-gcm", this.key, iv);
    d.setAAD(Buffer.from(`contact:${patientId}`));
    d.setAuthTag(tag);
    return Buffer.concat([d.update(sealed.subarray(1 + ivBytes + tagBytes)), d.final()]).toString("utf8");
  }
}

/** Stores or replaces the patient's address; later notifications use it (earlier ones keep theirs). */
export async function setContact(
  pool: pg.Pool,
  cipher: ContactCipher,
  patientId: string,
  email: string,
): Promise<Date> {
  const r = await pool.query<{ updated_at: Date }>(
    `INSERT INTO contacts (patient_id, email) VALUES ($1, $2)
     ON CONFLICT (patient_id) DO UPDATE SET email = EXCLUDED.email, updated_at = now()
     RETURNING updated_at`,
    [patientId, cipher.encrypt(patientId, email)],
  );
  return r.rows[0]!.updated_at;
}
