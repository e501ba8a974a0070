import { compileWildcard, type TopicPattern } from '../wire/topic.js';

const NONE: readonly string[] = Object.freeze([]);

/** Topics whose routes are remembered at once; past it the memory starts over (topics may carry ids). */
const MAX_CACHED_TOPICS = 4096;

/**
 * The wildcard bindings a caller's membership view knows of, for one kind (request patterns or
 * event patterns): which of them match a topic. A topic request or event is published on its exact
 * channel and on the channel of each of these routes (see docs/protocol.md, "Topics").
 *
 * Built lazily from the members' announced patterns after each membership change; with no wildcard
 * binding known, `routesFor` returns the shared empty list after one length check, so exact
 * requests pay nothing for topics.
 */
export class WildcardBindings {
  private matchers: readonly TopicPattern[] | undefined;
  private readonly routes = new Map<string, readonly string[]>();

  /** `announced` lists the patterns of this kind of every member it counts (as announced: not trusted to be valid). */
  constructor(private readonly announced: () => Iterable<readonly string[]>) {}

  /** Members joined or left: the bindings are collected again on next use. */
  invalidate(): void {
    this.matchers = undefined;
    this.routes.clear();
  }

  /**
   * The wildcard bindings that match `topic`, other than `topic` itself (its exact channel is
   * published on anyway): the extra channels a request or event for `topic` goes to.
   */
  routesFor(topic: string): readonly string[] {
    const matchers = (this.matchers ??= this.collect());
    if (matchers.length === 0) return NONE;
    let routes = this.routes.get(topic);
    if (routes === undefined) {
      const matched: string[] = [];
      for (const matcher of matchers) if (matcher.pattern !== topic && matcher.matches(topic)) matched.push(matcher.pattern);
      routes = matched.length === 0 ? NONE : matched;
      if (this.routes.size >= MAX_CACHED_TOPICS) this.routes.clear();
      this.routes.set(topic, routes);
    }
    return routes;
  }

  private collect(): readonly TopicPattern[] {
    const byPattern = new Map<string, TopicPattern>();
    for (const patterns of this.announced()) {
      for (const pattern of patterns) {
        if (byPattern.has(pattern)) continue;
        // An invalid wildcard (another implementation's bug, a forged hello) binds nothing here.
        const matcher = compileWildcard(pattern);
        if (matcher !== undefined) byPattern.set(pattern, matcher);
      }
    }
    return [...byPattern.values()];
  }
}
