import { Inject, Injectable } from '@nestjs/common';
import { BufferClient, type BufferReply, type CompletedBy, type GatherResult, type MissingReason, type RedisAnswer } from 'nestjs-redis-buffer';
import { SERVICE_CONFIG, type ServiceConfig } from '../config/service-config.js';
import type { InstancePresence } from '../live/live-events.js';
import { PresenceService } from '../live/presence.service.js';
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

/** Why an instance that received the request gave no answer (the library's words where it names them). */
export type { MissingReason };

/**
 * How a lookup ended, in the terms of the HTTP answer:
 * `found` (200), `none` (404: every instance that received it said no, and the library says the
 * result is whole), `partial` (504: nobody who answered holds it, but not every instance answered;
 * 503 when Redis did not answer, so not everyone could be asked), `error` (502: an instance's
 * handler failed).
 */
export type LookupOutcome = 'found' | 'none' | 'partial' | 'error';

/** A whole gather of `resource.find`: who answered what, who did not, and how it ended. */
export interface Lookup {
  readonly id: string;
  /** The instance that asked. */
  readonly askedBy: string;
  /** How many instances received the request (Redis's count). */
  readonly expected: number | undefined;
  /** How many of them had finished answering when it ended. */
  readonly finished: number;
  readonly completedBy: CompletedBy;
  /** `'unanswered'` when Redis did not answer: the lookup could not ask every instance. */
  readonly redis: RedisAnswer;
  readonly outcome: LookupOutcome;
  /** How many instances received the request and did not answer. */
  readonly unanswered: number;
  /**
   * The instances that did not answer, by name: the library's list where it gives one, otherwise
   * the instances this one knows to be up (heartbeats) that sent nothing. May be shorter than
   * `unanswered` when a receiver is unknown here.
   */
  readonly missing: readonly string[];
  readonly missingReasons: Readonly<Record<string, MissingReason>>;
  /** Instances known to have gone (they were not subscribed, so not asked). */
  readonly notAsked: readonly string[];
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
    private readonly presence: PresenceService,
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
    const lookup = await this.locate(id);
    if (lookup.holder === undefined) return { source: 'none', lookup };
    this.cache.set(lookup.holder);
    return { source: 'remote', resource: lookup.holder, lookup };
  }

  /** Asks every instance, never the cache, and stops at the first holder: who owns `id` right now. */
  locate(id: string): Promise<Lookup> {
    return this.ask(id, { stopAtHolder: true });
  }

  /**
   * Asks every instance and waits for all of them (or the timeout). `onReply` sees each answer the
   * moment it arrives.
   */
  gather(id: string, onReply?: (reply: LookupReply) => void): Promise<Lookup> {
    return this.ask(id, { stopAtHolder: false, onReply });
  }

  /**
   * The instances a request should reach right now: the library's view of the instances that
   * answer `resource.find` (`BufferClient.knownInstances()`), or, before it has one, every instance
   * this one has not seen go (heartbeats).
   */
  async reachable(): Promise<string[]> {
    // The client's view, without a round trip: a frozen instance stays in it until a request has
    // waited on it for the liveness bound, so the page can show the lookup waiting for it.
    const known = this.buffer.knownInstances().filter((entry) => entry.patterns.includes(FIND_RESOURCE));
    if (known.length > 0) return known.map((entry) => entry.instanceId).sort();
    return this.presence
      .list()
      .filter((instance) => instance.state !== 'gone')
      .map((instance) => instance.instance);
  }

  private async ask(id: string, options: { stopAtHolder: boolean; onReply?: (reply: LookupReply) => void }): Promise<Lookup> {
    const startedAt = performance.now();
    const replies: LookupReply[] = [];
    const result: GatherResult<FindReply> = await this.buffer.gather<FindReply>(FIND_RESOURCE, id, {
      onReply: (reply) => {
        const lookupReply = toLookupReply(reply, performance.now() - startedAt);
        replies.push(lookupReply);
        options.onReply?.(lookupReply);
      },
      until: options.stopAtHolder ? (reply) => reply.ok && reply.data?.resource != null : undefined,
    });
    const holder = replies.find((reply) => reply.holds)?.resource ?? undefined;
    const answered = new Set(replies.map((reply) => reply.instance));
    // With `until`, the instances not heard from yet were simply not waited for: nothing is missing.
    const stoppedEarly = result.completedBy === 'until' || result.completedBy === 'quorum';
    const unanswered = stoppedEarly ? 0 : Math.max((result.expected ?? 0) - result.finished - result.observers, result.missing.length);
    const known = this.presence.list();
    const missing = stoppedEarly ? [] : result.missing.length > 0 ? [...result.missing] : guessMissing(known, answered, unanswered);
    const missingReasons: Record<string, MissingReason> = {};
    for (const name of missing) missingReasons[name] = result.missingReasons[name] ?? (this.presence.get(name)?.state === 'not answering' ? 'silent' : 'timeout');
    // 404 only for a result the library says is whole: never for a timeout or when Redis did not answer.
    const whole = result.completedBy !== 'timeout' && result.redis === 'answered' && unanswered === 0 && missing.length === 0;
    const outcome: LookupOutcome = holder !== undefined ? 'found' : replies.some((reply) => reply.error !== undefined) ? 'error' : whole ? 'none' : 'partial';
    return {
      id,
      askedBy: this.config.instanceName,
      expected: result.expected,
      finished: result.finished,
      completedBy: result.completedBy,
      redis: result.redis,
      outcome,
      unanswered,
      missing,
      missingReasons,
      notAsked: known.filter((instance) => instance.state === 'gone' && !answered.has(instance.instance)).map((instance) => instance.instance),
      elapsedMs: round(result.elapsedMs),
      replies,
      holder,
    };
  }
}

/**
 * Until the library names them: the instances known to be up that sent nothing, the silent ones
 * first, at most as many as Redis says did not answer.
 */
function guessMissing(known: readonly InstancePresence[], answered: ReadonlySet<string>, unanswered: number): string[] {
  return known
    .filter((instance) => instance.state !== 'gone' && !answered.has(instance.instance))
    .sort((left, right) => Number(right.state === 'not answering') - Number(left.state === 'not answering'))
    .slice(0, unanswered)
    .map((instance) => instance.instance);
}

function toLookupReply(reply: BufferReply<FindReply>, atMs: number): LookupReply {
  if (!reply.ok) return { instance: reply.instanceId, holds: false, resource: null, error: reply.error, atMs: round(atMs) };
  const resource = reply.data?.resource ?? null;
  return { instance: reply.instanceId, holds: resource !== null, resource, atMs: round(atMs) };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
