/** Why a request completed. `timeout` means the result is partial. */
export type CompletedBy = 'all' | 'quorum' | 'until' | 'stall' | 'timeout';

/**
 * Why an instance the caller waited for did not finish:
 * - `silent`: it stopped showing signs of life (frozen, partitioned, killed without the socket closing):
 *   a ping Redis delivered to it went unanswered for the liveness bound;
 * - `left`: it is gone without finishing: it said so (`bye`), a new process took its id, or it was
 *   unreachable or silent for 30 liveness bounds and the caller forgot it;
 * - `unreachable`: nobody is subscribed to its direct channel: a ping counted no receiver. Its
 *   process ended without saying so, or it lost its connection to Redis (a failover, a network cut)
 *   and is reconnecting; the caller cannot tell which. Later requests do not wait for it and name
 *   it, until it shows a sign of life again (its `hello` after reconnecting) or is forgotten;
 * - `timeout`: it was alive but had not finished by the request's `timeout`;
 * - `stall`: it had not finished when the request completed by `stall`;
 * - `not-counted`: the caller knows it serves the pattern, but Redis did not count it among the
 *   receivers, and every receiver Redis counted has finished (classic PUBLISH on one node of a
 *   cluster, a master that just took over, a subscription lost): it never got the request;
 * - `draining`: as `not-counted`, for an instance that announced it is shutting down (it stopped
 *   taking new requests);
 * - `joining`: it announced itself after Redis counted the request's receivers, and the count has
 *   room for it (more receivers than finished or named): it most likely received the request, and
 *   the request did not wait for it (one that subscribed after the PUBLISH looks the same to the
 *   caller as one that froze between subscribing and announcing itself);
 * - `redis-unanswered`: Redis did not answer (the request's PUBLISH had not returned, or this caller's
 *   PUBLISHes had been waiting on Redis for a quarter of `livenessTimeout` or more when the request
 *   timed out): nothing is known of the instance; the fault is Redis's.
 */
export type MissingReason = 'silent' | 'unreachable' | 'left' | 'timeout' | 'stall' | 'not-counted' | 'draining' | 'joining' | 'redis-unanswered';

/**
 * Whether Redis answered: `'answered'` when the request's PUBLISH returned a receiver count and
 * Redis was answering this caller when the request ended; `'unanswered'` when it did not (hung,
 * paused, partitioned): `expected` is then unknown or stale, and every instance still awaited is
 * named in `missing` with reason `redis-unanswered`.
 */
export type RedisAnswer = 'answered' | 'unanswered';

/** One reply from one instance: a value (`ok: true`), or an error its handler raised or a refusal. */
export type BufferReply<T = unknown> =
  | { readonly ok: true; readonly instanceId: string; readonly seq: number; readonly data: T }
  | {
      readonly ok: false;
      readonly instanceId: string;
      readonly seq: number;
      readonly error: unknown;
      /**
       * `true` when the instance refused the request without running a handler; `error.code` says
       * why (`BUFFER_EXPIRED`, `BUFFER_UNSUPPORTED_VERSION`, `BUFFER_BAD_REQUEST`,
       * `BUFFER_SHUTTING_DOWN`, `BUFFER_NO_HANDLER`, `BUFFER_OVERLOADED`).
       */
      readonly refused?: true;
    };

/** Everything a `gather` collected, and why it stopped. */
export interface GatherResult<T = unknown> {
  /** Successful replies, in arrival order. */
  readonly replies: ReadonlyArray<Extract<BufferReply<T>, { ok: true }>>;
  /** Error replies (a handler threw, or the instance refused), in arrival order. The gather goes on past them. */
  readonly errors: ReadonlyArray<Extract<BufferReply<T>, { ok: false }>>;
  /**
   * How many subscribers received the request (Redis's count), or `undefined` when Redis never
   * answered the PUBLISH (then `redis` is `'unanswered'` and `completedBy` is not `'all'`).
   */
  readonly expected: number | undefined;
  /** Whether Redis answered (see `RedisAnswer`); `'unanswered'` means the result is partial. */
  readonly redis: RedisAnswer;
  /** How many instances had finished replying. */
  readonly finished: number;
  /** The rule that ended the gather. `'timeout'` means partial. */
  readonly completedBy: CompletedBy;
  /**
   * The instances the caller waited for that did not finish, by instance id; empty when none.
   * Non-empty means the result is partial. For `quorum` and `until`, which end by design before
   * everyone has answered, it is empty unless Redis never answered the request's PUBLISH.
   *
   * The invariant (checked where the gatherer decides completion): with `completedBy` `'all'` or
   * `'stall'` and `missing` empty, every instance the caller knows serves the pattern, and every
   * receiver Redis counted, has finished (receivers that are not instances are `observers`).
   */
  readonly missing: readonly string[];
  /** Why each instance in `missing` did not finish. */
  readonly missingReasons: Readonly<Record<string, MissingReason>>;
  /**
   * Receivers Redis counted that are not known instances (a `redis-cli SUBSCRIBE`, a monitoring
   * tool, a process that is not an instance of this library) and did not answer. They never hold a
   * request: they are counted here instead.
   */
  readonly observers: number;
  /** Milliseconds from the request until completion. */
  readonly elapsedMs: number;
}
