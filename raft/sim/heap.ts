// Owns the simulator's event queue: a binary min-heap on (virtual time, insertion order), so events at
// the same instant run in the order they were scheduled and a run is deterministic.

export interface SimEvent {
  t: number;
  seq: number;
  run: () => void;
}

export class EventHeap {
  private readonly a: SimEvent[] = [];
  private seq = 0;

  get size(): number {
    return this.a.length;
  }

  push(t: number, run: () => void): void {
    const e: SimEvent = { t, seq: this.seq++, run };
    const a = this.a;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(e, a[p]!)) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = e;
  }

  peek(): SimEvent | undefined {
    return this.a[0];
  }

  pop(): SimEvent | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (top === undefined || last === undefined || a.length === 0) return top;
    let i = 0;
    const n = a.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && less(a[r]!, a[l]!) ? r : l;
      if (!less(a[c]!, last)) break;
      a[i] = a[c]!;
      i = c;
    }
    a[i] = last;
    return top;
  }
}

function less(x: SimEvent, y: SimEvent): boolean {
  return x.t < y.t || (x.t === y.t && x.seq < y.seq);
}
