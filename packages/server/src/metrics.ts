/** A small Prometheus text-format registry: counters with labels, gauges, one histogram. */
const HELP: Record<string, [string, string]> = {
  tslcc_requests_total: ['counter', 'HTTP requests by route and status'],
  tslcc_compiles_total: ['counter', 'Compiles finished, by result (ok, error, timeout, limit)'],
  tslcc_compiler_runs_total: ['counter', 'Times the compiler was started (cache hits and joined duplicates do not start it)'],
  tslcc_cache_hits_total: ['counter', 'Compiles answered from the object cache'],
  tslcc_pch_builds_total: ['counter', 'Precompiled lbc.h builds (one per kernel, arch and flag set)'],
  tslcc_dedup_joins_total: ['counter', 'Requests that joined an identical compile already running'],
  tslcc_rejections_total: ['counter', 'Requests refused, by reason'],
  tslcc_queue_depth: ['gauge', 'Compiles waiting for a slot'],
  tslcc_compiles_in_progress: ['gauge', 'Compiles running'],
  tslcc_compile_duration_seconds: ['histogram', 'Compiler wall time'],
};
const BUCKETS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60];

export class Metrics {
  private readonly counters = new Map<string, Map<string, number>>();
  private readonly gauges = new Map<string, number>();
  private readonly hist = { counts: new Array<number>(BUCKETS.length).fill(0), sum: 0, count: 0 };

  inc(name: string, labels: Record<string, string> = {}, by = 1): void {
    const key = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, '_')}"`).join(',');
    let m = this.counters.get(name);
    if (!m) this.counters.set(name, (m = new Map()));
    m.set(key, (m.get(key) ?? 0) + by);
  }

  /** The value of a counter (summed over labels, or for one label set). */
  get(name: string, labels?: Record<string, string>): number {
    const m = this.counters.get(name);
    if (!m) return 0;
    if (!labels) return [...m.values()].reduce((a, b) => a + b, 0);
    const key = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',');
    return m.get(key) ?? 0;
  }

  gauge(name: string, v: number): void {
    this.gauges.set(name, v);
  }

  observe(_name: string, seconds: number): void {
    this.hist.sum += seconds;
    this.hist.count++;
    BUCKETS.forEach((b, i) => { if (seconds <= b) this.hist.counts[i]!++; });
  }

  render(): string {
    const out: string[] = [];
    const head = (n: string) => { const [t, h] = HELP[n] ?? ['untyped', n]; out.push(`# HELP ${n} ${h}`, `# TYPE ${n} ${t}`); };
    for (const n of Object.keys(HELP)) {
      if (HELP[n]![0] === 'counter') {
        head(n);
        const m = this.counters.get(n);
        if (!m || !m.size) out.push(`${n} 0`);
        else for (const [k, v] of m) out.push(k ? `${n}{${k}} ${v}` : `${n} ${v}`);
      } else if (HELP[n]![0] === 'gauge') {
        head(n);
        out.push(`${n} ${this.gauges.get(n) ?? 0}`);
      } else {
        head(n);
        BUCKETS.forEach((b, i) => out.push(`${n}_bucket{le="${b}"} ${this.hist.counts[i]}`));
        out.push(`${n}_bucket{le="+Inf"} ${this.hist.count}`, `${n}_sum ${this.hist.sum}`, `${n}_count ${this.hist.count}`);
      }
    }
    return `${out.join('\n')}\n`;
  }
}
