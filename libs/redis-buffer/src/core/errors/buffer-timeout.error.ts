import { BufferError, BufferErrorCode } from './buffer.error.js';
import type { BufferReply, MissingReason, RedisAnswer } from '../gather/reply.js';

/**
 * The request reached its `timeout` before it was complete. Carries what did arrive, so a caller
 * can still use a partial answer and knows it is partial.
 */
export class BufferTimeoutError<T = unknown> extends BufferError {
  readonly code = BufferErrorCode.Timeout;

  constructor(
    readonly pattern: string,
    readonly timeout: number,
    /** Every reply (values and errors) that arrived before the deadline, in arrival order. */
    readonly replies: ReadonlyArray<BufferReply<T>>,
    /** How many instances received the request, or `undefined` if Redis never said. */
    readonly expected: number | undefined,
    /** How many instances had finished replying when the deadline passed. */
    readonly finished: number,
    /** The instances the caller waited for that had not finished, by instance id. */
    readonly missing: readonly string[] = [],
    /** Why each of `missing` did not finish. */
    readonly missingReasons: Readonly<Record<string, MissingReason>> = {},
    /** `'unanswered'` when Redis did not answer (hung, paused, partitioned): the fault is Redis's. */
    readonly redis: RedisAnswer = expected === undefined ? 'unanswered' : 'answered',
  ) {
    super(
      redis === 'unanswered'
        ? `Request "${pattern}" timed out after ${timeout} ms because Redis did not answer (hung, paused or unreachable)${expected === undefined ? ', so how many instances received it is unknown' : ''}; ${finished} instances finished${missing.length > 0 ? ` (not heard from: ${missing.join(', ')})` : ''}: check the Redis server.`
        : `Request "${pattern}" timed out after ${timeout} ms with ${finished} of ${expected} instances finished${missing.length > 0 ? ` (not finished: ${missing.join(', ')})` : ''}: raise "timeout", or complete earlier with "quorum", "until" or "stall".`,
    );
  }
}
