// Owns the Redis leader hint: while a replica leads it writes {id, address, term} under
// `<prefix>inventory:leader` with a TTL and refreshes it. A hint only: the gateway still follows
// NOT_LEADER answers, and safety never depends on it. The write never lowers the term already there,
// so a deposed leader waking up late cannot point clients back at itself.
import type { Redis } from "ioredis";
import type { Logger } from "pino";

const setIfNewer = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, doc = pcall(cjson.decode, cur)
  if ok and type(doc) == 'table' and tonumber(doc.term) and tonumber(doc.term) > tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1`;

export interface LeaderHint {
  id: string;
  address: string;
  term: number;
}

export function leaderHintKey(prefix: string): string {
  return `${prefix}inventory:leader`;
}

export class LeaderHintPublisher {
  private timer: NodeJS.Timeout | undefined;
  private current: LeaderHint | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ttlMs: number,
    private readonly log: Logger,
  ) {}

  /** Called on every leadership change; publishes and keeps refreshing while `isSelf`. */
  update(hint: LeaderHint | undefined): void {
    this.current = hint;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (!hint) return;
    void this.publish();
    this.timer = setInterval(() => void this.publish(), Math.max(50, Math.floor(this.ttlMs / 3)));
  }

  private async publish(): Promise<void> {
    const h = this.current;
    if (!h) return;
    try {
      await this.redis.eval(
        setIfNewer,
        1,
        leaderHintKey(this.prefix),
        JSON.stringify(h),
        String(h.term),
        String(this.ttlMs),
      );
    } catch (err) {
      // Redis down: clients fall back to asking replicas; nothing else depends on the hint.
      this.log.debug({ err: (err as Error).message }, "leader hint not published");
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

export async function readLeaderHint(redis: Redis, prefix: string): Promise<LeaderHint | undefined> {
  try {
    const raw = await redis.get(leaderHintKey(prefix));
    if (!raw) return undefined;
    const doc = JSON.parse(raw) as LeaderHint;
    return typeof doc.id === "string" && typeof doc.address === "string" ? doc : undefined;
  } catch {
    return undefined;
  }
}
