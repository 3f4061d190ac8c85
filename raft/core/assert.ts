// Owns the core's invariant checks. A broken invariant throws instead of letting the node go on with
// state that could lose committed data; the driver treats the throw as fatal for that replica.

export class RaftInvariantError extends Error {
  override readonly name = "RaftInvariantError";
}

export function assert(cond: unknown, msg: string | (() => string)): asserts cond {
  if (!cond) throw new RaftInvariantError(typeof msg === "string" ? msg : msg());
}
