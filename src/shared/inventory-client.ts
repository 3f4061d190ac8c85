// Owns how the gateway and the medication service reach the inventory replicas: find the leader
// (the last one that answered → the Redis hint → a NOT_LEADER redirect → each replica in turn),
// retry with the same request id on UNAVAILABLE, NOT_LEADER or a missed deadline, all within one
// overall deadline; when no leader answers in time the caller gets 503 with Retry-After.
import type { Redis } from "ioredis";
import {
  type GetStockResponse,
  InventoryAdminServiceClient,
  InventoryServiceClient,
  ReadConsistency,
  type StatusResponse,
  type StockItem,
  type SubmitBatchRequest,
  type SubmitBatchResponse,
  type SubmitStreamRequest,
  type SubmitStreamResponse,
  type WriteCommand,
} from "../gen/medisync/v1/inventory.ts";
import { CallStreamClient } from "./call-stream.ts";
import { AppError, fromWireError } from "./errors.ts";
import { callUnary, clientChannelOptions } from "./grpc.ts";
import { readLeaderHint } from "./leader-hint.ts";
import { isRetryable, type RetryPolicy, withRetries } from "./retry.ts";
import { type ClientSecurity, plaintextClients } from "./tls.ts";
import { inventoryLimits } from "./validation.ts";

export interface InventoryClientOptions {
  peers: { id: string; address: string }[];
  /** Deadline of one try. */
  deadlineMs: number;
  /** Everything a request may spend finding a leader. */
  overallDeadlineMs?: number;
  redis?: Redis;
  keyPrefix: string;
  /**
   * Writes waiting for or inside a SubmitBatch call (retries included) at most; past it a write is
   * refused at once with OVERLOADED (503, Retry-After) instead of queueing without bound.
   */
  queueCommandsMax?: number;
  /**
   * The process's transport security (src/shared/tls.ts); plaintext (loopback) when omitted. With
   * mTLS each replica's channel accepts only that replica's certificate.
   */
  security?: ClientSecurity;
}

export const queueCommandsMaxDefault = 10_000;
/**
 * Replicas learned at run time from NOT_LEADER redirects (a replica added by the admin API is not in
 * INVENTORY_PEERS): at most this many, so a bad redirect cannot grow the client without bound.
 */
export const learnedReplicasMax = 16;

export type WriteMethod =
  | "restock"
  | "deduct"
  | "transfer"
  | "setReorderLevel"
  | "setClinicTimeZone"
  | "returnStock";
export interface WriteResult {
  quantity: number;
  index: number;
  /** The request id was applied before: this is its first result (Idempotent-Replayed: true). */
  replayed: boolean;
  /**
   * A deduct's lots taken (quantity from each, first-expiry-first-out), a return's lots put back;
   * empty for other writes. expiresOn "" when the lot never expires: the shape returnStock takes,
   * so a deduct's lots can be handed back as they are. A replay answers the first lots.
   */
  lots: { lot: string; quantity: number; expiresOn: string }[];
}

const statusDeadlineMs = 500;

export class InventoryClient {
  private readonly clients = new Map<string, InventoryServiceClient>();
  private readonly addresses = new Map<string, string>();
  private readonly admins = new Map<InventoryServiceClient, InventoryAdminServiceClient>();
  private learned = 0;
  private leaderId: string | undefined;
  private rr = 0;
  private readonly policy: RetryPolicy;

  constructor(private readonly o: InventoryClientOptions) {
    for (const p of o.peers) this.addReplica(p.id, p.address);
    this.policy = {
      // The overall deadline is the real bound: enough tries to outlast an election (≤ 600 ms) and
      // a few more, walking every replica, without hammering them (backoff up to 100 ms: a new
      // leader is found within a tenth of a second of its election).
      attemptsMax: 80,
      overallDeadlineMs: o.overallDeadlineMs ?? 5_000,
      backoffBaseMs: 10,
      backoffMaxMs: 100,
    };
  }

  private addReplica(id: string, address: string): void {
    const ch = this.channelTo(id);
    this.clients.set(id, new InventoryServiceClient(address, ch.credentials, ch.options));
    this.addresses.set(id, address);
  }

  private channelTo(id: string) {
    const ch = (this.o.security ?? plaintextClients).channel({ service: "inventory", id });
    return { credentials: ch.credentials, options: { ...clientChannelOptions, ...ch.options } };
  }

  /** A leader named by a redirect that INVENTORY_PEERS does not list (it joined at run time). */
  private learn(id: string, address: string | undefined): void {
    if (!id || !address || this.clients.has(id) || this.learned >= learnedReplicasMax) return;
    this.learned++;
    this.addReplica(id, address);
  }

  get knownLeader(): string | undefined {
    return this.leaderId;
  }

  private nextReplica(): string {
    const ids = [...this.clients.keys()];
    const id = ids[this.rr % ids.length]!;
    this.rr = (this.rr + 1) % ids.length;
    return id;
  }

  private async pickLeader(): Promise<string> {
    if (this.leaderId && this.clients.has(this.leaderId)) return this.leaderId;
    if (this.o.redis) {
      const hint = await readLeaderHint(this.o.redis, this.o.keyPrefix);
      if (hint && this.clients.has(hint.id)) return hint.id;
    }
    return this.nextReplica();
  }

  /** Runs a call on the leader, following redirects and retrying within the overall deadline. */
  private async onLeader<T>(fn: (c: InventoryServiceClient, deadlineMs: number) => Promise<T>): Promise<T> {
    try {
      return await withRetries(this.policy, async ({ remainingMs }) => {
        const id = await this.pickLeader();
        try {
          const res = await fn(this.clients.get(id)!, Math.min(this.o.deadlineMs, remainingMs));
          this.leaderId = id;
          return res;
        } catch (err) {
          if (err instanceof AppError && err.code === "NOT_LEADER") {
            const named = err.meta.leaderid;
            if (named) this.learn(named, err.meta.leaderaddress);
            this.leaderId = named && named !== id && this.clients.has(named) ? named : undefined;
            if (!this.leaderId) this.rr++; // no leader known: try the next replica
          } else if (isRetryable(err) && !(err instanceof AppError && err.meta.queued)) {
            // The replica did not answer: look for the leader again. A write that expired in our own
            // queue (meta.queued) never reached it, so the leader we know stays known.
            this.leaderId = undefined;
          }
          throw err;
        }
      });
    } catch (err) {
      if (isRetryable(err)) {
        throw new AppError(
          "UNAVAILABLE",
          `no inventory leader answered within ${this.policy.overallDeadlineMs} ms; retry with the same Idempotency-Key`,
          undefined,
          { "retry-after": "1" },
        );
      }
      throw err;
    }
  }

  /**
   * One write, on the leader. Writes that arrive in the same event-loop turn leave together in one
   * SubmitBatch call (each keeps its own outcome, retries and deadline), sent as one message on the
   * replica's SubmitStream: on this hardware a unary gRPC call's fixed cost is about 0.8 ms of CPU
   * on both ends, a stream message's 0.3 ms (bench/reports/grpc.md), either more than the Raft work
   * of one write.
   */
  write(
    method: WriteMethod,
    req: { requestId: string } & Record<string, unknown>,
    callRequestId?: string,
  ): Promise<WriteResult> {
    const command = { $case: method, value: req } as unknown as WriteCommand["command"];
    if (this.writesQueued >= (this.o.queueCommandsMax ?? queueCommandsMaxDefault)) {
      return Promise.reject(
        new AppError("OVERLOADED", "too many inventory writes waiting; retry after Retry-After", undefined, {
          "retry-after": "1",
        }),
      );
    }
    this.writesQueued++;
    return this.onLeader((c, d) => this.batcherFor(c).add(command, d, callRequestId)).finally(() => {
      this.writesQueued--;
    });
  }

  /** Writes accepted by write() and not yet settled. */
  private writesQueued = 0;

  private readonly batchers = new Map<InventoryServiceClient, Batcher>();

  private batcherFor(c: InventoryServiceClient): Batcher {
    let b = this.batchers.get(c);
    if (!b) {
      b = new Batcher(c);
      this.batchers.set(c, b);
    }
    return b;
  }

  async getStock(
    clinicId: string,
    medicationCode: string,
    stale: boolean,
    requestId?: string,
  ): Promise<GetStockResponse> {
    const consistency = stale
      ? ReadConsistency.READ_CONSISTENCY_STALE
      : ReadConsistency.READ_CONSISTENCY_LINEARIZABLE;
    const call = (c: InventoryServiceClient, d: number) =>
      callUnary(c.getStock.bind(c), { clinicId, medicationCode, consistency }, d, requestId);
    if (!stale) return this.onLeader(call);
    // Any replica will do: walk them until one answers.
    return withRetries(this.policy, ({ remainingMs }) =>
      call(this.clients.get(this.nextReplica())!, Math.min(this.o.deadlineMs, remainingMs)),
    );
  }

  /**
   * One page of a clinic's stock lines, in medication-code order (linearizable); without `page`,
   * the first page of the service's default size.
   */
  listStock(
    clinicId: string,
    requestId?: string,
    page: { pageSize?: number; pageToken?: string } = {},
  ): Promise<{ items: StockItem[]; index: number; nextPageToken: string }> {
    const msg = {
      clinicId,
      consistency: ReadConsistency.READ_CONSISTENCY_LINEARIZABLE,
      pageSize: page.pageSize ?? 0,
      pageToken: page.pageToken ?? "",
    };
    return this.onLeader((c, d) => callUnary(c.listStock.bind(c), msg, d, requestId));
  }

  /** Every replica's own view, asked in parallel with a short deadline; silent ones are unhealthy. */
  async cluster(
    requestId?: string,
  ): Promise<{ id: string; address: string; status: StatusResponse | undefined }[]> {
    return Promise.all(
      this.o.peers.map(async (p) => {
        const c = this.clients.get(p.id)!;
        try {
          return { ...p, status: await callUnary(c.status.bind(c), {}, statusDeadlineMs, requestId) };
        } catch {
          return { ...p, status: undefined };
        }
      }),
    );
  }

  /**
   * A membership call on the leader (redirects followed). Retried like a write: a change whose
   * answer was lost is refused on retry (MEMBER_EXISTS, MEMBER_NOT_FOUND), never applied twice.
   */
  admin<T>(fn: (a: InventoryAdminServiceClient, deadlineMs: number) => Promise<T>): Promise<T> {
    return this.onLeader((c, d) => fn(this.adminFor(c), d));
  }

  private adminFor(c: InventoryServiceClient): InventoryAdminServiceClient {
    let a = this.admins.get(c);
    if (!a) {
      const id = [...this.clients].find(([, x]) => x === c)![0];
      const ch = this.channelTo(id);
      a = new InventoryAdminServiceClient(this.addresses.get(id)!, ch.credentials, ch.options);
      this.admins.set(c, a);
    }
    return a;
  }

  close(): void {
    for (const b of this.batchers.values()) b.close();
    for (const c of this.clients.values()) c.close();
    for (const a of this.admins.values()) a.close();
  }
}

export type SubmitStreamClient = CallStreamClient<
  SubmitStreamRequest,
  SubmitBatchRequest,
  SubmitBatchResponse,
  SubmitStreamResponse
>;

/** SubmitBatch calls to one replica on its SubmitStream, unary if the replica has no such method. */
export function submitStreamClient(client: InventoryServiceClient): SubmitStreamClient {
  return new CallStreamClient({
    open: () => client.submitStream(),
    frame: (id, requestId, batch): SubmitStreamRequest => ({ id, requestId, batch }),
    read: (a: SubmitStreamResponse) => ({
      id: a.id,
      res: a.batch ?? { outcomes: [] },
      err: fromWireError(a),
    }),
    unaryCall: (req: SubmitBatchRequest, deadlineMs, requestId) =>
      callUnary(client.submitBatch.bind(client), req, deadlineMs, requestId),
  });
}

/** Commands per SubmitBatch call; the replica refuses more. */
const { batchCommandsMax } = inventoryLimits;

interface Pending {
  command: WriteCommand["command"];
  /** The HTTP request's id; a batch carries its first member's (each command has its own id too). */
  callRequestId: string | undefined;
  /** The caller's bound for this try (Date.now() ms), kept while the write waits for its batch. */
  expiresAt: number;
  resolve: (r: WriteResult) => void;
  reject: (e: unknown) => void;
}

/**
 * SubmitBatch calls in flight per replica. Writes that arrive while the calls are out wait for one
 * to return and then leave together (group commit, as the Raft log does with fsyncs): under load
 * the batches grow with the round trip, so the fixed cost of a gRPC call — on both ends — is paid
 * per batch rather than per write; when idle, a write leaves at once. Two keep the replica busy
 * while a reply travels back.
 */
export const batchCallsInFlightMax = 2;

/** Coalesces the writes for one replica into SubmitBatch calls, at most batchCallsInFlightMax at once. */
class Batcher {
  private queue: Pending[] = [];
  private scheduled = false;
  private inFlight = 0;
  /** SubmitBatch calls go on one SubmitStream (shared/call-stream.ts: less than half a unary call's cost). */
  private readonly calls: SubmitStreamClient;

  constructor(client: InventoryServiceClient) {
    this.calls = submitStreamClient(client);
  }

  close(): void {
    this.calls.close();
  }

  add(command: WriteCommand["command"], deadlineMs: number, callRequestId?: string): Promise<WriteResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ command, callRequestId, expiresAt: Date.now() + deadlineMs, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= batchCallsInFlightMax || this.queue.length === 0) return;
    this.scheduled = true;
    // setImmediate: the writes of this event-loop turn join the batch.
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.queue.length > 0 && this.inFlight < batchCallsInFlightMax) {
      const now = Date.now();
      const batch: Pending[] = [];
      for (const p of this.queue.splice(0, batchCommandsMax)) {
        // A write that waited out its try's deadline goes back to its caller's retry loop.
        if (p.expiresAt <= now)
          p.reject(new AppError("DEADLINE_EXCEEDED", "no batch left in time", undefined, { queued: "1" }));
        else batch.push(p);
      }
      if (batch.length === 0) continue;
      // The call lives as long as its most patient member may wait; a caller past its own bound has
      // given up through its retry loop, and the write is idempotent if it still lands.
      const deadlineMs = Math.max(...batch.map((p) => p.expiresAt)) - now;
      this.inFlight++;
      this.calls
        .call({ commands: batch.map((p) => ({ command: p.command })) }, deadlineMs, batch[0]!.callRequestId)
        .then(
          (res) => {
            batch.forEach((p, i) => {
              const o = res.outcomes[i];
              if (!o) p.reject(new AppError("INTERNAL", "replica answered fewer outcomes than commands"));
              else if (o.errorCode === "")
                p.resolve({
                  quantity: o.quantity,
                  index: o.index,
                  replayed: o.replayed,
                  lots: o.lots.map((l) => ({ lot: l.lot, quantity: l.quantity, expiresOn: l.expiresOn })),
                });
              else {
                const e = fromWireError(o)!;
                // The replica's request id is the HTTP caller's Idempotency-Key header.
                p.reject(
                  e.code === "IDEMPOTENCY_KEY_REUSED"
                    ? new AppError(e.code, e.message, "Idempotency-Key", e.meta)
                    : e,
                );
              }
            });
          },
          (err) => {
            for (const p of batch) p.reject(err);
          },
        )
        .finally(() => {
          this.inFlight--;
          this.schedule();
        });
    }
  }
}
