import type { Redis } from 'ioredis';
import { compileWildcard, type TopicPattern } from '../wire/topic.js';
import { bindingKeys } from './durable-keys.js';
import type { DurableScripts } from './durable-scripts.js';

/**
 * Durable topics: how an entry published to a topic (`order.created`) reaches the groups bound to a
 * wildcard pattern that matches it (`order.*`, `order.>`).
 *
 * Each wildcard pattern has a stream of its own, with its own consumer groups, exactly like an exact
 * pattern: retries, dead letters, idempotency and per-key order stay single-slot scripts on that
 * stream. Consumers write their wildcard patterns to the namespace's bindings registry (BIND script)
 * after creating their group and before their start resolves; a publisher reads the registry's
 * version on every publish (in parallel with its append to the topic's own stream) and re-reads the
 * set when the version moved, then appends the entry to the stream of every matching pattern. So a
 * publish that starts after a consumer's start resolved always sees its binding: a cache can only
 * be as stale as the version read in the publish's own round trip.
 */

/** Registers `patterns` (wildcard patterns) in the namespace's registry; returns how many were new. */
export async function bindPatterns(redis: Redis & DurableScripts, namespace: string, patterns: Iterable<string>): Promise<number> {
  const keys = bindingKeys(namespace);
  let added = 0;
  for (const pattern of new Set(patterns)) {
    const [changed] = await redis.rbDurableBind(keys.bindings, keys.version, 'add', pattern);
    added += changed;
  }
  return added;
}

/** Removes a binding: publishers stop routing entries to its stream. Resolves whether it was there. */
export async function unbindPattern(redis: Redis & DurableScripts, namespace: string, pattern: string): Promise<boolean> {
  const keys = bindingKeys(namespace);
  const [changed] = await redis.rbDurableBind(keys.bindings, keys.version, 'remove', pattern);
  return changed === 1;
}

/** The registry's wildcard patterns, sorted. */
export async function boundPatterns(redis: Redis, namespace: string): Promise<string[]> {
  return (await redis.smembers(bindingKeys(namespace).bindings)).sort();
}

interface Snapshot {
  readonly version: string | null;
  readonly patterns: readonly TopicPattern[];
}

/**
 * The publisher's view of the registry: the last set read, tagged with the version read before it.
 * A version read after a change is always newer than the tag of a set read before that change, so
 * comparing the two on each publish never keeps a set that misses a binding registered earlier.
 */
export class TopicRoutes {
  private snapshot: Snapshot = { version: null, patterns: [] };
  private refresh: { readonly version: string | null; readonly done: Promise<Snapshot> } | undefined;

  constructor(private readonly namespace: string) {}

  /** The wildcard patterns bound now that match `topic`, read or confirmed in this call's own round trip. */
  async matching(redis: Redis, topic: string): Promise<string[]> {
    const keys = bindingKeys(this.namespace);
    const version = await redis.get(keys.version);
    let snapshot = this.snapshot;
    if (snapshot.version !== version) {
      // Publishes that saw the same new version share one read, and resume in the order they asked.
      let refresh = this.refresh;
      if (refresh?.version !== version) {
        const done = redis.smembers(keys.bindings).then((members) => {
          // An entry in the set that is not a valid wildcard pattern (written by another tool) is
          // never routed to: no consumer of this library can be bound to it.
          const patterns = members.flatMap((member) => compileWildcard(member) ?? []);
          const read = { version, patterns };
          // Versions only grow: never replace a newer set with one read for an older version.
          if (Number(version ?? 0) >= Number(this.snapshot.version ?? 0)) this.snapshot = read;
          return read;
        });
        refresh = { version, done };
        this.refresh = refresh;
        void done
          .catch(() => undefined)
          .finally(() => {
            if (this.refresh?.done === done) this.refresh = undefined;
          });
      }
      snapshot = await refresh.done;
    }
    return snapshot.patterns.filter((pattern) => pattern.matches(topic)).map((pattern) => pattern.pattern);
  }
}
