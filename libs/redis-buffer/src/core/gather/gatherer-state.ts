import type { TimerHandle } from '../clock.js';
import type { CompletedBy } from './reply.js';
import type { TopicDeliveries } from './topic-deliveries.js';

/**
 * What few requests need (a stall timer, a rule decided early, newcomers, a topic's
 * deliveries), kept by a `Gatherer` in one object made on demand: fewer fields on every request
 * (memory per request in flight).
 */
export interface RareState {
  stallTimer?: TimerHandle;
  /**
   * A rule decided before Redis said how many received the request: completion waits for the
   * count (it is one round trip away), so every result says what it is partial against.
   */
  decided?: CompletedBy;
  /**
   * Redis counted receivers while the view knew no instance serving the pattern: an instance whose
   * hello had not reached this caller yet, or only subscribers that are not instances. Redis's
   * count decides until a `who` round (sent after the request) tells which.
   */
  confirming?: boolean;
  /**
   * Awaited members the view learnt of between sending the request and Redis's count: they may
   * have subscribed before the PUBLISH or after it. Waited for while the count is not reached;
   * once it is, those that did not answer were not receivers, and are named only as far as the
   * count leaves room (see `nameMissing`).
   */
  newcomers?: ReadonlySet<string>;
  /** A topic request's deliveries (or repeat replies to an exact one): see `TopicDeliveries`. */
  topic?: TopicDeliveries;
}
