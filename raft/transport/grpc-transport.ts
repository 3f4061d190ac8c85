// Owns moving Raft messages between replicas over gRPC. Per peer: a bounded queue, at most one
// batch in flight (every message queued meanwhile leaves in the next batch), a deadline on each
// batch, and grpc-js's reconnect with backoff. Best effort by design: a batch that fails is dropped
// and counted; the core resends through its own heartbeats and probes.
import {
  credentials,
  Metadata,
  type Server,
  type ServerUnaryCall,
  type ServiceError,
  type sendUnaryData,
  status,
} from "@grpc/grpc-js";
import {
  type DeliverRequest,
  type DeliverResponse,
  RaftTransportServiceClient,
  RaftTransportServiceService,
} from "../gen/medisync/raft/v1/raft.ts";
import { decodeMessage, encodeMessage, messageBytesMax } from "./codec.ts";

export interface Peer {
  id: string;
  address: string;
}

export interface TransportOptions {
  selfId: string;
  /** Messages waiting for one peer; beyond this the oldest are dropped (Raft tolerates loss). */
  queueMessagesMax?: number;
  /** Messages in one batch. */
  batchMessagesMax?: number;
  /** Encoded bytes in one batch (under the gRPC message limit). */
  batchBytesMax?: number;
  deadlineMs?: number;
}

export interface TransportStats {
  sent: number;
  batches: number;
  dropped: number;
  failedBatches: number;
}

const defaults = {
  queueMessagesMax: 10_000,
  batchMessagesMax: 1_024,
  batchBytesMax: 4 * 1024 * 1024,
  deadlineMs: 1_000,
};

export const channelOptions = {
  "grpc.max_receive_message_length": messageBytesMax + 1024 * 1024,
  "grpc.max_send_message_length": messageBytesMax + 1024 * 1024,
  "grpc.keepalive_time_ms": 5_000,
  "grpc.keepalive_timeout_ms": 2_000,
  "grpc.initial_reconnect_backoff_ms": 50,
  "grpc.max_reconnect_backoff_ms": 1_000,
  "grpc.min_reconnect_backoff_ms": 50,
};

interface PeerState {
  peer: Peer;
  client: RaftTransportServiceClient;
  queue: Uint8Array[];
  inFlight: boolean;
}

export class GrpcTransport {
  readonly stats: TransportStats = { sent: 0, batches: 0, dropped: 0, failedBatches: 0 };
  private readonly peers = new Map<string, PeerState>();
  private readonly o: Required<TransportOptions>;
  private closed = false;

  constructor(options: TransportOptions) {
    this.o = { ...defaults, ...options } as Required<TransportOptions>;
  }

  setPeers(peers: Peer[]): void {
    for (const p of peers) {
      if (p.id === this.o.selfId) continue;
      const cur = this.peers.get(p.id);
      if (cur && cur.peer.address === p.address) continue;
      cur?.client.close();
      this.peers.set(p.id, {
        peer: p,
        client: new RaftTransportServiceClient(p.address, credentials.createInsecure(), channelOptions),
        queue: [],
        inFlight: false,
      });
    }
    for (const [id, st] of this.peers) {
      if (!peers.some((p) => p.id === id)) {
        st.client.close();
        this.peers.delete(id);
      }
    }
  }

  /** Queues a message for `to`; returns at once. Unknown peers are ignored (membership is in flux). */
  send(to: string, message: unknown): void {
    const st = this.peers.get(to);
    if (!st || this.closed) return;
    st.queue.push(encodeMessage(message));
    if (st.queue.length > this.o.queueMessagesMax) {
      st.queue.shift();
      this.stats.dropped++;
    }
    if (!st.inFlight) this.pump(st);
  }

  private pump(st: PeerState): void {
    if (st.queue.length === 0 || this.closed) return;
    const batch: Uint8Array[] = [];
    let bytes = 0;
    while (st.queue.length > 0 && batch.length < this.o.batchMessagesMax) {
      const next = st.queue[0]!;
      if (batch.length > 0 && bytes + next.byteLength > this.o.batchBytesMax) break;
      batch.push(next);
      bytes += next.byteLength;
      st.queue.shift();
    }
    st.inFlight = true;
    st.client.deliver(
      {
        from: this.o.selfId,
        to: st.peer.id,
        messages: batch.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)),
      },
      new Metadata(),
      { deadline: Date.now() + this.o.deadlineMs },
      (err: ServiceError | null) => {
        st.inFlight = false;
        if (err) {
          this.stats.failedBatches++;
          this.stats.dropped += batch.length;
        } else {
          this.stats.sent += batch.length;
          this.stats.batches++;
        }
        this.pump(st);
      },
    );
  }

  close(): void {
    this.closed = true;
    for (const st of this.peers.values()) st.client.close();
    this.peers.clear();
  }
}

/**
 * Registers the receiving side on a gRPC server: each decoded message goes to `deliver`. Messages
 * addressed to another replica (a stale address after a move) are refused as a whole.
 */
export function addRaftTransportService<M>(
  server: Server,
  selfId: string,
  deliver: (from: string, m: M) => void,
): void {
  server.addService(RaftTransportServiceService, {
    deliver: (
      call: ServerUnaryCall<DeliverRequest, DeliverResponse>,
      callback: sendUnaryData<DeliverResponse>,
    ) => {
      const req = call.request;
      if (req.to !== selfId) {
        callback(
          { code: status.FAILED_PRECONDITION, details: `this is ${selfId}, not ${req.to}` } as ServiceError,
          null,
        );
        return;
      }
      for (const b of req.messages) {
        const m = decodeMessage<M>(b);
        if (m !== undefined) deliver(req.from, m);
      }
      callback(null, {});
    },
  });
}
