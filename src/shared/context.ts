// Owns the per-request context (request id) carried across async calls, so every log line and
// every outgoing gRPC call of a request carries the same id without threading it by hand.
import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";

export interface RequestContext {
  requestId: string;
}

const storage = new AsyncLocalStorage<RequestContext>();

export const REQUEST_ID_HEADER = "x-request-id";
const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/;

/** Accepts a caller's id only if it is short and harmless; otherwise makes a fresh one. */
export function sanitizeRequestId(candidate: string | undefined | null): string {
  return candidate && requestIdPattern.test(candidate) ? candidate : randomUUID();
}

export function withRequestId<T>(requestId: string, fn: () => T): T {
  return storage.run({ requestId }, fn);
}

export function currentRequestId(): string | undefined {
  return storage.getStore()?.requestId;
}
