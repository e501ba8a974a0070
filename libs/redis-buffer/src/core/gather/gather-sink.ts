import type { BufferTimeoutError } from '../errors/buffer-timeout.error.js';
import type { BufferReply, GatherResult } from './reply.js';

/** Receives what a gatherer decides. Exactly one of `complete` / `fail` is called, once. */
export interface GatherSink<T> {
  next(reply: BufferReply<T>): void;
  /** `timedOut` is set when `completedBy` is `'timeout'`: the error a stream-shaped caller raises. */
  complete(result: GatherResult<T>, timedOut?: BufferTimeoutError<T>): void;
  fail(error: Error, result: GatherResult<T>): void;
}

/** What `accept` did with a reply envelope; the caller counts these. */
export type AcceptOutcome = 'accepted' | 'duplicate' | 'late';
