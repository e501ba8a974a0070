import { EventPattern } from '@nestjs/microservices';
import { BUFFER_TRANSPORT } from './buffer.constants.js';

/**
 * Marks an event handler that runs on every instance for each `BufferClient.emit`. No reply is sent.
 *
 * @example
 * ```ts
 * @BufferedEvent('cache.invalidate')
 * invalidate(@Payload() key: string) {
 *   this.cache.delete(key);
 * }
 * ```
 */
export const BufferedEvent = (pattern: string | Record<string, unknown>): MethodDecorator => EventPattern(pattern, BUFFER_TRANSPORT);
