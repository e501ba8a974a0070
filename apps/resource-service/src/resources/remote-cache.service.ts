import { Injectable } from '@nestjs/common';
import type { Resource } from './resource.js';

/** Most entries kept; the oldest goes first. */
const MAX_ENTRIES = 100;
/** A bound on staleness should an invalidation be lost (pub/sub is at-most-once). */
const TTL_MS = 60_000;

/**
 * A small cache of resources found on other instances, so that a second lookup needs no gather.
 * `resource.changed` events empty an entry on every instance, which is what makes a change on one
 * instance visible at once on the others.
 */
@Injectable()
export class RemoteCache {
  private readonly entries = new Map<string, { resource: Resource; expiresAt: number }>();

  get(id: string): Resource | undefined {
    const entry = this.entries.get(id);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.entries.delete(id);
      return undefined;
    }
    return entry.resource;
  }

  set(resource: Resource): void {
    this.entries.delete(resource.id);
    this.entries.set(resource.id, { resource, expiresAt: Date.now() + TTL_MS });
    if (this.entries.size > MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
  }

  /** Returns whether a copy was dropped. */
  drop(id: string): boolean {
    return this.entries.delete(id);
  }

  /** The ids cached and not expired, sorted. */
  ids(): string[] {
    const now = Date.now();
    return [...this.entries]
      .filter(([, entry]) => entry.expiresAt > now)
      .map(([id]) => id)
      .sort();
  }
}
