// Owns the gateway's rules for a request body: whether there is one, that it is JSON, that it fits
// the byte limit, and reading it off Node's request as text. The Hono middleware and the direct
// write lane both call takeBody(), so both refuse the same bodies with the same problems.
import type { IncomingMessage } from "node:http";
import { AppError } from "../shared/errors.ts";

const jsonMediaType = /^application\/([\w.-]+\+)?json$/i;

/** application/json or any +json type, parameters (charset) aside. */
export function isJsonMediaType(contentType: string | undefined): boolean {
  return jsonMediaType.test((contentType ?? "").split(";")[0]!.trim());
}

const tooLargeBody = Symbol("too large");
const unreadableBody = Symbol("unreadable");

/** The headers that decide how a body is read. */
export interface BodyHeaders {
  contentLength: string | undefined;
  transferEncoding: string | undefined;
  contentType: string | undefined;
}

export function hasBody(h: BodyHeaders): boolean {
  return (h.contentLength !== undefined && h.contentLength !== "0") || h.transferEncoding !== undefined;
}

export function tooLargeError(bytesMax: number): AppError {
  return new AppError("PAYLOAD_TOO_LARGE", `body exceeds ${bytesMax} bytes`, "body");
}

/** What a body's headers alone refuse: another media type (it would read as empty and earn misleading field errors), or a declared size over the limit. */
export function refuseByHeaders(h: BodyHeaders, bytesMax: number): AppError | undefined {
  if (!isJsonMediaType(h.contentType)) {
    return new AppError("UNSUPPORTED_MEDIA_TYPE", "send the body as application/json", "content-type");
  }
  if (h.contentLength !== undefined && Number(h.contentLength) > bytesMax) return tooLargeError(bytesMax);
  return undefined;
}

/**
 * A request's body as text ("" when it has none), or the AppError that refuses it. Read straight
 * from Node's request: asking Hono for it builds a web Request (undici streams, abort signals) per
 * request, which was the gateway's largest cost under load.
 */
export async function takeBody(
  incoming: IncomingMessage,
  h: BodyHeaders,
  bytesMax: number,
): Promise<string | AppError> {
  if (!hasBody(h)) return "";
  const refused = refuseByHeaders(h, bytesMax);
  if (refused) return refused;
  const body = await readBody(incoming, bytesMax);
  if (body === tooLargeBody) return tooLargeError(bytesMax);
  if (body === unreadableBody) return new AppError("MALFORMED_JSON", "the body could not be read", "body");
  return body;
}

/**
 * A request body as text, at most `bytesMax` bytes. Listens for 'data' and 'end' rather than
 * iterating the stream: the async iterator costs more than the rest of a small request. A body
 * over the limit stops the request's stream (its socket goes with it), as the iterator did.
 */
function readBody(
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
