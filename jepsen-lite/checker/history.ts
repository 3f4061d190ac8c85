// Owns the shape of a recorded history as the checkers read it: one operation per line, with the
// times it was invoked and answered. An operation that got no answer is indeterminate: it may or may
// not have taken effect, and it may have taken effect at any time after its call, so its return
// time is +∞ (Infinity in memory, null in JSON).

export interface Op<I, O> {
  /** Unique within the history. */
  id: number;
  /** The client (one lane of the report) that issued it; a client runs one operation at a time. */
  client: number;
  /** The object it touches: the checker decomposes the history per key (P-compositionality). */
  key: string;
  input: I;
  /** undefined: no answer came (timeout, connection lost), so the outcome is unknown. */
  output: O | undefined;
  /** Milliseconds on one monotonic clock. */
  call: number;
  /** For an indeterminate op: what the client saw instead of an answer (diagnostics only). */
  error?: string;
  /** Milliseconds on the same clock; Infinity when indeterminate. */
  ret: number;
}

export function isIndeterminate(op: Op<unknown, unknown>): boolean {
  return op.output === undefined;
}

/** JSON cannot hold Infinity: an indeterminate op is written with ret null. */
export function opToJson<I, O>(op: Op<I, O>): Record<string, unknown> {
  return { ...op, ret: Number.isFinite(op.ret) ? op.ret : null, output: op.output ?? null };
}

export function opFromJson<I, O>(j: Record<string, unknown>): Op<I, O> {
  const output = j.output === null || j.output === undefined ? undefined : (j.output as O);
  return {
    id: j.id as number,
    client: j.client as number,
    key: j.key as string,
    input: j.input as I,
    output,
    call: j.call as number,
    ret: output === undefined || j.ret === null ? Number.POSITIVE_INFINITY : (j.ret as number),
  };
}
