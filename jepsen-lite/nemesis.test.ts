// The cluster faults' topologies and their composition, on a stand-in cluster whose links only
// remember their mode (no processes): who can still hear whom under each partition, and that two
// overlapping link faults heal independently.
import { describe, expect, it } from "vitest";
import type { JepsenCluster } from "./cluster.ts";
import { clusterFaults, Nemesis, type NemesisSystem } from "./nemesis.ts";
import type { LinkMode } from "./proxy.ts";
import { seeded } from "./random.ts";

function fakeCluster(n: number) {
  const ids = Array.from({ length: n }, (_, i) => `inv-${i + 1}`);
  const links = new Map<string, { name: string; current: LinkMode; setMode(m: LinkMode): void }>();
  for (const a of ids) {
    for (const b of ids) {
      if (a === b) continue;
      const l = {
        name: `${a}>${b}`,
        current: { kind: "pass" } as LinkMode,
        setMode(m: LinkMode) {
          l.current = m;
        },
      };
      links.set(l.name, l);
    }
  }
  const cluster = { ids, links } as unknown as JepsenCluster;
  /** Whom `a` hears and is heard by (both directions pass), itself included. */
  const sees = (a: string) =>
    ids.filter(
      (b) =>
        a === b ||
        (links.get(`${a}>${b}`)!.current.kind === "pass" && links.get(`${b}>${a}`)!.current.kind === "pass"),
    );
  return { ids, links, cluster, sees };
}

const ctx = (seed: number) => ({ random: seeded(seed), leader: "inv-1", avoid: new Set<string>() });
const noProbe = () => {
  throw new Error("no probe in this test");
};

describe("cluster faults", () => {
  it("ring: on 5 replicas each sees exactly a majority (3), and no two see the same 3", async () => {
    for (let seed = 0; seed < 20; seed++) {
      const f = fakeCluster(5);
      const inj = await clusterFaults(f.cluster, noProbe).faults.ring!(ctx(seed));
      const views = f.ids.map((id) => f.sees(id).sort().join(","));
      for (const v of views) expect(v.split(",")).toHaveLength(3);
      expect(new Set(views).size).toBe(5);
      await inj.heal();
      for (const l of f.links.values()) expect(l.current.kind).toBe("pass");
    }
  });

  it("bridge: the middle replica sees all, the two pairs see only themselves and the middle", async () => {
    const f = fakeCluster(5);
    const inj = await clusterFaults(f.cluster, noProbe).faults.bridge!(ctx(3));
    const [a, mid, b] = inj.target.split("|").map((x) => x.split(","));
    expect(mid).toHaveLength(1);
    expect(f.sees(mid![0]!)).toHaveLength(5);
    for (const x of a!) expect(f.sees(x).sort()).toEqual([...a!, mid![0]!].sort());
    for (const x of b!) expect(f.sees(x).sort()).toEqual([...b!, mid![0]!].sort());
  });

  it("halves: two sides that do not hear each other, the smaller a minority", async () => {
    for (const n of [3, 5]) {
      const f = fakeCluster(n);
      const inj = await clusterFaults(f.cluster, noProbe).faults.halves!(ctx(n));
      const [small, big] = inj.target.split("|").map((x) => x.split(","));
      expect(small!.length).toBe(Math.floor(n / 2));
      expect(small!.length + big!.length).toBe(n);
      for (const x of small!) expect(f.sees(x).sort()).toEqual([...small!].sort());
      for (const x of big!) expect(f.sees(x).sort()).toEqual([...big!].sort());
      expect(inj.impaired).toEqual(small);
    }
  });

  it("ring and bridge exist only with 5 replicas", () => {
    const faults = clusterFaults(fakeCluster(3).cluster, noProbe).faults;
    expect(faults.ring).toBeUndefined();
    expect(faults.bridge).toBeUndefined();
  });

  it("overlapping link faults: each link runs the most severe mode asked, and each heals on its own", async () => {
    const f = fakeCluster(3);
    const faults = clusterFaults(f.cluster, noProbe).faults;
    const slow = await faults.slow!(ctx(1));
    const cut = await faults.partition!(ctx(1));
    // inv-1 is cut off; the others' link still runs slow.
    expect(f.links.get("inv-1>inv-2")!.current.kind).toBe("blackhole");
    expect(f.links.get("inv-3>inv-1")!.current.kind).toBe("blackhole");
    expect(f.links.get("inv-2>inv-3")!.current.kind).toBe("delay");
    await slow.heal();
    expect(f.links.get("inv-1>inv-2")!.current.kind).toBe("blackhole");
    expect(f.links.get("inv-2>inv-3")!.current.kind).toBe("pass");
    await cut.heal();
    for (const l of f.links.values()) expect(l.current.kind).toBe("pass");
    // The other order: the later, milder fault does not undo the cut.
    const cut2 = await faults.partition!(ctx(1));
    const slow2 = await faults.slow!(ctx(1));
    expect(f.links.get("inv-1>inv-2")!.current.kind).toBe("blackhole");
    await cut2.heal();
    expect(f.links.get("inv-1>inv-2")!.current.kind).toBe("delay");
    await slow2.heal();
  });

  it("oneway: only the links into the leader are cut", async () => {
    const f = fakeCluster(3);
    await clusterFaults(f.cluster, noProbe).faults.oneway!(ctx(1));
    for (const l of f.links.values()) {
      expect(l.current.kind, l.name).toBe(l.name.endsWith(">inv-1") ? "blackhole" : "pass");
    }
  });

  it("a fault that leaves no majority is not stretched waiting for a leader; one that leaves a majority is", async () => {
    const waited: string[][] = [];
    const system = (impaired: string[]): NemesisSystem => ({
      members: 3,
      faults: {
        "kill-minority": async () => ({ target: impaired.join(","), impaired, heal: async () => undefined }),
      },
      async leader(_waitMs, exclude) {
        waited.push(exclude);
        return "inv-3";
      },
      health: async (_l, _w, at) => ({ at, leader: "inv-1", writeMs: 1 }),
    });
    const s = { faults: [], quietMs: 0, faultMs: 10, holdAfterLeaderMs: 10, leaderWaitMs: 5_000 };
    const t0 = Date.now();
    const now = () => Date.now() - t0;
    const none = await new Nemesis(system(["inv-1", "inv-2"]), now, seeded(1)).one("kill-minority", s);
    expect(waited).toEqual([]);
    expect(none.leaderAfterMs).toBe(-1);
    const some = await new Nemesis(system(["inv-1"]), now, seeded(1)).one("kill-minority", s);
    expect(waited).toEqual([["inv-1"]]);
    expect(some.leaderAfterMs).toBeGreaterThanOrEqual(0);
  });
});
