// The InventoryService handlers over a real gRPC server, on a local (single-log) replica: the seam
// InventoryReplica exists so the handlers' checks and answers can be tested without a cluster.
import { credentials, Server, ServerCredentials } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InventoryServiceClient, InventoryServiceService } from "../gen/medisync/v1/inventory.ts";
import { AppError } from "../shared/errors.ts";
import { callUnary } from "../shared/grpc.ts";
import { createLogger } from "../shared/logger.ts";
import type { Command } from "./commands.ts";
import type { InventoryReplica, ReplicaStatus } from "./replica.ts";
import { batchCommandsMax, createInventoryHandlers } from "./service.ts";
import { InventoryStateMachine } from "./state-machine.ts";

/** A replica of one: every command is applied at the next index, at once. */
class LocalReplica implements InventoryReplica {
  readonly id = "local";
  readonly sm = new InventoryStateMachine();
  private index = 0;
  async submit(cmd: Command) {
    return this.sm.apply(++this.index, cmd);
  }
  async linearizableRead<T>(read: (sm: InventoryStateMachine) => T) {
    return { value: read(this.sm), index: this.index };
  }
  staleRead<T>(read: (sm: InventoryStateMachine) => T) {
    return { value: read(this.sm), index: this.index };
  }
  status(): ReplicaStatus {
    return {
      id: this.id,
      address: "",
      role: "leader",
      term: 1,
      leaderId: this.id,
      commitIndex: this.index,
      appliedIndex: this.index,
      lastIndex: this.index,
      peers: [],
      stateHash: this.sm.stateHash(),
    };
  }
}

let server: Server;
let client: InventoryServiceClient;
beforeAll(async () => {
  server = new Server();
  server.addService(
    InventoryServiceService,
    createInventoryHandlers(new LocalReplica(), createLogger({ service: "inventory", level: "silent" }), () =>
      Date.UTC(2030, 0, 1),
    ),
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) =>
      e ? reject(e) : resolve(p),
    ),
  );
  client = new InventoryServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
});
afterAll(() => {
  client.close();
  server.forceShutdown();
});

const batch = (commands: unknown[]) =>
  callUnary(client.submitBatch.bind(client), { commands } as never, 2_000);
const deduct = (requestId: string, quantity: number) => ({
  command: { $case: "deduct", value: { requestId, clinicId: "c1", medicationCode: "m1", quantity } },
});

describe("SubmitBatch", () => {
  it("answers each command on its own, as the single calls would, in order", async () => {
    const res = await batch([
      {
        command: {
          $case: "restock",
          value: {
            requestId: "r1",
            clinicId: "c1",
            medicationCode: "m1",
            quantity: 10,
            lot: "",
            expiresOn: "",
          },
        },
      },
      deduct("d1", 4),
      deduct("d2", 100),
      deduct("", 1),
      { command: undefined },
      deduct("d1", 4),
    ]);
    const o = res.outcomes;
    expect(o.map((x) => x.errorCode)).toEqual(["", "", "INSUFFICIENT_STOCK", "VALIDATION", "VALIDATION", ""]);
    expect(o[1]).toMatchObject({ quantity: 6 });
    expect(o[2]).toMatchObject({ errorField: "quantity", errorMeta: { available: "6" } });
    expect(o[3]).toMatchObject({ errorField: "requestId" });
    expect(o[4]).toMatchObject({ errorField: "command" });
    // The retried request id returns its first answer and deducts nothing more.
    expect(o[5]).toMatchObject({ quantity: 6, index: o[1]!.index });
  });

  it(`refuses more than ${batchCommandsMax} commands as a whole`, async () => {
    const err = await batch(Array.from({ length: batchCommandsMax + 1 }, (_, i) => deduct(`x${i}`, 1))).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe("VALIDATION");
    expect((err as AppError).field).toBe("commands");
  });

  it("a single call with a bad field is a VALIDATION error naming it, never a crash", async () => {
    const err = await callUnary(
      client.deduct.bind(client),
      { requestId: "z", clinicId: "bad clinic", medicationCode: "m1", quantity: 1 },
      2_000,
    ).catch((e: unknown) => e);
    expect((err as AppError).code).toBe("VALIDATION");
    expect((err as AppError).field).toBe("clinicId");
  });
});
