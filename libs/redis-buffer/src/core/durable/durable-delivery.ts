import type { DurableEntry } from './durable-entry.js';
import type { ResolvedDurableHandlerOptions } from './durable-options.js';

/** One entry handed to a handler: what was published (see `DurableEntry`), and where it stands. */
export interface DurableDelivery extends Omit<DurableEntry, 'group'> {
  // `pattern` is the topic the entry was published to (`order.created`), also when the group is
  // bound to a wildcard pattern that matched it.
  /** The pattern this handler is bound to: `pattern` itself, or the wildcard pattern that matched it (`order.*`). */
  readonly binding: string;
  /** The entry's id in the stream (`<ms>-<seq>`): stable across retries and instances. */
  readonly entryId: string;
  /** The consumer group running it. */
  readonly group: string;
  /** 1 for the first delivery; a delivery that never finished (crash) counts. */
  readonly attempt: number;
  readonly maxAttempts: number;
  /** The instance running it. */
  readonly consumer: string;
  /**
   * Aborted when the instance learns, while the handler runs, that another consumer claimed the
   * entry (this one was frozen or cut off past `claimIdle`): the other consumer runs it again, and
   * this run's acknowledgement will be refused. Stop work that is not idempotent.
   */
  readonly signal: AbortSignal;
}

/** Runs a handler: resolves when it succeeded, rejects with what it failed with. */
export type DurableRun = (delivery: DurableDelivery) => Promise<void>;

export interface DurableSubscription {
  /** An exact pattern, or a wildcard topic pattern (`order.*`, `order.>`: see wire/topic.ts). */
  readonly pattern: string;
  readonly options: ResolvedDurableHandlerOptions;
  readonly run: DurableRun;
}
