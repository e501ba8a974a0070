import { BufferError, BufferErrorCode } from './buffer.error.js';

/**
 * Redis reported that no instance was subscribed to the request's channel, so nobody can answer.
 * Raised at once, without waiting for the timeout.
 */
export class NoRespondersError extends BufferError {
  readonly code = BufferErrorCode.NoResponders;

  constructor(
    readonly pattern: string,
    readonly to?: string,
    /** Subscribers Redis counted that are not instances (a `redis-cli SUBSCRIBE`, a monitoring tool). */
    readonly observers = 0,
  ) {
    super(
      (to === undefined
        ? `No instance handles "${pattern}": check that a @BufferedPattern('${pattern}') handler exists and that its app called startAllMicroservices() with the same namespace.`
        : `Instance "${to}" is not listening: check the instance id passed in "to" and that the instance is running with the same namespace.`) +
        (observers > 0 ? ` (${observers} subscriber${observers === 1 ? ' that is' : 's that are'} not an instance received it.)` : ''),
    );
  }
}
