import type { Redis } from 'ioredis';
import type { BufferLogger } from '../logger.js';
import type { ResolvedBufferOptions } from '../options.js';
import type { DurableConsumerStats } from './durable-consumer-stats.js';
import type { DurableSubscription } from './durable-delivery.js';
import type { DurableEntry } from './durable-entry.js';
import type { EntryRefusal } from './entry-admission.js';
import type { EntrySigner } from './entry-signing.js';
import type { DurableKeys } from './durable-keys.js';
import type { ResolvedDurableOptions } from './durable-options.js';
import type { DurableScripts } from './durable-scripts.js';

export type DurableConsumerOptions = Pick<ResolvedBufferOptions, 'redis' | 'cluster' | 'namespace' | 'instanceId' | 'connectTimeout' | 'shutdownTimeout' | 'maxPayloadBytes' | 'signingKeys'> & {
  readonly durable: ResolvedDurableOptions;
};

/** A handler's subscription with its keys resolved. */
export interface Subscription extends DurableSubscription {
  readonly keys: DurableKeys;
  /** Whether an entry's topic belongs on this subscription's stream: equal to an exact pattern, or matched by a wildcard one. */
  readonly matches: (topic: string) => boolean;
  /** A wildcard pattern, registered in the bindings registry at start. */
  readonly wildcard: boolean;
  readonly group: string;
  /** XAUTOCLAIM's cursor. */
  claimCursor: string;
  /** This instance's retries and dead letters for this group, for the per-group metrics. */
  retried: number;
  deadLettered: number;
}

/** An entry this instance holds: read or claimed, not yet acknowledged, dead-lettered or let go. */
export interface Held {
  readonly subscription: Subscription;
  readonly id: string;
  readonly fields: string[];
  readonly entry: DurableEntry | string;
  /** Why it may not run (set when `entry` is a reason): it is dead-lettered unrun and counted. */
  readonly refusal: EntryRefusal | undefined;
  /** Its handled markers in the group when it has an idempotency key: the one written first, then the other signing keys' (see entry-signing.ts). */
  readonly handled: readonly string[] | undefined;
  /** Lease token of the idempotency key: unique to this entry on this instance. */
  readonly token: string;
  /** Handler runs started, this one included (counted in Redis, across instances). */
  attempt: number;
  /** Claimed from an instance that stopped, and has not run to an end here yet. */
  suspect: boolean;
  /** Runs only when no other isolated entry runs (see SuspectQueue). */
  isolate: boolean;
  running: boolean;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Rounds spent waiting for an earlier same-key entry or a running duplicate. */
  waits: number;
  /** Polling for its key's turn: an acknowledgement of that key may wake it early. */
  waitingTurn: boolean;
  lastError: unknown;
  /** When the command that last gave it to this instance (FETCH) was sent: a fresh entry's lease runs from then. */
  leaseFrom: number;
  /** The attempt of a grant that came back too late to act on (see EntryRunner): the next grant reuses it. */
  staleAttempt: number | undefined;
  /** Aborted when this instance learns that another consumer took the entry while it ran. */
  readonly abort: AbortController;
}

/** What the parts of a consumer share: its options, counters, and command connection. */
export interface ConsumerContext {
  readonly options: DurableConsumerOptions;
  /**
   * This process's consumer name in its groups: `<instanceId>@<suffix>`, the suffix random per
   * process (see `DurableConsumer.consumerName`). What Redis knows the owner of a pending entry by.
   */
  readonly name: string;
  readonly stats: DurableConsumerStats;
  readonly logger: BufferLogger;
  readonly held: HeldEntries;
  /** Signs and verifies entries and names idempotency markers; undefined when signing is off. */
  readonly signer: EntrySigner | undefined;
  /** The command connection (scripts defined); only called once started. */
  command(): Redis & DurableScripts;
  stopping(): boolean;
  redisError(what: string, error: unknown): void;
}

/**
 * The entries one instance holds, by stream, group and id. Letting one go (`finish`) tells the
 * listeners: the key gate wakes the next entry of its key, the reader reads again.
 */
export class HeldEntries {
  private readonly entries = new Map<string, Held>();
  private readonly listeners: Array<(held: Held) => void> = [];

  get size(): number {
    return this.entries.size;
  }

  values(): IterableIterator<Held> {
    return this.entries.values();
  }

  has(subscription: Subscription, id: string): boolean {
    return this.entries.has(heldKey(subscription, id));
  }

  get(subscription: Subscription, id: string): Held | undefined {
    return this.entries.get(heldKey(subscription, id));
  }

  add(held: Held): void {
    this.entries.set(heldKey(held.subscription, held.id), held);
  }

  onFinish(listener: (held: Held) => void): void {
    this.listeners.push(listener);
  }

  /** Lets an entry go here (acknowledged, dead-lettered, lost or released); no-op if already gone. */
  finish(held: Held): void {
    clearTimeout(held.timer);
    held.timer = undefined;
    if (!this.entries.delete(heldKey(held.subscription, held.id))) return;
    for (const listener of this.listeners) listener(held);
  }
}

/** The entry's ordering key, or undefined (unreadable entries have none). */
export function keyOf(held: Held): string | undefined {
  return typeof held.entry === 'string' ? undefined : held.entry.key;
}

/** The entry's handled marker in its group (the one this consumer writes), or undefined when it has no idempotency key. */
export function handledKeyOf(held: Held): string | undefined {
  return held.handled?.[0];
}

export function groupBySubscription(entries: readonly Held[]): Map<Subscription, Held[]> {
  const groups = new Map<Subscription, Held[]>();
  for (const held of entries) {
    const list = groups.get(held.subscription);
    if (list === undefined) groups.set(held.subscription, [held]);
    else list.push(held);
  }
  return groups;
}

function heldKey(subscription: Subscription, id: string): string {
  return `${subscription.keys.stream}\n${subscription.group}\n${id}`;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
