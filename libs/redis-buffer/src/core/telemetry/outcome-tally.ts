import type { Attributes } from '@opentelemetry/api';

/**
 * Counts by a small set of attribute combinations, every known one reported from zero: a series
 * that first appears with its first error hides that error from Prometheus's `rate()` and
 * `increase()`, which need two samples. Combinations not known up front (an application's own
 * error code) are added when first counted.
 */
export class OutcomeTally {
  // Beyond this many combinations, new error codes are counted as OpenTelemetry's `_OTHER`: an
  // application that puts ids in its error codes must not grow the metric without bound.
  private static readonly LIMIT = 100;
  private readonly counts = new Map<string, { attributes: Attributes; count: number }>();

  constructor(known: readonly Attributes[]) {
    for (const attributes of known) this.entry(attributes);
  }

  add(attributes: Attributes): void {
    const entry = this.counts.size < OutcomeTally.LIMIT || this.counts.has(keyOf(attributes)) ? this.entry(attributes) : this.entry({ ...attributes, 'error.type': '_OTHER' });
    entry.count++;
  }

  /** Every combination and its count, at a collection. */
  forEach(observe: (count: number, attributes: Attributes) => void): void {
    for (const { attributes, count } of this.counts.values()) observe(count, attributes);
  }

  private entry(attributes: Attributes): { attributes: Attributes; count: number } {
    const key = keyOf(attributes);
    let entry = this.counts.get(key);
    if (entry === undefined) this.counts.set(key, (entry = { attributes, count: 0 }));
    return entry;
  }
}

function keyOf(attributes: Attributes): string {
  return JSON.stringify(Object.entries(attributes).sort(([a], [b]) => (a < b ? -1 : 1)));
}
