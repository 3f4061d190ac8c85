// Owns reading a request body off Node's request: within a byte limit, as text, and whether its
// media type is JSON. Used by the Hono middleware and by the direct write lane alike.
import type { IncomingMessage } from "node:http";

const jsonMediaType = /^application\/([\w.-]+\+)?json$/i;

/** application/json or any +json type, parameters (charset) aside. */
export function isJsonMediaType(contentType: string | undefined): boolean {
  return jsonMediaType.test((contentType ?? "").split(";")[0]!.trim());
}

export const tooLargeBody = Symbol("too large");
export const unreadableBody = Symbol("unreadable");

/**
 * A request body as text, at most `bytesMax` bytes. Listens for 'data' and 'end' rather than
 * iterating the stream: the async iterator costs more than the rest of a small request. A body
 * over the limit stops the request's stream (its socket goes with it), as the iterator did.
 */
export function readBody(
  incoming: IncomingMessage,
  bytesMax: number,
): Promise<string | typeof tooLargeBody | typeof unreadableBody> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > bytesMax) {
        cleanup();
        incoming.destroy();
        resolve(tooLargeBody);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks, size).toString("utf8"));
    };
    const onError = () => {
      cleanup();
      resolve(unreadableBody);
    };
    const cleanup = () => {
      incoming.off("data", onData);
      incoming.off("end", onEnd);
      incoming.off("error", onError);
      incoming.off("aborted", onError);
    };
    incoming.on("data", onData);
    incoming.on("end", onEnd);
    incoming.on("error", onError);
    incoming.on("aborted", onError);
  });
}
