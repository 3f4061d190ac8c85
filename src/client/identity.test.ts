// Who the client is at the gateway: minted tokens the gateway's own verifier accepts, with the role
// and scope each scenario needs; a patient retired once it has made its budget of requests; a given
// token used for everything, and a mix its role may not run refused before the run.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLocalJWKSet, jwtVerify } from "jose";
import { afterAll, describe, expect, it } from "vitest";
import { ensureDevKeys, mintToken } from "../shared/dev-tokens.ts";
import { GivenIdentity, MintedIdentity, rolesGranted, scenarioRoutes } from "./identity.ts";
import { UsageError } from "./usage-error.ts";

const dir = mkdtempSync(join(tmpdir(), "medisync-client-identity-"));
const keys = ensureDevKeys(join(dir, "auth"));
// The checks the gateway makes of a token (issuer, audience, signature against the JWKS), made here
// with jose itself: the client may not import the gateway. test/client.test.ts shows the real
// gateway taking these tokens end to end.
const jwks = createLocalJWKSet(JSON.parse(readFileSync(keys.jwksFile, "utf8")));
const verifier = {
  async verify(authorization: string) {
    const { payload } = await jwtVerify(authorization.replace(/^Bearer /, ""), jwks, {
      issuer: "iss-test",
      audience: "aud-test",
      algorithms: ["ES256"],
    });
    return { sub: payload.sub, role: payload.role, clinics: (payload.clinics as string[] | undefined) ?? [] };
  },
};
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const minted = (requestsPerPatient: number) =>
  new MintedIdentity({
    privateJwk: keys.privateJwk,
    issuer: "iss-test",
    audience: "aud-test",
    ttlS: 600,
    requestsPerPatient,
    stockClinics: ["harbour", "riverside"],
  });

const given = async (role: "patient" | "clinician" | "pharmacist" | "admin", clinics: string[] = []) =>
  mintToken(keys.privateJwk, {
    role,
    sub: role === "patient" ? "0b9f2a4e-8c2d-4a55-9a57-0c7e3b0f2f11" : `${role}-1`,
    clinics,
    issuer: "iss-test",
    audience: "aud-test",
    ttlS: 600,
  });

describe("minted identity", () => {
  it("mints tokens the gateway's verifier accepts: patients as themselves, a pharmacist of the stock clinics, an admin", async () => {
    const id = minted(10);
    const p = await id.patient(1);
    expect(await verifier.verify(p.credential!.authorization)).toMatchObject({ role: "patient", sub: p.id });
    const stock = await verifier.verify((await id.stock()).authorization);
    expect(stock).toMatchObject({ role: "pharmacist", clinics: ["harbour", "riverside"] });
    expect((await id.setup()).role).toBe("admin");
    expect(await verifier.verify((await id.setup()).authorization)).toMatchObject({ role: "admin" });
  });

  it("prescribes as a clinician of the appointment's clinic only: one token per clinic, scoped to it", async () => {
    const id = minted(10);
    const harbour = await id.clinician("harbour");
    expect(await verifier.verify(harbour.authorization)).toMatchObject({
      role: "clinician",
      clinics: ["harbour"],
    });
    expect(await id.clinician("harbour")).toBe(harbour);
    const hillside = await verifier.verify((await id.clinician("hillside")).authorization);
    expect(hillside.clinics).toEqual(["hillside"]);
  });

  it("moves on to a new patient before one exceeds its budget, so no patient can meet the 429", async () => {
    const id = minted(5);
    const seen: string[] = [];
    // browse (1), book (2: its cancel is reserved), browse, browse: 5 for the first patient.
    for (const n of [1, 2, 1, 1]) seen.push((await id.patient(n)).id);
    expect(new Set(seen).size).toBe(1);
    // A booking that would take it to 7: the next patient makes it.
    const next = await id.patient(2);
    expect(next.id).not.toBe(seen[0]);
    expect(id.patientsMade).toBe(2);
    // 1,000 requests at a budget of 5: at least 200 patients, each with its own token.
    const many = minted(5);
    const tokens = new Map<string, string>();
    for (let i = 0; i < 1_000; i++) {
      const p = await many.patient(1);
      tokens.set(p.id, p.credential!.authorization);
    }
    expect(many.patientsMade).toBe(200);
    expect(new Set(tokens.values()).size).toBe(200);
  });
});

describe("given identity", () => {
  it("a patient token acts for its own patient only; a clinician's books for new patient ids", async () => {
    const patient = new GivenIdentity(await given("patient"), "--token");
    expect(patient.role).toBe("patient");
    expect((await patient.patient()).id).toBe("0b9f2a4e-8c2d-4a55-9a57-0c7e3b0f2f11");
    expect((await patient.patient()).id).toBe("0b9f2a4e-8c2d-4a55-9a57-0c7e3b0f2f11");
    expect(patient.clinicScope).toBeUndefined();
    const clinician = new GivenIdentity(await given("clinician", ["harbour"]), "MEDISYNC_TOKEN");
    const [a, b] = [await clinician.patient(), await clinician.patient()];
    expect(a.id).not.toBe(b.id);
    expect(a.credential).toEqual(b.credential);
    expect(clinician.clinicScope).toEqual(["harbour"]);
    expect(clinician.describe).toBe("the clinician token from MEDISYNC_TOKEN");
  });

  it("refuses, before the run, a scenario the token's role is not granted, naming role, scenario and route", async () => {
    const patient = new GivenIdentity(await given("patient"), "--token");
    expect(() => patient.checkMix(["browse", "book", "cancel"])).not.toThrow();
    expect(() => patient.checkMix(["browse", "restock"])).toThrow(
      "--token: a patient token may not restock (POST /v1/inventory/{clinicId}/stock/{medicationCode}/restock is for pharmacist, admin)",
    );
    const pharmacist = new GivenIdentity(await given("pharmacist", ["harbour"]), "--token");
    expect(() => pharmacist.checkMix(["restock", "deduct", "transfer"])).not.toThrow();
    expect(() => pharmacist.checkMix(["book"])).toThrow(
      /a pharmacist token may not book \(POST \/v1\/appointments is for patient, clinician, admin\)/,
    );
    // Prescribing is a clinician's act: not a patient's, not even an admin's.
    const clinician = new GivenIdentity(await given("clinician", ["harbour"]), "--token");
    expect(() => clinician.checkMix(["browse", "book", "prescribe", "cancel"])).not.toThrow();
    const admin = new GivenIdentity(await given("admin"), "--token");
    expect(() => admin.checkMix(["book", "prescribe"])).toThrow(
      "--token: an admin token may not prescribe (POST /v1/prescriptions is for clinician)",
    );
  });

  it("refuses what is not a JWT or has no role", async () => {
    expect(() => new GivenIdentity("not-a-token", "--token")).toThrow(UsageError);
    const [h, , s] = (await given("admin")).split(".");
    const noRole = `${h}.${Buffer.from(JSON.stringify({ sub: "x" })).toString("base64url")}.${s}`;
    expect(() => new GivenIdentity(noRole, "--token")).toThrow(/role claim must be one of/);
  });

  it("every scenario's route is in the gateway's policy (a renamed route fails here, not at run time)", () => {
    for (const [scenario, route] of Object.entries(scenarioRoutes))
      expect(rolesGranted(route).length, `${scenario}: ${route}`).toBeGreaterThan(0);
  });
});
