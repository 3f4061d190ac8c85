// Two real gRPC servers on loopback exchanging messages through the transport.
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import { addRaftTransportService, GrpcTransport } from "./grpc-transport.ts";

interface Msg {
  type: string;
  term: number;
  entries: { data: Uint8Array }[];
}

const servers: Server[] = [];
const transports: GrpcTransport[] = [];
afterEach(async () => {
  for (const t of transports.splice(0)) t.close();
  for (const s of servers.splice(0)) await new Promise<void>((r) => s.tryShutdown(() => r()));
});

async function listen(id: string, onMessage: (from: string, m: Msg) => void): Promise<number> {
  const s = new Server();
  addRaftTransportService<Msg>(s, id, onMessage);
  servers.push(s);
  return new Promise((resolve, reject) =>
    s.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve(port),
    ),
  );
}

async function until(cond: () => boolean, what: string, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("GrpcTransport", () => {
  it("delivers messages in order, binary payloads intact, batched", async () => {
    const got: [string, Msg][] = [];
    const port = await listen("n2", (from, m) => got.push([from, m]));
    const t = new GrpcTransport({ selfId: "n1" });
    transports.push(t);
    t.setPeers([{ id: "n2", address: `127.0.0.1:${port}` }]);
    for (let i = 0; i < 500; i++)
      t.send("n2", { type: "app", term: i, entries: [{ data: new Uint8Array([i % 256, 7]) }] });
    await until(() => got.length === 500 && t.stats.sent === 500, "500 messages sent and received");
    expect(got.map(([, m]) => m.term)).toEqual(Array.from({ length: 500 }, (_, i) => i));
    expect(got.every(([from]) => from === "n1")).toBe(true);
    expect([...got[300]![1].entries[0]!.data]).toEqual([300 % 256, 7]);
    // Messages queued while a batch is in flight leave together.
    expect(t.stats.batches).toBeLessThan(250);
    expect(t.stats.failedBatches).toBe(0);
  });

  it("a peer that is down costs dropped batches, not errors; messages flow once it is up", async () => {
    const t = new GrpcTransport({ selfId: "n1" });
    transports.push(t);
    // A port nothing listens on yet.
    const probe = new Server();
    const port = await new Promise<number>((resolve, reject) =>
      probe.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    await new Promise<void>((r) => probe.tryShutdown(() => r()));
    t.setPeers([{ id: "n3", address: `127.0.0.1:${port}` }]);
    t.send("n3", { type: "hb", term: 1, entries: [] });
    await until(() => t.stats.failedBatches > 0, "a failed batch");
    const got: Msg[] = [];
    const s = new Server();
    addRaftTransportService<Msg>(s, "n3", (_f, m) => got.push(m));
    servers.push(s);
    await new Promise<number>((resolve, reject) =>
      s.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    await until(() => {
      t.send("n3", { type: "hb", term: 2, entries: [] });
      return got.length > 0;
    }, "delivery after the peer came up");
    expect(got[0]!.term).toBe(2);
  });

  it("a batch addressed to another replica is refused", async () => {
    const got: Msg[] = [];
    const port = await listen("n2", (_f, m) => got.push(m));
    const t = new GrpcTransport({ selfId: "n1" });
    transports.push(t);
    t.setPeers([{ id: "n9", address: `127.0.0.1:${port}` }]);
    t.send("n9", { type: "hb", term: 1, entries: [] });
    await until(() => t.stats.failedBatches === 1, "refusal");
    expect(got).toHaveLength(0);
  });
});
