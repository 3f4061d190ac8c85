// Owns moving Raft messages between replicas over gRPC. Per peer: a bounded queue and one
// long-lived client stream; every message queued in one event-loop turn leaves as one batch, in
// order, without waiting for the previous batch's reply (that round trip per batch, with a unary
// call, cost more than the fsyncs). A stream that fails is reopened with backoff; what it carried is
// dropped and counted: best effort by design, the core resends through its heartbeats and probes.
// A stream has no deadline; gRPC keepalive (channelOptions) notices a peer that stopped answering.
// A stream is live once the receiver's headers arrive (it sends them as it takes the stream); one
// that is not live within streamLiveTimeoutMs is abandoned with its channel: a peer's HTTP/2 layer
// can answer pings while its stream never goes anywhere, and grpc-js can wait for a connection
// forever (grpc-node #2785), so neither keepalive nor a retry on the same channel would end it.
// Transport security is the embedder's: it hands in each peer's channel credentials and, on the
// receiving side, how to read a stream's sender from its TLS session (the peer certificate); with
// that, a message's sender is the certificate's, and a batch naming another sender is refused.
import {
  type ChannelCredentials,
  type ChannelOptions,
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
import { decodeMessage, type Envelope, encodeMessage, messageBytesMax } from "./codec.ts";

export interface Peer {
  id: string;
  address: string;
}

export interface TransportOptions {
  selfId: string;
  /** Messages waiting for one peer; beyond this the oldest are dropped (Raft tolerates loss). */
  queueMessagesMax?: number;
  /** Encoded bytes waiting for one peer; beyond this the oldest are dropped, as for the count. */
  queueBytesMax?: number;
  /** Messages in one batch. */
  batchMessagesMax?: number;
  /** Encoded bytes in one batch (under the gRPC message limit). */
  batchBytesMax?: number;
  /** A stream to this peer failed (connection refused or reset): the node may suspect its leader. */
  onPeerUnreachable?: (peerId: string) => void;
  /** Cluster id and incarnations for a batch to `to` (the node's identity), asked per batch. */
  envelope?: (to: string) => Omit<Envelope, "hello">;
  /** A new stream must be live (the receiver's headers arrived) by then, or it and its channel go. */
  streamLiveTimeoutMs?: number;
  /**
   * Credentials (and extra channel options) for the channel to a peer: mutual TLS that accepts only
   * that peer's certificate, say. Plaintext when omitted.
   */
  channel?: (peer: Peer) => { credentials: ChannelCredentials; options?: ChannelOptions };
}

export interface TransportStats {
  sent: number;
  batches: number;
  dropped: number;
  failedBatches: number;
  /** Streams that never went live in time, abandoned with their channel. */
  abandonedStreams: number;
}

const defaults = {
  queueMessagesMax: 10_000,
  queueBytesMax: 64 * 1024 * 1024,
  batchMessagesMax: 1_024,
  batchBytesMax: 4 * 1024 * 1024,
  streamLiveTimeoutMs: 2_000,
};

export const channelOptions = {
  "grpc.max_receive_message_length": messageBytesMax + 1024 * 1024,
  "grpc.max_send_message_length": messageBytesMax + 1024 * 1024,
  "grpc.keepalive_time_ms": 5_000,
  "grpc.keepalive_timeout_ms": 2_000,
  "grpc.initial_reconnect_backoff_ms": 50,
  "grpc.max_reconnect_backoff_ms": 1_000,
  "grpc.min_reconnect_backoff_ms": 50,
  // A channel made anew (an abandoned stream) must not get the old connection back from the
  // process-wide pool.
  "grpc.use_local_subchannel_pool": 1,
};

const plaintext = () => ({ credentials: credentials.createInsecure() });

interface PeerState {
  peer: Peer;
  client: RaftTransportServiceClient;
  queue: Uint8Array[];
  /** Encoded bytes in `queue`. */
  queueBytes: number;
  stream: ClientWritableStream<StreamRequest> | undefined;
  streamOpenedAt: number;
  /** Messages written to the current stream: lost with it if it fails. */
  inStream: number;
  scheduled: boolean;
  /** The stream's buffer is full: wait for 'drain' (a slow or paused peer must not grow memory). */
  blocked: boolean;
  retryAt: number;
  backoffMs: number;
  /** An envelope is owed to this peer (hello); true: it should answer. */
  hello: "none" | "plain" | "ask";
  /**
   * Removed or readdressed (setPeers), its channel closed: a flush, retry or drain still armed for
   * it must do nothing (grpc-js throws on a closed channel, out of a timer: the process would die).
   */
  gone: boolean;
}

const backoffMsMin = 50;
const backoffMsMax = 1_000;

export class GrpcTransport {
  readonly stats: TransportStats = {
    sent: 0,
    batches: 0,
    dropped: 0,
    failedBatches: 0,
    abandonedStreams: 0,
  };
  private readonly peers = new Map<string, PeerState>();
  private readonly o: Required<TransportOptions>;
  private closed = false;

  constructor(options: TransportOptions) {
    this.o = {
      ...defaults,
      envelope: () => ({ clusterId: "", fromIncarnation: "", toIncarnation: "" }),
      channel: plaintext,
      ...options,
    } as Required<TransportOptions>;
  }

  private newClient(peer: Peer): RaftTransportServiceClient {
    const ch = this.o.channel(peer);
    return new RaftTransportServiceClient(peer.address, ch.credentials, { ...channelOptions, ...ch.options });
  }

  /** Sends an envelope to `to`, with messages if any are queued, else alone; `ask`: it should answer. */
  hello(to: string, ask: boolean): void {
    const st = this.peers.get(to);
    if (!st || this.closed) return;
    if (ask) st.hello = "ask";
    else if (st.hello === "none") st.hello = "plain";
    this.schedule(st);
  }

  setPeers(peers: Peer[]): void {
    for (const p of peers) {
      if (p.id === this.o.selfId) continue;
      const cur = this.peers.get(p.id);
      if (cur && cur.peer.address === p.address) continue;
      if (cur) this.drop(cur);
      this.peers.set(p.id, {
        peer: p,
        client: this.newClient(p),
        queue: [],
        queueBytes: 0,
        stream: undefined,
        streamOpenedAt: 0,
        inStream: 0,
        scheduled: false,
        blocked: false,
        retryAt: 0,
        backoffMs: backoffMsMin,
        hello: "none",
        gone: false,
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
    const b = encodeMessage(message);
    st.queue.push(b);
    st.queueBytes += b.byteLength;
    // The newest message always stays: it carries the core's latest state for this peer.
    while (
      st.queue.length > 1 &&
      (st.queue.length > this.o.queueMessagesMax || st.queueBytes > this.o.queueBytesMax)
    ) {
      st.queueBytes -= st.queue.shift()!.byteLength;
      this.stats.dropped++;
    }
    this.schedule(st);
  }

  /** Encoded bytes waiting for `peerId` (tests, metrics). */
  queuedBytes(peerId: string): number {
    return this.peers.get(peerId)?.queueBytes ?? 0;
  }

  private schedule(st: PeerState, delayMs = 0): void {
    if (st.scheduled || st.gone || this.closed) return;
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
    if (this.closed || st.gone || st.blocked || (st.queue.length === 0 && st.hello === "none")) return;
    if (!st.stream) {
      const waitMs = st.retryAt - Date.now();
      if (waitMs > 0) {
        this.schedule(st, waitMs);
        return;
      }
      this.open(st);
    }
    const stream = st.stream!;
    while ((st.queue.length > 0 || st.hello !== "none") && !st.blocked) {
      const batch: Uint8Array[] = [];
      let bytes = 0;
      while (st.queue.length > 0 && batch.length < this.o.batchMessagesMax) {
        const next = st.queue[0]!;
        if (batch.length > 0 && bytes + next.byteLength > this.o.batchBytesMax) break;
        batch.push(next);
        bytes += next.byteLength;
        st.queue.shift();
        st.queueBytes -= next.byteLength;
      }
      const ok = stream.write({
        from: this.o.selfId,
        to: st.peer.id,
        messages: batch.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)),
        ...this.o.envelope(st.peer.id),
        hello: st.hello === "ask",
      });
      st.hello = "none";
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
    const liveTimer = setTimeout(() => {
      if (st.stream !== stream || this.closed) return;
      this.stats.abandonedStreams++;
      this.stats.dropped += st.inStream;
      st.stream = undefined;
      st.blocked = false;
      st.inStream = 0;
      stream.cancel();
      st.client.close();
      st.client = this.newClient(st.peer);
      st.retryAt = 0;
      if (st.queue.length > 0 || st.hello !== "none") this.schedule(st);
    }, this.o.streamLiveTimeoutMs);
    liveTimer.unref();
    stream.once("metadata", () => clearTimeout(liveTimer));
    st.stream = stream;
    st.streamOpenedAt = openedAt;
    st.inStream = 0;
  }

  private drop(st: PeerState): void {
    st.gone = true;
    this.stats.dropped += st.queue.length;
    st.queue = [];
    st.queueBytes = 0;
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

/** How the receiver learns who is sending: from the stream's TLS session, never from the batch. */
export interface SenderAuth {
  /** The replica id the stream's peer certificate names; undefined when it names none. */
  identify(call: ServerReadableStream<StreamRequest, StreamResponse>): string | undefined;
  /** A stream refused: no identity, or a batch claiming a sender other than the certificate's. */
  onRefused?(refusal: {
    reason: "no-identity" | "sender-mismatch";
    claimed: string;
    identity?: string;
  }): void;
}

/**
 * Registers the receiving side on a gRPC server: each batch goes to `deliver` with its envelope and
 * its decoded messages (the receiver checks both). Batches addressed to another replica (a stale
 * address after a move) are refused as a whole. With `auth`, the sender handed to `deliver` is the
 * one the stream's certificate names; a stream without one is refused UNAUTHENTICATED, and a batch
 * whose `from` differs from it PERMISSION_DENIED, the stream with it (counted in ReceiveStats).
 * Without `auth` (plaintext, loopback only) the batch's `from` is all there is.
 */
export function addRaftTransportService<M>(
  server: Server,
  selfId: string,
  deliver: (from: string, envelope: Envelope, messages: M[]) => void,
  auth?: SenderAuth,
): ReceiveStats {
  const stats: ReceiveStats = { undecodable: 0, unauthenticated: 0, impersonations: 0 };
  const refuse = (to: string) =>
    ({ code: status.FAILED_PRECONDITION, details: `this is ${selfId}, not ${to}` }) as ServiceError;
  const deliverAll = (sender: string, req: StreamRequest) => {
    const out: M[] = [];
    for (const b of req.messages) {
      const m = decodeMessage<M>(b);
      if (m !== undefined) out.push(m);
      else stats.undecodable++; // a lost packet to Raft; the receiver checks every field of the rest
    }
    deliver(
      sender,
      {
        clusterId: req.clusterId,
        fromIncarnation: req.fromIncarnation,
        toIncarnation: req.toIncarnation,
        hello: req.hello,
      },
      out,
    );
  };
  server.addService(RaftTransportServiceService, {
    stream: (
      call: ServerReadableStream<StreamRequest, StreamResponse>,
      callback: sendUnaryData<StreamResponse>,
    ) => {
      let done = false;
      // Read once per stream: a connection's certificate does not change under it.
      const certified = auth ? auth.identify(call) : undefined;
      if (auth && certified === undefined) {
        stats.unauthenticated++;
        auth.onRefused?.({ reason: "no-identity", claimed: "" });
        call.on("error", () => undefined);
        callback(
          {
            code: status.UNAUTHENTICATED,
            details: "no replica identity in the peer certificate",
          } as ServiceError,
          null,
        );
        return;
      }
      // Headers at once: they tell the sender this stream is live (see streamLiveTimeoutMs).
      call.sendMetadata(new Metadata());
      call.on("data", (req: StreamRequest) => {
        if (done) return;
        if (certified !== undefined && req.from !== certified) {
          done = true;
          stats.impersonations++;
          auth?.onRefused?.({ reason: "sender-mismatch", claimed: req.from, identity: certified });
          callback(
            {
              code: status.PERMISSION_DENIED,
              details: `the peer certificate is ${certified}'s, the batch says it is from ${req.from}`,
            } as ServiceError,
            null,
          );
          return;
        }
        if (req.to !== selfId) {
          done = true;
          callback(refuse(req.to), null);
          return;
        }
        deliverAll(certified ?? req.from, req);
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
  return stats;
}

export interface ReceiveStats {
  /** Messages whose bytes did not decode (or were over messageBytesMax): dropped. */
  undecodable: number;
  /** Streams refused for a peer certificate naming no replica (with SenderAuth). */
  unauthenticated: number;
  /** Streams refused for a batch whose sender was not the certificate's replica (with SenderAuth). */
  impersonations: number;
}
