import { Inject, Injectable } from '@nestjs/common';
import { BufferClient, type BufferReply, type CompletedBy } from 'nestjs-redis-buffer';
import { SERVICE_CONFIG, type ServiceConfig } from '../config/service-config.js';
import { RemoteCache } from './remote-cache.service.js';
import { FIND_RESOURCE, type FindReply, type Resource } from './resource.js';
import { ResourceStore } from './resource-store.service.js';

/** One instance's answer, as the HTTP endpoints show it. */
export interface LookupReply {
  readonly instance: string;
  readonly holds: boolean;
  readonly resource: Resource | null;
  /** The handler's error, when that instance failed to answer. */
  readonly error?: unknown;
  /** Milliseconds from the request to this reply's arrival. */
  readonly atMs: number;
}

/** A whole gather of `resource.find`: who answered what, and how it ended. */
export interface Lookup {
  readonly id: string;
  /** The instance that asked. */
  readonly askedBy: string;
  /** How many instances received the request (Redis's count). */
  readonly expected: number | undefined;
  /** How many of them had finished answering when it ended. */
  readonly finished: number;
  readonly completedBy: CompletedBy;
  readonly elapsedMs: number;
  /** Every answer, in arrival order. */
  readonly replies: readonly LookupReply[];
  /** The first instance's copy, if any instance holds it. */
  readonly holder: Resource | undefined;
}

/** Where `find` got the resource from. */
export type FindOutcome =
  | { readonly source: 'local' | 'cache'; readonly resource: Resource }
  | { readonly source: 'remote'; readonly resource: Resource; readonly lookup: Lookup }
  | { readonly source: 'none'; readonly lookup: Lookup };

/** Finds resources on this instance or, through the buffer, on any other. */
@Injectable()
export class ResourceLookup {
  constructor(
    private readonly buffer: BufferClient,
    private readonly store: ResourceStore,
    private readonly cache: RemoteCache,
    @Inject(SERVICE_CONFIG) private readonly config: ServiceConfig,
  ) {}

  /**
   * Local store first, then the cache of earlier remote finds, then every instance: the gather ends
   * with the first holder (`until`), or as soon as every instance has said no (`completedBy: 'all'`).
   */
  async find(id: string): Promise<FindOutcome> {
    const local = this.store.get(id);
    if (local !== undefined) return { source: 'local', resource: local };
    const cached = this.cache.get(id);
    if (cached !== undefined) return { source: 'cache', resource: cached };
    const lookup = await this.ask(id, { stopAtHolder: true });
    if (lookup.holder === undefined) return { source: 'none', lookup };
    this.cache.set(lookup.holder);
    return { source: 'remote', resource: lookup.holder, lookup };
  }

  /**
   * Asks every instance and waits for all of them (or the timeout). `onReply` sees each answer the
   * moment it arrives.
   */
  gather(id: string, onReply?: (reply: LookupReply) => void): Promise<Lookup> {
    return this.ask(id, { stopAtHolder: false, onReply });
  }

  private async ask(id: string, options: { stopAtHolder: boolean; onReply?: (reply: LookupReply) => void }): Promise<Lookup> {
    const startedAt = performance.now();
    const replies: LookupReply[] = [];
    const result = await this.buffer.gather<FindReply>(FIND_RESOURCE, id, {
      onReply: (reply) => {
        const lookupReply = toLookupReply(reply, performance.now() - startedAt);
        replies.push(lookupReply);
        options.onReply?.(lookupReply);
      },
      until: options.stopAtHolder ? (reply) => reply.ok && reply.data?.resource != null : undefined,
    });
    return {
      id,
      askedBy: this.config.instanceName,
      expected: result.expected,
      finished: result.finished,
      completedBy: result.completedBy,
      elapsedMs: round(result.elapsedMs),
      replies,
      holder: replies.find((reply) => reply.holds)?.resource ?? undefined,
    };
  }
}

function toLookupReply(reply: BufferReply<FindReply>, atMs: number): LookupReply {
  if (!reply.ok) return { instance: reply.instanceId, holds: false, resource: null, error: reply.error, atMs: round(atMs) };
  const resource = reply.data?.resource ?? null;
  return { instance: reply.instanceId, holds: resource !== null, resource, atMs: round(atMs) };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
