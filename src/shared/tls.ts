// Owns transport security between MediSync's processes: mutual TLS on every gRPC server and channel,
// the identity a certificate carries, and the one exception, plaintext on loopback. Every server
// requires and verifies a client certificate from MediSync's CA (TLS_CA_FILE); every client
// verifies that the server's certificate names the service (and, where it matters, the replica) it
// meant to reach. Identity is the certificate's one SPIFFE URI SAN, spiffe://medisync/<service>/<id>
// (docs/security.md, "Transport security"): never a field in a message, never the host name dialled.
import { createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import type { PeerCertificate } from "node:tls";
import {
  type ChannelCredentials,
  type ChannelOptions,
  credentials,
  Metadata,
  ServerCredentials,
  ServerInterceptingCall,
  type ServerInterceptor,
  status,
} from "@grpc/grpc-js";
import type { Logger } from "pino";
import { Counter } from "prom-client";
import type { Config } from "./config.ts";
import { registry } from "./metrics.ts";

/** Who may hold a certificate of MediSync's CA: the processes, npm start's supervisor, and tools. */
export const serviceNames = [
  "gateway",
  "appointment",
  "medication",
  "notification",
  "inventory",
  /** npm start's supervisor: it seeds the demo's clinic zones and stock over gRPC. */
  "supervisor",
  /** Operators' tools: the client-service CLI's --grpc backend, tests, benchmarks. */
  "client",
] as const;
export type ServiceName = (typeof serviceNames)[number];

export interface PeerIdentity {
  service: ServiceName;
  /** The replica id for inventory (INVENTORY_ID), the instance name for the others. */
  id: string;
}

export const trustDomain = "medisync";
const idPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const spiffePattern = /^spiffe:\/\/medisync\/([a-z]+)\/([^/]+)$/;

export function spiffeId(p: PeerIdentity): string {
  if (!idPattern.test(p.id))
    throw new Error(`certificate id ${JSON.stringify(p.id)}: 1-64 of [A-Za-z0-9._-]`);
  return `spiffe://${trustDomain}/${p.service}/${p.id}`;
}

export function parseSpiffeId(uri: string): PeerIdentity | undefined {
  const m = spiffePattern.exec(uri);
  if (!m) return undefined;
  const service = m[1] as ServiceName;
  const id = m[2]!;
  if (!serviceNames.includes(service) || !idPattern.test(id)) return undefined;
  return { service, id };
}

/**
 * The identity in a certificate's subjectAltName as Node renders it ("URI:spiffe://…, DNS:…"): its
 * one medisync SPIFFE URI. None, or more than one (an X.509 SVID has exactly one), is no identity.
 * Node quotes an entry holding a comma or a quote; a quoted entry never matches, so a crafted SAN
 * cannot smuggle a second identity in.
 */
export function identityOfAltNames(subjectAltName: string | undefined): PeerIdentity | undefined {
  if (!subjectAltName) return undefined;
  const uris = subjectAltName
    .split(", ")
    .filter((e) => e.startsWith("URI:spiffe://"))
    .map((e) => e.slice("URI:".length));
  if (uris.length !== 1) return undefined;
  return parseSpiffeId(uris[0]!);
}

/** What a client expects of a server's certificate: its service, and its id when one is meant. */
export interface ExpectedPeer {
  service: ServiceName;
  id?: string;
}

export interface ChannelSecurity {
  credentials: ChannelCredentials;
  /** Merged into the channel's options (empty for plaintext). */
  options: ChannelOptions;
}

/** The side of transport security a client needs. */
export interface ClientSecurity {
  readonly mode: "mtls" | "plaintext";
  channel(expect: ExpectedPeer): ChannelSecurity;
}

/** Methods of a server and the services whose certificates may call them, by gRPC service name. */
export type CallerPolicy = Record<string, readonly ServiceName[]>;

export interface TransportSecurity extends ClientSecurity {
  /** This process's identity (its certificate's); undefined in plaintext. */
  readonly self: PeerIdentity | undefined;
  serverCredentials(): ServerCredentials;
  /** The caller's identity from its verified certificate; undefined without one (plaintext). */
  identify(call: AuthContextCarrier): PeerIdentity | undefined;
  /**
   * Server interceptors that refuse a call whose certificate's service the policy does not list for
   * the method's gRPC service (unlisted services: refused). None in plaintext: no certificate to read.
   */
  interceptors(policy: CallerPolicy): ServerInterceptor[];
  /** Counts a refused caller and logs it, at most one line per reason every refusalLogEveryMs. */
  refused(reason: RefusalReason, detail: Record<string, string | undefined>): void;
}

/** What grpc-js's server calls expose of the TLS session (call.getAuthContext(), grpc-js ≥ 1.10). */
export interface AuthContextCarrier {
  getAuthContext(): { sslPeerCertificate?: Pick<PeerCertificate, "subjectaltname"> } | null;
}

export type RefusalReason = "no-identity" | "service-not-allowed" | "raft-sender-mismatch";

const refusals = new Counter({
  name: "medisync_grpc_refused_callers_total",
  help: "gRPC calls refused for the caller's certificate (none readable, a service not allowed, a Raft sender other than the certificate's replica)",
  labelNames: ["reason"] as const,
  registers: [registry],
});

export const refusalLogEveryMs = 10_000;

/**
 * A channel to an IP address would send the IP as TLS server name (SNI), which RFC 6066 forbids and
 * Node warns about once per process; the server's certificate is checked by SPIFFE id, not by name,
 * so every channel names the same harmless host instead.
 */
const tlsChannelOptions: ChannelOptions = { "grpc.ssl_target_name_override": trustDomain };

/** Plaintext channels: for loopback only (loadTransportSecurity enforces that for processes). */
export const plaintextClients: ClientSecurity = {
  mode: "plaintext",
  channel: () => ({ credentials: credentials.createInsecure(), options: {} }),
};

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127(\.\d{1,3}){3}$/.test(h);
}

function hostOf(address: string): string {
  const m = /^\[([^\]]+)\]:\d+$/.exec(address);
  if (m) return m[1]!;
  const i = address.lastIndexOf(":");
  return i > 0 ? address.slice(0, i) : address;
}

export class TransportSecurityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TransportSecurityError";
  }
}

export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** Reads the three files and checks they belong together; throws TransportSecurityError naming what is wrong. */
export function readTlsMaterial(files: { ca: string; cert: string; key: string }): TlsMaterial {
  const read = (name: string, path: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new TransportSecurityError(`${name} ${path}: ${(err as Error).message}`);
    }
  };
  return {
    ca: read("TLS_CA_FILE", files.ca),
    cert: read("TLS_CERT_FILE", files.cert),
    key: read("TLS_KEY_FILE", files.key),
  };
}

/** Each certificate of a PEM bundle (TLS_CA_FILE may hold the old and the new CA while rotating). */
function pemCertificates(pem: Buffer): X509Certificate[] {
  const blocks =
    pem.toString("utf8").match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

/**
 * What a certificate says and whether it can serve: issued and signed by (one of) the CA(s), both
 * inside their validity, matching the private key, with one SPIFFE identity. Throws
 * TransportSecurityError.
 */
export function checkTlsMaterial(m: TlsMaterial, now = new Date()): PeerIdentity {
  let cas: X509Certificate[];
  let cert: X509Certificate;
  let key: KeyObject;
  try {
    cas = pemCertificates(m.ca);
  } catch (err) {
    throw new TransportSecurityError(`TLS_CA_FILE is not a PEM certificate: ${(err as Error).message}`);
  }
  if (cas.length === 0) throw new TransportSecurityError("TLS_CA_FILE holds no PEM certificate");
  try {
    cert = new X509Certificate(m.cert);
  } catch (err) {
    throw new TransportSecurityError(`TLS_CERT_FILE is not a PEM certificate: ${(err as Error).message}`);
  }
  try {
    key = createPrivateKey(m.key);
  } catch (err) {
    throw new TransportSecurityError(`TLS_KEY_FILE is not a PEM private key: ${(err as Error).message}`);
  }
  if (!cert.checkPrivateKey(key))
    throw new TransportSecurityError("TLS_KEY_FILE is not the key of TLS_CERT_FILE");
  const ca = cas.find((c) => cert.checkIssued(c) && cert.verify(c.publicKey));
  if (!ca) throw new TransportSecurityError("TLS_CERT_FILE was not issued by the CA in TLS_CA_FILE");
  for (const [name, c] of [
    ["TLS_CA_FILE", ca],
    ["TLS_CERT_FILE", cert],
  ] as const) {
    if (new Date(c.validFrom) > now || new Date(c.validTo) <= now) {
      throw new TransportSecurityError(`${name} is not valid now (valid ${c.validFrom} to ${c.validTo})`);
    }
  }
  const identity = identityOfAltNames(cert.subjectAltName);
  if (!identity) {
    throw new TransportSecurityError(
      `TLS_CERT_FILE has no single spiffe://${trustDomain}/<service>/<id> URI in its subjectAltName`,
    );
  }
  return identity;
}

/** The mTLS side, from checked material (tests build one straight from generated files). */
export function mtlsSecurity(m: TlsMaterial, self: PeerIdentity, log: Logger): TransportSecurity {
  const channels = new Map<string, ChannelSecurity>();
  const lastLogged = new Map<RefusalReason, { at: number; suppressed: number }>();
  const identify = (call: AuthContextCarrier) =>
    identityOfAltNames(call.getAuthContext()?.sslPeerCertificate?.subjectaltname);
  const security: TransportSecurity = {
    mode: "mtls",
    self,
    serverCredentials: () =>
      // true: a client without a certificate the CA issued fails the TLS handshake.
      ServerCredentials.createSsl(m.ca, [{ cert_chain: m.cert, private_key: m.key }], true),
    channel(expect) {
      const key = `${expect.service}/${expect.id ?? "*"}`;
      let c = channels.get(key);
      if (!c) {
        // One credentials object per expectation: grpc-js shares connections between channels whose
        // credentials are equal, and equal here means the same checkServerIdentity function.
        c = {
          credentials: credentials.createSsl(m.ca, m.key, m.cert, {
            checkServerIdentity: (_host, cert) => {
              const got = identityOfAltNames(cert.subjectaltname);
              if (
                got &&
                got.service === expect.service &&
                (expect.id === undefined || got.id === expect.id)
              ) {
                return undefined;
              }
              return new Error(
                `server certificate is ${got ? spiffeId(got) : "without a medisync identity"}, expected ${expect.service}/${expect.id ?? "*"}`,
              );
            },
          }),
          options: tlsChannelOptions,
        };
        channels.set(key, c);
      }
      return c;
    },
    identify,
    interceptors(policy) {
      const interceptor: ServerInterceptor = (method, call) => {
        const service = method.path.split("/")[1] ?? "";
        const allowed = policy[service];
        return new ServerInterceptingCall(call, {
          start: (next) => {
            next({
              onReceiveMetadata: (metadata, mdNext) => {
                const who = identify(call);
                if (!who) {
                  security.refused("no-identity", { method: method.path });
                  call.sendStatus({
                    code: status.UNAUTHENTICATED,
                    details: "the client certificate names no medisync identity",
                    metadata: new Metadata(),
                  });
                } else if (!allowed?.includes(who.service)) {
                  security.refused("service-not-allowed", { method: method.path, caller: spiffeId(who) });
                  call.sendStatus({
                    code: status.PERMISSION_DENIED,
                    details: `${who.service} may not call ${service}`,
                    metadata: new Metadata(),
                  });
                } else {
                  mdNext(metadata);
                }
              },
            });
          },
        });
      };
      return [interceptor];
    },
    refused(reason, detail) {
      refusals.inc({ reason });
      const now = Date.now();
      const last = lastLogged.get(reason);
      if (last && now - last.at < refusalLogEveryMs) {
        last.suppressed++;
        return;
      }
      log.warn(
        { event: "grpc_caller_refused", reason, ...detail, suppressed: last?.suppressed ?? 0 },
        "gRPC caller refused",
      );
      lastLogged.set(reason, { at: now, suppressed: 0 });
    },
  };
  return security;
}

function plaintextSecurity(): TransportSecurity {
  return {
    ...plaintextClients,
    self: undefined,
    serverCredentials: () => ServerCredentials.createInsecure(),
    identify: () => undefined,
    interceptors: () => [],
    refused: (reason) => refusals.inc({ reason }),
  };
}

/**
 * This process's transport security from TLS_CA_FILE, TLS_CERT_FILE and TLS_KEY_FILE, checked
 * against who it is (`self.service`, and `self.id` where the id is the process's identity: an
 * inventory replica's). Without any of the three, plaintext — allowed only when the process binds
 * to loopback and every address it is configured to dial is loopback: plaintext never leaves the
 * machine. Throws TransportSecurityError with the reason otherwise.
 */
export function loadTransportSecurity(
  cfg: Pick<
    Config,
    | "HOST"
    | "TLS_CA_FILE"
    | "TLS_CERT_FILE"
    | "TLS_KEY_FILE"
    | "APPOINTMENT_ADDRS"
    | "MEDICATION_ADDRS"
    | "NOTIFICATION_ADDRS"
    | "INVENTORY_PEERS"
  >,
  log: Logger,
  self: { service: ServiceName; id?: string },
): TransportSecurity {
  const files = { ca: cfg.TLS_CA_FILE, cert: cfg.TLS_CERT_FILE, key: cfg.TLS_KEY_FILE };
  const set = Object.entries(files).filter(([, v]) => v !== undefined);
  if (set.length === 0) {
    const remote = [
      cfg.HOST,
      ...[...cfg.APPOINTMENT_ADDRS, ...cfg.MEDICATION_ADDRS, ...cfg.NOTIFICATION_ADDRS].map(hostOf),
      ...cfg.INVENTORY_PEERS.map((p) => hostOf(p.address)),
    ].filter((h) => !isLoopbackHost(h));
    if (remote.length > 0) {
      throw new TransportSecurityError(
        `TLS_CA_FILE, TLS_CERT_FILE and TLS_KEY_FILE are unset, and ${remote[0]} is not a loopback address ` +
          `(HOST or a configured service address): gRPC without TLS never leaves the machine; ` +
          "give this process a certificate (docs/security.md, Transport security)",
      );
    }
    log.warn(
      { event: "plaintext_grpc", host: cfg.HOST },
      "no TLS_* certificate configured: gRPC is plaintext, on loopback only",
    );
    return plaintextSecurity();
  }
  if (set.length < 3) {
    const missing = ["TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE"].filter(
      (_, i) => Object.values(files)[i] === undefined,
    );
    throw new TransportSecurityError(
      `${missing.join(" and ")} unset: TLS needs all three of TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE`,
    );
  }
  const material = readTlsMaterial(files as { ca: string; cert: string; key: string });
  const identity = checkTlsMaterial(material);
  if (identity.service !== self.service || (self.id !== undefined && identity.id !== self.id)) {
    throw new TransportSecurityError(
      `TLS_CERT_FILE is ${spiffeId(identity)}, but this process is ${self.service}/${self.id ?? "*"}`,
    );
  }
  log.info({ event: "mtls", identity: spiffeId(identity) }, "gRPC over mutual TLS");
  return mtlsSecurity(material, identity, log);
}

/**
 * Who may call what, by the caller certificate's service: the one table (docs/security.md). A
 * service's own tools hold its certificate (`medisync handover` runs in the replica's pod with the
 * replica's); `client` is the operators' (the client CLI's --grpc backend, tests, benchmarks).
 */
export const callerPolicies = {
  appointment: { "medisync.v1.AppointmentService": ["gateway", "medication", "supervisor", "client"] },
  medication: { "medisync.v1.MedicationService": ["gateway", "client"] },
  notification: { "medisync.v1.NotificationService": ["gateway", "client"] },
  inventory: {
    "medisync.v1.InventoryService": ["gateway", "medication", "inventory", "supervisor", "client"],
    "medisync.v1.InventoryAdminService": ["gateway", "inventory", "client"],
    // The sender of each message must also be the certificate's replica (raft/transport).
    "medisync.raft.v1.RaftTransportService": ["inventory"],
  },
} as const satisfies Record<string, CallerPolicy>;
