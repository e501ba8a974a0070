import { compareSpecificity, compileWildcard, type TopicPattern } from '../wire/topic.js';

/**
 * An instance's routes of one kind (request handlers or event handlers), by the channel form of
 * their pattern, exact and wildcard alike: which of them a topic reaches, most specific first.
 */
export class TopicRoutes<R> {
  private readonly routes = new Map<string, R>();
  private readonly matchers = new Map<string, TopicPattern>();
  // Wildcard patterns, most specific first (see `compareSpecificity`).
  private wildcards: Array<readonly [TopicPattern, R]> = [];

  /** Adds a route; `key` is the pattern's channel form, already checked (`checkBindingPattern`). */
  set(key: string, route: R): void {
    this.routes.set(key, route);
    const matcher = compileWildcard(key);
    if (matcher === undefined) return;
    this.matchers.set(key, matcher);
    this.wildcards.push([matcher, route]);
    this.wildcards.sort(([a], [b]) => compareSpecificity(a.pattern, b.pattern));
  }

  has(key: string): boolean {
    return this.routes.has(key);
  }

  /** The route bound to exactly this pattern (its channel's route). */
  get(key: string): R | undefined {
    return this.routes.get(key);
  }

  keys(): IterableIterator<string> {
    return this.routes.keys();
  }

  values(): IterableIterator<R> {
    return this.routes.values();
  }

  /** Whether any route is a wildcard: only then can a topic reach more than one route. */
  get hasWildcards(): boolean {
    return this.wildcards.length > 0;
  }

  /** Whether the route bound to `key` takes `topic`: the same string, or a wildcard matching it. */
  takes(key: string, topic: string): boolean {
    if (key === topic) return this.routes.has(key);
    return this.matchers.get(key)?.matches(topic) === true;
  }

  /** The most specific route taking `topic`: its exact route, else the first wildcard matching it. */
  best(topic: string): R | undefined {
    const exact = this.routes.get(topic);
    if (exact !== undefined) return exact;
    for (const [matcher, route] of this.wildcards) if (matcher.matches(topic)) return route;
    return undefined;
  }

  /** Every route taking `topic`, most specific first. */
  matching(topic: string): R[] {
    const matched: R[] = [];
    const exact = this.routes.get(topic);
    if (exact !== undefined) matched.push(exact);
    for (const [matcher, route] of this.wildcards) if (matcher.pattern !== topic && matcher.matches(topic)) matched.push(route);
    return matched;
  }
}
