import { EventPattern } from '@nestjs/microservices';
import type { DurableHandlerOptions } from '../core/durable/durable-options.js';
import { isPattern } from '../core/durable/durable-entry.js';
import { isWildcardPattern, TopicPattern } from '../core/wire/topic.js';
import { BUFFER_TRANSPORT } from './buffer.constants.js';

/** Where `@DurablePattern` keeps its pattern and options in Nest's handler extras. */
export const DURABLE_HANDLER_EXTRAS = 'nestjs-redis-buffer:durable';

export interface DurableHandlerExtras {
  readonly pattern: string;
  readonly options: DurableHandlerOptions;
}

/**
 * Marks a durable handler: it runs for every entry published with `buffer.durable.publish(pattern, …)`,
 * at least once per consumer group, on one instance of the group at a time, even for entries
 * published while every instance was down. The entry is acknowledged once the handler succeeded
 * (returned, resolved, or its Observable completed); a throw, a rejection or an Observable error
 * triggers a retry, and past `maxAttempts` the dead-letter stream. Guards, pipes, interceptors and
 * filters apply as to any handler.
 *
 * The pattern may be a wildcard topic pattern (`order.*` one token, `order.>` one or more): the
 * group then gets every entry published to a matching topic after the binding was first made, and
 * `ctx.getPattern()` gives the topic. A malformed one (`order.>.x`, `order..*`) throws
 * `TopicPatternError` here, when the class is defined. `headers` runs only the entries that carry
 * those headers (see `DurableHandlerOptions.headers`).
 *
 * @example
 * ```ts
 * @DurablePattern('order.placed', { group: 'billing' })
 * async bill(@Payload() order: Order, @Ctx() ctx: DurableContext) {
 *   await this.invoices.create(order, { idempotencyKey: ctx.getEntryId() });
 * }
 * ```
 */
export function DurablePattern(pattern: string, options: DurableHandlerOptions = {}): MethodDecorator {
  if (!isPattern(pattern)) throw new TypeError(`@DurablePattern(${JSON.stringify(pattern)}): the pattern must be a non-empty string without "{" or "}".`);
  if (isWildcardPattern(pattern)) new TopicPattern(pattern);
  const extras: DurableHandlerExtras = { pattern, options };
  // An object pattern gives durable handlers routes of their own: no pub/sub request or event
  // ("order.placed") can reach them, and two groups of one pattern do not chain into one handler.
  return EventPattern({ durable: pattern, group: options.group ?? '' }, BUFFER_TRANSPORT, { [DURABLE_HANDLER_EXTRAS]: extras });
}
