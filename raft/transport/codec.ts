// Owns the wire encoding of one core message between replicas. V8's structured serialization
// carries plain objects, numbers, strings and Uint8Array exactly and fast; both ends run the same
// MediSync build (as any Raft cluster runs one version of its protocol), and a message that fails
// to decode is dropped like a lost packet, which Raft already tolerates.
import { deserialize, serialize } from "node:v8";

/** What every batch between replicas says about its ends (see raft/node/identity.ts). */
export interface Envelope {
  clusterId: string;
  fromIncarnation: string;
  /** The incarnation of the receiver the sender knows; "" if it never heard from the receiver. */
  toIncarnation: string;
  /** Asks the receiver to answer with an envelope of its own (a joining replica's introduction). */
  hello: boolean;
}

/** Largest encoded message accepted from a peer. */
export const messageBytesMax = 16 * 1024 * 1024;

export function encodeMessage(m: unknown): Uint8Array {
  return serialize(m);
}

export function decodeMessage<T>(b: Uint8Array): T | undefined {
  if (b.byteLength > messageBytesMax) return undefined;
  try {
    return deserialize(b) as T;
  } catch {
    return undefined;
  }
}
