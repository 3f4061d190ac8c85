// Issue 14's acceptance for transport security, with real processes and real gRPC clients: three
// `medisync inventory` replicas on mutual TLS (certificates from a CA made for the test). A client
// without a certificate, with another CA's, or with one for another replica id cannot call Deduct
// or deliver Raft messages; with proper certificates the cluster elects and Deduct works.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type ChannelCredentials, credentials, Metadata, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RaftTransportServiceClient } from "../raft/gen/medisync/raft/v1/raft.ts";
import { ensureCerts, issue, loadCa, tlsEnv } from "../src/cli/dev-certs.ts";
import { InventoryServiceClient } from "../src/gen/medisync/v1/inventory.ts";
import type { PeerIdentity } from "../src/shared/tls.ts";
import { InventoryCluster } from "./support/inventory-cluster.ts";
import { runCli } from "./support/process.ts";
import { clinic, med, restock } from "./support/stock-load.ts";

let cluster: InventoryCluster;
let strangerDir = "";
let foreign: { ca: Buffer; cert: Buffer; key: Buffer };
let leader = "";

/** Credentials from PEM buffers; the server certificate is checked against `ca` with its SANs (127.0.0.1). */
function creds(ca: Buffer, pair?: { cert: Buffer; key: Buffer }): ChannelCredentials {
  return pair ? credentials.createSsl(ca, pair.key, pair.cert) : credentials.createSsl(ca);
}

const files = (name: string) => {
  const f = cluster.certs.get(name)!;
  return { ca: readFileSync(f.ca), cert: readFileSync(f.cert), key: readFileSync(f.key) };
};

/** A certificate from the cluster's own CA for any identity (what a compromised service would hold). */
async function issued(identity: PeerIdentity): Promise<{ cert: Buffer; key: Buffer }> {
  const dir = cluster.certDir;
  const ca = await loadCa(
    readFileSync(path.join(dir, "ca.crt"), "utf8"),
    readFileSync(path.join(dir, "ca.key"), "utf8"),
  );
  const leaf = await issue(ca, identity);
  return { cert: Buffer.from(leaf.certPem), key: Buffer.from(leaf.keyPem) };
}

/** Names the server "localhost" (in its SANs): an IP as TLS server name draws a Node warning. */
const sni = { "grpc.ssl_target_name_override": "localhost" };

function deduct(id: string, c: ChannelCredentials, requestId: string) {
  const client = new InventoryServiceClient(cluster.addresses.get(id)!, c, sni);
  return new Promise<{ code: number; details: string }>((resolve) => {
    client.deduct(
      { requestId, clinicId: clinic, medicationCode: med, quantity: 1 },
      new Metadata(),
      { deadline: Date.now() + 5_000 },
      (err) => {
        client.close();
        resolve(err ? { code: err.code, details: err.details } : { code: status.OK, details: "" });
      },
    );
  });
}

/** Opens a Raft stream to `to` as a raw client, writes one batch claiming `from`, and ends it. */
function raftBatch(to: string, c: ChannelCredentials, from: string) {
  const client = new RaftTransportServiceClient(cluster.addresses.get(to)!, c, sni);
  return new Promise<{ code: number; details: string }>((resolve) => {
    const stream = client.stream(new Metadata(), { deadline: Date.now() + 5_000 }, (err) => {
      client.close();
      resolve(err ? { code: err.code, details: err.details } : { code: status.OK, details: "" });
    });
    stream.on("error", () => undefined);
    stream.write({
      from,
      to,
      messages: [],
      clusterId: "",
      fromIncarnation: "",
      toIncarnation: "",
      hello: false,
    });
    stream.end();
  });
}

async function refusedCount(id: string, reason: string): Promise<number> {
  const opsPort = cluster.envOf(id).INVENTORY_OPS_PORT;
  const text = await (await fetch(`http://127.0.0.1:${opsPort}/metrics`)).text();
  const line = text
    .split("\n")
    .find((l) => l.startsWith(`medisync_grpc_refused_callers_total{reason="${reason}"}`));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

beforeAll(async () => {
  cluster = new InventoryCluster({ name: "inv_mtls", tls: true });
  await cluster.init();
  await cluster.startAll();
  leader = await cluster.waitFormed();
  strangerDir = mkdtempSync(path.join(os.tmpdir(), "medisync-mtls-stranger-"));
  const other = await ensureCerts(strangerDir, new Map([["gateway", { service: "gateway", id: "gateway" }]]));
  const f = other.get("gateway")!;
  foreign = { ca: readFileSync(f.ca), cert: readFileSync(f.cert), key: readFileSync(f.key) };
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
  if (strangerDir) rmSync(strangerDir, { recursive: true, force: true });
});

describe("inventory over mutual TLS (3 real replicas)", { timeout: 120_000 }, () => {
  it("with proper certificates the cluster elects over TLS and Deduct works", async () => {
    expect(cluster.ids).toContain(leader);
    const client = cluster.client();
    await restock(client, 100, "mtls-seed");
    const r = await client.write("deduct", {
      requestId: "mtls-ok",
      clinicId: clinic,
      medicationCode: med,
      quantity: 1,
    });
    expect(r.quantity).toBe(99);
    client.close();
    // A gateway's and a medication service's certificates may deduct too.
    const ca = files("client").ca;
    expect(
      (await deduct(leader, creds(ca, await issued({ service: "gateway", id: "gateway" })), "mtls-gw")).code,
    ).toBe(status.OK);
    expect(
      (
        await deduct(
          leader,
          creds(ca, await issued({ service: "medication", id: "medication-1" })),
          "mtls-med",
        )
      ).code,
    ).toBe(status.OK);
  });

  it("a client without a certificate cannot call Deduct, plaintext or TLS", async () => {
    const ca = files("client").ca;
    expect((await deduct(leader, credentials.createInsecure(), "mtls-plain")).code).toBe(status.UNAVAILABLE);
    const anonymous = await deduct(leader, creds(ca), "mtls-anon");
    expect(anonymous.code).toBe(status.UNAVAILABLE);
  });

  it("a client whose certificate another CA issued cannot call Deduct", async () => {
    const ca = files("client").ca;
    const r = await deduct(leader, creds(ca, { cert: foreign.cert, key: foreign.key }), "mtls-foreign");
    expect(r.code).toBe(status.UNAVAILABLE);
  });

  it("a valid certificate of a service that may not deduct (notification) gets PERMISSION_DENIED", async () => {
    const ca = files("client").ca;
    const before = await refusedCount(leader, "service-not-allowed");
    const r = await deduct(
      leader,
      creds(ca, await issued({ service: "notification", id: "notification-1" })),
      "mtls-n",
    );
    expect(r.code).toBe(status.PERMISSION_DENIED);
    expect(await refusedCount(leader, "service-not-allowed")).toBe(before + 1);
    // None of the refused deducts happened: 100 - the three allowed ones.
    const client = cluster.client();
    const again = await client.write("deduct", {
      requestId: "mtls-ok",
      clinicId: clinic,
      medicationCode: med,
      quantity: 1,
    });
    expect(again.replayed).toBe(true);
    const st = await cluster.converged();
    expect(new Set(st.map((s) => s.stateHash)).size).toBe(1);
    client.close();
  });

  it("Raft messages: no certificate, another CA's, or a non-replica's cannot open a stream", async () => {
    const [a, b] = cluster.ids.filter((id) => id !== leader) as [string, string];
    const ca = files("client").ca;
    expect((await raftBatch(a, credentials.createInsecure(), leader)).code).toBe(status.UNAVAILABLE);
    expect((await raftBatch(a, creds(ca), leader)).code).toBe(status.UNAVAILABLE);
    expect((await raftBatch(a, creds(ca, { cert: foreign.cert, key: foreign.key }), leader)).code).toBe(
      status.UNAVAILABLE,
    );
    // A valid certificate, but the gateway's: only replicas speak Raft.
    const gw = await raftBatch(a, creds(ca, await issued({ service: "gateway", id: "gateway" })), b);
    expect(gw.code).toBe(status.PERMISSION_DENIED);
  });

  it("a replica's certificate sending Raft messages that claim another replica is refused and counted", async () => {
    const [a, b] = cluster.ids.filter((id) => id !== leader) as [string, string];
    const ca = files(b).ca;
    const asB = creds(ca, { cert: files(b).cert, key: files(b).key });
    const before = await refusedCount(a, "raft-sender-mismatch");
    // b's certificate, claiming to be the leader: the sender is the certificate's, so this is refused.
    const forged = await raftBatch(a, asB, leader);
    expect(forged.code).toBe(status.PERMISSION_DENIED);
    expect(forged.details).toContain(`${b}'s`);
    expect(await refusedCount(a, "raft-sender-mismatch")).toBe(before + 1);
    // The same certificate naming itself is accepted (the stream ends cleanly).
    expect((await raftBatch(a, asB, b)).code).toBe(status.OK);
    // And the cluster is unharmed: the same leader, still serving writes.
    expect(await cluster.waitLeader()).toBe(leader);
    const client = cluster.client();
    const r = await client.write("deduct", {
      requestId: "mtls-after",
      clinicId: clinic,
      medicationCode: med,
      quantity: 1,
    });
    expect(r.replayed).toBe(false);
    client.close();
  });

  it("the client CLI's --grpc backend deducts with a client certificate, and gets nowhere without one", async () => {
    const args = [
      "client",
      "--grpc",
      "--inventory-peers",
      cluster.peers.map((p) => `${p.id}=${p.address}`).join(","),
      "--mix",
      "restock=1,deduct=1",
      "--vus",
      "2",
      "--duration",
      "1s",
      "--inventory-clinics",
      clinic,
      "--medications",
      med,
      "--json",
    ];
    const withCert = runCli(args, tlsEnv(cluster.certs.get("client")!));
    const { code } = await withCert.exited;
    expect(code, withCert.lines.join("\n")).toBe(0);
    const summary = JSON.parse(withCert.lines.join("\n")) as { total: { ok: number; errors: number } };
    expect(summary.total.ok).toBeGreaterThan(0);
    expect(summary.total.errors).toBe(0);
    const without = runCli(args, {});
    expect((await without.exited).code).not.toBe(0);
    expect(without.lines.join("\n")).toMatch(/inventory/);
  });
});
