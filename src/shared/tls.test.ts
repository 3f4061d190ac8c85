// Transport security with real TLS: certificates issued by the development CA (src/cli/dev-certs.ts)
// into a temporary directory, a real gRPC server and real clients on loopback.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { credentials, Metadata, Server, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CertFiles, ensureCerts } from "../cli/dev-certs.ts";
import { AppointmentServiceClient, AppointmentServiceService } from "../gen/medisync/v1/appointment.ts";
import { loadConfig } from "./config.ts";
import { bindGrpc, clientChannelOptions } from "./grpc.ts";
import { createLogger } from "./logger.ts";
import {
  type ClientSecurity,
  identityOfAltNames,
  loadTransportSecurity,
  mtlsSecurity,
  type PeerIdentity,
  plaintextClients,
  readTlsMaterial,
  type TransportSecurity,
  TransportSecurityError,
} from "./tls.ts";

const log = createLogger({ service: "test", level: "silent" });
let dir = "";
let otherDir = "";
let files: Map<string, CertFiles>;
let foreign: Map<string, CertFiles>;

const identities = new Map<string, PeerIdentity>([
  ["appointment-1", { service: "appointment", id: "appointment-1" }],
  ["gateway", { service: "gateway", id: "gateway" }],
  ["notification-1", { service: "notification", id: "notification-1" }],
  ["inv-1", { service: "inventory", id: "inv-1" }],
]);

function security(name: string, self: PeerIdentity, from = files): TransportSecurity {
  const f = from.get(name)!;
  return mtlsSecurity(readTlsMaterial(f), self, log);
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "medisync-tls-"));
  otherDir = mkdtempSync(path.join(os.tmpdir(), "medisync-tls-other-"));
  files = await ensureCerts(dir, identities);
  foreign = await ensureCerts(otherDir, new Map([["gateway", { service: "gateway", id: "gateway" }]]));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(otherDir, { recursive: true, force: true });
});

const tlsEnv = (name: string) => ({
  TLS_CA_FILE: files.get(name)!.ca,
  TLS_CERT_FILE: files.get(name)!.cert,
  TLS_KEY_FILE: files.get(name)!.key,
});

describe("loadTransportSecurity", () => {
  it("refuses plaintext when the process binds to a non-loopback address", () => {
    const cfg = loadConfig({ HOST: "0.0.0.0" });
    expect(() => loadTransportSecurity(cfg, log, { service: "appointment" })).toThrow(TransportSecurityError);
    expect(() => loadTransportSecurity(cfg, log, { service: "appointment" })).toThrow(
      /0\.0\.0\.0 is not a loopback/,
    );
  });

  it("refuses plaintext when a service it dials is not on loopback", () => {
    const cfg = loadConfig({ HOST: "127.0.0.1", INVENTORY_PEERS: "inv-1=inv-1:50061" });
    expect(() => loadTransportSecurity(cfg, log, { service: "gateway" })).toThrow(/inv-1 is not a loopback/);
  });

  it("allows plaintext on loopback (127.0.0.1, ::1, localhost)", () => {
    for (const HOST of ["127.0.0.1", "::1", "localhost"]) {
      const s = loadTransportSecurity(loadConfig({ HOST }), log, { service: "appointment" });
      expect(s.mode).toBe("plaintext");
      expect(s.interceptors({})).toEqual([]);
    }
  });

  it("needs all three files, a certificate for this process, issued by the CA", () => {
    const { TLS_KEY_FILE: _k, ...two } = tlsEnv("appointment-1");
    expect(() => loadTransportSecurity(loadConfig(two), log, { service: "appointment" })).toThrow(
      /TLS_KEY_FILE unset/,
    );
    // Another process's certificate: refused at start, before it could serve as someone else.
    expect(() =>
      loadTransportSecurity(loadConfig({ ...tlsEnv("gateway"), HOST: "0.0.0.0" }), log, {
        service: "appointment",
      }),
    ).toThrow(/spiffe:\/\/medisync\/gateway\/gateway, but this process is appointment/);
    expect(() =>
      loadTransportSecurity(loadConfig(tlsEnv("inv-1")), log, { service: "inventory", id: "inv-2" }),
    ).toThrow(/this process is inventory\/inv-2/);
    // A certificate another CA issued.
    expect(() =>
      loadTransportSecurity(
        loadConfig({ ...tlsEnv("gateway"), TLS_CA_FILE: foreign.get("gateway")!.ca }),
        log,
        { service: "gateway" },
      ),
    ).toThrow(/not issued by the CA/);
    // A key that is not the certificate's.
    expect(() =>
      loadTransportSecurity(
        loadConfig({ ...tlsEnv("gateway"), TLS_KEY_FILE: files.get("appointment-1")!.key }),
        log,
        { service: "gateway" },
      ),
    ).toThrow(/not the key of TLS_CERT_FILE/);
    // While a CA is rotated, TLS_CA_FILE holds both: a certificate of either passes.
    const bundle = path.join(dir, "bundle.crt");
    writeFileSync(
      bundle,
      readFileSync(foreign.get("gateway")!.ca, "utf8") + readFileSync(files.get("gateway")!.ca, "utf8"),
    );
    expect(
      loadTransportSecurity(loadConfig({ ...tlsEnv("gateway"), TLS_CA_FILE: bundle }), log, {
        service: "gateway",
      }).mode,
    ).toBe("mtls");
    const ok = loadTransportSecurity(loadConfig({ ...tlsEnv("inv-1"), HOST: "0.0.0.0" }), log, {
      service: "inventory",
      id: "inv-1",
    });
    expect(ok.mode).toBe("mtls");
    expect(ok.self).toEqual({ service: "inventory", id: "inv-1" });
  });
});

describe("identityOfAltNames", () => {
  it("takes the one medisync SPIFFE URI, and nothing else", () => {
    expect(identityOfAltNames("URI:spiffe://medisync/inventory/inv-1, DNS:localhost")).toEqual({
      service: "inventory",
      id: "inv-1",
    });
    expect(identityOfAltNames("DNS:inv-1")).toBeUndefined();
    expect(identityOfAltNames("URI:spiffe://other/inventory/inv-1")).toBeUndefined();
    expect(identityOfAltNames("URI:spiffe://medisync/printer/p-1")).toBeUndefined();
    expect(
      identityOfAltNames("URI:spiffe://medisync/gateway/gateway, URI:spiffe://medisync/inventory/inv-1"),
    ).toBeUndefined();
    // Node quotes an entry with a comma: it cannot pass for a second entry.
    expect(
      identityOfAltNames('URI:"spiffe://medisync/gateway/x, URI:spiffe://medisync/inventory/inv-1"'),
    ).toBeUndefined();
    expect(identityOfAltNames(undefined)).toBeUndefined();
  });
});

describe("mutual TLS between a real server and real clients", () => {
  let server: Server;
  let port = 0;
  const seen: string[] = [];
  let serverSecurity: TransportSecurity;

  beforeAll(async () => {
    serverSecurity = security("appointment-1", identities.get("appointment-1")!);
    server = new Server({
      interceptors: serverSecurity.interceptors({
        "medisync.v1.AppointmentService": ["gateway", "medication"],
      }),
    });
    server.addService(AppointmentServiceService, {
      listClinics: (
        call: Parameters<typeof serverSecurity.identify>[0],
        cb: (e: null, r: object) => void,
      ) => {
        const who = serverSecurity.identify(call);
        seen.push(who ? `${who.service}/${who.id}` : "none");
        cb(null, { clinics: [] });
      },
    } as never);
    port = await bindGrpc(server, "127.0.0.1", 0, serverSecurity.serverCredentials());
  });
  afterAll(() => server.forceShutdown());

  function listClinics(
    client: ClientSecurity,
    expect: PeerIdentity | { service: "appointment" } = { service: "appointment" },
  ) {
    const ch = client.channel(expect);
    const c = new AppointmentServiceClient(`127.0.0.1:${port}`, ch.credentials, {
      ...clientChannelOptions,
      ...ch.options,
    });
    return new Promise<{ code: number; details: string }>((resolve) => {
      c.listClinics({}, new Metadata(), { deadline: Date.now() + 3_000 }, (err) => {
        c.close();
        resolve(err ? { code: err.code, details: err.details } : { code: status.OK, details: "" });
      });
    });
  }

  it("a client with a certificate of an allowed service is served, and known by its certificate", async () => {
    const r = await listClinics(security("gateway", identities.get("gateway")!));
    expect(r).toEqual({ code: status.OK, details: "" });
    expect(seen.at(-1)).toBe("gateway/gateway");
  });

  it("a plaintext client gets nowhere: never reaches the handler", async () => {
    const before = seen.length;
    const r = await listClinics(plaintextClients);
    expect(r.code).toBe(status.UNAVAILABLE);
    expect(seen.length).toBe(before);
  });

  it("a TLS client that presents no certificate is refused in the handshake", async () => {
    const before = seen.length;
    const ca = readFileSync(files.get("gateway")!.ca);
    // It trusts our CA and checks the server (whose SANs include 127.0.0.1): only its own half is missing.
    const anonymous: ClientSecurity = {
      mode: "mtls",
      channel: () => ({ credentials: credentials.createSsl(ca), options: {} }),
    };
    const r = await listClinics(anonymous);
    expect(r.code).toBe(status.UNAVAILABLE);
    expect(seen.length).toBe(before);
  });

  it("a client whose certificate another CA issued is refused", async () => {
    const before = seen.length;
    // It trusts our CA (so it would accept the server) but its own certificate is another CA's.
    const f = foreign.get("gateway")!;
    const stranger: ClientSecurity = {
      mode: "mtls",
      channel: () => ({
        credentials: credentials.createSsl(
          readFileSync(files.get("gateway")!.ca),
          readFileSync(f.key),
          readFileSync(f.cert),
        ),
        options: {},
      }),
    };
    const r = await listClinics(stranger);
    expect(r.code).toBe(status.UNAVAILABLE);
    expect(seen.length).toBe(before);
  });

  it("a valid certificate of a service the policy does not list gets PERMISSION_DENIED", async () => {
    const before = seen.length;
    const r = await listClinics(security("notification-1", identities.get("notification-1")!));
    expect(r.code).toBe(status.PERMISSION_DENIED);
    expect(r.details).toMatch(/notification may not call medisync.v1.AppointmentService/);
    expect(seen.length).toBe(before);
  });

  it("a client refuses a server whose certificate names another service or replica", async () => {
    const gateway = security("gateway", identities.get("gateway")!);
    const wrongService = await listClinics(gateway, { service: "inventory", id: "inv-1" });
    expect(wrongService.code).toBe(status.UNAVAILABLE);
    const wrongId = await listClinics(gateway, { service: "appointment", id: "appointment-2" });
    expect(wrongId.code).toBe(status.UNAVAILABLE);
    expect((await listClinics(gateway, { service: "appointment", id: "appointment-1" })).code).toBe(
      status.OK,
    );
  });
});
