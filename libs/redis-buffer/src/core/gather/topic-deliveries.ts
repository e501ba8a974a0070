/**
 * A topic request's deliveries: published on its exact channel and on each of `routes` (wildcard
 * bindings' channels), so Redis's count is of deliveries, not instances. An instance reached on
 * several channels answers each delivery after its first with a repeat reply; this tells how many
 * of the counted deliveries are finished that way, and what the count is in instances.
 */
export class TopicDeliveries {
  /** Per awaited instance, how many deliveries beyond its first the view says it received. */
  extra: ReadonlyMap<string, number> | undefined;
  /** Repeat replies counted, over every instance. */
  count = 0;
  // Per instance, the bindings it received the request on again.
  private repeats: Map<string, Set<string>> | undefined;

  constructor(readonly routes: readonly string[]) {}

  /** A repeat reply from `from` for its binding `binding`; false when that one was counted already. */
  repeat(from: string, binding: string): boolean {
    const repeats = (this.repeats ??= new Map());
    let bindings = repeats.get(from);
    if (bindings?.has(binding) === true) return false;
    if (bindings === undefined) repeats.set(from, (bindings = new Set()));
    bindings.add(binding);
    this.count++;
    return true;
  }

  /**
   * Redis's count of deliveries, in instances: without the deliveries beyond the first each
   * instance received (as its repeat replies say, or else as the view says of it). An exact request
   * (no routes) is counted as it is.
   */
  instances(expected: number): number {
    if (this.routes.length === 0) return expected;
    let extra = 0;
    for (const [id, bindings] of this.repeats ?? []) extra += Math.max(bindings.size, this.extra?.get(id) ?? 0);
    for (const [id, count] of this.extra ?? []) if (this.repeats?.has(id) !== true) extra += count;
    return Math.max(0, expected - extra);
  }
}
