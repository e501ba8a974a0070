import { BaseRpcContext } from '@nestjs/microservices';
import type { DurableDelivery } from '../core/durable/durable-consumer.js';
import type { BufferHeaders } from '../core/wire/envelope.js';

/**
 * The context of a `@DurablePattern` handler, injected with `@Ctx()`.
 *
 * @example
 * ```ts
 * @DurablePattern('order.placed', { group: 'billing' })
 * bill(@Payload() order: Order, @Ctx() ctx: DurableContext) {
 *   if (ctx.getAttempt() > 1) this.logger.warn(`retrying ${ctx.getEntryId()}`);
 * }
 * ```
 */
export class DurableContext extends BaseRpcContext<[DurableDelivery]> {
  constructor(delivery: DurableDelivery) {
    super([delivery]);
  }

  private get delivery(): DurableDelivery {
    return this.args[0];
  }

  /** The entry's id in the stream: the same on every attempt and every instance. */
  getEntryId(): string {
    return this.delivery.entryId;
  }

  /** The topic the entry was published to (`order.created`), also in a handler bound to `order.*`. */
  getPattern(): string {
    return this.delivery.pattern;
  }

  /** The pattern this handler is bound to: the topic itself, or the wildcard pattern that matched it (`order.*`). */
  getBinding(): string {
    return this.delivery.binding;
  }

  /** The consumer group this handler runs in. */
  getGroup(): string {
    return this.delivery.group;
  }

  /** 1 on the first delivery; a delivery that never finished (its instance crashed) counts. */
  getAttempt(): number {
    return this.delivery.attempt;
  }

  getMaxAttempts(): number {
    return this.delivery.maxAttempts;
  }

  /** The ordering key given at publication, if any. */
  getKey(): string | undefined {
    return this.delivery.key;
  }

  getIdempotencyKey(): string | undefined {
    return this.delivery.idempotencyKey;
  }

  getHeaders(): BufferHeaders {
    return this.delivery.headers;
  }

  getHeader(name: string): string | undefined {
    return Object.hasOwn(this.delivery.headers, name) ? this.delivery.headers[name] : undefined;
  }

  /** The publisher's instance id, if it said. */
  getSenderId(): string | undefined {
    return this.delivery.from;
  }

  /** Publication time in ms since the epoch, if the publisher said. */
  getPublishedAt(): number | undefined {
    return this.delivery.publishedAt;
  }

  /** The id of the instance running this handler. */
  getInstanceId(): string {
    return this.delivery.consumer;
  }

  /**
   * Aborted when this instance learns, mid-run, that another consumer of the group claimed the entry
   * (this one was frozen or cut off past `claimIdle`): the run's acknowledgement will be refused.
   */
  getSignal(): AbortSignal {
    return this.delivery.signal;
  }
}
