// Owns call streams: a unary method's calls carried as messages on one long-lived bidirectional
// gRPC stream instead of an HTTP/2 stream each. On this hardware a grpc-js unary call costs two to
// three times a message on an open stream, in time and in CPU on both ends (its own HTTP/2 stream,
// headers, trailers, deadline timer): bench/reports/grpc.md. The hot paths take a stream (the
// gateway's stock writes, SubmitStream, and its slot reads, ListSlotsStream); everything else stays
// unary.
//
// Both ends keep a unary call's meaning. The server runs each frame through the same handler
// runner as the unary method (grpc.ts: request id, metrics, logs, errors as AppErrors) and answers
// it with the error the unary call would have carried (errors.ts toWireError). The client gives
// every call its own deadline, rejects the calls in flight with the stream's failure when it breaks
// (UNAVAILABLE, as a unary call to a dead server: the caller retries with the same request id), and
// opens a new stream for the next call. A server without the stream method (UNIMPLEMENTED: an older
// replica during a rolling upgrade) never ran the calls sent on it; they and the calls of the next
// unaryAfterUnimplementedMs go unary.
import { type ClientDuplexStream, type ServerDuplexStream, type ServiceError, status } from "@grpc/grpc-js";
import { AppError, fromGrpcError } from "./errors.ts";
import { counter } from "./metrics.ts";

/**
 * What happens to call streams that a unary call has no counterpart for, in the process's metrics:
 * opened and broken streams, servers without the method (unimplemented), calls sent unary past the
 * bound, and calls refused unrun (refused_bound, refused_draining; the handler never saw them, so
 * medisync_grpc_server_handled_total does not count them).
 */
const events = counter(
  "medisync_call_stream_events_total",
  "call streams: opened, broken, unimplemented, calls sent unary past the bound, calls refused without running",
  ["event"],
);
const opened = events.labels({ event: "opened" });
const broke = events.labels({ event: "broken" });
const unimplemented = events.labels({ event: "unimplemented" });
const unaryPastBound = events.labels({ event: "unary_past_bound" });
const refusedBound = events.labels({ event: "refused_bound" });
const refusedDraining = events.labels({ event: "refused_draining" });

/**
 * Calls in flight on one stream at most (server side): past it a call is answered UNAVAILABLE
 * without running. The client sends no more than this on a stream (more go unary), so only calls
 * it gave up on and the server still runs can push a stream past it.
 */
export const streamCallsInFlightMax = 256;
/** After an UNIMPLEMENTED, calls go unary this long before a stream is tried again (an upgraded server). */
export const unaryAfterUnimplementedMs = 60_000;

/** One decoded request frame: the call's id, its request id, and its request (or why it did not decode). */
export interface RequestFrame<Req> {
  id: number;
  requestId: string;
  request: Req | unknown;
}

/**
 * The open call streams of a server. `drain()` runs before the gRPC server's graceful shutdown,
 * which waits for every stream to end: each stream answers what is in flight and ends.
 */
export class OpenStreams {
  private readonly open = new Set<() => void>();

  add(drain: () => void): void {
    this.open.add(drain);
  }

  delete(drain: () => void): void {
    this.open.delete(drain);
  }

  get size(): number {
    return this.open.size;
  }

  /** Ends every open stream once its calls in flight are answered; new frames are not taken. */
  drain(): void {
    for (const d of [...this.open]) d();
  }
}

/** The bidirectional handler of a call stream whose frames are calls of one unary method. */
export function callStreamHandler<Frame, Req, Res, Answer>(o: {
  /** The frame's parts; the request may be an UndecodableRequest, answered with its error. */
  read: (frame: Frame) => RequestFrame<Req>;
  /** The method's handler runner (grpc.ts handlerRunner): the unary method's own. */
  run: (request: unknown, requestId: string) => Promise<Res>;
  answer: (id: number, result: { res: Res } | { err: unknown }) => Answer;
  streams: OpenStreams;
}): (call: ServerDuplexStream<Frame, Answer>) => void {
  return (call) => {
    let inFlight = 0;
    let ended = false;
    let gone = false;
    const forget = () => {
      gone = true;
      o.streams.delete(drain);
    };
    const endIfIdle = () => {
      if (ended && inFlight === 0 && !gone) {
        forget();
        call.end();
      }
    };
    const drain = () => {
      ended = true;
      endIfIdle();
    };
    o.streams.add(drain);
    const reply = (id: number, result: { res: Res } | { err: unknown }) => {
      if (gone) return;
      let a: Answer;
      try {
        a = o.answer(id, result);
      } catch (err) {
        // An answer that cannot be built (encoded) fails its call alone, as grpc-js's serializer did.
        a = o.answer(id, { err });
      }
      call.write(a);
    };
    call.on("data", (frame: Frame) => {
      const f = o.read(frame);
      // Neither runs the call, so the client may send it again at once: UNAVAILABLE, retried.
      if (ended) {
        refusedDraining.inc();
        reply(f.id, { err: new AppError("UNAVAILABLE", "this instance is shutting down; retry elsewhere") });
        return;
      }
      if (inFlight >= streamCallsInFlightMax) {
        refusedBound.inc();
        const why = `more than ${streamCallsInFlightMax} calls in flight on one stream; retry`;
        reply(f.id, { err: new AppError("UNAVAILABLE", why) });
        return;
      }
      inFlight++;
      o.run(f.request, f.requestId)
        .then(
          (res) => reply(f.id, { res }),
          (err: unknown) => reply(f.id, { err }),
        )
        .finally(() => {
          inFlight--;
          endIfIdle();
        });
    });
    call.on("end", drain);
    call.on("error", forget);
    call.on("cancelled", forget);
  };
}

/** A decoded answer frame: the call's id and its response or error. */
export interface AnswerFrame<Res> {
  id: number;
  res: Res | undefined;
  err: AppError | undefined;
}

interface Pending<Req, Res> {
  req: Req;
  requestId: string | undefined;
  expiresAt: number;
  timer: NodeJS.Timeout;
  resolve: (r: Res) => void;
  reject: (e: unknown) => void;
}

/** The client side of a call stream to one server: call() is a unary call's promise. */
export class CallStreamClient<Frame, Req, Res, Answer> {
  private stream: ClientDuplexStream<Frame, Answer> | undefined;
  private readonly pending = new Map<number, Pending<Req, Res>>();
  private nextId = 1;
  /** The server had no stream method: calls go unary until then (Date.now() ms). */
  private unaryUntil = 0;
  private closed = false;

  constructor(
    private readonly o: {
      open: () => ClientDuplexStream<Frame, Answer>;
      frame: (id: number, requestId: string, req: Req) => Frame;
      read: (answer: Answer) => AnswerFrame<Res>;
      /** The same call, unary (grpc.ts callUnary): for a server without the stream method. */
      unaryCall: (req: Req, deadlineMs: number, requestId: string | undefined) => Promise<Res>;
    },
  ) {}

  /** Calls in flight on the stream (tests, metrics). */
  get inFlight(): number {
    return this.pending.size;
  }

  call(req: Req, deadlineMs: number, requestId?: string): Promise<Res> {
    if (this.closed) return Promise.reject(fromGrpcError({ code: status.UNAVAILABLE }));
    if (this.unaryUntil > Date.now()) return this.o.unaryCall(req, deadlineMs, requestId);
    // Past the server's bound a call goes unary, as every call did before streams.
    if (this.pending.size >= streamCallsInFlightMax) {
      unaryPastBound.inc();
      return this.o.unaryCall(req, deadlineMs, requestId);
    }
    return new Promise<Res>((resolve, reject) => {
      const id = this.nextId++;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(fromGrpcError({ code: status.DEADLINE_EXCEEDED })); // what a unary call's deadline gives
      }, deadlineMs);
      this.pending.set(id, { req, requestId, expiresAt: Date.now() + deadlineMs, timer, resolve, reject });
      this.streamNow().write(this.o.frame(id, requestId ?? "", req));
    });
  }

  private streamNow(): ClientDuplexStream<Frame, Answer> {
    if (this.stream) return this.stream;
    const stream = this.o.open();
    this.stream = stream;
    opened.inc();
    stream.on("data", (a: Answer) => {
      let f: AnswerFrame<Res>;
      try {
        f = this.o.read(a);
      } catch {
        return; // an answer we cannot read: its call ends at its deadline and is retried
      }
      const p = this.pending.get(f.id);
      if (!p) return; // its deadline passed: the caller has moved on
      this.pending.delete(f.id);
      clearTimeout(p.timer);
      if (f.err) p.reject(f.err);
      else p.resolve(f.res!);
    });
    // The status ends the stream, with or without an error: the calls in flight on it are lost.
    stream.on("status", (st: { code: status }) =>
      this.broken(stream, st.code === status.OK ? undefined : st),
    );
    stream.on("error", (err: ServiceError) => this.broken(stream, err));
    return stream;
  }

  private broken(stream: ClientDuplexStream<Frame, Answer>, err: { code: status } | undefined): void {
    if (this.stream !== stream) return;
    this.stream = undefined;
    stream.end();
    const lost = [...this.pending.values()];
    this.pending.clear();
    if (err?.code === status.UNIMPLEMENTED) {
      unimplemented.inc();
      // Refused before any frame was read: the calls did not run. They go unary, as all for a while.
      this.unaryUntil = Date.now() + unaryAfterUnimplementedMs;
      for (const p of lost) {
        clearTimeout(p.timer);
        this.o.unaryCall(p.req, Math.max(1, p.expiresAt - Date.now()), p.requestId).then(p.resolve, p.reject);
      }
      return;
    }
    // Ended by the server (it drains before shutting down) or broken: whether a call in flight ran is
    // unknown, as for a unary call whose connection broke; the caller retries with the same ids.
    // A status the server chose (ours in metadata, PERMISSION_DENIED from the caller policy…) means
    // what it means for a unary call (fromGrpcError). CANCELLED, INTERNAL and UNKNOWN without our
    // code are the stream failing (its connection gone, one frame that would not encode or decode):
    // every call on it is lost alike, so UNAVAILABLE, and the caller retries with the same ids.
    if (err) broke.inc(); // a server that drained ends its streams with OK: not broken
    const ours = fromGrpcError(err ?? {});
    const streamFailed =
      !err ||
      ([status.CANCELLED, status.INTERNAL, status.UNKNOWN].includes(err.code) && ours.code === "INTERNAL");
    const failure = streamFailed
      ? new AppError("UNAVAILABLE", "upstream stream failed; retry with the same request id")
      : ours;
    for (const p of lost) {
      clearTimeout(p.timer);
      p.reject(failure);
    }
  }

  close(): void {
    this.closed = true;
    const s = this.stream;
    this.stream = undefined;
    s?.cancel();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(fromGrpcError({ code: status.UNAVAILABLE }));
    }
    this.pending.clear();
  }
}
