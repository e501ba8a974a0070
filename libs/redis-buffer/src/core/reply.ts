/** Why a request completed. `timeout` means the result is partial. */
export type CompletedBy = 'all' | 'quorum' | 'until' | 'stall' | 'timeout';

/** One reply from one instance: a value (`ok: true`) or the error its handler raised. */
export type BufferReply<T = unknown> =
  | { readonly ok: true; readonly instanceId: string; readonly seq: number; readonly data: T }
  | { readonly ok: false; readonly instanceId: string; readonly seq: number; readonly error: unknown };

/** Everything a `gather` collected, and why it stopped. */
export interface GatherResult<T = unknown> {
  /** Successful replies, in arrival order. */
  readonly replies: ReadonlyArray<Extract<BufferReply<T>, { ok: true }>>;
  /** Error replies (a handler threw), in arrival order. The gather goes on past them. */
  readonly errors: ReadonlyArray<Extract<BufferReply<T>, { ok: false }>>;
  /** How many instances received the request (Redis's count), or `undefined` if never known. */
  readonly expected: number | undefined;
  /** How many instances had finished replying. `finished < expected` means the result is partial. */
  readonly finished: number;
  /** The rule that ended the gather. `'timeout'` means partial. */
  readonly completedBy: CompletedBy;
  /** Milliseconds from the request until completion. */
  readonly elapsedMs: number;
}
