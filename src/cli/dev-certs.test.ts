// The development certificates: made once, reused while good, issued anew when they would lapse,
// name another identity, or the CA changed; files of processes no longer run are removed.
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { checkTlsMaterial, readTlsMaterial } from "../shared/tls.ts";
import { caValidDays, ensureCerts, leafValidDays } from "./dev-certs.ts";

const dayMs = 86_400_000;
let dir = "";
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "medisync-certs-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const read = (f: string) => readFileSync(path.join(dir, f), "utf8");
const plan = (entries: [string, string, string][]) =>
  new Map(entries.map(([name, service, id]) => [name, { service, id } as never]));

describe("ensureCerts", () => {
  it("makes a CA and one certificate per process, each checking out as its identity, keys 0600", async () => {
    const t0 = Date.now();
    const files = await ensureCerts(
      dir,
      plan([
        ["inv-1", "inventory", "inv-1"],
        ["gateway", "gateway", "gateway"],
      ]),
    );
    expect(Date.now() - t0).toBeLessThan(2_000); // ECDSA P-256: npm start does not wait for it
    expect(checkTlsMaterial(readTlsMaterial(files.get("inv-1")!))).toEqual({
      service: "inventory",
      id: "inv-1",
    });
    expect(checkTlsMaterial(readTlsMaterial(files.get("gateway")!))).toEqual({
      service: "gateway",
      id: "gateway",
    });
    for (const f of ["ca.key", "inv-1.key", "gateway.key"])
      expect(statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
    const leaf = new X509Certificate(read("inv-1.crt"));
    expect(leaf.publicKey.asymmetricKeyType).toBe("ec");
    expect(leaf.ca).toBe(false);
    expect(new X509Certificate(read("ca.crt")).ca).toBe(true);
  });

  it("reuses what is good; reissues a changed identity; removes files of processes gone", async () => {
    await ensureCerts(
      dir,
      plan([
        ["inv-1", "inventory", "inv-1"],
        ["inv-2", "inventory", "inv-2"],
      ]),
    );
    const [ca, inv1, inv2] = [read("ca.crt"), read("inv-1.crt"), read("inv-2.crt")];
    await ensureCerts(
      dir,
      plan([
        ["inv-1", "inventory", "inv-1"],
        ["inv-2", "inventory", "inv-9"],
      ]),
    );
    expect(read("ca.crt")).toBe(ca);
    expect(read("inv-1.crt")).toBe(inv1);
    expect(read("inv-2.crt")).not.toBe(inv2);
    expect(new X509Certificate(read("inv-2.crt")).subjectAltName).toContain(
      "spiffe://medisync/inventory/inv-9",
    );
    await ensureCerts(dir, plan([["inv-1", "inventory", "inv-1"]]));
    expect(existsSync(path.join(dir, "inv-2.crt"))).toBe(false);
    expect(existsSync(path.join(dir, "inv-2.key"))).toBe(false);
    expect(read("inv-1.crt")).toBe(inv1);
  });

  it("reissues a certificate about to lapse, and everything when the CA is", async () => {
    const p = plan([["gateway", "gateway", "gateway"]]);
    await ensureCerts(dir, p);
    const [ca, gw] = [read("ca.crt"), read("gateway.crt")];
    // A week before the leaf lapses: a new leaf from the same CA.
    await ensureCerts(dir, p, new Date(Date.now() + (leafValidDays - 3) * dayMs));
    expect(read("ca.crt")).toBe(ca);
    expect(read("gateway.crt")).not.toBe(gw);
    // The CA about to lapse: a new CA, and the leaf its.
    const later = new Date(Date.now() + (caValidDays - 3) * dayMs);
    const files = await ensureCerts(dir, p, later);
    expect(read("ca.crt")).not.toBe(ca);
    expect(checkTlsMaterial(readTlsMaterial(files.get("gateway")!), later).id).toBe("gateway");
  });

  it("reissues a certificate another CA signed (a CA replaced by hand)", async () => {
    const p = plan([["gateway", "gateway", "gateway"]]);
    await ensureCerts(dir, p);
    const gw = read("gateway.crt");
    rmSync(path.join(dir, "ca.crt"));
    const files = await ensureCerts(dir, p);
    expect(read("gateway.crt")).not.toBe(gw);
    expect(checkTlsMaterial(readTlsMaterial(files.get("gateway")!)).id).toBe("gateway");
  });
});
