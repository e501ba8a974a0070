/** Why a request completed. `timeout` means the result is partial. */
export type CompletedBy = 'all' | 'quorum' | 'until' | 'stall' | 'timeout';

/**
 * Why an instance the caller waited for did not finish:
 * - `silent`: it stopped showing signs of life (frozen, partitioned, killed without the socket closing);
 * - `left`: it is gone (its process ended, or it left the namespace) without finishing;
 * - `timeout`: it was alive but had not finished by the request's `timeout`;
 * - `stall`: it had not finished when the request completed by `stall`.
 */
export type MissingReason = 'silent' | 'left' | 'timeout' | 'stall';

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
  /** How many subscribers received the request (Redis's count), or `undefined` if never known. */
  readonly expected: number | undefined;
  /** How many instances had finished replying. */
  readonly finished: number;
  /** The rule that ended the gather. `'timeout'` means partial. */
  readonly completedBy: CompletedBy;
  /**
   * The instances the caller waited for that did not finish, by instance id; empty when none.
   * Non-empty means the result is partial. Not set for `quorum` and `until`, which end by design
   * before everyone has answered.
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
