import { BufferError, BufferErrorCode } from './buffer.error.js';

/**
 * `durable.publish` with `durable.replicas`: the master accepted the entry (it has an id), but Redis's
 * `WAIT` did not confirm it on `required` replicas within `timeout` ms, or the connection it was
 * written on was lost before `WAIT` answered. The entry may or may not survive a failover: a replica
 * promoted now may lack it. Publish again with the same `idempotencyKey`: that never adds it twice,
 * and resolves once the entry (the first one, if it survived) is confirmed on the replicas.
 */
export class ReplicasUnconfirmedError extends BufferError {
  readonly code = BufferErrorCode.ReplicasUnconfirmed;

  constructor(
    readonly pattern: string,
    /** The stream the entry was appended to (the topic's, or a wildcard binding's). */
    readonly stream: string,
    /** The entry's id on the master that took it. */
    readonly entryId: string,
    /** Replicas that confirmed it (`WAIT`'s answer); 0 when `WAIT` got no answer. */
    readonly confirmed: number,
    readonly required: number,
    readonly timeout: number,
    options?: { cause?: unknown },
  ) {
    const why =
      options?.cause === undefined
        ? `${confirmed} of the ${required} replicas required confirmed it within ${timeout} ms`
        : `the connection it was written on was lost before WAIT confirmed it on ${required} replicas (${(options.cause as Error)?.message ?? String(options.cause)})`;
    super(
      `Entry ${entryId} of "${pattern}" was accepted by the Redis master, but ${why}: it may or may not survive a failover. Publish again with the same idempotencyKey to retry safely (it is never added twice); check the replicas (INFO replication), or lower "durable.replicas.min" / raise "durable.replicas.timeout".`,
      options,
    );
  }
}
