// Owns the etcd 3.4 the evaluation compares against (Debian's etcd-server): a 3-member cluster on
// loopback with the Raft timing MediSync's inventory runs (50 ms heartbeat, 300 ms election timeout,
// which etcd randomizes up to twice, as ours does), fsync on (etcd's default), each member killable
// and restartable on its own data directory; and a client of its JSON gateway that finds the
// leader and, when a member fails it, tries the next one until a put is acknowledged.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePortRange } from "../../test/support/process.ts";

/** The etcd binary, or why there is none. */
export function findEtcd(): { bin: string; version: string } | { missing: string } {
  try {
    const bin = execFileSync("which", ["etcd"]).toString().trim();
    const version = execFileSync(bin, ["--version"]).toString().split("\n")[0]!.replace("etcd Version: ", "");
    return { bin, version };
  } catch {
    return { missing: "etcd is not installed here (apt-get install etcd-server)" };
  }
}

export class EtcdCluster {
  readonly names = ["e1", "e2", "e3"];
  readonly urls: string[] = [];
  private readonly procs = new Map<number, ChildProcess>();
  private dir = "";
  private base = 0;

  constructor(private readonly bin: string) {}

  async init(): Promise<void> {
    this.base = await freePortRange(6);
    this.dir = mkdtempSync(path.join(os.tmpdir(), "bench-evaluate-etcd-"));
    for (let i = 0; i < this.names.length; i++) this.urls.push(`http://127.0.0.1:${this.base + i}`);
    for (let i = 0; i < this.names.length; i++) this.start(i);
    await this.healthy();
  }

  start(i: number): void {
    const n = this.names[i]!;
    const cluster = this.names.map((m, j) => `${m}=http://127.0.0.1:${this.base + 3 + j}`).join(",");
    const proc = spawn(
      this.bin,
      [
        ...["--name", n, "--data-dir", path.join(this.dir, n)],
        ...["--listen-client-urls", this.urls[i]!, "--advertise-client-urls", this.urls[i]!],
        ...["--listen-peer-urls", `http://127.0.0.1:${this.base + 3 + i}`],
        ...["--initial-advertise-peer-urls", `http://127.0.0.1:${this.base + 3 + i}`],
        ...["--initial-cluster", cluster, "--initial-cluster-state", "new"],
        ...["--log-level", "error", "--heartbeat-interval", "50", "--election-timeout", "300"],
      ],
      { stdio: "ignore" },
    );
    this.procs.set(i, proc);
  }

  /** SIGKILLs member `i`; resolves once it is gone. */
  async kill(i: number): Promise<void> {
    const p = this.procs.get(i)!;
    if (p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await gone;
  }

  /** Every member answers /health true (it has a leader). */
  async healthy(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const ok = await Promise.all(
        this.urls.map(async (u) => {
          try {
            const r = await fetch(`${u}/health`, { signal: AbortSignal.timeout(1_000) });
            return r.ok && ((await r.json()) as { health?: string }).health === "true";
          } catch {
            return false;
          }
        }),
      );
      if (ok.every(Boolean)) return;
      if (Date.now() > deadline) throw new Error(`etcd not healthy within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The index of the member that leads (etcd's /v3/maintenance/status), once one does. */
  async leader(timeoutMs = 30_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = 0; i < this.urls.length; i++) {
        try {
          const r = await fetch(`${this.urls[i]}/v3/maintenance/status`, {
            method: "POST",
            body: "{}",
            signal: AbortSignal.timeout(1_000),
          });
          const st = (await r.json()) as { header?: { member_id?: string }; leader?: string };
          if (st.leader && st.leader !== "0" && st.header?.member_id === st.leader) return i;
        } catch {
          // down or not up yet
        }
      }
      if (Date.now() > deadline) throw new Error(`no etcd leader within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async stop(): Promise<void> {
    for (const i of this.procs.keys()) await this.kill(i);
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A put client as MediSync's InventoryClient is for writes: it sends to the member it believes
 * leads, each attempt with a 1 s deadline, and on a failure moves to the next member and tries
 * again after the same backoff, until acknowledged or `budgetMs` is spent. (A follower forwards a
 * put to the leader, so it need not know which member leads after an election.)
 */
export class EtcdPutClient {
  private current: number;

  constructor(
    private readonly urls: string[],
    leader: number,
  ) {
    this.current = leader;
  }

  async put(key: string, value: string, budgetMs = 30_000): Promise<void> {
    const body = JSON.stringify({
      key: Buffer.from(key).toString("base64"),
      value: Buffer.from(value).toString("base64"),
    });
    const deadline = performance.now() + budgetMs;
    for (let n = 0; ; n++) {
      const at = this.current;
      try {
        const r = await fetch(`${this.urls[at]}/v3/kv/put`, {
          method: "POST",
          body,
          headers: { "content-type": "application/json" },
          signal: AbortSignal.timeout(1_000),
        });
        const text = await r.text();
        if (r.ok && !text.includes('"error"')) return;
      } catch {
        // refused, reset or timed out: as a failure below
      }
      if (this.current === at) this.current = (at + 1) % this.urls.length;
      if (performance.now() > deadline) throw new Error(`etcd put not acknowledged within ${budgetMs} ms`);
      // InventoryClient's backoff (src/shared/inventory-client.ts): full jitter, 10 ms doubling to 100 ms.
      await new Promise((r) => setTimeout(r, Math.random() * Math.min(100, 10 * 2 ** n)));
    }
  }
}
