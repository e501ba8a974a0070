import { BufferError, BufferErrorCode } from './buffer.error.js';
import type { BufferReply, MissingReason } from '../gather/reply.js';

/**
 * `scatter` and `send` only: the request completed without every instance that received it,
 * because some went silent (frozen, partitioned) or left before finishing. Raised after every reply
 * that did arrive has been emitted, so a stream-shaped caller cannot mistake a partial answer for a
 * whole one. (`gather` resolves instead, with `missing` and `missingReasons` set.)
 */
export class InstancesMissingError<T = unknown> extends BufferError {
  readonly code = BufferErrorCode.InstancesMissing;

  constructor(
    readonly pattern: string,
    /** Every reply (values and errors) that arrived, in arrival order. */
    readonly replies: ReadonlyArray<BufferReply<T>>,
    readonly expected: number | undefined,
    readonly finished: number,
    readonly missing: readonly string[],
    readonly missingReasons: Readonly<Record<string, MissingReason>>,
  ) {
    super(
      `Request "${pattern}" completed without ${missing.map((id) => `"${id}" (${missingReasons[id]})`).join(', ')}: the answer is partial. Use gather() to work with partial results, or retry.`,
    );
  }
}
