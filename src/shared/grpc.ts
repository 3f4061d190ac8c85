// Owns the gRPC plumbing every service shares: handlers that know the caller's request id (and may
// run in its async context) and map errors in one place, and client calls that always carry a
// deadline and the request id.
import {
  type CallOptions,
  type ClientUnaryCall,
  Metadata,
  type Server,
  type ServerCredentials,
  type ServerUnaryCall,
  type ServiceError,
  type sendUnaryData,
} from "@grpc/grpc-js";
import type { Logger } from "pino";
import { Counter, Histogram } from "prom-client";
import { currentRequestId, REQUEST_ID_HEADER, sanitizeRequestId, withRequestId } from "./context.ts";
import { type AppError, asAppError, fromGrpcError, toGrpcError } from "./errors.ts";
import { requestLogger } from "./logger.ts";
import { registry } from "./metrics.ts";

const handled = new Counter({
  name: "medisync_grpc_server_handled_total",
  help: "gRPC calls handled, by method and result code",
  labelNames: ["method", "code"] as const,
  registers: [registry],
});
const handledSeconds = new Histogram({
  name: "medisync_grpc_server_handling_seconds",
  help: "gRPC handling time",
  labelNames: ["method"] as const,
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [registry],
});

/** What a handler knows of its call: the caller's request id and a logger that carries it. */
export interface CallContext {
  requestId: string;
  readonly log: Logger;
}

export interface UnaryOptions {
  /**
   * Run the handler inside the async request context (context.ts), so code deep below it that
   * logs or calls other services carries the request id without being handed it. Costs every
   * promise of the process a hook (Node 20's AsyncLocalStorage): services on a hot path (the
   * inventory replicas) pass `ctx` explicitly instead.
   */
  asyncContext?: boolean;
}

/** Wraps an async handler: request id from metadata, AppError → status + code metadata, a log line on failure. */
/**
 * What a guarded request decoder returns for bytes the generated decoder refused (an int64 past
 * 2^53, say): unary() answers it with its error, a VALIDATION naming the field, never INTERNAL.
 */
export class UndecodableRequest {
  constructor(readonly error: AppError) {}
}

/**
 * A handler as every transport runs it (a unary call, a call stream's frame): the request id's
 * context and logger, the call's metrics, a log line on failure, and a rejection that is always an
 * AppError. `request` may be an UndecodableRequest (a guarded decoder's), answered with its error.
 */
export function handlerRunner<Req, Res>(
  log: Logger,
  method: string,
  fn: (req: Req, ctx: CallContext) => Promise<Res>,
  options: UnaryOptions = {},
): (request: unknown, requestIdValue: unknown) => Promise<Res> {
  // Labelled once: looking a label set up on every call is a cost of every call.
  const timer = handledSeconds.labels({ method });
  const handledOk = handled.labels({ method, code: "OK" });
  return (request, requestIdValue) => {
    const requestId = sanitizeRequestId(typeof requestIdValue === "string" ? requestIdValue : undefined);
    const end = timer.startTimer();
    let child: Logger | undefined;
    const ctx: CallContext = {
      requestId,
      get log() {
        child ??= requestLogger(log, requestId);
        return child;
      },
    };
    const run = () =>
      // A handler that throws before its first await must not escape as an uncaught exception.
      Promise.resolve()
        .then(() => {
          if (request instanceof UndecodableRequest) throw request.error;
          return fn(request as Req, ctx);
        })
        .then(
          (res) => {
            end();
            handledOk.inc();
            return res;
          },
          (err: unknown) => {
            end();
            const app = asAppError(err);
            handled.inc({ method, code: app.code });
            if (app.code !== "INTERNAL") {
              log.info({ requestId, method, code: app.code, field: app.field }, "request rejected");
            } else {
              log.error({ requestId, method, err }, "request failed");
            }
            throw app;
          },
        );
    return options.asyncContext ? withRequestId(requestId, run) : run();
  };
}

export function unary<Req, Res>(
  log: Logger,
  method: string,
  fn: (req: Req, ctx: CallContext) => Promise<Res>,
  options: UnaryOptions = {},
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  const run = handlerRunner(log, method, fn, options);
  return (call, callback) => {
    run(call.request, call.metadata.get(REQUEST_ID_HEADER)[0]).then(
      (res) => callback(null, res),
      (err: unknown) => callback(toGrpcError(err) as ServiceError, null),
    );
  };
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/**
 * Calls a unary method with a deadline and the request id (given, or the async context's); failures
 * reject with an AppError (the server's own code when it sent one). `bind` the method to its client
 * before passing it.
 */
export function callUnary<Req, Res>(
  method: UnaryMethod<Req, Res>,
  request: Req,
  deadlineMs: number,
  requestId: string | undefined = currentRequestId(),
): Promise<Res> {
  const metadata = new Metadata();
  if (requestId) metadata.set(REQUEST_ID_HEADER, requestId);
  return new Promise((resolve, reject) => {
    method(request, metadata, { deadline: Date.now() + deadlineMs }, (err, res) => {
      if (err) reject(fromGrpcError(err));
      else resolve(res);
    });
  });
}

/** Channel options shared by clients: bounded message sizes and keepalive so dead peers are noticed. */
export const clientChannelOptions = {
  "grpc.max_receive_message_length": 8 * 1024 * 1024,
  "grpc.max_send_message_length": 8 * 1024 * 1024,
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 2_000,
} as const;

export const serverOptions = {
  "grpc.max_receive_message_length": 8 * 1024 * 1024,
  "grpc.max_send_message_length": 8 * 1024 * 1024,
} as const;

/**
 * Binds a service's gRPC server to host:port (0: any free port) with its transport security's
 * credentials (src/shared/tls.ts: mutual TLS, or plaintext on loopback); resolves the port it got.
 */
export function bindGrpc(
  server: Server,
  host: string,
  port: number,
  credentials: ServerCredentials,
): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, credentials, (err, bound) => (err ? reject(err) : resolve(bound))),
  );
}

/** Lets calls in flight finish for up to drainMs, then closes the server hard. */
export function shutdownGrpc(server: Server, drainMs: number): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => server.forceShutdown(), drainMs);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}
