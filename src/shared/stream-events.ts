// Owns the shape of an event as it travels on the stream: the producer's stable id and topic, and
// a JSON payload. The event id is the producer's (its outbox row id), prefixed by the producer's
// name, so events of different producers never share one.

export interface StreamEvent {
  /** Stream entry id (changes when a relay replays the event). */
  entryId: string;
  /** Stable across every relay and replay of the event: the inbox key. */
  eventId: string;
  topic: string;
  payload: unknown;
}

/** Parses one entry's flat field list; undefined for an entry no producer of ours wrote. */
export function parseEntry(entryId: string, fields: readonly string[]): StreamEvent | undefined {
  const f = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
  const id = f.get("id");
  const topic = f.get("topic");
  const raw = f.get("payload");
  if (!id || !topic || raw === undefined || !/^[a-z][a-z0-9-]*\.[a-z0-9.-]+$/.test(topic)) return undefined;
  let payload: unknown;
  try {
    payload = JSON.parse(raw);
  } catch {
    return undefined;
  }
  return { entryId, eventId: `${topic.split(".")[0]}:${id}`, topic, payload };
}
