// The InventoryService handlers over a real gRPC server, on a local (single-log) replica: the seam
// InventoryReplica exists so the handlers' checks and answers can be tested without a cluster.

import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { credentials, Server, ServerCredentials } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { until } from "../../test/support/until.ts";
import {
  InventoryServiceClient,
  type SubmitBatchRequest,
  type SubmitBatchResponse,
  SubmitStreamRequest,
  SubmitStreamResponse,
} from "../gen/medisync/v1/inventory.ts";
import { CallStreamClient, OpenStreams, streamCallsInFlightMax } from "../shared/call-stream.ts";
import { AppError, fromGrpcError } from "../shared/errors.ts";
import { callUnary } from "../shared/grpc.ts";
import { submitStreamClient } from "../shared/inventory-client.ts";
import { createLogger } from "../shared/logger.ts";
import { registry } from "../shared/metrics.ts";
import { type Command, returnLotsMax } from "./commands.ts";
import type { InventoryReplica, ReplicaStatus } from "./replica.ts";
import { batchCommandsMax, createInventoryHandlers } from "./service.ts";
import { type IdempotencyLimits, InventoryStateMachine } from "./state-machine.ts";
import { guardedInventoryService } from "./wire-guard.ts";

/** A replica of one: every command is applied at the next index, at once. */
class LocalReplica implements InventoryReplica {
  readonly id = "local";
  readonly sm: InventoryStateMachine;
  constructor(limits: Partial<IdempotencyLimits> = {}) {
    this.sm = new InventoryStateMachine(limits);
  }
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
      identity: "member",
    };
  }
}

let server: Server;
let client: InventoryServiceClient;
beforeAll(async () => {
  server = new Server();
  server.addService(
    guardedInventoryService,
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
    // The retried request id returns its first answer, says so, and deducts nothing more.
    expect(o[5]).toMatchObject({ quantity: 6, index: o[1]!.index, replayed: true });
    expect(o[1]).toMatchObject({ replayed: false });
  });

  it("the same request id with another command is IDEMPOTENCY_KEY_REUSED; a replay says replayed", async () => {
    const first = await callUnary(
      client.restock.bind(client),
      { requestId: "K", clinicId: "harbour", medicationCode: "amox", quantity: 5, lot: "", expiresOn: "" },
      2_000,
    );
    expect(first).toMatchObject({ quantity: 5, replayed: false });
    const again = await callUnary(
      client.restock.bind(client),
      { requestId: "K", clinicId: "harbour", medicationCode: "amox", quantity: 5, lot: "", expiresOn: "" },
      2_000,
    );
    expect(again).toEqual({ ...first, replayed: true });
    const err = await callUnary(
      client.deduct.bind(client),
      { requestId: "K", clinicId: "hillside", medicationCode: "insulin", quantity: 1 },
      2_000,
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe("IDEMPOTENCY_KEY_REUSED");
    expect((err as AppError).field).toBe("requestId");
    const [o] = (await batch([deduct("K", 1)])).outcomes;
    expect(o).toMatchObject({ errorCode: "IDEMPOTENCY_KEY_REUSED", errorField: "requestId" });
  });

  it(`refuses more than ${batchCommandsMax} commands as a whole`, async () => {
    const err = await batch(Array.from({ length: batchCommandsMax + 1 }, (_, i) => deduct(`x${i}`, 1))).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe("VALIDATION");
    expect((err as AppError).field).toBe("commands");
  });

  it("a request id outside the Idempotency-Key alphabet is VALIDATION naming requestId (it must fit the window's size bound)", async () => {
    for (const bad of ['a"b', "tab\there", "\u0001x", "é"]) {
      const res = await batch([deduct(bad, 1)]);
      expect(res.outcomes[0], bad).toMatchObject({ errorCode: "VALIDATION", errorField: "requestId" });
    }
    const ok = await batch([deduct("Ab0_.:-z", 1)]);
    expect(ok.outcomes[0]!.errorField).not.toBe("requestId");
  });

  it("expiresOn out of range names the real range", async () => {
    const res = await batch([
      {
        command: {
          $case: "restock",
          value: {
            requestId: "old",
            clinicId: "c1",
            medicationCode: "m1",
            quantity: 1,
            lot: "l",
            expiresOn: "1900-01-01",
          },
        },
      },
    ]);
    expect(res.outcomes[0]).toMatchObject({ errorCode: "VALIDATION", errorField: "expiresOn" });
    expect(res.outcomes[0]!.errorMessage).toContain("from 1970-01-01 to 9999-12-31");
  });

  it("an int64 past 2^53 from a direct caller is a VALIDATION error naming the field, not INTERNAL", async () => {
    // Hand-made bytes: the generated client would refuse to encode such a number.
    const huge = 2n ** 60n;
    const raw = (path: string, bytes: Uint8Array) =>
      new Promise<unknown>((resolve) =>
        client.makeUnaryRequest(
          path,
          (b: Uint8Array) => Buffer.from(b),
          (b: Buffer) => b,
          bytes,
          (err) => resolve(err ? fromGrpcError(err) : "ok"),
        ),
      );
    const deductBytes = new BinaryWriter()
      .uint32((1 << 3) | 2)
      .string("huge")
      .uint32((2 << 3) | 2)
      .string("c1")
      .uint32((3 << 3) | 2)
      .string("m1")
      .uint32(4 << 3)
      .int64(huge)
      .finish();
    const one = await raw("/medisync.v1.InventoryService/Deduct", deductBytes);
    expect(one).toMatchObject({ code: "VALIDATION", field: "quantity" });
    const level = await raw(
      "/medisync.v1.InventoryService/SetReorderLevel",
      new BinaryWriter()
        .uint32((1 << 3) | 2)
        .string("lv")
        .uint32(4 << 3)
        .int64(-huge)
        .finish(),
    );
    expect(level).toMatchObject({ code: "VALIDATION", field: "level" });
    // Inside a batch: the second command's deduct carries it.
    const command = new BinaryWriter()
      .uint32((2 << 3) | 2)
      .bytes(deductBytes)
      .finish();
    const ok = new BinaryWriter()
      .uint32((2 << 3) | 2)
      .bytes(
        new BinaryWriter()
          .uint32((1 << 3) | 2)
          .string("ok")
          .uint32(4 << 3)
          .int64(1)
          .finish(),
      )
      .finish();
    const batchBytes = new BinaryWriter()
      .uint32((1 << 3) | 2)
      .bytes(ok)
      .uint32((1 << 3) | 2)
      .bytes(command)
      .finish();
    const inBatch = await raw("/medisync.v1.InventoryService/SubmitBatch", batchBytes);
    expect(inBatch).toMatchObject({ code: "VALIDATION", field: "commands[1].deduct.quantity" });
    // The server still answers.
    const after = await callUnary(client.status.bind(client), {}, 2_000);
    expect(after.id).toBe("local");
  });

  it("restocking a lot already expired is LOT_EXPIRED naming expiresOn; a bad zone is VALIDATION", async () => {
    // The handlers' clock is 2030-01-01T00:00Z: the 31st of December has passed in UTC.
    const err = await callUnary(
      client.restock.bind(client),
      {
        requestId: "old",
        clinicId: "c9",
        medicationCode: "m",
        quantity: 1,
        lot: "X",
        expiresOn: "2029-12-31",
      },
      2_000,
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "LOT_EXPIRED", field: "expiresOn" });
    const tz = (timeZone: string) => ({
      command: {
        $case: "setClinicTimeZone",
        value: { requestId: `tz-${timeZone.replaceAll("/", "_")}`, clinicId: "c9", timeZone },
      },
    });
    const [bad, good] = (await batch([tz("Mars/Olympus"), tz("America/Los_Angeles")])).outcomes;
    expect(bad).toMatchObject({ errorCode: "VALIDATION", errorField: "timeZone" });
    expect(good).toMatchObject({ errorCode: "" });
    // In Los Angeles it is still the 31st: the same lot is good there.
    const ok = await callUnary(
      client.restock.bind(client),
      {
        requestId: "old2",
        clinicId: "c9",
        medicationCode: "m",
        quantity: 1,
        lot: "X",
        expiresOn: "2029-12-31",
      },
      2_000,
    );
    expect(ok.quantity).toBe(1);
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

describe("lots in answers, and ReturnStock", () => {
  const restock = (requestId: string, lot: string, quantity: number, expiresOn: string) =>
    callUnary(
      client.restock.bind(client),
      { requestId, clinicId: "ret", medicationCode: "amox", quantity, lot, expiresOn },
      2_000,
    );
  const returnStock = (requestId: string, lots: { lot: string; quantity: number; expiresOn: string }[]) =>
    callUnary(
      client.returnStock.bind(client),
      { requestId, clinicId: "ret", medicationCode: "amox", lots },
      2_000,
    );

  it("a deduct answers the lots it took; ReturnStock puts them back; replays answer the same lots", async () => {
    await restock("ret-r1", "B", 5, "2031-01-01");
    await restock("ret-r2", "A", 2, "2030-06-01");
    const req = { requestId: "ret-d", clinicId: "ret", medicationCode: "amox", quantity: 4 };
    const took = await callUnary(client.deduct.bind(client), req, 2_000);
    expect(took).toEqual({
      quantity: 3,
      index: took.index,
      replayed: false,
      lots: [
        { lot: "A", quantity: 2, expiresOn: "2030-06-01" },
        { lot: "B", quantity: 2, expiresOn: "2031-01-01" },
      ],
    });
    await callUnary(client.deduct.bind(client), { ...req, requestId: "ret-d2", quantity: 3 }, 2_000);
    expect(await callUnary(client.deduct.bind(client), req, 2_000)).toEqual({ ...took, replayed: true });
    const back = await returnStock("ret-g", took.lots);
    expect(back).toMatchObject({ quantity: 4, replayed: false, lots: took.lots });
    expect(await returnStock("ret-g", took.lots)).toEqual({ ...back, replayed: true });
    const other = await returnStock("ret-g", [{ lot: "A", quantity: 1, expiresOn: "2030-06-01" }]).catch(
      (e: unknown) => e,
    );
    expect(other).toMatchObject({ code: "IDEMPOTENCY_KEY_REUSED", field: "requestId" });
    const stock = await callUnary(
      client.getStock.bind(client),
      { clinicId: "ret", medicationCode: "amox", consistency: 0 },
      2_000,
    );
    expect(stock.item!.lots).toEqual(took.lots);
  });

  it("ReturnStock validation names the lot's field; a name held with another expiry is VALIDATION", async () => {
    const good = { lot: "A", quantity: 1, expiresOn: "2030-06-01" };
    const cases: [unknown[], string][] = [
      [[good, { ...good, quantity: 0 }], "lots[1].quantity"],
      [[{ ...good, quantity: 1_000_000_001 }], "lots[0].quantity"],
      [[{ ...good, lot: "" }], "lots[0].lot"],
      [[{ ...good, lot: "a b" }], "lots[0].lot"],
      [[good, good, { ...good, expiresOn: "2030-02-30" }], "lots[2].expiresOn"],
      [[], "lots"],
      [Array.from({ length: returnLotsMax + 1 }, () => good), "lots"],
    ];
    for (const [lots, field] of cases) {
      const err = await returnStock("ret-v", lots as never).catch((e: unknown) => e);
      expect(err, field).toBeInstanceOf(AppError);
      expect(err, field).toMatchObject({ code: "VALIDATION", field });
    }
    const clash = await returnStock("ret-v", [{ ...good, expiresOn: "2032-01-01" }]).catch((e: unknown) => e);
    expect(clash).toMatchObject({ code: "VALIDATION", message: "lots[0] is held with another expiry" });
    // A bad clinic is named as for any write.
    const bad = await callUnary(
      client.returnStock.bind(client),
      { requestId: "ret-v2", clinicId: "no clinic", medicationCode: "amox", lots: [good] },
      2_000,
    ).catch((e: unknown) => e);
    expect(bad).toMatchObject({ code: "VALIDATION", field: "clinicId" });
  });

  it("SubmitBatch carries return_stock commands, each answered with its lots", async () => {
    const ret = (requestId: string, lots: unknown[]) => ({
      command: { $case: "returnStock", value: { requestId, clinicId: "ret-b", medicationCode: "m", lots } },
    });
    const lot = { lot: "X", quantity: 3, expiresOn: "" };
    const res = await batch([
      ret("ret-b1", [lot]),
      ret("ret-b2", [{ ...lot, quantity: -1 }]),
      {
        command: {
          $case: "deduct",
          value: { requestId: "ret-b3", clinicId: "ret-b", medicationCode: "m", quantity: 2 },
        },
      },
      ret("ret-b1", [lot]),
    ]);
    const o = res.outcomes;
    expect(o.map((x) => x.errorCode)).toEqual(["", "VALIDATION", "", ""]);
    expect(o[0]).toMatchObject({ quantity: 3, replayed: false, lots: [lot] });
    expect(o[1]).toMatchObject({ errorField: "lots[0].quantity", lots: [] });
    expect(o[2]).toMatchObject({ quantity: 1, lots: [{ lot: "X", quantity: 2, expiresOn: "" }] });
    expect(o[3]).toMatchObject({ quantity: 3, index: o[0]!.index, replayed: true, lots: [lot] });
  });

  it("a lot quantity past 2^53 is VALIDATION naming lots[i].quantity, alone or in a batch", async () => {
    const raw = (path: string, bytes: Uint8Array) =>
      new Promise<unknown>((resolve) =>
        client.makeUnaryRequest(
          path,
          (b: Uint8Array) => Buffer.from(b),
          (b: Buffer) => b,
          bytes,
          (err) => resolve(err ? fromGrpcError(err) : "ok"),
        ),
      );
    const lot = (q: bigint) =>
      new BinaryWriter()
        .uint32((1 << 3) | 2)
        .string("L")
        .uint32(2 << 3)
        .int64(q)
        .finish();
    const request = new BinaryWriter()
      .uint32((1 << 3) | 2)
      .string("huge-ret")
      .uint32((4 << 3) | 2)
      .bytes(lot(1n))
      .uint32((4 << 3) | 2)
      .bytes(lot(2n ** 60n))
      .finish();
    expect(await raw("/medisync.v1.InventoryService/ReturnStock", request)).toMatchObject({
      code: "VALIDATION",
      field: "lots[1].quantity",
    });
    const command = new BinaryWriter()
      .uint32((6 << 3) | 2)
      .bytes(request)
      .finish();
    const inBatch = await raw(
      "/medisync.v1.InventoryService/SubmitBatch",
      new BinaryWriter()
        .uint32((1 << 3) | 2)
        .bytes(command)
        .finish(),
    );
    expect(inBatch).toMatchObject({ code: "VALIDATION", field: "commands[0].returnStock.lots[1].quantity" });
  });
});

describe("a full idempotency window", () => {
  it("refuses new writes with IDEMPOTENCY_WINDOW_FULL and a Retry-After, and still answers known ids", async () => {
    const small = new Server();
    small.addService(
      guardedInventoryService,
      createInventoryHandlers(
        new LocalReplica({ idsMax: 2, windowMs: 60_000 }),
        createLogger({ service: "inventory", level: "silent" }),
        () => Date.UTC(2030, 0, 1),
      ),
    );
    const port = await new Promise<number>((resolve, reject) =>
      small.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) =>
        e ? reject(e) : resolve(p),
      ),
    );
    const c = new InventoryServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
    const restock = (requestId: string) =>
      callUnary(
        c.restock.bind(c),
        { requestId, clinicId: "c", medicationCode: "m", quantity: 1, lot: "", expiresOn: "" },
        2_000,
      );
    await restock("w1");
    await restock("w2");
    const err = await restock("w3").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ code: "IDEMPOTENCY_WINDOW_FULL", meta: { "retry-after": "60" } });
    await expect(restock("w1")).resolves.toMatchObject({ quantity: 1, replayed: true });
    c.close();
    small.forceShutdown();
  });
});

/** medisync_call_stream_events_total{event} now (the process's registry: a delta is what a test did). */
async function streamEvents(event: string): Promise<number> {
  const m = registry.getSingleMetric("medisync_call_stream_events_total");
  const values = m ? (await m.get()).values : [];
  return values.find((v) => v.labels.event === event)?.value ?? 0;
}

describe("SubmitStream (SubmitBatch calls on one stream)", () => {
  /** A replica whose writes wait until released: a call held in flight. */
  class HeldReplica extends LocalReplica {
    private held: (() => void)[] = [];
    override async submit(cmd: Command) {
      await new Promise<void>((r) => this.held.push(r));
      return super.submit(cmd);
    }
    get waiting() {
      return this.held.length;
    }
    release() {
      for (const r of this.held.splice(0)) r();
    }
  }

  async function serve(replica: InventoryReplica, o: { streams?: OpenStreams; unaryOnly?: boolean } = {}) {
    const s = new Server();
    const handlers = createInventoryHandlers(
      replica,
      createLogger({ service: "inventory", level: "silent" }),
      () => Date.UTC(2030, 0, 1),
      o.streams,
    );
    if (o.unaryOnly) {
      // A replica from before SubmitStream: the method is not there.
      s.addService(
        { submitBatch: guardedInventoryService.submitBatch },
        { submitBatch: handlers.submitBatch },
      );
    } else s.addService(guardedInventoryService, handlers);
    const port = await new Promise<number>((resolve, reject) =>
      s.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const c = new InventoryServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
    return { server: s, client: c, stream: submitStreamClient(c) };
  }
  const restockIn = (requestId: string, medicationCode: string, quantity: number) => ({
    command: {
      $case: "restock",
      value: { requestId, clinicId: "st", medicationCode, quantity, lot: "", expiresOn: "" },
    },
  });

  it("answers a call as the unary SubmitBatch does: outcomes, and the whole call's error", async () => {
    const a = await serve(new LocalReplica());
    const b = await serve(new LocalReplica());
    const calls = [
      [restockIn("p1", "m", 5), deduct("p2", 2), deduct("p3", 100), deduct("", 1)],
      Array.from({ length: batchCommandsMax + 1 }, (_, i) => deduct(`big-${i}`, 1)),
    ];
    for (const commands of calls) {
      const viaUnary = await callUnary(
        a.client.submitBatch.bind(a.client),
        { commands } as never,
        2_000,
      ).catch((e: unknown) => e);
      const viaStream = await b.stream.call({ commands } as never, 2_000).catch((e: unknown) => e);
      expect(viaStream).toEqual(viaUnary);
    }
    // The stream goes on serving after a call that failed as a whole.
    const outcomes = (await b.stream.call({ commands: [restockIn("p4", "m", 1)] } as never, 2_000)).outcomes;
    expect(outcomes).toMatchObject([{ errorCode: "", quantity: 6 }]);
    const tooBig = await b.stream.call({ commands: calls[1] } as never, 2_000).catch((e: unknown) => e);
    expect(tooBig).toBeInstanceOf(AppError);
    expect(tooBig).toMatchObject({ code: "VALIDATION", field: "commands" });
    for (const x of [a, b]) {
      x.stream.close();
      x.client.close();
      x.server.forceShutdown();
    }
  });

  it("answers many calls in flight on one stream each with its own answer", async () => {
    const x = await serve(new LocalReplica());
    const n = 64;
    const answers = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        x.stream.call({ commands: [restockIn(`many-${i}`, `m-${i}`, i + 1)] } as never, 5_000),
      ),
    );
    expect(answers.map((r) => r.outcomes[0]!.quantity)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    x.stream.close();
    x.client.close();
    x.server.forceShutdown();
  });

  it("a frame whose batch does not decode is answered alone, with the field named", async () => {
    const x = await serve(new LocalReplica());
    const deductBytes = new BinaryWriter()
      .uint32((1 << 3) | 2)
      .string("huge-stream")
      .uint32((2 << 3) | 2)
      .string("st")
      .uint32((3 << 3) | 2)
      .string("m")
      .uint32(4 << 3)
      .int64(2n ** 60n)
      .finish();
    const command = new BinaryWriter()
      .uint32((2 << 3) | 2)
      .bytes(deductBytes)
      .finish();
    const batchBytes = new BinaryWriter()
      .uint32((1 << 3) | 2)
      .bytes(command)
      .finish();
    const frame = new BinaryWriter()
      .uint32(1 << 3)
      .uint64(7)
      .uint32((3 << 3) | 2)
      .bytes(batchBytes)
      .finish();
    const raw = x.client.makeBidiStreamRequest(
      "/medisync.v1.InventoryService/SubmitStream",
      (b: Uint8Array) => Buffer.from(b),
      (b: Buffer) => SubmitStreamResponse.decode(b),
    );
    const answers: SubmitStreamResponse[] = [];
    const two = new Promise<void>((resolve) =>
      raw.on("data", (a: SubmitStreamResponse) => {
        answers.push(a);
        if (answers.length === 2) resolve();
      }),
    );
    raw.write(frame);
    raw.write(
      SubmitStreamRequest.encode({
        id: 8,
        requestId: "",
        batch: { commands: [restockIn("ok-8", "m", 1)] } as never,
      }).finish(),
    );
    await two;
    // The client's end ends the server's side once both calls are answered: the status is OK.
    const ended = new Promise<{ code: number }>((resolve) => raw.on("status", resolve));
    raw.on("error", () => undefined); // reported through the status
    raw.end();
    expect((await ended).code).toBe(0);
    const byId = new Map(answers.map((a) => [a.id, a]));
    expect(byId.get(7)).toMatchObject({
      errorCode: "VALIDATION",
      errorField: "commands[0].deduct.quantity",
    });
    expect(byId.get(8)).toMatchObject({
      errorCode: "",
      batch: { outcomes: [{ errorCode: "", quantity: 1 }] },
    });
    x.stream.close();
    x.client.close();
    x.server.forceShutdown();
  });

  it("a call gets DEADLINE_EXCEEDED at its deadline, and the stream goes on serving", async () => {
    const replica = new HeldReplica();
    const x = await serve(replica);
    const held = x.stream.call({ commands: [restockIn("slow-1", "m", 1)] } as never, 100);
    await expect(held).rejects.toMatchObject({ code: "DEADLINE_EXCEEDED" });
    expect(x.stream.inFlight).toBe(0);
    const next = x.stream.call({ commands: [restockIn("slow-2", "m", 1)] } as never, 5_000);
    await until(() => replica.waiting === 2, "both calls at the replica");
    replica.release();
    await expect(next).resolves.toMatchObject({ outcomes: [{ errorCode: "", quantity: 2 }] });
    x.stream.close();
    x.client.close();
    x.server.forceShutdown();
  });

  it("a server that goes away fails the calls in flight with UNAVAILABLE", async () => {
    const replica = new HeldReplica();
    const x = await serve(replica);
    const brokenBefore = await streamEvents("broken");
    const inFlight = x.stream.call({ commands: [restockIn("gone-1", "m", 1)] } as never, 5_000);
    await until(() => replica.waiting === 1, "the call at the replica");
    x.server.forceShutdown();
    await expect(inFlight).rejects.toMatchObject({ code: "UNAVAILABLE" });
    expect(await streamEvents("broken")).toBe(brokenBefore + 1);
    await expect(
      x.stream.call({ commands: [restockIn("gone-2", "m", 1)] } as never, 2_000),
    ).rejects.toMatchObject({ code: "UNAVAILABLE" });
    x.stream.close();
    x.client.close();
  });

  it("drain() answers what is in flight and ends the stream, so a graceful shutdown does not wait on it", async () => {
    const replica = new HeldReplica();
    const streams = new OpenStreams();
    const x = await serve(replica, { streams });
    const inFlight = x.stream.call({ commands: [restockIn("drain-1", "m", 1)] } as never, 5_000);
    await until(() => replica.waiting === 1, "the call at the replica");
    expect(streams.size).toBe(1);
    streams.drain();
    const shutDown = new Promise<void>((resolve) => x.server.tryShutdown(() => resolve()));
    replica.release();
    await expect(inFlight).resolves.toMatchObject({ outcomes: [{ errorCode: "", quantity: 1 }] });
    // Without drain() the open stream would hold tryShutdown until the test's timeout.
    await shutDown;
    expect(streams.size).toBe(0);
    x.stream.close();
    x.client.close();
  });

  it("more calls in flight than a stream takes: the rest go unary, none is refused", async () => {
    const replica = new HeldReplica();
    const x = await serve(replica);
    const n = streamCallsInFlightMax + 44;
    const unaryBefore = await streamEvents("unary_past_bound");
    let refused = 0;
    const calls = Array.from({ length: n }, (_, i) =>
      x.stream.call({ commands: [restockIn(`wide-${i}`, `w-${i}`, 1)] } as never, 20_000).then(
        () => "ok",
        (e: unknown) => {
          refused++;
          return e;
        },
      ),
    );
    await until(() => replica.waiting + refused === n, "every call at the replica or refused");
    replica.release();
    expect((await Promise.all(calls)).filter((r) => r !== "ok")).toEqual([]);
    expect(await streamEvents("unary_past_bound")).toBe(unaryBefore + 44);
    x.stream.close();
    x.client.close();
    x.server.forceShutdown();
  });

  it("a call sent while the server drains is answered UNAVAILABLE at once, not after the calls in flight", async () => {
    const replica = new HeldReplica();
    const streams = new OpenStreams();
    const x = await serve(replica, { streams });
    const inFlight = x.stream.call({ commands: [restockIn("late-1", "m", 1)] } as never, 20_000);
    await until(() => replica.waiting === 1, "the first call at the replica");
    const refusedBefore = await streamEvents("refused_draining");
    streams.drain();
    // The first call is still held: an answer to the second can only be the drain's refusal.
    await expect(
      x.stream.call({ commands: [restockIn("late-2", "m", 1)] } as never, 20_000),
    ).rejects.toMatchObject({ code: "UNAVAILABLE" });
    expect(replica.waiting).toBe(1);
    expect(await streamEvents("refused_draining")).toBe(refusedBefore + 1);
    replica.release();
    await expect(inFlight).resolves.toMatchObject({ outcomes: [{ errorCode: "" }] });
    x.stream.close();
    x.client.close();
    x.server.forceShutdown();
  });

  it("a frame that will not encode fails the stream: the other calls on it get UNAVAILABLE, retried", async () => {
    const replica = new HeldReplica();
    const x = await serve(replica);
    const held = x.stream.call({ commands: [restockIn("enc-1", "m", 1)] } as never, 20_000);
    await until(() => replica.waiting === 1, "the first call at the replica");
    const unencodable = { commands: [restockIn("enc-2", "m", "many" as never)] };
    await expect(x.stream.call(unencodable as never, 20_000)).rejects.toMatchObject({ code: "UNAVAILABLE" });
    await expect(held).rejects.toMatchObject({ code: "UNAVAILABLE" });
    replica.release();
    x.stream.close();
    x.client.close();
    x.server.forceShutdown();
  });

  it("an answer the client cannot read fails that call at its deadline, not the process", async () => {
    const x = await serve(new LocalReplica());
    const base = submitStreamClient(x.client);
    const unreadable = new CallStreamClient<
      SubmitStreamRequest,
      SubmitBatchRequest,
      SubmitBatchResponse,
      SubmitStreamResponse
    >({
      open: () => x.client.submitStream(),
      frame: (id, requestId, batch) => ({ id, requestId, batch }),
      read: () => {
        throw new Error("cannot read this answer");
      },
      unaryCall: (req, d, rid) => base.call(req, d, rid),
    });
    await expect(
      unreadable.call({ commands: [restockIn("unread-1", "m", 1)] } as never, 300),
    ).rejects.toMatchObject({ code: "DEADLINE_EXCEEDED" });
    unreadable.close();
    base.close();
    x.client.close();
    x.server.forceShutdown();
  });

  it("a replica without SubmitStream (an older build) gets the calls unary, the first one included", async () => {
    const x = await serve(new LocalReplica(), { unaryOnly: true });
    const fallbackBefore = await streamEvents("unimplemented");
    const first = await x.stream.call({ commands: [restockIn("old-1", "m", 3)] } as never, 2_000);
    const second = await x.stream.call({ commands: [restockIn("old-2", "m", 4)] } as never, 2_000);
    expect([first.outcomes[0]!.quantity, second.outcomes[0]!.quantity]).toEqual([3, 7]);
    expect(await streamEvents("unimplemented")).toBe(fallbackBefore + 1);
    x.stream.close();
    x.client.close();
    x.server.forceShutdown();
  });
});
