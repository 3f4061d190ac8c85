// Owns logging: pino JSON, one line per event, the request id on every line (from the async
// context, or "-" plus the task name outside any request), and PHI kept out by redaction.
import pino, { type Logger } from "pino";
import { currentRequestId } from "./context.ts";

/**
 * Field names that may carry patient names or free text. Callers should never log them; redaction
 * is the second line of defence, applied at any depth pino supports.
 */
const phiPaths = [
  "name",
  "patientName",
  "notes",
  "note",
  "text",
  "body",
  "*.name",
  "*.patientName",
  "*.notes",
  "*.note",
  "*.text",
  "*.body",
  "req.headers.authorization",
  "req.headers.cookie",
];

export interface LoggerOptions {
  service: string;
  level?: string;
  instance?: string;
  destination?: pino.DestinationStream;
}

export function createLogger(opts: LoggerOptions): Logger {
  return pino(
    {
      level: opts.level ?? "info",
      base: { service: opts.service, instance: opts.instance ?? `${opts.service}-${process.pid}` },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: phiPaths, censor: "[redacted]" },
      // A logger made by requestLogger() already binds the id; others take it from the async context.
      mixin: (_obj, _level, logger) =>
        withBoundRequestId.has(logger) ? {} : { requestId: currentRequestId() ?? "-" },
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? stdoutAsync(),
  );
}

/**
 * Standard output written asynchronously: a line is queued and written by the event loop, so a
 * request that logs (the gateway's access line) does not wait on a write(2) to a pipe or terminal.
 * Lines queued meanwhile go out together. pino flushes what is queued synchronously when the
 * process exits (process.exit included, so a fatal line before exit is kept); only a SIGKILL loses
 * the lines of the current event-loop turn.
 */
function stdoutAsync(): pino.DestinationStream {
  return pino.destination({ dest: 1, sync: false });
}

/** Loggers whose bindings carry a requestId (so the mixin must not add a second one). */
const withBoundRequestId = new WeakSet<object>();

/** A child logger for one request whose id is known (no async context needed). */
export function requestLogger(log: Logger, requestId: string): Logger {
  const child = log.child({ requestId });
  withBoundRequestId.add(child);
  return child;
}

export type { Logger };
