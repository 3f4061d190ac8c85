// The gateway's cluster admin routes against a real 3-replica inventory cluster with one spare: add
// the spare as a learner, promote it, hand leadership to it (the gateway learns its address from
// the redirect, INVENTORY_PEERS not listing it), remove it again; unsafe or bad requests are 4xx
// problems naming the field.
import { Client, credentials, type ServiceError, status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { http } from "./support/gateway.ts";
import { clusterBehindGateway, type InventoryCluster } from "./support/inventory-cluster.ts";
import { until } from "./support/stock-load.ts";

let cluster: InventoryCluster;
let base: string;
let closeAll: () => Promise<void>;

beforeAll(async () => {
  ({ cluster, base, close: closeAll } = await clusterBehindGateway("gw_cluster", { spares: 1 }));
}, 120_000);
afterAll(() => closeAll(), 60_000);

type Members = { leaderId: string; members: { id: string; role: string; address: string }[] };

describe("REST cluster admin", { timeout: 90_000 }, () => {
  it("bad or unsafe requests are 4xx problems naming the field, and change nothing", async () => {
    const cases: [string, string, unknown, number, string][] = [
      ["POST", "/v1/cluster/members", { id: "inv 9", address: "h:1" }, 400, "id"],
      ["POST", "/v1/cluster/members", { id: "inv-9", address: "no-port" }, 400, "address"],
      ["POST", "/v1/cluster/members", { id: "inv-9", address: "h:1", extra: 1 }, 400, "extra"],
      ["POST", "/v1/cluster/leader", { to: "" }, 400, "to"],
      ["POST", "/v1/cluster/members/inv-9/promote", undefined, 404, "id"],
      ["DELETE", "/v1/cluster/members/inv-9", undefined, 404, "id"],
      ["POST", "/v1/cluster/members", { id: "inv-1", address: "h:1" }, 409, "id"],
      ["POST", "/v1/cluster/leader", { to: "inv-9" }, 422, "to"],
    ];
    for (const [method, path, body, status, field] of cases) {
      const r = await http(base, method, path, body);
      expect(r.status, `${method} ${path} ${JSON.stringify(body)}`).toBe(status);
      expect(r.headers.get("content-type")).toBe("application/problem+json");
      expect(r.json.field, JSON.stringify(body)).toBe(field);
    }
    const list = await http(base, "GET", "/v1/cluster/members");
    const leader = (list.json as unknown as Members).leaderId;
    const self = await http(base, "DELETE", `/v1/cluster/members/${leader}`);
    expect(self.status).toBe(409);
    expect(self.json.code).toBe("REMOVE_LEADER");
    expect((list.json as unknown as Members).members.map((m) => m.id).sort()).toEqual(cluster.ids);
  });

  it("bytes that are not an admin request get INVALID_ARGUMENT with code VALIDATION, not INTERNAL", async () => {
    const raw = new Client(cluster.addresses.get(cluster.ids[0]!)!, credentials.createInsecure());
    const err = await new Promise<ServiceError | null>((resolve) =>
      raw.makeUnaryRequest(
        "/medisync.v1.InventoryAdminService/AddLearner",
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from([0x0a, 0xff, 0xff, 0xff]),
        (e) => resolve(e),
      ),
    );
    raw.close();
    expect(err?.code).toBe(status.INVALID_ARGUMENT);
    expect(err?.metadata.get("medisync-code")).toEqual(["VALIDATION"]);
  });

  it("adds the spare as a learner, promotes it, hands it leadership, then removes it", async () => {
    const spare = cluster.spareIds[0]!;
    await cluster.start(spare).waitFor(/inventory replica listening/, 30_000);
    const added = await http(base, "POST", "/v1/cluster/members", {
      id: spare,
      address: cluster.addresses.get(spare),
    });
    expect(added.status).toBe(201);
    expect((added.json as unknown as Members).members.find((m) => m.id === spare)).toMatchObject({
      role: "learner",
      address: cluster.addresses.get(spare),
    });
    // Promotion waits until it caught up: 409 learner-not-caught-up until then.
    let promoted = await http(base, "POST", `/v1/cluster/members/${spare}/promote`);
    await until(async () => {
      if (promoted.status === 200) return true;
      expect(["LEARNER_NOT_CAUGHT_UP", "CONF_CHANGE_PENDING"]).toContain(promoted.json.code);
      promoted = await http(base, "POST", `/v1/cluster/members/${spare}/promote`);
      return false;
    }, "the learner is promoted");
    expect((promoted.json as unknown as Members).members.find((m) => m.id === spare)?.role).toBe("voter");
    await until(async () => (await cluster.status(spare))?.identity === "member", "the spare may vote");
    const moved = await http(base, "POST", "/v1/cluster/leader", { to: spare });
    expect(moved.status).toBe(200);
    expect(moved.json.leaderId).toBe(spare);
    // The gateway reaches the new leader although INVENTORY_PEERS does not name it.
    const w = await http(
      base,
      "POST",
      "/v1/inventory/harbour/stock/amox/restock",
      { quantity: 5 },
      {
        "Idempotency-Key": "gw-cluster-after-move",
      },
    );
    expect(w.status).toBe(200);
    const back = await http(base, "POST", "/v1/cluster/leader", {});
    expect(back.status).toBe(200);
    expect(back.json.leaderId).not.toBe(spare);
    const removed = await http(base, "DELETE", `/v1/cluster/members/${spare}`);
    expect(removed.status).toBe(200);
    expect((removed.json as unknown as Members).members.map((m) => m.id).sort()).toEqual(cluster.ids);
  });
});
