import { MessagePattern } from '@nestjs/microservices';
import { BUFFER_TRANSPORT } from './buffer.constants.js';

/**
 * Marks a request handler that runs on every instance. It may return a value, a Promise, or an
 * Observable (every value reaches the caller; the instance is done when the stream completes).
 *
 * @example
 * ```ts
 * @BufferedPattern('resource.find')
 * find(@Payload() id: string, @Ctx() ctx: BufferContext) {
 *   return this.store.get(id) ?? null;
 * }
 * ```
 */
export const BufferedPattern = (pattern: string | Record<string, unknown>): MethodDecorator => MessagePattern(pattern, BUFFER_TRANSPORT);
