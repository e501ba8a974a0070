import type { ReplyEnvelope } from '../wire/envelope.js';
import type { BufferReply, GatherResult } from './reply.js';

type Value<T> = Extract<BufferReply<T>, { ok: true }>;
type Failure<T> = Extract<BufferReply<T>, { ok: false }>;

/** The reply a caller is given for a reply envelope that carries a value or (`hasError`) an error. */
export function replyOf<T>(envelope: ReplyEnvelope, hasError: boolean): BufferReply<T> {
  if (!hasError) return valueReply(envelope.from, envelope.seq, envelope.data);
  return envelope.refused === true
    ? { ok: false, instanceId: envelope.from, seq: envelope.seq, error: envelope.error, refused: true }
    : { ok: false, instanceId: envelope.from, seq: envelope.seq, error: envelope.error };
}

/** A value reply: one shape wherever it is made. */
export function valueReply<T>(instanceId: string, seq: number, data: unknown): BufferReply<T> {
  return { ok: true, instanceId, seq, data: data as T };
}

/** Replies in arrival order, as a result gives them: values and errors apart (no copy when all are values). */
export function splitReplies<T>(arrived: Array<BufferReply<T>>): { replies: Array<Value<T>>; errors: Array<Failure<T>> } {
  if (arrived.every((reply) => reply.ok)) return { replies: arrived as Array<Value<T>>, errors: [] };
  return { replies: arrived.filter((reply): reply is Value<T> => reply.ok), errors: arrived.filter((reply): reply is Failure<T> => !reply.ok) };
}

/** How a request ended, as its result says: everything but the replies, the count of those finished and the time. */
export type ResultEnding = Pick<GatherResult<unknown>, 'completedBy' | 'expected' | 'redis' | 'missing' | 'missingReasons' | 'observers'>;

/** A request's result: the replies that `arrived` and how it ended. */
export function resultOf<T>(arrived: Array<BufferReply<T>>, ending: ResultEnding, finished: number, elapsedMs: number): GatherResult<T> {
  // Named fields, not a spread of the split or of `ending`: a result object of one shape.
  const { replies, errors } = splitReplies(arrived);
  return {
    replies,
    errors,
    expected: ending.expected,
    redis: ending.redis,
    finished,
    completedBy: ending.completedBy,
    missing: ending.missing,
    missingReasons: ending.missingReasons,
    observers: ending.observers,
    elapsedMs,
  };
}
