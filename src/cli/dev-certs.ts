// Owns issuing MediSync's development certificates: a CA (ca.crt, ca.key) and one certificate and
// key per process (<name>.crt, <name>.key) in one directory, ECDSA P-256, each naming its process
// as spiffe://medisync/<service>/<id> (src/shared/tls.ts reads them). npm start keeps them in
// data/certs/ and reuses them; `medisync certs` makes the set docker-compose.yml takes as secrets;
// tests issue theirs into a temporary directory. node:crypto cannot issue certificates:
// @peculiar/x509 builds them over WebCrypto (it needs the reflect-metadata polyfill loaded first).
import "reflect-metadata";
import { randomBytes, webcrypto, X509Certificate } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import * as x509 from "@peculiar/x509";
import { checkTlsMaterial, type PeerIdentity, spiffeId } from "../shared/tls.ts";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const dayMs = 86_400_000;
export const caValidDays = 365;
export const leafValidDays = 90;
/** A certificate with less than this left is issued anew (npm start is run again before it lapses). */
export const renewBeforeDays = 7;

export interface IssuedCa {
  cert: x509.X509Certificate;
  key: CryptoKey;
  certPem: string;
}

export interface CertFiles {
  ca: string;
  cert: string;
  key: string;
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f; // a positive INTEGER
  return b.toString("hex");
}

async function keyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

export async function createCa(
  now = new Date(),
  validDays = caValidDays,
): Promise<IssuedCa & { keyPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: "CN=MediSync development CA, O=MediSync",
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + validDays * dayMs),
    keys,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, key: keys.privateKey, certPem: cert.toString("pem"), keyPem: await keyPem(keys.privateKey) };
}

export async function loadCa(certPem: string, keyPemText: string): Promise<IssuedCa> {
  const cert = new x509.X509Certificate(certPem);
  const der = x509.PemConverter.decodeFirst(keyPemText);
  const key = (await webcrypto.subtle.importKey("pkcs8", der, algorithm, true, ["sign"])) as CryptoKey;
  return { cert, key, certPem };
}

/**
 * A certificate for one process, for both ends of a connection (serverAuth and clientAuth): its
 * identity as the one URI SAN, plus localhost and 127.0.0.1 so tools that check host names
 * (grpcurl, openssl s_client -verify_hostname) accept it on this machine.
 */
export async function issue(
  ca: IssuedCa,
  identity: PeerIdentity,
  now = new Date(),
  validDays = leafValidDays,
): Promise<{ certPem: string; keyPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${identity.service}/${identity.id}, O=MediSync`,
    issuer: ca.cert.subject,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(Math.min(now.getTime() + validDays * dayMs, ca.cert.notAfter.getTime())),
    signingKey: ca.key,
    publicKey: keys.publicKey,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension([
        { type: "url", value: spiffeId(identity) },
        { type: "dns", value: "localhost" },
        { type: "ip", value: "127.0.0.1" },
      ]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: await keyPem(keys.privateKey) };
}

/** Writes through a temporary file and a rename: a reader never sees half a key. */
function writeAtomic(file: string, text: string, mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode });
  renameSync(tmp, file);
}

function readOr(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

function lastsPast(pem: string, by: Date): boolean {
  return new Date(new X509Certificate(pem).validTo) > by;
}

/**
 * Makes `dir` hold a CA and one certificate per named process, reusing what is there: the CA while
 * it has more than renewBeforeDays left (a new CA reissues every process's), a process's certificate
 * while it is the CA's, names the same identity, matches its key and has time left. Certificates of
 * names no longer asked for are removed. Returns each name's files.
 */
export async function ensureCerts(
  dir: string,
  processes: ReadonlyMap<string, PeerIdentity>,
  now = new Date(),
): Promise<Map<string, CertFiles>> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const renewBy = new Date(now.getTime() + renewBeforeDays * dayMs);
  const caFile = path.join(dir, "ca.crt");
  const caKeyFile = path.join(dir, "ca.key");
  let caPem = readOr(caFile);
  let caKeyPem = readOr(caKeyFile);
  let ca: IssuedCa;
  if (caPem && caKeyPem && lastsPast(caPem, renewBy)) {
    ca = await loadCa(caPem, caKeyPem);
  } else {
    const fresh = await createCa(now);
    caPem = fresh.certPem;
    caKeyPem = fresh.keyPem;
    writeAtomic(caKeyFile, caKeyPem, 0o600);
    writeAtomic(caFile, caPem, 0o644);
    ca = fresh;
  }
  const out = new Map<string, CertFiles>();
  for (const [name, identity] of processes) {
    if (!/^[a-z0-9][a-z0-9-]{0,63}$/.test(name) || name === "ca") throw new Error(`certificate name ${name}`);
    const files = { ca: caFile, cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
    const certPem = readOr(files.cert);
    const leafKeyPem = readOr(files.key);
    let reuse = false;
    if (certPem && leafKeyPem && lastsPast(certPem, renewBy)) {
      try {
        const got = checkTlsMaterial(
          { ca: Buffer.from(caPem), cert: Buffer.from(certPem), key: Buffer.from(leafKeyPem) },
          now,
        );
        reuse = got.service === identity.service && got.id === identity.id;
      } catch {
        reuse = false; // another CA's, or not matching its key: issue anew
      }
    }
    if (!reuse) {
      const leaf = await issue(ca, identity, now);
      writeAtomic(files.key, leaf.keyPem, 0o600);
      writeAtomic(files.cert, leaf.certPem, 0o644);
    }
    out.set(name, files);
  }
  for (const f of readdirSync(dir)) {
    const m = /^([a-z0-9][a-z0-9-]*)\.(crt|key)$/.exec(f);
    if (m && m[1] !== "ca" && !processes.has(m[1]!)) rmSync(path.join(dir, f), { force: true });
  }
  return out;
}

/** Where npm start keeps its CA and the certificates of its processes (git-ignored, like data/). */
export const localCertsDir = "data/certs";

/** The supervisor's own certificate (it seeds over gRPC) and one for the operators' tools. */
const toolCertificates: [string, PeerIdentity][] = [
  ["supervisor", { service: "supervisor", id: "supervisor" }],
  ["client", { service: "client", id: "client" }],
];

/**
 * The identities of npm start's processes: each child is its command's service under its own name
 * (an inventory replica's name is its INVENTORY_ID), plus the supervisor and the tools.
 */
export function localCertPlan(
  children: readonly { name: string; command: string }[],
): Map<string, PeerIdentity> {
  const plan = new Map<string, PeerIdentity>(toolCertificates);
  for (const c of children) plan.set(c.name, { service: c.command as PeerIdentity["service"], id: c.name });
  return plan;
}

/** The TLS_* variables that hand a process its files. */
export function tlsEnv(files: CertFiles): Record<string, string> {
  return {
    TLS_CA_FILE: path.resolve(files.ca),
    TLS_CERT_FILE: path.resolve(files.cert),
    TLS_KEY_FILE: path.resolve(files.key),
  };
}

const lockStaleMs = 30_000;

/**
 * ensureCerts under a lock directory, so two supervisors starting at once (tests do) do not each
 * issue a CA or a key and leave a certificate beside another's key. A lock older than lockStaleMs
 * is a crashed holder's and is taken over.
 */
export async function ensureCertsLocked(
  dir: string,
  processes: ReadonlyMap<string, PeerIdentity>,
): Promise<Map<string, CertFiles>> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const lock = path.join(dir, ".lock");
  const deadline = Date.now() + 2 * lockStaleMs;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      try {
        if (Date.now() - statSync(lock).mtimeMs > lockStaleMs) rmSync(lock, { recursive: true, force: true });
      } catch {
        // released meanwhile
      }
      if (Date.now() > deadline) throw new Error(`${lock} is held: another npm start is making certificates`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    return await ensureCerts(dir, processes);
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}
