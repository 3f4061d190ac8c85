// The gateway's inventory client against a replica that holds every call: the writes it queues for
// SubmitBatch are capped, and past the cap a write is refused at once as OVERLOADED with Retry-After.
// The replica answers a return with the lots it was sent, so the lots' way back is checked too.
import { Server, ServerCredentials, type ServerUnaryCall, type sendUnaryData } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  InventoryServiceService,
  type SubmitBatchResponse,
  type WriteCommand,
} from "../gen/medisync/v1/inventory.ts";
import { AppError } from "./errors.ts";
import { InventoryClient } from "./inventory-client.ts";

let server: Server;
let address: string;
const held: (() => void)[] = [];

beforeAll(async () => {
  server = new Server();
  const hold = (
    call: ServerUnaryCall<{ commands: WriteCommand[] }, SubmitBatchResponse>,
    cb: sendUnaryData<SubmitBatchResponse>,
  ) =>
    held.push(() =>
      cb(null, {
        outcomes: call.request.commands.map((c) => ({
          quantity: 1,
          index: 1,
          replayed: false,
          lots: c.command?.$case === "returnStock" ? c.command.value.lots : [],
          errorCode: "",
          errorMessage: "",
          errorField: "",
          errorMeta: {},
        })),
      }),
    );
  const none = () => undefined;
  server.addService(InventoryServiceService, {
    submitBatch: hold,
    restock: none,
    deduct: none,
    transfer: none,
    setReorderLevel: none,
    getStock: none,
    listStock: none,
    status: none,
  } as never);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  address = `127.0.0.1:${port}`;
});
afterAll(() => server.forceShutdown());

describe("inventory client write queue", () => {
  it("refuses a write past queueCommandsMax with OVERLOADED and Retry-After, and serves the rest", async () => {
    const client = new InventoryClient({
      peers: [{ id: "inv-1", address }],
      deadlineMs: 10_000,
      overallDeadlineMs: 10_000,
      keyPrefix: "t",
      queueCommandsMax: 3,
    });
    const write = (i: number) =>
      client.write("deduct", { requestId: `q${i}`, clinicId: "c", medicationCode: "m", quantity: 1 });
    const accepted = [write(1), write(2), write(3)];
    const t0 = Date.now();
    const refused = await write(4).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(refused).toBeInstanceOf(AppError);
    expect((refused as AppError).code).toBe("OVERLOADED");
    expect((refused as AppError).meta["retry-after"]).toBe("1");
    // Once the replica answers, the queued writes settle and there is room again.
    const deadline = Date.now() + 5_000;
    while (held.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    while (held.length > 0) held.shift()!();
    await expect(Promise.all(accepted)).resolves.toHaveLength(3);
    const again = write(5);
    while (held.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    held.shift()!();
    await expect(again).resolves.toMatchObject({ quantity: 1 });
    client.close();
  });
});

describe("inventory client write results", () => {
  it('returnStock travels as a WriteCommand and its answer carries the lots, expiresOn "" for none', async () => {
    const client = new InventoryClient({
      peers: [{ id: "inv-1", address }],
      deadlineMs: 10_000,
      overallDeadlineMs: 10_000,
      keyPrefix: "t",
    });
    const lots = [
      { lot: "A", quantity: 2, expiresOn: "2031-01-01" },
      { lot: "unlotted", quantity: 1, expiresOn: "" },
    ];
    const written = client.write("returnStock", {
      requestId: "g1",
      clinicId: "c",
      medicationCode: "m",
      lots,
    });
    const deadline = Date.now() + 5_000;
    while (held.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    held.shift()!();
    await expect(written).resolves.toEqual({ quantity: 1, index: 1, replayed: false, lots });
    client.close();
  });
});
