// Owns moving Raft messages between replicas over gRPC. Per peer: a bounded queue and one
// long-lived client stream; every message queued in one event-loop turn leaves as one batch, in
// order, without waiting for the previous batch's reply (that round trip per batch, with a unary
// call, cost more than the fsyncs). A stream that fails is reopened with backoff; what it carried is
// dropped and counted: best effort by design, the core resends through its heartbeats and probes.
// A stream has no deadline; gRPC keepalive (channelOptions) notices a peer that stopped answering.
import {
  type ClientWritableStream,
  credentials,
  Metadata,
  type Server,
  type ServerReadableStream,
  type ServiceError,
  type sendUnaryData,
  status,
} from "@grpc/grpc-js";
import {
  RaftTransportServiceClient,
  RaftTransportServiceService,
  type StreamRequest,
  type StreamResponse,
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
  /** A stream to this peer failed (connection refused or reset): the node may suspect its leader. */
  onPeerUnreachable?: (peerId: string) => void;
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
  stream: ClientWritableStream<StreamRequest> | undefined;
  streamOpenedAt: number;
  /** Messages written to the current stream: lost with it if it fails. */
  inStream: number;
  scheduled: boolean;
  /** The stream's buffer is full: wait for 'drain' (a slow or paused peer must not grow memory). */
  blocked: boolean;
  retryAt: number;
  backoffMs: number;
}

const backoffMsMin = 50;
const backoffMsMax = 1_000;

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
      if (cur) this.drop(cur);
      this.peers.set(p.id, {
        peer: p,
        client: new RaftTransportServiceClient(p.address, credentials.createInsecure(), channelOptions),
        queue: [],
        stream: undefined,
        streamOpenedAt: 0,
        inStream: 0,
        scheduled: false,
        blocked: false,
        retryAt: 0,
        backoffMs: backoffMsMin,
      });
    }
    for (const [id, st] of this.peers) {
      if (!peers.some((p) => p.id === id)) {
        this.drop(st);
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
    this.schedule(st);
  }

  private schedule(st: PeerState, delayMs = 0): void {
    if (st.scheduled || this.closed) return;
    st.scheduled = true;
    const run = () => {
      st.scheduled = false;
      this.flush(st);
    };
    // setImmediate: every message queued in this turn joins one batch.
    if (delayMs > 0) setTimeout(run, delayMs).unref();
    else setImmediate(run);
  }

  private flush(st: PeerState): void {
    if (this.closed || st.blocked || st.queue.length === 0) return;
    if (!st.stream) {
      const waitMs = st.retryAt - Date.now();
      if (waitMs > 0) {
        this.schedule(st, waitMs);
        return;
      }
      this.open(st);
    }
    const stream = st.stream!;
    while (st.queue.length > 0 && !st.blocked) {
      const batch: Uint8Array[] = [];
      let bytes = 0;
      while (st.queue.length > 0 && batch.length < this.o.batchMessagesMax) {
        const next = st.queue[0]!;
        if (batch.length > 0 && bytes + next.byteLength > this.o.batchBytesMax) break;
        batch.push(next);
        bytes += next.byteLength;
        st.queue.shift();
      }
      const ok = stream.write({
        from: this.o.selfId,
        to: st.peer.id,
        messages: batch.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)),
      });
      st.inStream += batch.length;
      this.stats.sent += batch.length;
      this.stats.batches++;
      if (!ok) {
        st.blocked = true;
        stream.once("drain", () => {
          st.blocked = false;
          this.flush(st);
        });
      }
    }
  }

  private open(st: PeerState): void {
    const openedAt = Date.now();
    const stream = st.client.stream(new Metadata(), {}, (err: ServiceError | null) => {
      if (st.stream !== stream) return;
      st.stream = undefined;
      st.blocked = false;
      if (err && !this.closed) {
        this.stats.failedBatches++;
        this.stats.dropped += st.inStream;
        // A stream that lived a while failed for a new reason: retry soon; else back off.
        st.backoffMs =
          Date.now() - openedAt > 1_000 ? backoffMsMin : Math.min(backoffMsMax, st.backoffMs * 2);
        st.retryAt = Date.now() + st.backoffMs;
        if (err.code === status.UNAVAILABLE) this.o.onPeerUnreachable?.(st.peer.id);
      }
      st.inStream = 0;
      if (st.queue.length > 0) this.schedule(st);
    });
    stream.on("error", () => undefined); // reported through the callback above
    st.stream = stream;
    st.streamOpenedAt = openedAt;
    st.inStream = 0;
  }

  private drop(st: PeerState): void {
    st.stream?.cancel();
    st.stream = undefined;
    st.client.close();
  }

  close(): void {
    this.closed = true;
    for (const st of this.peers.values()) this.drop(st);
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
  const refuse = (to: string) =>
    ({ code: status.FAILED_PRECONDITION, details: `this is ${selfId}, not ${to}` }) as ServiceError;
  const deliverAll = (from: string, messages: Uint8Array[]) => {
    for (const b of messages) {
      const m = decodeMessage<M>(b);
      if (m !== undefined) deliver(from, m);
    }
  };
  server.addService(RaftTransportServiceService, {
    stream: (
      call: ServerReadableStream<StreamRequest, StreamResponse>,
      callback: sendUnaryData<StreamResponse>,
    ) => {
      let done = false;
      call.on("data", (req: StreamRequest) => {
        if (done) return;
        if (req.to !== selfId) {
          done = true;
          callback(refuse(req.to), null);
          return;
        }
        deliverAll(req.from, req.messages);
      });
      call.on("end", () => {
        if (!done) callback(null, {});
        done = true;
      });
      call.on("error", () => {
        done = true;
      });
    },
  });
}
